// Package metrics exposes tandem's Prometheus metrics on a private registry. Pool and queue
// figures are read when Prometheus scrapes (no background goroutine); request and job events are
// counted as they happen through a middleware and the jobs.Observer interface.
//
// Families (all prefixed tandem_, base units):
//
//	tandem_pool_size, _running, _waiting {pool}           gauges, read from the pools
//	tandem_pool_rejected_total {pool}                    requests or jobs refused by a full pool
//	tandem_pool_pinned {pool}                            1 while a manual resize pins autoscaling off
//	tandem_http_requests_total {route,method,code}       by chi route pattern, never raw path
//	tandem_http_request_duration_seconds {route,method}  histogram
//	tandem_http_shed_total {reason}                      backlog_full | queue_timeout
//	tandem_jobs_enqueued_total, _started_total {queue,kind}
//	tandem_jobs_finished_total {queue,kind,state}        succeeded | retrying | dead | canceled | interrupted
//	tandem_job_run_seconds {kind}                        histogram
//	tandem_job_queue_wait_seconds {queue}                histogram, due time to start
//	tandem_queue_ready_jobs, _oldest_ready_age_seconds, _paused {queue}
//	tandem_queue_jobs {queue,state}                      running: a worker runs it; prefetched: leased, waiting for one
//	tandem_store_commit_seconds                          histogram, one per group commit
//	tandem_store_commit_requests                         histogram, requests per commit
//	tandem_pool_resizes_total {pool,by,direction}        size changes; by = admin, reload, autoscale or limits
//	tandem_limits_changes_total {limit}                  changes of the container's limits followed live; cpu | memory
//	tandem_jobs_yield_limit, tandem_jobs_yields_total     jobs run at once while they yield to HTTP (0: none held back), times it came down
//	plus the Go runtime and process collectors.
package metrics

import (
	"context"
	"net/http"
	"strconv"
	"sync"
	"time"

	"github.com/go-chi/chi/v5"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"
	"github.com/tandem-run/tandem/jobs"
	"github.com/tandem-run/tandem/pool"
)

// Options configure Metrics. The zero value is ready to use.
type Options struct {
	// ScrapeTimeout bounds reading queue stats during a scrape. Default 2s.
	ScrapeTimeout time.Duration
}

// Metrics is tandem's metric set.
type Metrics struct {
	opts Options
	reg  *prometheus.Registry

	httpReqs   *prometheus.CounterVec
	httpDur    *prometheus.HistogramVec
	shed       *prometheus.CounterVec
	enqueued   *prometheus.CounterVec
	started    *prometheus.CounterVec
	finished   *prometheus.CounterVec
	runTime    *prometheus.HistogramVec
	queueWait  *prometheus.HistogramVec
	commitDur  prometheus.Histogram
	commitReqs prometheus.Histogram
	resizes    *prometheus.CounterVec
	bulk       *prometheus.CounterVec
	fired      *prometheus.CounterVec // slots of the periodic schedules fired
	skipped    *prometheus.CounterVec // and skipped
	limits     *prometheus.CounterVec

	// Children of the request path's vectors, cached so a request costs map lookups, not label
	// hashing and allocation.
	children sync.Map // routeKey -> *routeMetrics

	mu     sync.Mutex
	pools  []*pool.Pool
	pinned map[string]func() bool
	queues func(ctx context.Context) ([]jobs.QueueStats, error)
}

type routeKey struct {
	route, method string
	code          int
}

type routeMetrics struct {
	count prometheus.Counter
	dur   prometheus.Observer
}

