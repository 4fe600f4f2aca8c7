package storetest

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"testing"
	"time"

	"github.com/tandem-run/tandem/jobs"

	"github.com/google/uuid"
)

// testInsertIDs: Insert assigns a UUIDv7 to each job with none, in creation order, keeps an id
// it is given, and sets CreatedAt from the store's clock.
func testInsertIDs(t *testing.T, b Backend) {
	s, bb := setup(t, b)
	given := newJob("q", 0, epoch)
	given.ID = "01a20fb4-9ac1-75d3-aff7-22b7b8850f9c"
	var got []string
	for range 5 {
		bb.clock.Advance(time.Millisecond)
		j := insert(t, s, newJob("q", 0, epoch))[0]
		if !j.CreatedAt.Equal(bb.clock.Now()) {
			t.Errorf("CreatedAt %v, want the store clock's %v", j.CreatedAt, bb.clock.Now())
		}
		got = append(got, j.ID)
	}
	batch := insert(t, s, newJob("q", 0, epoch), newJob("q", 0, epoch), given)
	got = append(got, batch[0].ID, batch[1].ID)
	for _, id := range got {
		u, err := uuid.Parse(id)
		if err != nil || u.Version() != 7 {
			t.Fatalf("id %q: version %v, %v; want a UUIDv7", id, u.Version(), err)
		}
	}
	if !slices.IsSorted(got) || len(slices.Compact(slices.Clone(got))) != len(got) {
		t.Fatalf("ids in insert order %v: want distinct and ascending", got)
	}
	if batch[2].ID != given.ID || get(t, s, given.ID).ID != given.ID {
		t.Fatalf("a given id was not kept: %s", batch[2].ID)
	}
	if n := s.Ready("q"); n != 8 {
		t.Fatalf("Ready = %d, want 8", n)
	}
}

// sample is a job with every field set, as a record is after some attempts.
func sample(now time.Time) *jobs.Job {
	t1, t2, t3 := now.Add(time.Second), now.Add(time.Minute), now.Add(time.Hour)
	return &jobs.Job{
		Kind: "http", Queue: "mail", Payload: json.RawMessage(`{"url":"http://x","n":[1,2]}`), Priority: 7, RunAt: now,
		Attempt: 2, MaxAttempts: 25, Timeout: 90 * time.Second, State: jobs.StateRetrying,
		Errors:    []jobs.AttemptError{{Attempt: 1, At: now, Error: "boom"}, {Attempt: 2, At: t1, Error: ""}},
		Result:    json.RawMessage(`{"ok":true}`),
		UniqueKey: "u-1", StartedAt: &t1, FinishedAt: &t3, LeaseUntil: &t2, AttemptedBy: []string{"a:1", "b:2"},
		Progress: &jobs.ProgressReport{Percent: 60, Message: "3 of 5 done", At: t1}, Periodic: "nightly", Slot: now.Truncate(time.Minute),
	}
}

