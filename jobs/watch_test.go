package jobs_test

import (
	"context"
	"errors"
	"strings"
	"sync/atomic"
	"testing"
	"time"
	"unicode/utf8"

	"github.com/tandem-run/tandem/internal/tandemtest"
	"github.com/tandem-run/tandem/jobs"
	"github.com/tandem-run/tandem/jobs/storetest"
)

// fastWatch makes the watchers' poll quick, so a test that waits on it is quick too.
func fastWatch(o *jobs.Options) { o.WatchPoll = 20 * time.Millisecond }

func TestWaitReturnsAtFinish(t *testing.T) { eachBackend(t, testWaitReturnsAtFinish) }

// testWaitReturnsAtFinish: Wait returns the finished job as soon as it finished, long before its
// context would end; a Wait whose context ends first returns the job as it is then, with the
// context's error.
func testWaitReturnsAtFinish(t *testing.T, be storetest.Backend) {
	release := make(chan struct{})
	rt, _ := setup(t, be, 2, fastWatch)
	_ = rt.RegisterFunc("gate", func(ctx context.Context, j *jobs.Job) (any, error) {
		select {
		case <-release:
			return map[string]string{"ok": "yes"}, nil
		case <-ctx.Done():
			return nil, ctx.Err()
		}
	})
	j := enqueue(t, rt, jobs.EnqueueParams{Kind: "gate"})
	short, cancel := context.WithTimeout(context.Background(), 50*time.Millisecond)
	defer cancel()
	cur, err := rt.Wait(short, j.ID)
	if !errors.Is(err, context.DeadlineExceeded) || cur == nil || cur.ID != j.ID || cur.State.Finished() {
		t.Fatalf("Wait with a short context = %+v, %v; want the unfinished job and DeadlineExceeded", cur, err)
	}
	long, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	done := make(chan struct{})
	var got *jobs.Job
	go func() {
		defer close(done)
		got, err = rt.Wait(long, j.ID)
	}()
	close(release)
	<-done
	if err != nil || got.State != jobs.StateSucceeded || string(got.Result) != `{"ok":"yes"}` || long.Err() != nil {
		t.Fatalf("Wait = %+v, %v (context %v); want the succeeded job before the context ended", got, err, long.Err())
	}
	if got, err := rt.Wait(long, j.ID); err != nil || got.State != jobs.StateSucceeded {
		t.Fatalf("Wait of a finished job = %+v, %v", got, err)
	}
	if _, err := rt.Wait(long, "00000000-0000-7000-8000-000000000000"); !errors.Is(err, jobs.ErrNotFound) {
		t.Fatalf("Wait of an unknown job: %v, want ErrNotFound", err)
	}
}

func TestWatchSeesStatesAndProgress(t *testing.T) { eachBackend(t, testWatchSeesStatesAndProgress) }

