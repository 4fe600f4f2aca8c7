// Package jobs gives tandem's durable queue its meaning: enqueue with validation, leases, retries
// with backoff, delays, priorities, weighted queues, unique keys, cancel, and recovery after a crash.
// Records live in a Store (store.go: the interface, and what each method promises), which package
// store implements on a bbolt file for one process, and package store/postgres on a database that
// several replicas share (shared.go and cluster.go: heartbeat leases, one elected leader for the
// maintenance, rescue of a dead replica's jobs); jobs owns the record types, so neither the
// store's callers nor the HTTP API know the backend. Handlers run on a pool.Pool.
//
// A Go program registers its own kinds and enqueues from the same process:
//
//	rt, _ := jobs.New(jobs.Options{Store: st, Pool: workers})
//	rt.RegisterFunc("email", func(ctx context.Context, j *jobs.Job) (any, error) { ... })
//	rt.Start(ctx)
//	rt.Enqueue(ctx, jobs.EnqueueParams{Kind: "email", Payload: json.RawMessage(`{"to":"a@b"}`)})
//
// A job is leased by the dispatcher (prefetched: it waits in the pool's backlog for a free worker),
// then started by the worker that takes it (running: Attempt, StartedAt and the timeout count from
// there), then acknowledged. Delivery is at least once: a job whose process died while it ran runs
// again after the restart, so handlers should be idempotent. Neither the lease nor the start waits
// for its commit: each lands about one commit (a millisecond or so) after it is written, and a
// short job's acknowledgement joins the same commit, so its record is written once. A crash inside
// that window re-runs the job with its attempt uncounted, since that attempt was never recorded (a
// handler that kills the process within a millisecond of starting can do so at every start); an
// attempt whose start is on disk counts, and one cut short by Stop is given back (recover.go).
package jobs

import (
	"cmp"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"sort"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/tandem-run/tandem/pool"
)

// Errors callers branch on.
var (
	// ErrUnknownKind means no handler is registered for the kind.
	ErrUnknownKind = errors.New("unknown kind")
	// ErrInvalidState means the job's state does not allow the operation (cancel a finished job,
	// retry a succeeded one).
	ErrInvalidState = errors.New("invalid state for this operation")
	// ErrPayloadTooLarge means the payload is over Options.MaxPayloadBytes. It comes as a
	// *ValidationError that names the payload's field, its size and the limit.
	ErrPayloadTooLarge = errors.New("payload too large")
	// ErrStopped means the runtime was stopped.
	ErrStopped = errors.New("jobs runtime stopped")
)

// Handler runs one attempt of a job. Returning nil succeeds the job, with result stored (nil for
// none; json.RawMessage and []byte are stored as they are when they are valid JSON, anything else
// is marshaled). Return Permanent(err) to fail without retrying, Snooze(d) to run again after d
// without using an attempt; any other error is retried with backoff until MaxAttempts.
type Handler interface {
	Run(ctx context.Context, job *Job) (result any, err error)
}

// HandlerFunc adapts a function to Handler.
type HandlerFunc func(ctx context.Context, job *Job) (any, error)

// Run calls f.
func (f HandlerFunc) Run(ctx context.Context, job *Job) (any, error) { return f(ctx, job) }

// Kind is a registered job kind.
type Kind struct {
	// Handler runs the job. Required.
	Handler Handler
	// Validate checks a payload at enqueue time, so a bad payload is refused (HTTP 400) instead of
	// becoming a dead job. A *ValidationError's fields are reported as they are; another error is
	// reported on the field "payload". DecodePayload decodes and names the field at fault. Optional.
	Validate func(payload json.RawMessage) error
	// Timeout is this kind's default per-attempt timeout. Default Options.Timeout.
	Timeout time.Duration
	// MaxAttempts is this kind's default. Default Options.MaxAttempts.
	MaxAttempts int
}

// permanentError and snoozeError are the values a handler returns to steer the retry policy.
type permanentError struct{ err error }

func (e *permanentError) Error() string { return e.err.Error() }
func (e *permanentError) Unwrap() error { return e.err }

// Permanent marks err as not worth retrying: the job goes dead at once.
func Permanent(err error) error {
	if err == nil {
		err = errors.New("permanent failure")
	}
	return &permanentError{err}
}