// diff names the fields where two jobs differ; times compare as instants.
func diff(got, want *jobs.Job) string {
	var d []string
	add := func(field string, g, w any) { d = append(d, fmt.Sprintf("%s: got %v, want %v", field, g, w)) }
	if got.ID != want.ID {
		add("ID", got.ID, want.ID)
	}
	if got.Kind != want.Kind || got.Queue != want.Queue || got.UniqueKey != want.UniqueKey {
		add("Kind/Queue/UniqueKey", []string{got.Kind, got.Queue, got.UniqueKey}, []string{want.Kind, want.Queue, want.UniqueKey})
	}
	if !bytes.Equal(got.Payload, want.Payload) {
		add("Payload", string(got.Payload), string(want.Payload))
	}
	if !bytes.Equal(got.Result, want.Result) {
		add("Result", string(got.Result), string(want.Result))
	}
	if got.Priority != want.Priority || got.Attempt != want.Attempt || got.MaxAttempts != want.MaxAttempts {
		add("Priority/Attempt/MaxAttempts", []int{got.Priority, got.Attempt, got.MaxAttempts}, []int{want.Priority, want.Attempt, want.MaxAttempts})
	}
	if got.Timeout != want.Timeout || got.State != want.State {
		add("Timeout/State", fmt.Sprint(got.Timeout, got.State), fmt.Sprint(want.Timeout, want.State))
	}
	if !got.RunAt.Equal(want.RunAt) {
		add("RunAt", got.RunAt, want.RunAt)
	}
	for _, p := range []struct {
		name      string
		got, want *time.Time
	}{{"StartedAt", got.StartedAt, want.StartedAt}, {"FinishedAt", got.FinishedAt, want.FinishedAt}, {"LeaseUntil", got.LeaseUntil, want.LeaseUntil}} {
		if (p.got == nil) != (p.want == nil) || (p.got != nil && !p.got.Equal(*p.want)) {
			add(p.name, p.got, p.want)
		}
	}
	if len(got.Errors) != len(want.Errors) {
		add("Errors", got.Errors, want.Errors)
	} else {
		for i := range got.Errors {
			g, w := got.Errors[i], want.Errors[i]
			if g.Attempt != w.Attempt || !g.At.Equal(w.At) || g.Error != w.Error {
				add(fmt.Sprintf("Errors[%d]", i), g, w)
			}
		}
	}
	if !slices.Equal(got.AttemptedBy, want.AttemptedBy) {
		add("AttemptedBy", got.AttemptedBy, want.AttemptedBy)
	}
	if got.Periodic != want.Periodic || !got.Slot.Equal(want.Slot) {
		add("Periodic/Slot", fmt.Sprint(got.Periodic, got.Slot), fmt.Sprint(want.Periodic, want.Slot))
	}
	if g, w := got.Progress, want.Progress; (g == nil) != (w == nil) || (g != nil && (g.Percent != w.Percent || g.Message != w.Message || !g.At.Equal(w.At))) {
		add("Progress", g, w)
	}
	return fmt.Sprint(d)
}

// testRoundTrip: every field of a record reads back as it was written, through Insert and Update
// (payload and result byte for byte: the API returns them as they are).
func testRoundTrip(t *testing.T, b Backend) {
	s, bb := setup(t, b)
	now := bb.clock.Now()
	ins := newJob("mail", 4, now.Add(time.Hour))
	ins.State, ins.Kind, ins.Payload, ins.Timeout, ins.UniqueKey = jobs.StateScheduled, "http", json.RawMessage(`{"b": 1,  "a":"x"}`), time.Minute, "k"
	want := ins.Clone()
	j := insert(t, s, ins)[0]
	want.ID, want.CreatedAt = j.ID, now
	if d := diff(get(t, s, j.ID), want); d != "[]" {
		t.Errorf("inserted job read back: %s", d)
	}
	full := sample(now)
	full.ID = j.ID
	written := update(t, s, j.ID, func(j *jobs.Job) { *j = *full.Clone() })
	if d := diff(written, full); d != "[]" {
		t.Errorf("Update's result: %s", d)
	}
	if d := diff(get(t, s, j.ID), full); d != "[]" {
		t.Errorf("updated job read back: %s", d)
	}
	// Empty optional fields stay empty.
	bare := update(t, s, j.ID, func(j *jobs.Job) {
		j.Payload, j.Result, j.Errors, j.AttemptedBy, j.StartedAt, j.FinishedAt, j.LeaseUntil = nil, nil, nil, nil, nil, nil, nil
		j.State, j.UniqueKey, j.Progress, j.Periodic, j.Slot = jobs.StateReady, "", nil, "", time.Time{}
	})
	got := get(t, s, j.ID)
	if len(got.Payload) != 0 || len(got.Result) != 0 || len(got.Errors) != 0 || len(got.AttemptedBy) != 0 ||
		got.StartedAt != nil || got.FinishedAt != nil || got.LeaseUntil != nil || got.UniqueKey != "" ||
		got.Progress != nil || got.Periodic != "" || !got.Slot.IsZero() {
		t.Errorf("cleared fields read back set: %+v (Update returned %+v)", got, bare)
	}
}