// New returns the metric set, registered on its own registry with the Go and process collectors.
func New(opts Options) *Metrics {
	if opts.ScrapeTimeout == 0 {
		opts.ScrapeTimeout = 2 * time.Second
	}
	m := &Metrics{opts: opts, reg: prometheus.NewRegistry(), pinned: map[string]func() bool{}}
	latency := []float64{.0005, .001, .0025, .005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5, 10, 30}
	m.httpReqs = prometheus.NewCounterVec(prometheus.CounterOpts{Name: "tandem_http_requests_total", Help: "HTTP requests by route pattern, method and status code."}, []string{"route", "method", "code"})
	m.httpDur = prometheus.NewHistogramVec(prometheus.HistogramOpts{Name: "tandem_http_request_duration_seconds", Help: "HTTP request duration, queueing included.", Buckets: latency}, []string{"route", "method"})
	m.shed = prometheus.NewCounterVec(prometheus.CounterOpts{Name: "tandem_http_shed_total", Help: "Requests shed with 503 by the threads pool."}, []string{"reason"})
	m.enqueued = prometheus.NewCounterVec(prometheus.CounterOpts{Name: "tandem_jobs_enqueued_total", Help: "Jobs enqueued."}, []string{"queue", "kind"})
	m.started = prometheus.NewCounterVec(prometheus.CounterOpts{Name: "tandem_jobs_started_total", Help: "Job attempts started."}, []string{"queue", "kind"})
	m.finished = prometheus.NewCounterVec(prometheus.CounterOpts{Name: "tandem_jobs_finished_total", Help: "Job attempts finished, by how (succeeded, retrying, dead, canceled, interrupted)."}, []string{"queue", "kind", "state"})
	// By kind only: run time is the handler's, and queue x kind histograms were 80% of a scrape
	// (290 KB and 5.3 ms with 10 queues and 20 kinds; BenchmarkScrape).
	m.runTime = prometheus.NewHistogramVec(prometheus.HistogramOpts{Name: "tandem_job_run_seconds", Help: "Job attempt run time, by kind.", Buckets: latency}, []string{"kind"})
	m.queueWait = prometheus.NewHistogramVec(prometheus.HistogramOpts{Name: "tandem_job_queue_wait_seconds", Help: "Time from a job's due time to its start.", Buckets: latency}, []string{"queue"})
	m.commitDur = prometheus.NewHistogram(prometheus.HistogramOpts{Name: "tandem_store_commit_seconds", Help: "Duration of one group commit, fsync included.", Buckets: latency})
	m.commitReqs = prometheus.NewHistogram(prometheus.HistogramOpts{Name: "tandem_store_commit_requests", Help: "Requests (enqueues, leases, acknowledgements) sharing one commit.", Buckets: []float64{1, 2, 4, 8, 16, 32, 64, 128, 256, 512}})
	m.resizes = prometheus.NewCounterVec(prometheus.CounterOpts{Name: "tandem_pool_resizes_total", Help: "Pool size changes, by who made them (admin, reload, autoscale, limits)."}, []string{"pool", "by", "direction"})
	m.bulk = prometheus.NewCounterVec(prometheus.CounterOpts{Name: "tandem_jobs_bulk_changed_total", Help: "Jobs changed by bulk actions (admin API, CLI, dashboard), by action."}, []string{"action"})
	m.fired = prometheus.NewCounterVec(prometheus.CounterOpts{Name: "tandem_periodic_fired_total", Help: "Slots of a periodic schedule whose job this process made."}, []string{"name"})
	m.skipped = prometheus.NewCounterVec(prometheus.CounterOpts{Name: "tandem_periodic_skipped_total", Help: "Slots of a periodic schedule missed while no process ran (or while this one stalled) and not caught up."}, []string{"name"})
	m.limits = prometheus.NewCounterVec(prometheus.CounterOpts{Name: "tandem_limits_changes_total", Help: "Changes of the container's CPU or memory limit that tandem followed while running."}, []string{"limit"})
	m.reg.MustRegister(m.httpReqs, m.httpDur, m.shed, m.enqueued, m.started, m.finished, m.runTime, m.queueWait,
		m.commitDur, m.commitReqs, m.resizes, m.bulk, m.fired, m.skipped, m.limits, &scrapeCollector{m},
		collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	return m
}

// Registry returns the registry, for Go programs that add their own metrics.
func (m *Metrics) Registry() *prometheus.Registry { return m.reg }

// Handler serves the Prometheus text format.
func (m *Metrics) Handler() http.Handler {
	return promhttp.HandlerFor(m.reg, promhttp.HandlerOpts{Registry: m.reg})
}

// RegisterPools adds pools whose size, running, waiting and rejections are reported.
func (m *Metrics) RegisterPools(ps ...*pool.Pool) {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.pools = append(m.pools, ps...)
}

// RegisterPinned reports tandem_pool_pinned for a pool from its autoscaler.
func (m *Metrics) RegisterPinned(poolName string, pinned func() bool) {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.pinned[poolName] = pinned
}

// RegisterQueues sets where queue depths come from (jobs.Runtime.Queues).
func (m *Metrics) RegisterQueues(fn func(ctx context.Context) ([]jobs.QueueStats, error)) {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.queues = fn
}

// Shed counts a request shed by admission.
func (m *Metrics) Shed(reason string) { m.shed.WithLabelValues(reason).Inc() }

// ObserveCommit records one group commit (store.Options.OnCommit).
func (m *Metrics) ObserveCommit(d time.Duration, requests int) {
	m.commitDur.Observe(d.Seconds())
	m.commitReqs.Observe(float64(requests))
}

// Resized counts a pool size change, by who made it (admin, reload, autoscale, limits: resize.Source).
func (m *Metrics) Resized(poolName, by string, oldSize, newSize int) {
	dir := "up"
	if newSize < oldSize {
		dir = "down"
	}
	m.resizes.WithLabelValues(poolName, by, dir).Inc()
}

// LimitsChanged counts a change of the container's limits that was followed: limit is "cpu" (the
// quota or the affinity) or "memory".
func (m *Metrics) LimitsChanged(limit string) { m.limits.WithLabelValues(limit).Inc() }

// Middleware counts requests by route pattern, method and code. It must wrap a chi router whose
// route context is readable after the router ran (tandem's server seeds it).
func (m *Metrics) Middleware(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		start := time.Now()
		sw := &codeWriter{ResponseWriter: w, code: http.StatusOK}
		next.ServeHTTP(sw, r)
		route := "unmatched"
		if rc := chi.RouteContext(r.Context()); rc != nil {
			if p := rc.RoutePattern(); p != "" { // it joins and rewrites strings: once
				route = p
			}
		}
		k := routeKey{route, r.Method, sw.code}
		c, ok := m.children.Load(k)
		if !ok {
			c, _ = m.children.LoadOrStore(k, &routeMetrics{
				count: m.httpReqs.WithLabelValues(route, r.Method, strconv.Itoa(sw.code)),
				dur:   m.httpDur.WithLabelValues(route, r.Method),
			})
		}
		rm := c.(*routeMetrics)
		rm.count.Inc()
		rm.dur.Observe(time.Since(start).Seconds())
	})
}

