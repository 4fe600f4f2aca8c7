package e2e

import (
	"context"
	"encoding/json"
	"math/rand/v2"
	"net/http"
	"net/url"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/tandem-run/tandem/internal/tandemtest"
)

// Periodic jobs through real restarts: `tandem serve` processes with one "@every 1s" schedule
// (catch_up one) are stopped -- SIGTERM or kill -9 -- and started again every 1 to 3 s for 20 s.
// docs/periodic.md promises: no slot makes two jobs, a slot is only missing when no process ran
// at its time, and a start fires the latest slot at or before it when that one was missed.

// periodicConfig is a config file with the tick schedule; the caller appends its own lines.
const periodicConfig = "jobs:\n  periodic:\n    - {name: tick, kind: noop, schedule: '@every 1s', catch_up: one}\n"

// restart is one stop and start of a process, on the test's clock.
type restart struct {
	stopped time.Time // the signal was sent
	exited  time.Time // the old process was gone
	spawned time.Time // the new process was started, after a pause of up to 1.5 s
	ready   time.Time // the new process logged "tandem started"
	kill9   bool
}

// startWithConfig starts `tandem serve --config path` with env.
func startWithConfig(t *testing.T, path string, env ...string) *proc {
	t.Helper()
	p := startTandemNoWait(t, func(c *exec.Cmd) { c.Args = append(c.Args, "--config", path) }, env...)
	p.WaitStarted()
	return p
}

// tickSlots lists, through base, the slots of the tick jobs (kind noop: nothing else enqueues it).
func tickSlots(t *testing.T, base string) []time.Time {
	t.Helper()
	var out []time.Time
	cursor := ""
	for range 100 {
		var page struct {
			Jobs []struct {
				Periodic string    `json:"periodic"`
				Slot     time.Time `json:"slot"`
			} `json:"jobs"`
			NextCursor string `json:"next_cursor"`
		}
		u := base + "/v1/jobs?kind=noop&limit=1000&cursor=" + url.QueryEscape(cursor)
		if code, err := call(context.Background(), apiClient, http.MethodGet, u, "", nil, &page); err != nil || code != http.StatusOK {
			t.Fatalf("GET %s: %d %v", u, code, err)
		}
		for _, j := range page.Jobs {
			if j.Periodic != "tick" {
				t.Fatalf("a noop job with periodic %q", j.Periodic)
			}
			out = append(out, j.Slot.UTC())
		}
		if cursor = page.NextCursor; cursor == "" {
			slices.SortFunc(out, func(a, b time.Time) int { return a.Compare(b) })
			return out
		}
	}
	t.Fatal("more than 100 pages of tick jobs")
	return nil
}

// checkSlots checks the tick slots against the restarts: each slot at most once, every missing
// slot inside a down window (from a second before the stop, for a fire cut short, to the new
// process's start), and after each restart where a slot came while no process ran, the latest
// slot at the new process's start present (the catch-up).
func checkSlots(t *testing.T, slots []time.Time, restarts []restart) {
	t.Helper()
	if len(slots) < 10 {
		t.Fatalf("only %d tick jobs in 20 s: %v", len(slots), slots)
	}
	have := map[time.Time]bool{}
	for _, s := range slots {
		if have[s] {
			t.Errorf("slot %s has two jobs", s.Format(time.StampMilli))
		}
		have[s] = true
		if s.Nanosecond() != 0 {
			t.Errorf("slot %s is not on a whole second (@every 1s is aligned to the epoch)", s.Format(time.StampMilli))
		}
	}
	for s := slots[0]; s.Before(slots[len(slots)-1]); s = s.Add(time.Second) {
		if have[s] {
			continue
		}
		explained := slices.ContainsFunc(restarts, func(r restart) bool {
			return !s.Before(r.stopped.Add(-time.Second)) && !s.After(r.ready)
		})
		if !explained {
			t.Errorf("slot %s is missing, yet a process ran then", s.Format(time.StampMilli))
		}
	}
	for _, r := range restarts {
		down := r.spawned.Truncate(time.Second) // the latest slot before the new process started
		if !down.After(r.exited) || !down.After(slots[0]) {
			continue // no slot came while no process ran: nothing to catch up
		}
		// The new process started between spawned and ready: it fired the latest slot then.
		caught := slices.ContainsFunc(slots, func(s time.Time) bool { return !s.Before(down) && !s.After(r.ready) })
		if !caught {
			t.Errorf("restart (exited %s, started %s): no job for the latest slot at the start (%s to %s): catch_up one did not fire",
				r.exited.Format(time.StampMilli), r.spawned.Format(time.StampMilli), down.Format(time.StampMilli), r.ready.Format(time.StampMilli))
		}
	}
}

