package storetest

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/tandem-run/tandem/jobs"
)

// testPing: an open store answers Ping, before and after a write.
func testPing(t *testing.T, b Backend) {
	s, _ := setup(t, b)
	if err := s.Ping(context.Background()); err != nil {
		t.Fatalf("Ping: %v", err)
	}
	insert(t, s, newJob("q", 0, epoch))
	if err := s.Ping(context.Background()); err != nil {
		t.Fatalf("Ping after a write: %v", err)
	}
}

// testClosed: after Close, every method that reads or writes fails with ErrStoreClosed.
func testClosed(t *testing.T, b Backend) {
	s, _ := setup(t, b)
	ctx := context.Background()
	j := insert(t, s, newJob("q", 0, epoch), newJob("q", 0, epoch))[0]
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	nop := func(*jobs.Job) error { return nil }
	calls := []struct {
		name string
		call func() error
	}{
		{"Insert", func() error { _, _, err := s.Insert(ctx, []*jobs.Job{newJob("q", 0, epoch)}, nil); return err }},
		{"Get", func() error { _, err := s.Get(ctx, j.ID); return err }},
		{"GetMany", func() error { _, err := s.GetMany(ctx, []string{j.ID}); return err }},
		{"Update", func() error { _, err := s.Update(ctx, j.ID, nop); return err }},
		{"UpdateQueued", func() error {
			w, err := s.UpdateQueued(ctx, j.ID, nop)
			if err == nil {
				_, err = w()
			}
			return err
		}},
		{"ApplyQueued", func() error { return s.ApplyQueued(ctx, func(jobs.Updater) {}) }},
		{"LeaseQueued", func() error {
			_, w, err := s.LeaseQueued(ctx, jobs.Lease{Queue: "q", N: 1, For: time.Minute})
			if err == nil {
				err = w()
			}
			return err
		}},
		{"Promote", func() error { _, _, err := s.Promote(ctx, epoch); return err }},
		{"Recover", func() error { _, err := s.Recover(ctx, func(*jobs.Job) {}); return err }},
		{"Expired", func() error { _, err := s.Expired(ctx, epoch, 10); return err }},
		{"FirePeriodic", func() error {
			_, _, err := s.FirePeriodic(ctx, "p", epoch, periodicJob("p", epoch))
			return err
		}},
		{"PeriodicMarks", func() error { _, err := s.PeriodicMarks(ctx); return err }},
		{"Delete", func() error { return s.Delete(ctx, j.ID) }},
		{"Sweep", func() error { _, err := s.Sweep(ctx, epoch, 0); return err }},
		{"List", func() error { _, _, err := s.List(ctx, jobs.Filter{}); return err }},
		{"Queues", func() error { _, err := s.Queues(ctx); return err }},
		{"SetPaused", func() error { return s.SetPaused(ctx, "q", true) }},
		{"Ping", func() error { return s.Ping(ctx) }},
	}
	for _, c := range calls {
		if err := c.call(); !errors.Is(err, jobs.ErrStoreClosed) {
			t.Errorf("%s after Close: %v, want ErrStoreClosed", c.name, err)
		}
	}
}

// testConcurrent: every method at once from many goroutines (run it with -race): no insert is
// lost, no job is leased twice, and the counts add up to the jobs stored.
func testConcurrent(t *testing.T, b Backend) {
	s, bb := setup(t, b)
	ctx := context.Background()
	const writers, each = 8, 25
	var wg sync.WaitGroup
	var inserted, finished atomic.Int64
	var mu sync.Mutex
	leased := map[string]bool{}
	for w := range writers {
		wg.Go(func() {
			for i := range each {
				j := newJob(fmt.Sprintf("q%d", w%3), i%10, epoch)
				if i%5 == 0 {
					j.UniqueKey = fmt.Sprintf("k%d", i) // shared by the writers: some are duplicates
				}
				if _, created, err := s.Insert(ctx, []*jobs.Job{j}, nil); err != nil {
					t.Error(err)
					return
				} else if created[0] {
					inserted.Add(1)
				}
			}
		})
		wg.Go(func() {
			q := fmt.Sprintf("q%d", w%3)
			for range each {
				js, wait, err := s.LeaseQueued(ctx, jobs.Lease{Queue: q, N: 3, For: time.Minute})
				if err == nil {
					err = wait()
				}
				if err != nil {
					t.Error(err)
					return
				}
				for _, j := range js {
					mu.Lock()
					twice := leased[j.ID]
					leased[j.ID] = true
					mu.Unlock()
					if twice {
						t.Errorf("job %s leased twice", j.ID)
					}
					if _, err := s.Update(ctx, j.ID, func(j *jobs.Job) error {
						at := bb.clock.Now()
						j.State, j.FinishedAt, j.LeaseUntil = jobs.StateSucceeded, &at, nil
						return nil
					}); err != nil {
						t.Error(err)
						return
					}
					finished.Add(1)
				}
			}
		})
		wg.Go(func() {
			for range each {
				if _, _, err := s.List(ctx, jobs.Filter{Limit: 20}); err != nil {
					t.Error(err)
				}
				if _, err := s.Queues(ctx); err != nil {
					t.Error(err)
				}
				if _, _, err := s.Promote(ctx, epoch); err != nil {
					t.Error(err)
				}
				_ = s.Ready("q0") + map[bool]int{true: 1}[s.Paused("q1")]
			}
		})
	}
	wg.Wait()
	qs, err := s.Queues(ctx)
	if err != nil {
		t.Fatal(err)
	}
	var total, succeeded int
	for _, q := range qs {
		for st, n := range q.Counts {
			total += n
			if st == jobs.StateSucceeded {
				succeeded += n
			}
		}
	}
	all := listAll(t, s, jobs.Filter{Limit: 1000}, 10)
	if int64(total) != inserted.Load() || len(all) != total || int64(succeeded) != finished.Load() {
		t.Fatalf("inserted %d, counted %d, listed %d; finished %d, counted %d succeeded", inserted.Load(), total, len(all), finished.Load(), succeeded)
	}
}