// testInsertStates: only ready and scheduled jobs are inserted, and a batch with one of another
// state writes nothing.
func testInsertStates(t *testing.T, b Backend) {
	s, _ := setup(t, b)
	ctx := context.Background()
	for _, st := range []jobs.State{jobs.StatePrefetched, jobs.StateRunning, jobs.StateRetrying, jobs.StateSucceeded, jobs.StateDead, jobs.StateCanceled, "bogus"} {
		bad := newJob("q", 0, epoch)
		bad.State = st
		if _, _, err := s.Insert(ctx, []*jobs.Job{newJob("q", 0, epoch), bad}, nil); err == nil {
			t.Errorf("Insert accepted a %s job", st)
		}
	}
	if js, _, err := s.List(ctx, jobs.Filter{}); err != nil || len(js) != 0 {
		t.Fatalf("refused batches wrote %d jobs (%v)", len(js), err)
	}
	sched := newJob("q", 0, epoch.Add(time.Hour))
	sched.State = jobs.StateScheduled
	if out := insert(t, s, sched, newJob("q", 0, epoch)); out[0].State != jobs.StateScheduled || out[1].State != jobs.StateReady {
		t.Fatalf("inserted states %s, %s", out[0].State, out[1].State)
	}
}

// testUniqueLive: a unique key is held by a live job in any queue, whatever its unfinished state,
// and freed when it finishes.
func testUniqueLive(t *testing.T, b Backend) {
	s, bb := setup(t, b)
	ctx := context.Background()
	for i, st := range jobs.States {
		key := fmt.Sprintf("key-%d", i)
		holder := newJob("q", 0, epoch)
		holder.UniqueKey = key
		h := insert(t, s, holder)[0]
		update(t, s, h.ID, func(j *jobs.Job) {
			j.State = st
			if st.Finished() {
				at := bb.clock.Now()
				j.FinishedAt = &at
			}
		})
		dup := newJob("other", 0, epoch) // another queue: keys are not per queue
		dup.UniqueKey = key
		out, created, err := s.Insert(ctx, []*jobs.Job{dup}, nil)
		if err != nil {
			t.Fatalf("%s holder: %v", st, err)
		}
		switch {
		case st.Finished() && (!created[0] || out[0].ID == h.ID):
			t.Errorf("a %s job still holds its unique key: got %s, created %v", st, out[0].ID, created[0])
		case !st.Finished() && (created[0] || out[0].ID != h.ID || out[0].State != st):
			t.Errorf("a %s job does not hold its unique key: got %s (%s), created %v; want %s", st, out[0].ID, out[0].State, created[0], h.ID)
		}
	}
	// A job deleted after it finished leaves its key free too.
	j := newJob("q", 0, epoch)
	j.UniqueKey = "gone"
	j = insert(t, s, j)[0]
	finish(t, s, j.ID, jobs.StateSucceeded, bb.clock.Now())
	if err := s.Delete(ctx, j.ID); err != nil {
		t.Fatal(err)
	}
	again := newJob("q", 0, epoch)
	again.UniqueKey = "gone"
	if _, created, err := s.Insert(ctx, []*jobs.Job{again}, nil); err != nil || !created[0] {
		t.Fatalf("key of a deleted job: created %v, %v", created, err)
	}
}

