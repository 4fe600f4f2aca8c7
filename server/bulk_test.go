package server

import (
	"context"
	"encoding/json"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/tandem-run/tandem/internal/tandemtest"
	"github.com/tandem-run/tandem/jobs"
)

// bulkAnswer is the JSON of POST /admin/jobs/bulk.
type bulkAnswer struct {
	Action                    string
	DryRun                    bool `json:"dry_run"`
	Matched, Changed, Skipped int
	NextCursor                string `json:"next_cursor"`
}

// deadJobs enqueues n jobs of the kind that always fails and waits until they are dead.
func deadJobs(t *testing.T, b *bundle, n int) []string {
	t.Helper()
	var ids []string
	for range n {
		j, _, err := b.rt.Enqueue(context.Background(), jobs.EnqueueParams{Kind: "fail"})
		if err != nil {
			t.Fatal(err)
		}
		ids = append(ids, j.ID)
	}
	for _, id := range ids {
		tandemtest.WaitFor(t, "a failing job to die", func() bool {
			j, err := b.rt.Get(context.Background(), id)
			return err == nil && j.State == jobs.StateDead
		})
	}
	return ids
}

// TestBulkAPI: POST /admin/jobs/bulk counts with dry_run and changes nothing, then retries and
// deletes what its filter selects, answering the counts, with one audit line per change; the job
// list takes the same created range.
func TestBulkAPI(t *testing.T) {
	b := setup(t, nil, nil)
	post := func(body string, want int) string {
		t.Helper()
		code, _, out := b.do(t, "POST", b.adminURL+"/admin/jobs/bulk", body, jsonHdr)
		if code != want {
			t.Fatalf("POST /admin/jobs/bulk %s: %d, want %d: %s", body, code, want, out)
		}
		return out
	}
	before := time.Now().UTC()
	dead := deadJobs(t, b, 5)
	ok, _, _ := b.rt.Enqueue(context.Background(), jobs.EnqueueParams{Kind: "noop"})
	tandemtest.WaitFor(t, "the noop job to succeed", func() bool {
		j, err := b.rt.Get(context.Background(), ok.ID)
		return err == nil && j.State == jobs.StateSucceeded
	})

	got := decodeJSON[bulkAnswer](t, "dry run", post(`{"action":"retry","filter":{"state":"dead"},"dry_run":true}`, 200))
	if want := (bulkAnswer{Action: "retry", DryRun: true, Matched: 5}); got != want {
		t.Fatalf("dry run = %+v, want %+v", got, want)
	}
	if strings.Contains(b.logs.String(), "admin bulk action") {
		t.Fatalf("a dry run was audited as a change:\n%s", b.logs.String())
	}
	got = decodeJSON[bulkAnswer](t, "retry", post(`{"action":"retry","filter":{"queue":"default","created_after":"`+before.Format(time.RFC3339Nano)+`"}}`, 200))
	if want := (bulkAnswer{Action: "retry", Matched: 5, Changed: 5}); got != want {
		t.Fatalf("retry = %+v, want %+v", got, want)
	}
	var audit map[string]any
	for _, line := range strings.Split(b.logs.String(), "\n") {
		if strings.Contains(line, `"admin bulk action"`) {
			if err := json.Unmarshal([]byte(line), &audit); err != nil {
				t.Fatal(err)
			}
		}
	}
	for k, v := range map[string]any{"action": "retry", "queue": "default", "matched": 5.0, "changed": 5.0, "skipped": 0.0} {
		if audit[k] != v {
			t.Errorf("audit line %v: %s = %v, want %v", audit, k, audit[k], v)
		}
	}
	if r, _ := audit["remote"].(string); !strings.HasPrefix(r, "127.0.0.1:") {
		t.Errorf("audit line %v does not say who (remote)", audit)
	}
	for _, id := range dead { // the kind fails again: dead, with both attempts' errors
		tandemtest.WaitFor(t, "a retried job to die again", func() bool {
			j, err := b.rt.Get(context.Background(), id)
			return err == nil && j.State == jobs.StateDead && len(j.Errors) == 2
		})
	}

	// The job list and the bulk take the same created range.
	future := time.Now().Add(time.Hour).UTC().Format(time.RFC3339)
	code, _, out := b.do(t, "GET", b.adminURL+"/admin/api/v1/jobs?created_after="+future, "", nil)
	if list := decodeJSON[struct{ Jobs []apiJob }](t, "list", out); code != 200 || len(list.Jobs) != 0 {
		t.Fatalf("GET jobs created after %s: %d %s", future, code, out)
	}
	code, _, out = b.do(t, "GET", b.adminURL+"/admin/api/v1/jobs?created_before="+future+"&state=dead", "", nil)
	if list := decodeJSON[struct{ Jobs []apiJob }](t, "list", out); code != 200 || len(list.Jobs) != 5 {
		t.Fatalf("GET dead jobs created before %s: %d %s", future, code, out)
	}
	got = decodeJSON[bulkAnswer](t, "delete none", post(`{"action":"delete","filter":{"created_after":"`+future+`"}}`, 200))
	if got.Matched != 0 || got.Changed != 0 {
		t.Fatalf("delete of jobs created after %s = %+v", future, got)
	}
	got = decodeJSON[bulkAnswer](t, "delete", post(`{"action":"delete"}`, 200))
	if want := (bulkAnswer{Action: "delete", Matched: 6, Changed: 6}); got != want {
		t.Fatalf("delete of every finished job = %+v, want %+v", got, want)
	}
	if _, err := b.rt.Get(context.Background(), dead[0]); err == nil {
		t.Fatal("a deleted job is still there")
	}
}

