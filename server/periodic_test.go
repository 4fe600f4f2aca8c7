package server

import (
	"context"
	"encoding/json"
	"log/slog"
	"net/http"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/tandem-run/tandem/internal/tandemtest"
	"github.com/tandem-run/tandem/jobs"
	"github.com/tandem-run/tandem/pool"
	"github.com/tandem-run/tandem/store"
)

// periodicRuntime is a started runtime with two schedules: "tick" (@every 1s) and "nightly".
func periodicRuntime(t *testing.T) *jobs.Runtime {
	t.Helper()
	logger := slog.New(slog.DiscardHandler)
	st, err := store.Open(context.Background(), store.Options{Path: filepath.Join(t.TempDir(), "db"), NoSync: true, Logger: logger})
	if err != nil {
		t.Fatal(err)
	}
	jp, _ := pool.New(pool.Options{Name: "jobs", Size: 1, Backlog: 100, Logger: logger})
	rt, err := jobs.New(jobs.Options{Store: st, Pool: jp, Logger: logger})
	if err != nil {
		t.Fatal(err)
	}
	_ = rt.RegisterFunc("noop", func(context.Context, *jobs.Job) (any, error) { return nil, nil })
	paris, _ := time.LoadLocation("Europe/Paris")
	for _, p := range []jobs.Periodic{
		{Name: "tick", Schedule: "@every 1s", Kind: "noop", Priority: 3},
		{Name: "nightly", Schedule: "30 2 * * *", Timezone: paris, Kind: "noop", CatchUp: jobs.CatchUpNone},
	} {
		if err := rt.RegisterPeriodic(p); err != nil {
			t.Fatal(err)
		}
	}
	if err := rt.Start(context.Background()); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		_ = rt.Stop(ctx)
		_ = jp.Release(ctx)
		st.Close()
	})
	return rt
}

// TestListPeriodic: GET /v1/periodic lists the schedules by name with their next run, and, once a
// slot fired, its slot, job and that job's state; it takes no query parameters.
func TestListPeriodic(t *testing.T) {
	rt := periodicRuntime(t)
	b := setup(t, func(o *Options) { o.Jobs = rt }, nil)
	type entry struct {
		Name, Kind, Queue, Schedule, Timezone string
		Priority                              int
		CatchUp                               string     `json:"catch_up"`
		NextRun                               *time.Time `json:"next_run"`
		LastSlot                              *time.Time `json:"last_slot"`
		LastJobID                             string     `json:"last_job_id"`
		LastState                             string     `json:"last_state"`
	}
	var got struct{ Periodic []entry }
	tandemtest.WaitFor(t, "the tick schedule's first slot", func() bool {
		code, _, body := b.do(t, http.MethodGet, b.base+"/v1/periodic", "", nil)
		if code != http.StatusOK {
			t.Fatalf("GET /v1/periodic: %d %s", code, body)
		}
		if err := json.Unmarshal([]byte(body), &got); err != nil {
			t.Fatal(err)
		}
		return len(got.Periodic) == 2 && got.Periodic[1].LastSlot != nil
	})
	n, tick := got.Periodic[0], got.Periodic[1]
	if n.Name != "nightly" || n.Schedule != "30 2 * * *" || n.Timezone != "Europe/Paris" || n.CatchUp != "none" || n.LastSlot != nil ||
		n.LastJobID != "" || n.NextRun == nil {
		t.Errorf("nightly = %+v", n)
	}
	if loc, _ := time.LoadLocation("Europe/Paris"); n.NextRun != nil && n.NextRun.In(loc).Format("15:04") != "02:30" {
		t.Errorf("nightly next_run %v is not 02:30 in Paris", n.NextRun)
	}
	if tick.Kind != "noop" || tick.Queue != "default" || tick.Priority != 3 || tick.Timezone != "UTC" || tick.CatchUp != "one" ||
		tick.LastJobID == "" || tick.LastState == "" || tick.LastSlot.Nanosecond() != 0 || !tick.NextRun.After(*tick.LastSlot) {
		t.Errorf("tick = %+v", tick)
	}
	code, _, body := b.do(t, http.MethodGet, b.base+"/v1/jobs/"+tick.LastJobID, "", nil)
	if code != http.StatusOK || !strings.Contains(body, `"periodic":"tick"`) || !strings.Contains(body, `"slot":"`+tick.LastSlot.UTC().Format(time.RFC3339)) {
		t.Errorf("the last job of tick: %d %s", code, body)
	}
	code, _, body = b.do(t, http.MethodGet, b.base+"/v1/periodic?name=tick", "", nil)
	if code != http.StatusBadRequest || !strings.Contains(body, `"error"`) {
		t.Errorf("GET /v1/periodic?name=tick: %d %s, want 400 with a JSON error", code, body)
	}
}
