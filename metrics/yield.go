package metrics

import (
	"github.com/prometheus/client_golang/prometheus"
	"github.com/tandem-run/tandem/jobs"
)

// RegisterYield reports the jobs pool's yield to HTTP (jobs.Runtime.Yield), read at scrape time:
// tandem_jobs_yield_limit, the most jobs run at once (0 while none is held back), and
// tandem_jobs_yields_total, the times that limit came down. Call it once, with jobs.yield_to_http on.
func (m *Metrics) RegisterYield(state func() jobs.Yield) {
	m.reg.MustRegister(
		prometheus.NewGaugeFunc(prometheus.GaugeOpts{Name: "tandem_jobs_yield_limit",
			Help: "Most jobs run at once while jobs yield cores to HTTP requests; 0: no limit."},
			func() float64 { return float64(state().Limit) }),
		prometheus.NewCounterFunc(prometheus.CounterOpts{Name: "tandem_jobs_yields_total",
			Help: "Times the jobs pool's yield limit came down because HTTP requests waited for a core."},
			func() float64 { return float64(state().Yields) }),
	)
}
