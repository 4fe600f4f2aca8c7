package e2e

import (
	"encoding/json"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
)

// TestJobsWaitCLI: 'tandem jobs wait' follows a job to its end and says how it ended by its exit
// status: 0 succeeded, 1 dead or canceled (and an unknown job), 3 when the timeout passed first;
// it prints the job as it is then.
func TestJobsWaitCLI(t *testing.T) {
	t.Parallel()
	p := startTandem(t, "TANDEM_STORE_PATH="+filepath.Join(t.TempDir(), "db"))
	cli := func(args ...string) result {
		return runTandem(t, t.TempDir(), []string{"TANDEM_SERVER_URL=" + p.HTTPURL, "TANDEM_ADMIN_URL=" + p.AdminURL}, args...)
	}
	enqueue := func(args ...string) string {
		t.Helper()
		r := cli(append([]string{"enqueue", "--json"}, args...)...)
		var j struct{ ID string }
		if r.code != 0 || json.Unmarshal([]byte(r.stdout), &j) != nil {
			t.Fatalf("enqueue %v: %+v", args, r)
		}
		return j.ID
	}
	ok := enqueue("sleep", "--payload", `{"ms":300,"steps":3}`)
	r := cli("jobs", "wait", ok)
	if r.code != 0 || !regexp.MustCompile(`(?m)^state +succeeded$`).MatchString(r.stdout) {
		t.Fatalf("wait for a job that succeeds: %+v", r)
	}
	long := enqueue("sleep", "--payload", `{"ms":60000}`)
	if r := cli("jobs", "wait", long, "--timeout", "300ms"); r.code != 3 || !strings.Contains(r.stderr, "still") || !strings.Contains(r.stdout, long) {
		t.Fatalf("wait past the timeout: %+v, want exit 3", r)
	}
	if r := cli("jobs", "cancel", long); r.code != 0 {
		t.Fatalf("cancel: %+v", r)
	}
	if r := cli("jobs", "wait", long, "--json"); r.code != 1 || !strings.Contains(r.stdout, `"state": "canceled"`) || !strings.Contains(r.stderr, "canceled") {
		t.Fatalf("wait for a canceled job: %+v, want exit 1", r)
	}
	if r := cli("jobs", "wait", "00000000-0000-7000-8000-000000000000"); r.code != 1 || !strings.Contains(r.stderr, "no job") {
		t.Fatalf("wait for an unknown job: %+v, want exit 1", r)
	}
	if r := cli("jobs", "wait", ok, "--timeout", "0s"); r.code != 2 {
		t.Fatalf("wait with --timeout 0: %+v, want exit 2", r)
	}
}