// testWatchSeesStatesAndProgress: a follower sees the job's current state, then its running
// attempt with the progress its handler reported, then its end; a report outside a handler is
// ErrNotInJob, and a report after the handler returned too.
func testWatchSeesStatesAndProgress(t *testing.T, be storetest.Backend) {
	step := make(chan struct{})
	var leaked atomic.Pointer[context.Context]
	rt, _ := setup(t, be, 1, fastWatch)
	_ = rt.RegisterFunc("steps", func(ctx context.Context, j *jobs.Job) (any, error) {
		leaked.Store(&ctx)
		if err := jobs.Progress(ctx, 40, "two of five"); err != nil {
			return nil, err
		}
		<-step
		return nil, jobs.Progress(ctx, 100, "done")
	})
	if err := jobs.Progress(context.Background(), 1, "x"); !errors.Is(err, jobs.ErrNotInJob) {
		t.Fatalf("Progress outside a job: %v, want ErrNotInJob", err)
	}
	j := enqueue(t, rt, jobs.EnqueueParams{Kind: "steps"})
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	w, err := rt.Watch(ctx, j.ID)
	if err != nil {
		t.Fatal(err)
	}
	defer w.Close()
	first, err := w.Next(ctx)
	if err != nil || first.ID != j.ID {
		t.Fatalf("first Next = %+v, %v", first, err)
	}
	// The first snapshot may show the report already: the handler can run before Watch reads.
	for got := first; ; {
		if got.State == jobs.StateRunning && got.Progress != nil {
			if got.Progress.Percent != 40 || got.Progress.Message != "two of five" || got.Attempt != 1 {
				t.Fatalf("running job's progress %+v, attempt %d", got.Progress, got.Attempt)
			}
			break
		}
		if got.State.Finished() {
			t.Fatalf("job finished (%s) before its progress was seen", got.State)
		}
		if got, err = w.Next(ctx); err != nil {
			t.Fatalf("waiting for the progress report: %v", err)
		}
	}
	close(step)
	for {
		got, err := w.Next(ctx)
		if err != nil {
			t.Fatalf("waiting for the end: %v", err)
		}
		if got.State.Finished() {
			if got.State != jobs.StateSucceeded || got.Progress == nil || got.Progress.Percent != 100 {
				t.Fatalf("finished job %s with progress %+v, want succeeded at 100%%", got.State, got.Progress)
			}
			break
		}
	}
	if err := jobs.Progress(*leaked.Load(), 50, "late"); !errors.Is(err, jobs.ErrNotInJob) {
		t.Fatalf("Progress after the handler returned: %v, want ErrNotInJob", err)
	}
	if err := rt.Delete(ctx, j.ID); err != nil {
		t.Fatal(err)
	}
	if got, err := w.Next(ctx); !errors.Is(err, jobs.ErrNotFound) {
		t.Fatalf("Next after the job was deleted = %+v, %v; want ErrNotFound", got, err)
	}
}

func TestProgressClampsCutsAndResets(t *testing.T) { eachBackend(t, testProgressClampsCutsAndResets) }

// testProgressClampsCutsAndResets: the percent is clamped to 0..100, a long message is cut to
// MaxProgressMessage bytes at a character boundary, and the next attempt starts with no progress.
func testProgressClampsCutsAndResets(t *testing.T, be storetest.Backend) {
	second, third := make(chan struct{}), make(chan struct{})
	long := strings.Repeat("é", jobs.MaxProgressMessage) // two bytes each: the cut falls inside one
	rt, _ := setup(t, be, 1, fastWatch)
	_ = rt.RegisterFunc("twice", func(ctx context.Context, j *jobs.Job) (any, error) {
		if j.Attempt == 1 {
			if err := jobs.Progress(ctx, 150, long); err != nil {
				return nil, err
			}
			// Fail only once the report is on record, so the reset below is the new attempt's doing.
			for {
				cur, err := rt.Get(ctx, j.ID)
				if err != nil {
					return nil, err
				}
				if cur.Progress != nil && cur.Progress.Percent == 100 {
					return nil, errors.New("first attempt fails")
				}
				time.Sleep(time.Millisecond)
			}
		}
		<-second
		if err := jobs.Progress(ctx, -5, "below"); err != nil {
			return nil, err
		}
		<-third
		return nil, nil
	})
	j := enqueue(t, rt, jobs.EnqueueParams{Kind: "twice", MaxAttempts: 2})
	var first *jobs.Job
	tandemtest.WaitFor(t, "the first attempt's report on record", func() bool {
		cur, err := rt.Get(context.Background(), j.ID)
		if err == nil && cur.Attempt == 1 && cur.Progress != nil && cur.Progress.Percent == 100 {
			first = cur
		}
		return first != nil
	})
	msg := first.Progress.Message
	if len(msg) > jobs.MaxProgressMessage || len(msg) < jobs.MaxProgressMessage-3 || !utf8.ValidString(msg) || !strings.HasPrefix(long, msg) {
		t.Errorf("message of %d bytes (valid UTF-8 %v), want a prefix of at most %d", len(msg), utf8.ValidString(msg), jobs.MaxProgressMessage)
	}
	tandemtest.WaitFor(t, "the second attempt running", func() bool {
		cur, err := rt.Get(context.Background(), j.ID)
		if err != nil || cur.Attempt != 2 || cur.State != jobs.StateRunning {
			return false
		}
		if cur.Progress != nil {
			t.Fatalf("the second attempt shows the first one's progress %+v", cur.Progress)
		}
		return true
	})
	close(second)
	tandemtest.WaitFor(t, "the second attempt's report, clamped to 0", func() bool {
		cur, err := rt.Get(context.Background(), j.ID)
		return err == nil && cur.Progress != nil && cur.Progress.Percent == 0 && cur.Progress.Message == "below"
	})
	close(third)
	waitState(t, rt, j.ID, jobs.StateSucceeded)
}

