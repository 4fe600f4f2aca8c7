package jobs

import (
	"context"
	"slices"
	"sync"
	"sync/atomic"
	"time"
)

// Following a job (Watch, Wait) costs each follower a map entry, a small struct and a channel of
// one slot, nothing per change but a pointer: the followers of a job share the snapshots they are
// handed. The changes come from two places. This process's own writes that report their commit
// (acknowledgements, cancels, retries, progress) are handed on right after it; everything else (a
// start, a promotion, another replica's writes on a Shared store) is seen by one poll per process
// of every followed job in one read (Store.GetMany) every Options.WatchPoll, while anyone follows.
// A follower that reads slowly gets the latest snapshot and never holds the runtime up.

// watchPollBatch bounds the ids one GetMany of the poll asks for, so one read stays small.
const watchPollBatch = 500

// watchHub is the runtime's change feed: the followers of each job, and the poll.
type watchHub struct {
	r     *Runtime
	count atomic.Int64 // followers: the hot paths skip the lock when it is 0

	mu      sync.Mutex
	subs    map[string]map[*Watcher]struct{} // by job id
	polling bool                             // the poll loop runs
	closed  bool                             // Stop: no new followers, none left
	ctx     context.Context                  // ends at close, and with it a poll's read
	cancel  context.CancelFunc
	wg      sync.WaitGroup // the poll loop and the progress reporters (progress.go)
}

func newWatchHub(r *Runtime) *watchHub {
	ctx, cancel := context.WithCancel(context.Background())
	return &watchHub{r: r, subs: map[string]map[*Watcher]struct{}{}, ctx: ctx, cancel: cancel}
}

// Watcher follows one job's changes. Next returns them; Close stops following. Safe for use by
// one goroutine at a time.
type Watcher struct {
	hub   *watchHub
	id    string
	ready chan struct{} // one slot: something new since the last Next

	mu     sync.Mutex
	latest *Job  // the newest snapshot seen; shared with other followers, never changed
	fresh  bool  // latest has not been returned by Next yet
	err    error // the end: ErrNotFound (the job was deleted), ErrStopped
}

// Watch follows job id: the first Next returns its current state, each later one the job as it is
// after a change (a follower that reads slowly skips to the latest). It returns ErrNotFound when
// there is no such job, ErrStopped once the runtime is stopped. Call Close when done.
func (r *Runtime) Watch(ctx context.Context, id string) (*Watcher, error) {
	w, err := r.watch.add(id)
	if err != nil {
		return nil, err
	}
	// Following before reading: a change that lands in between is not missed.
	j, err := r.store.Get(ctx, id)
	if err != nil {
		w.Close()
		return nil, err
	}
	if j.ID != id {
		r.watch.rekey(w, j.ID) // the id as the store spells it, as the changes name the job
	}
	w.offer(j)
	return w, nil
}

// Wait follows job id until it has finished and returns it, as Celery's AsyncResult.get does.
// When ctx ends first it returns the job as last seen with ctx's error; when the runtime stops,
// with ErrStopped.
func (r *Runtime) Wait(ctx context.Context, id string) (*Job, error) {
	w, err := r.Watch(ctx, id)
	if err != nil {
		return nil, err
	}
	defer w.Close()
	var last *Job
	for {
		j, err := w.Next(ctx)
		if err != nil {
			return last, err
		}
		if last = j; j.State.Finished() {
			return j, nil
		}
	}
}

// Next returns the job once it is new to this follower: its state at first, then after each change.
// It returns ctx's error when ctx ends first, ErrNotFound once the job was deleted, ErrStopped once
// the runtime stopped. The job is the caller's.
func (w *Watcher) Next(ctx context.Context) (*Job, error) {
	for {
		w.mu.Lock()
		if w.fresh {
			w.fresh = false
			j := w.latest
			w.mu.Unlock()
			return j.Clone(), nil
		}
		err := w.err
		w.mu.Unlock()
		if err != nil {
			return nil, err
		}
		select {
		case <-w.ready:
		case <-ctx.Done():
			return nil, ctx.Err()
		}
	}
}

// Close stops following. Calling it again does nothing.
func (w *Watcher) Close() {
	w.hub.mu.Lock()
	defer w.hub.mu.Unlock()
	w.hub.remove(w)
}

// remove forgets a follower; h.mu is held.
func (h *watchHub) remove(w *Watcher) {
	if set := h.subs[w.id]; set != nil {
		if _, ok := set[w]; ok {
			delete(set, w)
			h.count.Add(-1)
			if len(set) == 0 {
				delete(h.subs, w.id)
			}
		}
	}
}

// offer hands the follower a snapshot of its job unless it already has a newer one.
func (w *Watcher) offer(j *Job) {
	w.mu.Lock()
	if w.err != nil || (w.latest != nil && !newer(j, w.latest)) {
		w.mu.Unlock()
		return
	}
	w.latest, w.fresh = j, true
	w.mu.Unlock()
	w.wake()
}

// end tells the follower there will be nothing more, for err.
func (w *Watcher) end(err error) {
	w.mu.Lock()
	if w.err == nil {
		w.err = err
	}
	w.mu.Unlock()
	w.wake()
}