// TestBulkAPIRefuses: a bad bulk request is a 400 (415 without JSON) naming the field, and
// changes nothing; so is a bad created time on the job list.
func TestBulkAPIRefuses(t *testing.T) {
	b := setup(t, nil, nil)
	dead := deadJobs(t, b, 1)
	for _, c := range []struct{ body, field string }{
		{`{"action":"explode"}`, "action"},
		{`{}`, "action"},
		{`{"action":"purge"}`, "filter.queue"},
		{`{"action":"retry","filter":{"state":"ready"}}`, "filter.state"},
		{`{"action":"retry","filter":{"state":"bogus"}}`, "filter.state"},
		{`{"action":"retry","filter":{"created_after":"yesterday"}}`, "filter.created_after"},
		{`{"action":"retry","filter":{"created_before":"2026-13-01T00:00:00Z"}}`, "filter.created_before"},
		{`{"action":"retry","filter":{"created_after":"2026-02-01T00:00:00Z","created_before":"2026-01-01T00:00:00Z"}}`, "filter.created_before"},
		{`{"action":"retry","filter":{"sate":"dead"}}`, "filter.sate"},
		{`{"action":"retry","cursor":"zz"}`, "cursor"},
		{`[1]`, "body"},
	} {
		code, _, out := b.do(t, "POST", b.adminURL+"/admin/jobs/bulk", c.body, jsonHdr)
		e := decodeJSON[errorBody](t, c.body, out)
		if code != http.StatusBadRequest || e.Fields[c.field] == "" || e.Error == "" {
			t.Errorf("POST %s: %d %s; want 400 naming %s", c.body, code, out, c.field)
		}
	}
	if code, _, out := b.do(t, "POST", b.adminURL+"/admin/jobs/bulk", `{"action":"retry"}`, map[string]string{"Content-Type": "text/plain"}); code != http.StatusUnsupportedMediaType {
		t.Errorf("POST without JSON: %d %s", code, out)
	}
	for _, q := range []string{"created_after=soon", "created_before=1"} {
		code, _, out := b.do(t, "GET", b.base+"/v1/jobs?"+q, "", nil)
		if e := decodeJSON[errorBody](t, q, out); code != 400 || e.Fields[strings.SplitN(q, "=", 2)[0]] == "" {
			t.Errorf("GET /v1/jobs?%s: %d %s", q, code, out)
		}
	}
	if j, _ := b.rt.Get(context.Background(), dead[0]); j.State != jobs.StateDead {
		t.Fatalf("a refused bulk changed a job: %s", j.State)
	}
	// Bulk actions are the operator's: the main listener has none.
	if code, _, _ := b.do(t, "POST", b.base+"/admin/jobs/bulk", `{"action":"retry"}`, jsonHdr); code != http.StatusNotFound {
		t.Errorf("POST /admin/jobs/bulk on the main listener: %d, want 404", code)
	}
}

// TestBulkAPINeedsToken: with an admin token, a bulk action without it is 401.
func TestBulkAPINeedsToken(t *testing.T) {
	b := setup(t, func(o *Options) { o.AdminToken = "s3cret" }, nil)
	if code, _, out := b.do(t, "POST", b.adminURL+"/admin/jobs/bulk", `{"action":"delete"}`, jsonHdr); code != http.StatusUnauthorized {
		t.Fatalf("bulk without the token: %d %s", code, out)
	}
	hdr := map[string]string{"Content-Type": "application/json", "Authorization": "Bearer s3cret"}
	if code, _, out := b.do(t, "POST", b.adminURL+"/admin/jobs/bulk", `{"action":"delete","dry_run":true}`, hdr); code != http.StatusOK {
		t.Fatalf("bulk with the token: %d %s", code, out)
	}
}