// countingStore counts UpdateQueued calls: the writes Progress queues.
type countingStore struct {
	storetest.Store
	updates atomic.Int64
}

func (s *countingStore) UpdateQueued(ctx context.Context, id string, fn func(j *jobs.Job) error) (func() (*jobs.Job, error), error) {
	s.updates.Add(1)
	return s.Store.UpdateQueued(ctx, id, fn)
}

func TestProgressCoalesces(t *testing.T) { eachBackend(t, testProgressCoalesces) }

// testProgressCoalesces: a thousand reports made while the committer is busy queue one write,
// which writes the latest of them; and a follower that does not read holds nothing up, then gets
// the latest snapshot rather than every change.
func testProgressCoalesces(t *testing.T, be storetest.Backend) {
	open := be.New(t)
	var counted *countingStore
	b := &testBundle{open: func(t *testing.T, now func() time.Time) storetest.Store {
		counted = &countingStore{Store: open(t, now)}
		return counted
	}}
	rt := build(t, b, 1, fastWatch)
	if err := rt.Start(context.Background()); err != nil {
		t.Fatal(err)
	}
	const reports = 1000
	begin, reported, finish := make(chan struct{}), make(chan struct{}), make(chan struct{})
	_ = rt.RegisterFunc("chatty", func(ctx context.Context, j *jobs.Job) (any, error) {
		<-begin
		for i := 1; i <= reports; i++ {
			if err := jobs.Progress(ctx, i/10, strings.Repeat("x", i%7)+"#"+strings.Repeat("y", i/100)); err != nil {
				return nil, err
			}
		}
		close(reported)
		<-finish
		return nil, nil
	})
	j := enqueue(t, rt, jobs.EnqueueParams{Kind: "chatty"})
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	w, err := rt.Watch(ctx, j.ID)
	if err != nil {
		t.Fatal(err)
	}
	defer w.Close()
	waitState(t, rt, j.ID, jobs.StateRunning)
	// Hold the committer inside a write of its own, so every report below waits for it.
	busy, unblock := make(chan struct{}), make(chan struct{})
	hold, err := counted.Store.UpdateQueued(ctx, j.ID, func(*jobs.Job) error {
		close(busy)
		<-unblock
		return errors.New("no change")
	})
	if err != nil {
		t.Fatal(err)
	}
	<-busy
	before := counted.updates.Load()
	close(begin)
	<-reported // the handler was never held up by the follower that does not read
	if n := counted.updates.Load() - before; n != 1 {
		t.Errorf("%d reports while the committer was busy queued %d writes, want 1", reports, n)
	}
	close(unblock)
	_, _ = hold()
	last := strings.Repeat("x", reports%7) + "#" + strings.Repeat("y", reports/100)
	tandemtest.WaitFor(t, "the latest report on record", func() bool {
		cur, err := rt.Get(ctx, j.ID)
		return err == nil && cur.Progress != nil && cur.Progress.Percent == 100 && cur.Progress.Message == last
	})
	close(finish)
	waitState(t, rt, j.ID, jobs.StateSucceeded)
	seen := 0
	for {
		got, err := w.Next(ctx)
		if err != nil {
			t.Fatal(err)
		}
		seen++
		if got.State == jobs.StateSucceeded {
			break
		}
	}
	// The first is the state at Watch; then at most the snapshot pending when the job ended, and
	// the end: never one per report.
	if seen > 3 {
		t.Errorf("the follower that read only at the end got %d snapshots, want the latest (at most 3)", seen)
	}
}