type snoozeError struct{ d time.Duration }

func (e *snoozeError) Error() string { return fmt.Sprintf("snoozed for %s", e.d) }

// Snooze asks to run the job again after d without using up an attempt.
func Snooze(d time.Duration) error { return &snoozeError{max(d, 0)} }

// ValidationError lists what is wrong with a request, field path -> message.
type ValidationError struct {
	// Subject names what was invalid in the message ("invalid <Subject>: ..."). Default "job".
	Subject string
	Fields  map[string]string
	// Err, when set, is the sentinel this error also is (ErrPayloadTooLarge), so a caller can
	// branch on it with errors.Is and still read the fields; it leads the message. Optional.
	Err error
}

// Unwrap returns Err.
func (e *ValidationError) Unwrap() error { return e.Err }

func (e *ValidationError) Error() string {
	keys := make([]string, 0, len(e.Fields))
	for k := range e.Fields {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	parts := make([]string, len(keys))
	for i, k := range keys {
		parts[i] = k + ": " + e.Fields[k]
	}
	lead := "invalid " + cmp.Or(e.Subject, "job")
	if e.Err != nil {
		lead = e.Err.Error()
	}
	return lead + ": " + strings.Join(parts, "; ")
}

func (e *ValidationError) add(field, msg string) {
	if e.Fields == nil {
		e.Fields = map[string]string{}
	}
	if _, ok := e.Fields[field]; !ok {
		e.Fields[field] = msg
	}
}

// QueueOptions configure one queue.
type QueueOptions struct {
	// Weight is the queue's share of free workers relative to other queues with ready jobs. Default 1.
	Weight int
	// Concurrency caps the queue's running jobs. 0: only the pool limits it.
	Concurrency int
	// MaxPending caps the queue's waiting jobs. 0: Options.MaxPending.
	MaxPending int
}

// Observer receives the runtime's events, for metrics. Every method must be cheap and must not block.
type Observer interface {
	Enqueued(queue, kind string, n int)
	Started(job *Job, queueWait time.Duration)
	// Finished is called once per attempt; job.State says how it ended (succeeded, retrying, dead,
	// canceled, or ready when the attempt was interrupted by a shutdown).
	Finished(job *Job, runTime time.Duration)
}

// Options configure a Runtime.
type Options struct {
	// Store holds the jobs (package store's bbolt file, in tandem). Required.
	Store Store
	// Pool runs the handlers (the concurrency knob). Required. Its backlog must be at least
	// Prefetch (PrefetchMax when adaptive), for the jobs leased ahead of a free worker:
	// pool.MaxBacklog is simplest.
	Pool *pool.Pool
	// Queues are the known queues. Default {"default": {Weight: 1}}. Enqueueing to another is an error.
	Queues map[string]QueueOptions
	// MaxPending caps each queue's waiting jobs. Default 100000.
	MaxPending int
	// MaxAttempts is the default number of attempts before a job is dead. Default 25.
	MaxAttempts int
	// Timeout is the default per-attempt timeout. Default 10m.
	Timeout time.Duration
	// Retention is how long finished jobs are kept. Default 24h.
	Retention time.Duration
	// MaxPayloadBytes caps a payload. Default 65536.
	MaxPayloadBytes int
	// MaxResultBytes caps a stored result; a longer one is replaced by a truncation note. Default 65536.
	MaxResultBytes int
	// BatchMax caps EnqueueBatch. Default 1000.
	BatchMax int
	// Prefetch is how many jobs of a queue are leased beyond the free workers: prefetched, not
	// running, until a worker takes them. 0, the default, adapts it to the measured lease commit
	// latency and handler duration of each queue, up to PrefetchMax (prefetch.go); a positive
	// value fixes it.
	Prefetch int
	// PrefetchMax bounds the adaptive prefetch. Default 256, or the pool's backlog when that is
	// smaller. A crash may run again at most pool size + PrefetchMax jobs (+ Prefetch, when
	// fixed): they start as soon as their lease is in the commit being made, before it is on disk.
	// Only jobs shorter than a commit get that many, so what a crash re-runs is about two commits'
	// worth of work.
	PrefetchMax int
	// ShutdownTimeout is how long Stop lets running jobs finish before canceling them. Default 20s.
	ShutdownTimeout time.Duration
	// Backoff is the delay before retry number attempt (1 after the first failure). Default
	// DefaultBackoff.
	Backoff func(attempt int) time.Duration
	// Now is the clock. Default time.Now.
	Now func() time.Time
	// Logger. Default slog.Default().
	Logger *slog.Logger
	// Observer receives events for metrics. Optional.
	Observer Observer
	// Node names this process in Job.AttemptedBy and, on a Shared store, in the node list. It
	// must be unique among the processes sharing a store. Default DefaultNode() (hostname:pid).
	Node string
	// Version is reported in the node list. Optional.
	Version string
	// RescueAfter is, on a Shared store, how long a lease lasts without a heartbeat: the jobs of a
	// process that died are rescued by another one this long after its last heartbeat (which
	// comes every RescueAfter/3). A live job is never rescued, however long it runs. Default 30s.
	// A store of its own (bbolt) ignores it: a restart recovers its leases at once.
	RescueAfter time.Duration
	// NodePools reports this process's pools in the node list. Default: the jobs pool.
	NodePools func() map[string]NodePool
	// WatchPoll is how often, while anyone follows jobs (Watch, Wait), the runtime reads every
	// followed job in one read, to see the changes it was not told of: another replica's writes on
	// a Shared store, starts and promotions. Default 250ms.
	WatchPoll time.Duration
}

// maxErrorsKept is how many attempt errors a job keeps (the most recent).
const maxErrorsKept = 10

// DefaultBackoff is min(2^(attempt-1) s, 1h) with ±25% jitter: 1 s, 2 s, 4 s ... so 25 attempts
// span about 14 hours, and jitter keeps jobs that failed together from retrying together.
func DefaultBackoff(attempt int) time.Duration {
	d := time.Hour
	if attempt < 13 {
		d = min(time.Second<<max(attempt-1, 0), time.Hour)
	}
	jitter := 0.75 + rand.Float64()/2
	return time.Duration(float64(d) * jitter)
}

func (o Options) withDefaults() Options {
	if len(o.Queues) == 0 {
		o.Queues = map[string]QueueOptions{"default": {Weight: 1}}
	}
	qs := make(map[string]QueueOptions, len(o.Queues))
	for name, q := range o.Queues {
		q.Weight = cmp.Or(q.Weight, 1)
		qs[name] = q
	}
	o.Queues = qs
	o.MaxPending = cmp.Or(o.MaxPending, 100_000)
	o.MaxAttempts = cmp.Or(o.MaxAttempts, 25)
	o.Timeout = cmp.Or(o.Timeout, 10*time.Minute)
	o.Retention = cmp.Or(o.Retention, 24*time.Hour)
	o.MaxPayloadBytes = cmp.Or(o.MaxPayloadBytes, 65536)
	o.MaxResultBytes = cmp.Or(o.MaxResultBytes, 65536)
	o.BatchMax = cmp.Or(o.BatchMax, 1000)
	if o.PrefetchMax == 0 {
		o.PrefetchMax = defaultPrefetchMax
		if o.Pool != nil {
			// The prefetched jobs wait in the pool's backlog: a default never asks for more.
			o.PrefetchMax = min(o.PrefetchMax, o.Pool.Stats().Backlog)
		}
	}
	o.ShutdownTimeout = cmp.Or(o.ShutdownTimeout, 20*time.Second)
	if o.Backoff == nil {
		o.Backoff = DefaultBackoff
	}
	if o.Now == nil {
		o.Now = time.Now
	}
	if o.Logger == nil {
		o.Logger = slog.Default()
	}
	if o.Observer == nil {
		o.Observer = nopObserver{}
	}
	o.Node = cmp.Or(o.Node, DefaultNode())
	o.RescueAfter = cmp.Or(o.RescueAfter, 30*time.Second)
	o.WatchPoll = cmp.Or(o.WatchPoll, 250*time.Millisecond)
	return o
}

func (o Options) validate() error {
	switch {
	case o.Store == nil:
		return errors.New("jobs: Options.Store is required")
	case o.Pool == nil:
		return errors.New("jobs: Options.Pool is required")
	case o.WatchPoll < 0:
		return fmt.Errorf("jobs: Options.WatchPoll: must be > 0, got %s", o.WatchPoll)
	case o.RescueAfter < 0:
		return fmt.Errorf("jobs: Options.RescueAfter: must be > 0, got %s", o.RescueAfter)
	case o.Prefetch < 0:
		return fmt.Errorf("jobs: Options.Prefetch: must be >= 0, got %d", o.Prefetch)
	case o.PrefetchMax < 0:
		return fmt.Errorf("jobs: Options.PrefetchMax: must be >= 0, got %d", o.PrefetchMax)
	case o.Pool.Stats().Backlog < o.prefetchBound():
		// A prefetched job refused by a full backlog goes back to ready and is leased again at
		// once: a loop of commits that runs nothing.
		field := "Prefetch"
		if o.Prefetch == 0 {
			field = "PrefetchMax"
		}
		return fmt.Errorf("jobs: Options.Pool: its backlog (%d) must hold the prefetched jobs (%s %d), "+
			"which wait there for a free worker; pool.MaxBacklog is simplest", o.Pool.Stats().Backlog, field, o.prefetchBound())
	}
	for name, q := range o.Queues {
		if name == "" || strings.IndexByte(name, 0) >= 0 {
			return fmt.Errorf("jobs: Options.Queues: bad queue name %q", name)
		}
		if q.Weight < 1 || q.Concurrency < 0 || q.MaxPending < 0 {
			return fmt.Errorf("jobs: Options.Queues[%s]: weight must be >= 1, concurrency and max_pending >= 0", name)
		}
	}
	return nil
}

// defaultPrefetchMax is PrefetchMax's default: with 2 workers and a commit of 2 ms it is reached
// by jobs of 30 µs or less, and a crash runs again at most this many jobs beyond the workers'.
const defaultPrefetchMax = 256

// prefetchBound is the most jobs prefetched: Prefetch when fixed, else PrefetchMax.
func (o Options) prefetchBound() int { return prefetchBound(o.Prefetch, o.PrefetchMax) }

type nopObserver struct{}

func (nopObserver) Enqueued(string, string, int) {}
func (nopObserver) Started(*Job, time.Duration)  {}
func (nopObserver) Finished(*Job, time.Duration) {}

// Runtime is the job queue of one process.
type Runtime struct {
	opts  Options
	store Store
	pool  *pool.Pool
	log   *slog.Logger

	// On a Shared store (cluster.go): nil otherwise.
	shared   Shared
	leader   atomic.Bool           // this process runs the maintenance; always, on a store of its own
	storeErr atomic.Pointer[error] // the last ping's error, nil while the store answers
	// storeFailed is when (UnixNano) a ping, renew or heartbeat last failed: 0 for never.
	storeFailed atomic.Int64
	startedAt   time.Time
	beats       sync.WaitGroup // the heartbeat loop
	beatStop    context.CancelFunc

	watch *watchHub // the followers of jobs (watch.go)

	kindsMu sync.RWMutex
	kinds   map[string]Kind

	// Running state, owned by the dispatcher and the job goroutines.
	mu       sync.Mutex
	inflight int        // leased and not yet acknowledged
	yield    Yield      // how many jobs run at once while they yield to HTTP (yield.go)
	yieldMu  sync.Mutex // serializes SetYield
	// leaseFailed: the last lease's commit failed, so jobs start only once leased on disk.
	leaseFailed atomic.Bool

	ackMu   sync.Mutex
	acks    []pendingAck        // queued acknowledgements not yet reported (drainAcks)
	acked   map[string]int      // ids of those acknowledgements (a count: a job can have two), whose leases stay this process's
	acking  bool                // a drainAcks goroutine is running
	ackers  sync.WaitGroup      // that goroutine
	running map[string]*liveJob // leased jobs by id

	startMu     sync.Mutex
	starts      map[string]startMark // attempts started and not yet written (start.go)
	startsSpare map[string]startMark // the other map, swapped in by writeStarts
	startQueued bool                 // a writeStarts request is queued
	perQueue    map[string]int       // leased per queue, for Concurrency caps and prefetch
	prefetch    *prefetcher          // each queue's prefetch; under mu
	swrr        map[string]int       // smooth weighted round robin state

	wake    chan struct{} // dispatcher
	promote chan struct{} // promoter: a delayed job arrived

	// Periodic schedules (periodic.go): registered before Start, then read by the scheduler alone.
	periodic     []*periodicEntry
	periodicWake chan struct{}

	started  bool
	stopping bool
	runCtx   context.Context // parent of every job's context; canceled with errShutdown
	runStop  context.CancelCauseFunc
	ackCtx   context.Context // ends the retries of acknowledgements (Shared store) when Stop gives up
	ackStop  context.CancelFunc
	loops    sync.WaitGroup // dispatcher, promoter, sweeper
	jobsWG   sync.WaitGroup // job submissions, runs and acknowledgements
	loopStop context.CancelFunc

	bulkHook func(ids []string) // a test's hook, called between a bulk batch's read and its write
}

// liveJob is a leased job in this process.
type liveJob struct {
	started  bool // its handler was called
	cancel   context.CancelCauseFunc
	canceled bool // canceled by hand: the attempt ends canceled, not retried
	leased   bool // its lease's commit succeeded (Shared store): the heartbeat renews it
}

// New returns a runtime; register kinds, then call Start.
func New(opts Options) (*Runtime, error) {
	opts = opts.withDefaults()
	if err := opts.validate(); err != nil {
		return nil, err
	}
	shared, _ := opts.Store.(Shared)
	r := &Runtime{
		opts: opts, store: opts.Store, pool: opts.Pool, log: opts.Logger, shared: shared,
		kinds: map[string]Kind{}, running: map[string]*liveJob{}, acked: map[string]int{}, perQueue: map[string]int{}, swrr: map[string]int{},
		starts: map[string]startMark{}, startsSpare: map[string]startMark{},
		wake: make(chan struct{}, 1), promote: make(chan struct{}, 1), periodicWake: make(chan struct{}, 1),
		prefetch: newPrefetcher(opts.Prefetch, opts.PrefetchMax),
	}
	r.watch = newWatchHub(r)
	r.leader.Store(shared == nil)
	return r, nil
}

// Register adds a kind. Names are unique; registering after Start is allowed.
func (r *Runtime) Register(name string, k Kind) error {
	if name == "" || len(name) > 128 {
		return fmt.Errorf("jobs: register: kind name must be 1 to 128 bytes, got %q", name)
	}
	if k.Handler == nil {
		return fmt.Errorf("jobs: register %s: Handler is required", name)
	}
	r.kindsMu.Lock()
	defer r.kindsMu.Unlock()
	if _, dup := r.kinds[name]; dup {
		return fmt.Errorf("jobs: register %s: already registered", name)
	}
	r.kinds[name] = k
	return nil
}

// RegisterFunc registers a kind from a function, with the default timeout and attempts.
func (r *Runtime) RegisterFunc(name string, fn HandlerFunc) error {
	return r.Register(name, Kind{Handler: fn})
}

// Kinds returns the registered kind names, sorted.
func (r *Runtime) Kinds() []string {
	r.kindsMu.RLock()
	defer r.kindsMu.RUnlock()
	out := make([]string, 0, len(r.kinds))
	for k := range r.kinds {
		out = append(out, k)
	}
	sort.Strings(out)
	return out
}

func (r *Runtime) kind(name string) (Kind, bool) {
	r.kindsMu.RLock()
	defer r.kindsMu.RUnlock()
	k, ok := r.kinds[name]
	return k, ok
}

// Pool returns the pool the handlers run on.
func (r *Runtime) Pool() *pool.Pool { return r.pool }

// QueueNames returns the configured queues, sorted.
func (r *Runtime) QueueNames() []string {
	out := make([]string, 0, len(r.opts.Queues))
	for q := range r.opts.Queues {
		out = append(out, q)
	}
	sort.Strings(out)
	return out
}

// Resize changes the pool's size and lets the dispatcher fill the new room at once.
func (r *Runtime) Resize(n int) (int, error) {
	old, err := r.pool.Tune(n)
	if err == nil {
		r.signal(r.wake)
	}
	return old, err
}

func (r *Runtime) signal(ch chan struct{}) {
	select {
	case ch <- struct{}{}:
	default:
	}
}