// restartLoop stops a process every 1 to 3 s (seeded, logged) for d and starts another after up
// to 1.5 s, with at
// least two of the stops a kill -9, of one of ps chosen at random, which start(i) replaces.
func restartLoop(t *testing.T, d time.Duration, ps []*proc, start func(i int) *proc) []restart {
	t.Helper()
	seed := uint64(time.Now().UnixNano())
	t.Logf("restart seed %d", seed)
	rng := rand.New(rand.NewPCG(seed, seed>>1))
	var out []restart
	for end := time.Now().Add(d); time.Now().Before(end); {
		time.Sleep(time.Second + time.Duration(rng.Int64N(int64(2*time.Second))))
		i := rng.IntN(len(ps))
		kill9 := len(out) == 1 || len(out) == 3 || rng.IntN(3) == 0
		r := restart{stopped: time.Now(), kill9: kill9}
		if kill9 {
			ps[i].Kill9()
		} else {
			ps[i].Signal(syscall.SIGTERM)
			if code := ps[i].Wait(30 * time.Second); code != 0 {
				t.Fatalf("SIGTERM: exit %d\n%s", code, ps[i].Logs())
			}
		}
		r.exited = time.Now()
		time.Sleep(time.Duration(rng.Int64N(int64(1500 * time.Millisecond)))) // down for a while: slots to catch up
		r.spawned = time.Now()
		ps[i] = start(i)
		r.ready = time.Now()
		t.Logf("restart %d of process %d: kill9 %v, down %s", len(out)+1, i, kill9, r.ready.Sub(r.stopped).Round(time.Millisecond))
		out = append(out, r)
	}
	return out
}

// TestPeriodicAcrossRestarts: one process on a bbolt file, restarted every 1-3 s for 20 s.
func TestPeriodicAcrossRestarts(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	cfg := filepath.Join(dir, "config.yaml")
	writeFile(t, cfg, periodicConfig)
	env := []string{"TANDEM_STORE_PATH=" + filepath.Join(dir, "db"), "TANDEM_LOG_LEVEL=debug"}
	ps := []*proc{startWithConfig(t, cfg, env...)}
	restarts := restartLoop(t, 20*time.Second, ps, func(int) *proc { return startWithConfig(t, cfg, env...) })
	time.Sleep(1500 * time.Millisecond) // a slot or two after the last start
	checkSlots(t, tickSlots(t, ps[0].HTTPURL), restarts)
	checkPeriodicList(t, ps[0])
}

// TestPeriodicReplicasOneJobPerSlot: three replicas on one Postgres database, one of them
// restarted every 1-3 s for 20 s (SIGTERM or kill -9) while the others run: every slot from the
// first to the last has exactly one job, none missing.
func TestPeriodicReplicasOneJobPerSlot(t *testing.T) {
	t.Parallel()
	db := tandemtest.Postgres(t)
	cfg := filepath.Join(t.TempDir(), "config.yaml")
	writeFile(t, cfg, periodicConfig)
	names := []string{"p1", "p2", "p3"}
	ps := make([]*proc, len(names))
	for i, n := range names {
		ps[i] = startWithConfig(t, cfg, pgEnv(db, n)...)
	}
	restartLoop(t, 20*time.Second, ps, func(i int) *proc { return startWithConfig(t, cfg, pgEnv(db, names[i])...) })
	time.Sleep(1500 * time.Millisecond)
	slots := tickSlots(t, ps[0].HTTPURL)
	checkSlots(t, slots, nil) // no restart explains a gap: another replica ran at every slot
	checkPeriodicList(t, ps[1])
}

// checkPeriodicList: GET /v1/periodic and `tandem periodic list` show the tick schedule and its
// last slot, the one the jobs say.
func checkPeriodicList(t *testing.T, p *proc) {
	t.Helper()
	var out struct {
		Periodic []struct {
			Name      string     `json:"name"`
			Schedule  string     `json:"schedule"`
			CatchUp   string     `json:"catch_up"`
			LastSlot  *time.Time `json:"last_slot"`
			LastJobID string     `json:"last_job_id"`
			NextRun   *time.Time `json:"next_run"`
		} `json:"periodic"`
	}
	if code, err := call(context.Background(), apiClient, http.MethodGet, p.HTTPURL+"/v1/periodic", "", nil, &out); err != nil || code != http.StatusOK {
		t.Fatalf("GET /v1/periodic: %d %v", code, err)
	}
	if len(out.Periodic) != 1 || out.Periodic[0].Name != "tick" || out.Periodic[0].LastSlot == nil || out.Periodic[0].NextRun == nil ||
		!out.Periodic[0].NextRun.After(*out.Periodic[0].LastSlot) || out.Periodic[0].CatchUp != "one" {
		t.Fatalf("GET /v1/periodic = %+v", out)
	}
	var last struct {
		Slot time.Time `json:"slot"`
	}
	if code, err := call(context.Background(), apiClient, http.MethodGet, p.HTTPURL+"/v1/jobs/"+out.Periodic[0].LastJobID, "", nil, &last); err != nil || code != http.StatusOK ||
		!last.Slot.Equal(*out.Periodic[0].LastSlot) {
		t.Fatalf("last job %s: %d %v, slot %v, want %v", out.Periodic[0].LastJobID, code, err, last.Slot, out.Periodic[0].LastSlot)
	}
	env := []string{"TANDEM_SERVER_URL=" + p.HTTPURL}
	r := runTandem(t, t.TempDir(), env, "periodic", "list")
	if r.code != 0 || !strings.Contains(r.stdout, "tick") || !strings.Contains(r.stdout, "@every 1s") || !strings.Contains(r.stdout, "LAST_SLOT") {
		t.Fatalf("tandem periodic list: %+v", r)
	}
	r = runTandem(t, t.TempDir(), env, "periodic", "list", "--json")
	if r.code != 0 || !json.Valid([]byte(r.stdout)) || !strings.Contains(r.stdout, `"name": "tick"`) && !strings.Contains(r.stdout, `"name":"tick"`) {
		t.Fatalf("tandem periodic list --json: %+v", r)
	}
}