type codeWriter struct {
	http.ResponseWriter
	code  int
	wrote bool
}

func (w *codeWriter) WriteHeader(code int) {
	if !w.wrote {
		w.code, w.wrote = code, true
	}
	w.ResponseWriter.WriteHeader(code)
}

func (w *codeWriter) Write(b []byte) (int, error) {
	w.wrote = true
	return w.ResponseWriter.Write(b)
}

func (w *codeWriter) Flush() {
	if f, ok := w.ResponseWriter.(http.Flusher); ok {
		f.Flush()
	}
}

func (w *codeWriter) Unwrap() http.ResponseWriter { return w.ResponseWriter }

// JobsObserver returns the jobs.Observer that feeds the job families.
func (m *Metrics) JobsObserver() jobs.Observer { return observer{m} }

type observer struct{ m *Metrics }

func (o observer) Enqueued(queue, kind string, n int) {
	o.m.enqueued.WithLabelValues(queue, kind).Add(float64(n))
}

func (o observer) Started(j *jobs.Job, wait time.Duration) {
	o.m.started.WithLabelValues(j.Queue, j.Kind).Inc()
	o.m.queueWait.WithLabelValues(j.Queue).Observe(max(wait, 0).Seconds())
}

func (o observer) Finished(j *jobs.Job, run time.Duration) {
	state := string(j.State)
	if j.State == jobs.StateReady {
		state = "interrupted"
	}
	o.m.finished.WithLabelValues(j.Queue, j.Kind, state).Inc()
	o.m.runTime.WithLabelValues(j.Kind).Observe(run.Seconds())
}

// Bulk counts the jobs a bulk action changed (jobs.BulkObserver).
func (o observer) Bulk(op jobs.BulkOp, changed int) {
	o.m.bulk.WithLabelValues(string(op)).Add(float64(changed))
}

// PeriodicFired counts a slot this process fired (jobs.PeriodicObserver).
func (o observer) PeriodicFired(name string) { o.m.fired.WithLabelValues(name).Inc() }

// PeriodicSkipped counts missed slots that were not caught up (jobs.PeriodicObserver).
func (o observer) PeriodicSkipped(name string, n int) {
	o.m.skipped.WithLabelValues(name).Add(float64(n))
}