func TestStopEndsWatchers(t *testing.T) { eachBackend(t, testStopEndsWatchers) }

// testStopEndsWatchers: Stop ends every follower with ErrStopped, and a Watch after Stop is
// ErrStopped; the package's goleak check sees that no poll is left running.
func testStopEndsWatchers(t *testing.T, be storetest.Backend) {
	b := &testBundle{open: be.New(t)}
	rt := build(t, b, 1, fastWatch)
	if err := rt.Start(context.Background()); err != nil {
		t.Fatal(err)
	}
	_ = rt.RegisterFunc("later", func(context.Context, *jobs.Job) (any, error) { return nil, nil })
	j := enqueue(t, rt, jobs.EnqueueParams{Kind: "later", Delay: time.Hour})
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	w, err := rt.Watch(ctx, j.ID)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := w.Next(ctx); err != nil {
		t.Fatal(err)
	}
	ended := make(chan error, 1)
	go func() { _, err := w.Next(ctx); ended <- err }()
	if err := rt.Stop(ctx); err != nil {
		t.Fatal(err)
	}
	if err := <-ended; !errors.Is(err, jobs.ErrStopped) {
		t.Fatalf("Next across Stop: %v, want ErrStopped", err)
	}
	if _, err := rt.Watch(ctx, j.ID); !errors.Is(err, jobs.ErrStopped) {
		t.Fatalf("Watch after Stop: %v, want ErrStopped", err)
	}
}

// TestSharedWaitSeesAnotherReplica: a replica that does not run a job follows it to its end, its
// progress included, through its poll of the shared database.
func TestSharedWaitSeesAnotherReplica(t *testing.T) {
	url := tandemtest.Postgres(t)
	release := make(chan struct{})
	a := newReplica(t, url, "a", 1, fastWatch, func(rt *jobs.Runtime) {
		_ = rt.RegisterFunc("gate", func(ctx context.Context, j *jobs.Job) (any, error) {
			if err := jobs.Progress(ctx, 30, "on a"); err != nil {
				return nil, err
			}
			select {
			case <-release:
				return "done on a", nil
			case <-ctx.Done():
				return nil, ctx.Err()
			}
		})
	})
	b := newReplica(t, url, "b", 1, func(o *jobs.Options) {
		fastWatch(o)
		o.Queues = map[string]jobs.QueueOptions{"other": {}}
	}, nil)
	j, _, err := a.rt.Enqueue(context.Background(), jobs.EnqueueParams{Kind: "gate"})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	w, err := b.rt.Watch(ctx, j.ID)
	if err != nil {
		t.Fatal(err)
	}
	defer w.Close()
	for {
		got, err := w.Next(ctx)
		if err != nil {
			t.Fatalf("b following a's job: %v", err)
		}
		if got.Progress != nil {
			if got.State != jobs.StateRunning || got.Progress.Percent != 30 || got.Progress.Message != "on a" {
				t.Fatalf("b sees %s with progress %+v", got.State, got.Progress)
			}
			break
		}
	}
	done := make(chan struct{})
	var got *jobs.Job
	go func() {
		defer close(done)
		got, err = b.rt.Wait(ctx, j.ID)
	}()
	close(release)
	<-done
	if err != nil || got.State != jobs.StateSucceeded || string(got.Result) != `"done on a"` {
		t.Fatalf("b's Wait = %+v, %v; want a's job succeeded", got, err)
	}
}
