package jobs

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"unicode/utf8"
)

// ErrNotInJob means Progress was called with a context that is not a running handler's (or after
// the handler returned).
var ErrNotInJob = errors.New("jobs: not in a running job's handler")

// attemptKey is the context key of the attempt a handler's context carries.
type attemptKey struct{}

// liveAttempt is one running attempt, as its handler's context carries it, for Progress. Its
// reports are written coalesced: at most one write per attempt waits for the committer at a time,
// and it writes the latest report when the committer gets to it, so a handler that reports in a
// tight loop costs at most one write per commit.
type liveAttempt struct {
	r       *Runtime
	id      string
	attempt int

	mu     sync.Mutex
	latest *ProgressReport
	queued bool // a write waits for the committer
	over   bool // the handler returned
}

// Progress reports a running job's progress from its handler: ctx is the handler's context,
// percent is clamped to 0..100 and message cut to MaxProgressMessage bytes (at a character
// boundary). The job's record keeps only the latest report (Job.Progress), and the job's followers
// (Watch, GET /v1/jobs/{id}/events, the dashboard) see it. It does not wait for the write: reports
// made faster than the store commits replace one another, the latest wins. A new attempt starts
// with no progress. ErrNotInJob outside a handler's context or after the handler returned; on a
// Shared store, an error once this process lost the job's lease.
func Progress(ctx context.Context, percent int, message string) error {
	a, _ := ctx.Value(attemptKey{}).(*liveAttempt)
	if a == nil {
		return ErrNotInJob
	}
	return a.report(ctx, percent, message)
}

func (a *liveAttempt) report(ctx context.Context, percent int, message string) error {
	if errors.Is(context.Cause(ctx), errLeaseLost) {
		return fmt.Errorf("jobs: progress of job %s: %w", a.id, errLeaseLost)
	}
	p := &ProgressReport{Percent: min(max(percent, 0), 100), Message: cutUTF8(message, MaxProgressMessage), At: a.r.opts.Now().UTC()}
	a.mu.Lock()
	if a.over {
		a.mu.Unlock()
		return fmt.Errorf("%w: job %s's attempt %d has returned", ErrNotInJob, a.id, a.attempt)
	}
	a.latest = p
	if a.queued {
		a.mu.Unlock()
		return nil // the write waiting for the committer takes this report
	}
	a.queued = true
	a.mu.Unlock()
	wait, err := a.r.store.UpdateQueued(ctx, a.id, a.write)
	if err != nil {
		a.mu.Lock()
		a.queued = false
		a.mu.Unlock()
		return fmt.Errorf("jobs: progress of job %s: %w", a.id, err)
	}
	if a.r.watch.watched(a.id) {
		a.r.watch.after(wait) // its followers see it once committed; the poll would, later
	}
	return nil
}

// write puts the latest report in the record, in the committer. It runs at most once per commit
// attempt; from its first run on, a new report queues a new write.
func (a *liveAttempt) write(cur *Job) error {
	a.mu.Lock()
	p := *a.latest
	a.queued = false
	a.mu.Unlock()
	// Only into this attempt while it runs here: not into the next attempt, nor into the job
	// another replica took once this one lost its lease.
	if cur.State != StateRunning || cur.Attempt != a.attempt ||
		len(cur.AttemptedBy) == 0 || cur.AttemptedBy[len(cur.AttemptedBy)-1] != a.r.opts.Node {
		return errStale
	}
	if sameProgress(cur.Progress, &p) {
		return errStale // written already: nothing to do
	}
	cur.Progress = &p
	return nil
}

// end marks the attempt's handler as returned: later reports are refused.
func (a *liveAttempt) end() {
	a.mu.Lock()
	a.over = true
	a.mu.Unlock()
}

// cutUTF8 cuts s to at most n bytes without splitting a character.
func cutUTF8(s string, n int) string {
	if len(s) <= n {
		return s
	}
	for n > 0 && !utf8.RuneStart(s[n]) {
		n--
	}
	return s[:n]
}
