package jobs

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"time"

	"github.com/tandem-run/tandem/pool"
)

// EnqueueParams describe a new job. Only Kind is required.
type EnqueueParams struct {
	Kind        string
	Queue       string          // default "default"
	Payload     json.RawMessage // any JSON; default {}
	Priority    int             // 0..9, higher runs first
	RunAt       time.Time       // run at this time (not with Delay)
	Delay       time.Duration   // run after this delay (not with RunAt)
	MaxAttempts int             // 1..MaxAttemptsLimit; 0 means the kind's, then Options.MaxAttempts
	Timeout     time.Duration   // per attempt, up to MaxTimeout; 0 means the kind's, then Options.Timeout
	UniqueKey   string          // while a live job holds it, Enqueue returns that job
}

// Limits of EnqueueParams.
const (
	// MaxAttemptsLimit is the most attempts a job may be given.
	MaxAttemptsLimit = 1000
	// MaxTimeout is the longest per-attempt timeout a job may be given.
	MaxTimeout = 24 * time.Hour
	// maxUniqueKey bounds unique keys (they are bbolt keys).
	maxUniqueKey = 256
)

// build validates p, the i-th job of a batch, and returns the job to insert. Field names in errors
// are prefixed by "jobs[i].".
func (r *Runtime) build(p EnqueueParams, i int, now time.Time, verr *ValidationError) (*Job, error) {
	// The field's prefix is only formatted on the way to an error: a valid job allocates nothing
	// for it.
	add := func(field, msg string) { verr.add(fmt.Sprintf("jobs[%d].%s", i, field), msg) }
	k, ok := r.kind(p.Kind)
	switch {
	case p.Kind == "":
		add("kind", "is required")
	case !ok:
		add("kind", fmt.Sprintf("unknown kind %q (registered: %v)", p.Kind, r.Kinds()))
	}
	if p.Queue == "" {
		p.Queue = "default"
	}
	if _, ok := r.opts.Queues[p.Queue]; !ok {
		add("queue", fmt.Sprintf("unknown queue %q (configured: %v)", p.Queue, r.QueueNames()))
	}
	if p.Priority < 0 || p.Priority > 9 {
		add("priority", fmt.Sprintf("must be from 0 to 9, got %d", p.Priority))
	}
	if p.Delay < 0 {
		add("delay", "must not be negative")
	}
	if p.Delay > 0 && !p.RunAt.IsZero() {
		add("run_at", "give run_at or delay, not both")
	}
	if p.MaxAttempts != 0 && (p.MaxAttempts < 1 || p.MaxAttempts > MaxAttemptsLimit) {
		add("max_attempts", fmt.Sprintf("must be from 1 to %d, got %d", MaxAttemptsLimit, p.MaxAttempts))
	}
	if p.Timeout < 0 || p.Timeout > MaxTimeout {
		add("timeout", fmt.Sprintf("must be above 0 and at most %gh", MaxTimeout.Hours()))
	}
	if len(p.UniqueKey) > maxUniqueKey {
		add("unique_key", fmt.Sprintf("must be at most %d bytes", maxUniqueKey))
	}
	if len(p.Payload) == 0 || string(p.Payload) == "null" {
		p.Payload = json.RawMessage(`{}`)
	}
	if len(p.Payload) > r.opts.MaxPayloadBytes {
		return nil, &ValidationError{Err: ErrPayloadTooLarge, Fields: map[string]string{
			fmt.Sprintf("jobs[%d].payload", i): fmt.Sprintf("must be at most %d bytes, got %d", r.opts.MaxPayloadBytes, len(p.Payload)),
		}}
	}
	if !json.Valid(p.Payload) {
		add("payload", "is not valid JSON")
	} else if ok && k.Validate != nil {
		if err := k.Validate(p.Payload); err != nil {
			var ve *ValidationError
			if errors.As(err, &ve) {
				for f, m := range ve.Fields {
					add(f, m)
				}
			} else {
				add("payload", err.Error())
			}
		}
	}
	if len(verr.Fields) > 0 {
		return nil, nil
	}
	j := &Job{
		Kind: p.Kind, Queue: p.Queue, Payload: p.Payload, Priority: p.Priority,
		MaxAttempts: firstPositive(p.MaxAttempts, k.MaxAttempts, r.opts.MaxAttempts),
		Timeout:     firstPositive(p.Timeout, k.Timeout, r.opts.Timeout),
		UniqueKey:   p.UniqueKey, State: StateReady, RunAt: now,
	}
	switch {
	case p.Delay > 0:
		j.RunAt, j.State = now.Add(p.Delay), StateScheduled
	case p.RunAt.After(now):
		j.RunAt, j.State = p.RunAt.UTC(), StateScheduled
	}
	return j, nil
}