func (w *Watcher) wake() {
	select {
	case w.ready <- struct{}{}:
	default:
	}
}

// newer reports whether a is a later version of the job than b. Every write sets UpdatedAt from
// the clock of the process (or database) that commits it; at the same instant a differing record
// is taken as the later one, since two commits of a job within a clock tick are rarer than one
// missed change.
func newer(a, b *Job) bool {
	switch {
	case a.UpdatedAt.After(b.UpdatedAt):
		return true
	case a.UpdatedAt.Before(b.UpdatedAt):
		return false
	}
	return a.State != b.State || a.Attempt != b.Attempt || !sameProgress(a.Progress, b.Progress) ||
		(a.FinishedAt == nil) != (b.FinishedAt == nil)
}

func sameProgress(a, b *ProgressReport) bool {
	if a == nil || b == nil {
		return a == b
	}
	return a.Percent == b.Percent && a.Message == b.Message && a.At.Equal(b.At)
}

// add registers a follower of id and makes sure the poll runs.
func (h *watchHub) add(id string) (*Watcher, error) {
	w := &Watcher{hub: h, id: id, ready: make(chan struct{}, 1)}
	h.mu.Lock()
	defer h.mu.Unlock()
	if h.closed {
		return nil, ErrStopped
	}
	h.insert(w)
	if !h.polling {
		h.polling = true
		h.wg.Add(1)
		go h.pollLoop()
	}
	return w, nil
}

// insert files a follower under its id; h.mu is held.
func (h *watchHub) insert(w *Watcher) {
	set := h.subs[w.id]
	if set == nil {
		set = map[*Watcher]struct{}{}
		h.subs[w.id] = set
	}
	set[w] = struct{}{}
	h.count.Add(1)
}

// rekey files a follower under the job's id as the store spells it.
func (h *watchHub) rekey(w *Watcher, id string) {
	h.mu.Lock()
	defer h.mu.Unlock()
	h.remove(w)
	w.id = id
	if !h.closed {
		h.insert(w)
	}
}

// watched reports whether anyone follows job id.
func (h *watchHub) watched(id string) bool {
	if h.count.Load() == 0 {
		return false
	}
	h.mu.Lock()
	defer h.mu.Unlock()
	return len(h.subs[id]) > 0
}

// publish hands a job as just committed to its followers, a copy of it that they share.
func (h *watchHub) publish(j *Job) {
	if j == nil || h.count.Load() == 0 {
		return
	}
	h.mu.Lock()
	defer h.mu.Unlock()
	var c *Job
	for w := range h.subs[j.ID] {
		if c == nil {
			c = j.Clone()
		}
		w.offer(c)
	}
}

// gone ends the followers of a job that no longer exists.
func (h *watchHub) gone(id string) {
	if h.count.Load() == 0 {
		return
	}
	h.mu.Lock()
	defer h.mu.Unlock()
	for w := range h.subs[id] {
		w.end(ErrNotFound)
	}
}

// after publishes the job a queued write returns once its commit is done, for a write made while
// someone follows the job. It reports false when the hub is closed (the runtime stopped).
func (h *watchHub) after(wait func() (*Job, error)) bool {
	h.mu.Lock()
	defer h.mu.Unlock()
	if h.closed {
		return false
	}
	h.wg.Add(1)
	go func() {
		defer h.wg.Done()
		if j, err := wait(); err == nil {
			h.publish(j)
		}
	}()
	return true
}

// close ends every follower with ErrStopped, refuses new ones, and waits for the poll.
func (h *watchHub) close() {
	h.mu.Lock()
	if !h.closed {
		h.closed = true
		h.cancel()
		for _, set := range h.subs {
			for w := range set {
				w.end(ErrStopped)
			}
		}
	}
	h.mu.Unlock()
	h.wg.Wait()
}

// pollLoop reads every followed job every WatchPoll, in reads of watchPollBatch, and exits once no
// one follows (add starts it again).
func (h *watchHub) pollLoop() {
	defer h.wg.Done()
	t := time.NewTicker(h.r.opts.WatchPoll)
	defer t.Stop()
	for {
		select {
		case <-h.ctx.Done():
			return
		case <-t.C:
		}
		h.mu.Lock()
		if len(h.subs) == 0 {
			h.polling = false
			h.mu.Unlock()
			return
		}
		ids := make([]string, 0, len(h.subs))
		for id := range h.subs {
			ids = append(ids, id)
		}
		h.mu.Unlock()
		for chunk := range slices.Chunk(ids, watchPollBatch) {
			h.poll(chunk)
		}
	}
}

// poll reads one batch of followed jobs and hands each follower what changed.
func (h *watchHub) poll(ids []string) {
	ctx, cancel := context.WithTimeout(h.ctx, max(h.r.opts.WatchPoll, time.Second))
	defer cancel()
	js, err := h.r.store.GetMany(ctx, ids)
	if err != nil {
		if ctx.Err() == nil {
			h.r.log.Warn("follow jobs: read", "jobs", len(ids), "err", err)
		}
		return
	}
	found := make(map[string]bool, len(js))
	for _, j := range js {
		found[j.ID] = true
		h.publish(j)
	}
	for _, id := range ids {
		if !found[id] {
			h.gone(id)
		}
	}
}