// testUniqueBatch: two jobs of one Insert with the same key write one; the second gets the first,
// as its own copy.
func testUniqueBatch(t *testing.T, b Backend) {
	s, _ := setup(t, b)
	a, c := newJob("q", 0, epoch), newJob("q", 0, epoch)
	a.UniqueKey, c.UniqueKey = "same", "same"
	out, created, err := s.Insert(context.Background(), []*jobs.Job{a, newJob("q", 0, epoch), c}, nil)
	if err != nil {
		t.Fatal(err)
	}
	if !created[0] || !created[1] || created[2] || out[2].ID != out[0].ID {
		t.Fatalf("created %v, ids %v", created, ids(out))
	}
	if out[2] == out[0] {
		t.Fatal("two entries of Insert's result share one *Job")
	}
	if js, _, _ := s.List(context.Background(), jobs.Filter{}); len(js) != 2 {
		t.Fatalf("%d jobs stored, want 2", len(js))
	}
}

// testMaxPending: a batch that would take a queue past maxPending writes nothing (its other
// queues' jobs neither) and wraps ErrQueueFull; the limit is per queue, 0 means none, nil none.
func testMaxPending(t *testing.T, b Backend) {
	s, _ := setup(t, b)
	ctx := context.Background()
	limits := map[string]int{"q": 3, "free": 0}
	limit := func(q string) int { return limits[q] }
	if _, _, err := s.Insert(ctx, []*jobs.Job{newJob("q", 0, epoch), newJob("q", 0, epoch)}, limit); err != nil {
		t.Fatal(err)
	}
	_, _, err := s.Insert(ctx, []*jobs.Job{newJob("free", 0, epoch), newJob("q", 0, epoch), newJob("q", 0, epoch)}, limit)
	if !errors.Is(err, jobs.ErrQueueFull) {
		t.Fatalf("past max_pending: %v, want ErrQueueFull", err)
	}
	if js, _, _ := s.List(ctx, jobs.Filter{}); len(js) != 2 {
		t.Fatalf("a refused batch wrote: %d jobs stored, want 2", len(js))
	}
	// Up to the limit is fine; a queue without one takes any number.
	many := make([]*jobs.Job, 50)
	for i := range many {
		many[i] = newJob("free", 0, epoch)
	}
	if _, _, err := s.Insert(ctx, append(many, newJob("q", 0, epoch)), limit); err != nil {
		t.Fatalf("up to the limit: %v", err)
	}
	if _, _, err := s.Insert(ctx, []*jobs.Job{newJob("q", 0, epoch)}, limit); !errors.Is(err, jobs.ErrQueueFull) {
		t.Fatalf("one past the limit: %v", err)
	}
	if _, _, err := s.Insert(ctx, []*jobs.Job{newJob("q", 0, epoch)}, nil); err != nil {
		t.Fatalf("no maxPending: %v", err)
	}
	if c := queue(t, s, "q").Counts[jobs.StateReady]; c != 4 {
		t.Fatalf("q holds %d ready, want 4", c)
	}
}

// testMaxPendingWaiting: max_pending counts waiting jobs (scheduled, ready, retrying), not leased
// or finished ones, and a duplicate that is not written does not count.
func testMaxPendingWaiting(t *testing.T, b Backend) {
	s, bb := setup(t, b)
	ctx := context.Background()
	limit := func(string) int { return 3 }
	sched, retry := newJob("q", 0, epoch.Add(time.Hour)), newJob("q", 0, epoch)
	sched.State = jobs.StateScheduled
	uniq := newJob("q", 0, epoch)
	uniq.UniqueKey = "u"
	js := insert(t, s, sched, retry, uniq, newJob("q", 0, epoch), newJob("q", 0, epoch), newJob("q", 0, epoch))
	update(t, s, js[1].ID, func(j *jobs.Job) { j.State = jobs.StateRetrying; j.RunAt = epoch.Add(time.Minute) })
	leased := lease(t, s, "q", 2, time.Minute) // two of the four ready: uniq and js[3]
	start(t, s, leased[0].ID, bb.clock.Now())
	finish(t, s, js[5].ID, jobs.StateSucceeded, bb.clock.Now())
	// Waiting now: scheduled, retrying, and one ready of js[3..5] that was not leased.
	if _, _, err := s.Insert(ctx, []*jobs.Job{newJob("q", 0, epoch)}, limit); !errors.Is(err, jobs.ErrQueueFull) {
		t.Fatalf("3 waiting, max 3: %v, want ErrQueueFull (counts %v)", err, queue(t, s, "q").Counts)
	}
	dup := newJob("q", 0, epoch)
	dup.UniqueKey = "u"
	if out, created, err := s.Insert(ctx, []*jobs.Job{dup}, limit); err != nil || created[0] || out[0].ID != js[2].ID {
		t.Fatalf("a duplicate at the limit: created %v, %v; want the holder, no error", created, err)
	}
	finish(t, s, js[0].ID, jobs.StateCanceled, bb.clock.Now())
	if _, _, err := s.Insert(ctx, []*jobs.Job{newJob("q", 0, epoch)}, limit); err != nil {
		t.Fatalf("2 waiting, max 3: %v", err)
	}
}