func firstPositive[T int | time.Duration](vs ...T) T {
	for _, v := range vs {
		if v > 0 {
			return v
		}
	}
	return 0
}

// Enqueue validates and durably stores one job. created is false when a live job already held
// p.UniqueKey: that job is returned instead. Errors: *ValidationError (nothing written; it is also
// ErrPayloadTooLarge for a payload over the limit), ErrQueueFull, or a store error (a failed
// commit: nothing acknowledged).
func (r *Runtime) Enqueue(ctx context.Context, p EnqueueParams) (*Job, bool, error) {
	jobs, created, err := r.EnqueueBatch(ctx, []EnqueueParams{p})
	if err != nil {
		var ve *ValidationError
		if errors.As(err, &ve) {
			// Single jobs report plain field names.
			fields := map[string]string{}
			for k, v := range ve.Fields {
				fields[trimBatchPrefix(k)] = v
			}
			ve.Fields = fields
		}
		return nil, false, err
	}
	return jobs[0], created[0], nil
}

func trimBatchPrefix(k string) string {
	const p = "jobs[0]."
	if len(k) > len(p) && k[:len(p)] == p {
		return k[len(p):]
	}
	return k
}

// EnqueueBatch stores up to Options.BatchMax jobs in one commit, all or nothing. Field names in a
// ValidationError are "jobs[i].field".
func (r *Runtime) EnqueueBatch(ctx context.Context, ps []EnqueueParams) ([]*Job, []bool, error) {
	jobs, err := r.buildBatch(ps)
	if err != nil {
		return nil, nil, err
	}
	var out []*Job
	var created []bool
	// The insert waits for a group commit: on the disk or the database, not on a core. A caller
	// that holds a pool slot (an HTTP request behind the threads pool) lends it back meanwhile,
	// so that the requests waiting on one commit are not bounded by the threads and share it.
	pool.Wait(ctx, func() { out, created, err = r.store.Insert(ctx, jobs, r.maxPending) })
	if err != nil {
		return nil, nil, fmt.Errorf("enqueue: %w", err)
	}
	r.enqueued(out, created)
	return out, created, nil
}

// buildBatch validates a batch and builds its records.
func (r *Runtime) buildBatch(ps []EnqueueParams) ([]*Job, error) {
	verr := &ValidationError{}
	if len(ps) == 0 {
		verr.add("jobs", "must hold at least one job")
		return nil, verr
	}
	if len(ps) > r.opts.BatchMax {
		verr.add("jobs", fmt.Sprintf("at most %d jobs a batch, got %d", r.opts.BatchMax, len(ps)))
		return nil, verr
	}
	now := r.opts.Now().UTC()
	jobs := make([]*Job, 0, len(ps))
	for i, p := range ps {
		j, err := r.build(p, i, now, verr)
		if err != nil {
			return nil, err
		}
		if j != nil {
			jobs = append(jobs, j)
		}
	}
	if len(verr.Fields) > 0 {
		return nil, verr
	}
	return jobs, nil
}

// enqueued counts the jobs an insert created and wakes the dispatcher (and the promoter for
// delayed ones).
func (r *Runtime) enqueued(out []*Job, created []bool) {
	delayed := false
	counts := map[[2]string]int{}
	for i, j := range out {
		if created[i] {
			counts[[2]string{j.Queue, j.Kind}]++
			delayed = delayed || j.State == StateScheduled
		}
	}
	for qk, n := range counts {
		r.opts.Observer.Enqueued(qk[0], qk[1], n)
	}
	r.signal(r.wake)
	if delayed {
		r.signal(r.promote)
	}
}

func (r *Runtime) maxPending(queue string) int {
	if q := r.opts.Queues[queue]; q.MaxPending > 0 {
		return q.MaxPending
	}
	return r.opts.MaxPending
}