var _ jobs.PeriodicObserver = observer{}

// scrapeCollector reads pools and queues at scrape time.
type scrapeCollector struct{ m *Metrics }

var (
	descPoolSize     = prometheus.NewDesc("tandem_pool_size", "Tasks a pool runs at once.", []string{"pool"}, nil)
	descPoolRunning  = prometheus.NewDesc("tandem_pool_running", "Tasks running in a pool.", []string{"pool"}, nil)
	descPoolWaiting  = prometheus.NewDesc("tandem_pool_waiting", "Callers waiting for a pool slot.", []string{"pool"}, nil)
	descPoolRejected = prometheus.NewDesc("tandem_pool_rejected_total", "Callers refused by a pool (backlog full or timed out).", []string{"pool"}, nil)
	descPoolPinned   = prometheus.NewDesc("tandem_pool_pinned", "1 while a manual resize has paused autoscaling for the pool.", []string{"pool"}, nil)
	descReady        = prometheus.NewDesc("tandem_queue_ready_jobs", "Jobs ready to run now.", []string{"queue"}, nil)
	descJobs         = prometheus.NewDesc("tandem_queue_jobs", "Jobs in the store by state.", []string{"queue", "state"}, nil)
	descOldest       = prometheus.NewDesc("tandem_queue_oldest_ready_age_seconds", "Age of the longest-waiting ready job.", []string{"queue"}, nil)
	descPaused       = prometheus.NewDesc("tandem_queue_paused", "1 while the queue is paused.", []string{"queue"}, nil)
	descScrapeErr    = prometheus.NewDesc("tandem_scrape_errors", "1 when queue stats could not be read during this scrape.", nil, nil)
)

func (c *scrapeCollector) Describe(ch chan<- *prometheus.Desc) {
	for _, d := range []*prometheus.Desc{descPoolSize, descPoolRunning, descPoolWaiting, descPoolRejected, descPoolPinned, descReady, descJobs, descOldest, descPaused, descScrapeErr} {
		ch <- d
	}
}

func (c *scrapeCollector) Collect(ch chan<- prometheus.Metric) {
	c.m.mu.Lock()
	pools, pinned, queues := append([]*pool.Pool(nil), c.m.pools...), c.m.pinned, c.m.queues
	c.m.mu.Unlock()
	for _, p := range pools {
		s := p.Stats()
		ch <- prometheus.MustNewConstMetric(descPoolSize, prometheus.GaugeValue, float64(s.Size), s.Name)
		ch <- prometheus.MustNewConstMetric(descPoolRunning, prometheus.GaugeValue, float64(s.Running), s.Name)
		ch <- prometheus.MustNewConstMetric(descPoolWaiting, prometheus.GaugeValue, float64(s.Waiting), s.Name)
		ch <- prometheus.MustNewConstMetric(descPoolRejected, prometheus.CounterValue, float64(s.Rejected), s.Name)
		v := 0.0
		if f, ok := pinned[s.Name]; ok && f() {
			v = 1
		}
		ch <- prometheus.MustNewConstMetric(descPoolPinned, prometheus.GaugeValue, v, s.Name)
	}
	if queues == nil {
		return
	}
	ctx, cancel := context.WithTimeout(context.Background(), c.m.opts.ScrapeTimeout)
	defer cancel()
	qs, err := queues(ctx)
	failed := 0.0
	if err != nil {
		failed = 1
	}
	ch <- prometheus.MustNewConstMetric(descScrapeErr, prometheus.GaugeValue, failed)
	now := time.Now()
	for _, q := range qs {
		ch <- prometheus.MustNewConstMetric(descReady, prometheus.GaugeValue, float64(q.Counts[jobs.StateReady]), q.Name)
		for _, st := range jobs.States {
			ch <- prometheus.MustNewConstMetric(descJobs, prometheus.GaugeValue, float64(q.Counts[st]), q.Name, string(st))
		}
		age := 0.0
		if !q.OldestReady.IsZero() {
			age = max(now.Sub(q.OldestReady).Seconds(), 0)
		}
		ch <- prometheus.MustNewConstMetric(descOldest, prometheus.GaugeValue, age, q.Name)
		paused := 0.0
		if q.Paused {
			paused = 1
		}
		ch <- prometheus.MustNewConstMetric(descPaused, prometheus.GaugeValue, paused, q.Name)
	}
}
