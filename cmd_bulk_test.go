package main

import (
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"
)

// fakeBulk answers POST /admin/jobs/bulk as tandem does, each action's jobs in two calls (the
// first hands back a cursor), and records the requests.
type fakeBulk struct {
	mu    sync.Mutex
	calls []map[string]any
}

func (f *fakeBulk) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	var req map[string]any
	if r.URL.Path != "/admin/jobs/bulk" || json.NewDecoder(r.Body).Decode(&req) != nil {
		http.Error(w, `{"error":"bad request"}`, http.StatusBadRequest)
		return
	}
	f.mu.Lock()
	f.calls = append(f.calls, req)
	f.mu.Unlock()
	ans := map[string]any{"action": req["action"], "dry_run": req["dry_run"], "matched": 2, "changed": 0, "skipped": 0, "next_cursor": "c1"}
	if req["cursor"] == "c1" {
		ans["matched"], ans["next_cursor"] = 1, ""
	}
	if req["dry_run"] == false {
		ans["changed"] = ans["matched"]
	}
	w.Header().Set("Content-Type", "application/json")
	_ = json.NewEncoder(w).Encode(ans)
}

func (f *fakeBulk) runs() (dry, real int) {
	f.mu.Lock()
	defer f.mu.Unlock()
	for _, c := range f.calls {
		if c["dry_run"] == true {
			dry++
		} else {
			real++
		}
	}
	return dry, real
}

// withStdin has the bulk confirmation read answer from a terminal (or not) for one test.
func withStdin(t *testing.T, answer string, terminal bool) {
	old := stdinTerminal
	stdinTerminal = func() (io.Reader, bool) { return strings.NewReader(answer), terminal }
	t.Cleanup(func() { stdinTerminal = old })
}

// TestJobsBulkConfirms: 'tandem jobs bulk' counts first (every page), asks on a terminal and runs
// only on a yes, refuses without --yes when stdin is not a terminal, and --dry-run only counts.
// Not parallel: it swaps stdinTerminal.
func TestJobsBulkConfirms(t *testing.T) {
	for _, c := range []struct {
		name     string
		args     []string
		answer   string
		terminal bool
		code     int
		real     int // calls that were not dry runs
		stdout   string
		stderr   string
	}{
		{"yes on a terminal", nil, "y\n", true, exitOK, 2, "retried 3 jobs of 3 matched\n", "retry 3 jobs (queue=mail state=dead)? [y/N] "},
		{"no on a terminal", nil, "n\n", true, exitFail, 0, "", "not confirmed: no job was retried"},
		{"nothing typed", nil, "", true, exitFail, 0, "", "not confirmed"},
		{"not a terminal", nil, "y\n", false, exitConfig, 0, "", "3 jobs would be retried (queue=mail state=dead); stdin is not a terminal to confirm on: pass --yes"},
		{"--yes", []string{"--yes"}, "", false, exitOK, 2, "retried 3 jobs of 3 matched\n", ""},
		{"--dry-run", []string{"--dry-run"}, "", false, exitOK, 0, "3 jobs would be retried (queue=mail state=dead)\n", ""},
	} {
		t.Run(c.name, func(t *testing.T) {
			fake := &fakeBulk{}
			srv := httptest.NewServer(fake)
			defer srv.Close()
			withStdin(t, c.answer, c.terminal)
			args := append([]string{"jobs", "bulk", "retry", "--queue", "mail", "--state", "dead", "--admin", srv.URL, "--config", emptyConfig(t)}, c.args...)
			r := runCmd(t, nil, args...)
			if r.code != c.code || r.stdout != c.stdout || !strings.Contains(r.stderr, c.stderr) {
				t.Fatalf("tandem %v: %+v; want exit %d, stdout %q, stderr with %q", args, r, c.code, c.stdout, c.stderr)
			}
			if dry, real := fake.runs(); dry != 2 || real != c.real {
				t.Fatalf("%d dry-run and %d real calls, want 2 and %d", dry, real, c.real)
			}
		})
	}
}

// TestJobsBulkRefusesBadInput: a bad action or time is a usage error (exit 2) before any call.
func TestJobsBulkRefusesBadInput(t *testing.T) {
	for _, c := range []struct {
		args []string
		want string
	}{
		{[]string{"jobs", "bulk"}, "bulk needs one action"},
		{[]string{"jobs", "bulk", "explode"}, "bulk needs one action"},
		{[]string{"jobs", "bulk", "retry", "extra"}, "bulk needs one action"},
		{[]string{"jobs", "bulk", "delete", "--created-before", "last week"}, `--created-before "last week": give an RFC 3339 time`},
		{[]string{"jobs", "list", "--created-after", "soon"}, `--created-after "soon"`},
	} {
		r := runCmd(t, nil, append(c.args, "--admin", "http://127.0.0.1:1", "--server", "http://127.0.0.1:1", "--config", emptyConfig(t))...)
		if r.code != exitConfig || !strings.Contains(r.stderr, c.want) {
			t.Errorf("tandem %v: %+v, want exit 2 and %q", c.args, r, c.want)
		}
	}
}

// TestCreatedTime: a --created-* flag is an RFC 3339 time, kept as given, or a duration ago.
func TestCreatedTime(t *testing.T) {
	now := time.Date(2026, 3, 4, 12, 0, 0, 0, time.UTC)
	for in, want := range map[string]string{"": "", "2026-01-02T15:04:05Z": "2026-01-02T15:04:05Z", "24h": "2026-03-03T12:00:00Z", "90m": "2026-03-04T10:30:00Z"} {
		if got, err := createdTime("created-after", in, now); err != nil || got != want {
			t.Errorf("createdTime(%q) = %q, %v; want %q", in, got, err, want)
		}
	}
	if _, err := createdTime("created-after", "-1h", now); err == nil {
		t.Error("a negative duration was taken")
	}
}
