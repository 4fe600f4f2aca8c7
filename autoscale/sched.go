package autoscale

import (
	"runtime/metrics"
	"sync"
)

// schedWait samples how long runnable goroutines waited for a CPU (the Go runtime's
// /sched/latencies:seconds) between two calls. When handlers keep every GOMAXPROCS busy, the
// goroutines behind them (the next request's reader, the admission queue) wait for a turn: more
// threads cannot add throughput then, they only share the cores. It is the signal that tells a
// CPU-bound route from an I/O-bound one without guessing from latency alone, which jitters by
// as much as a third thread adds on 2 cores.
type schedWait struct {
	mu     sync.Mutex
	sample []metrics.Sample
	last   []uint64
}

const schedLatencies = "/sched/latencies:seconds"

// cpuWaitP90 is the controllers' default CPUWait: the p90 of the scheduler latency since the
// previous call (a window of its own for each controller).
func cpuWaitP90() func() float64 {
	sw := newSchedWait()
	return func() float64 { return sw.quantile(0.9) }
}

func newSchedWait() *schedWait {
	s := &schedWait{sample: []metrics.Sample{{Name: schedLatencies}}}
	s.quantile(0.9) // start the window now
	return s
}

// quantile returns the q-quantile, in seconds, of the scheduling waits since the last call, or 0
// when there were none (or the runtime does not report them).
func (s *schedWait) quantile(q float64) float64 {
	s.mu.Lock()
	defer s.mu.Unlock()
	metrics.Read(s.sample)
	if s.sample[0].Value.Kind() != metrics.KindFloat64Histogram {
		return 0
	}
	h := s.sample[0].Value.Float64Histogram()
	delta := make([]uint64, len(h.Counts))
	var total uint64
	for i, c := range h.Counts {
		if i < len(s.last) {
			c -= s.last[i]
		}
		delta[i] = c
		total += c
	}
	s.last = append(s.last[:0], h.Counts...)
	if total == 0 {
		return 0
	}
	want := uint64(q * float64(total))
	var seen uint64
	for i, c := range delta {
		seen += c
		if seen > want {
			return h.Buckets[i] // the bucket's lower bound
		}
	}
	return h.Buckets[len(h.Buckets)-1]
}