// testGetNotFound: a missing id, or one that is not an id, is ErrNotFound.
func testGetNotFound(t *testing.T, b Backend) {
	s, _ := setup(t, b)
	insert(t, s, newJob("q", 0, epoch))
	for _, id := range []string{"00000000-0000-7000-8000-000000000000", "not-an-id", ""} {
		if _, err := s.Get(context.Background(), id); !errors.Is(err, jobs.ErrNotFound) {
			t.Errorf("Get(%q) = %v, want ErrNotFound", id, err)
		}
	}
}

// testCallersCopy: the jobs Insert, Get and Update return are the caller's: changing them
// changes nothing stored, nor another caller's copy.
func testCallersCopy(t *testing.T, b Backend) {
	s, _ := setup(t, b)
	in := newJob("q", 0, epoch)
	in.Payload = json.RawMessage(`{"a":1}`)
	j := insert(t, s, in)[0]
	in.Priority, in.Payload[2] = 9, 'z'
	g1, g2 := get(t, s, j.ID), get(t, s, j.ID)
	g1.Priority, g1.Payload[2] = 8, 'y'
	u := update(t, s, j.ID, func(j *jobs.Job) { j.Kind = "changed" })
	u.Priority = 7
	if cur := get(t, s, j.ID); cur.Priority != 0 || string(cur.Payload) != `{"a":1}` || g2.Priority != 0 || cur.Kind != "changed" {
		t.Fatalf("stored %+v (payload %s), second copy priority %d", cur, cur.Payload, g2.Priority)
	}
}

// testGetMany: GetMany returns the jobs that exist, as they are stored, in the order asked, each
// once; a missing id or one that is not an id is left out, and no id at all is no job.
func testGetMany(t *testing.T, b Backend) {
	s, _ := setup(t, b)
	ctx := context.Background()
	js := insert(t, s, newJob("q", 0, epoch), newJob("q", 1, epoch), newJob("q", 2, epoch))
	update(t, s, js[1].ID, func(j *jobs.Job) { j.Kind = "changed" })
	asked := []string{js[2].ID, "00000000-0000-7000-8000-000000000000", js[1].ID, "not-an-id", js[2].ID}
	got, err := s.GetMany(ctx, asked)
	if err != nil {
		t.Fatal(err)
	}
	if len(got) != 2 || got[0].ID != js[2].ID || got[1].ID != js[1].ID {
		t.Fatalf("GetMany(%v) = %v, want [%s %s]", asked, ids(got), js[2].ID, js[1].ID)
	}
	if d := diff(got[1], get(t, s, js[1].ID)); d != "[]" {
		t.Errorf("GetMany's job differs from Get's: %s", d)
	}
	if none, err := s.GetMany(ctx, nil); err != nil || len(none) != 0 {
		t.Errorf("GetMany(nil) = %v, %v; want none", ids(none), err)
	}
}
