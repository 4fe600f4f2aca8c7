package e2e

import (
	"encoding/json"
	"fmt"
	"path/filepath"
	"strings"
	"testing"

	"github.com/tandem-run/tandem/internal/tandemtest"
)

// TestJobsBulkCLI drives 'tandem jobs bulk' against a running tandem: without --yes and with no
// terminal it refuses and changes nothing, --dry-run counts, --yes retries the dead jobs (which
// run again) and deletes the finished ones, each change audited in the server's log.
func TestJobsBulkCLI(t *testing.T) {
	t.Parallel()
	p := startTandem(t, "TANDEM_STORE_PATH="+filepath.Join(t.TempDir(), "db"))
	cli := func(args ...string) result {
		return runTandem(t, t.TempDir(), []string{"TANDEM_SERVER_URL=" + p.HTTPURL, "TANDEM_ADMIN_URL=" + p.AdminURL}, args...)
	}
	// An http job to a path tandem does not serve fails for good (404): dead at its first attempt.
	var ids []string
	for range 3 {
		r := cli("enqueue", "http", "--payload", fmt.Sprintf(`{"url":%q}`, p.HTTPURL+"/nope"), "--queue", "default", "--json")
		var j struct{ ID string }
		if r.code != 0 || json.Unmarshal([]byte(r.stdout), &j) != nil {
			t.Fatalf("enqueue: %+v", r)
		}
		ids = append(ids, j.ID)
	}
	errorsOf := func(id string) (state string, n int) {
		var j struct {
			State  string
			Errors []any
		}
		r := cli("jobs", "show", id, "--json")
		if r.code != 0 || json.Unmarshal([]byte(r.stdout), &j) != nil {
			t.Fatalf("show %s: %+v", id, r)
		}
		return j.State, len(j.Errors)
	}
	for _, id := range ids {
		tandemtest.WaitFor(t, "the http job to die", func() bool { st, _ := errorsOf(id); return st == "dead" })
	}

	r := cli("jobs", "bulk", "retry", "--state", "dead")
	if r.code != 2 || !strings.Contains(r.stderr, "3 jobs would be retried (state=dead); stdin is not a terminal to confirm on: pass --yes") {
		t.Fatalf("bulk retry without --yes: %+v", r)
	}
	if r := cli("jobs", "bulk", "retry", "--state", "dead", "--dry-run"); r.code != 0 || r.stdout != "3 jobs would be retried (state=dead)\n" {
		t.Fatalf("bulk retry --dry-run: %+v", r)
	}
	if st, n := errorsOf(ids[0]); st != "dead" || n != 1 {
		t.Fatalf("after a refused and a dry bulk: %s with %d errors", st, n)
	}
	if strings.Contains(p.Logs(), "admin bulk action") {
		t.Fatal("a refused or dry bulk action was audited as a change")
	}
	if r := cli("jobs", "bulk", "retry", "--state", "dead", "--created-before", "0s", "--yes"); r.code != 0 || r.stdout != "retried 3 jobs of 3 matched\n" {
		t.Fatalf("bulk retry --yes: %+v", r)
	}
	for _, id := range ids { // it ran again, and died again
		tandemtest.WaitFor(t, "the retried job to die again", func() bool { st, n := errorsOf(id); return st == "dead" && n == 2 })
	}
	if !strings.Contains(p.Logs(), `"msg":"admin bulk action","action":"retry"`) {
		t.Fatalf("no audit line for the bulk retry:\n%s", p.Logs())
	}
	if r := cli("jobs", "bulk", "purge", "--yes"); r.code != 1 || !strings.Contains(r.stderr, "filter.queue: purge needs a queue") {
		t.Fatalf("bulk purge without a queue: %+v", r)
	}
	var tot struct{ Matched, Changed int }
	r = cli("jobs", "bulk", "delete", "--yes", "--json")
	if r.code != 0 || json.Unmarshal([]byte(r.stdout), &tot) != nil || tot.Matched != 3 || tot.Changed != 3 {
		t.Fatalf("bulk delete --yes --json: %+v", r)
	}
	if r := cli("jobs", "show", ids[0]); r.code != 1 || !strings.Contains(r.stderr, "404") {
		t.Fatalf("a bulk-deleted job: %+v", r)
	}
}
