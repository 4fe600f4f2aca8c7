package server

import (
	"encoding/json"
	"fmt"
	"net/http"
	"strings"
	"testing"

	"github.com/tandem-run/tandem/internal/tandemtest"
)

// decodeJSON decodes a response body or fails the test.
func decodeJSON[T any](t *testing.T, what, body string) T {
	t.Helper()
	var v T
	if err := json.Unmarshal([]byte(body), &v); err != nil {
		t.Fatalf("%s: not JSON: %v: %s", what, err, body)
	}
	return v
}

// TestEnqueueBadInputNamesTheField: every kind of bad input the job API can get over HTTP is
// answered with its status, a JSON error naming the field (for 400s), and writes nothing.
func TestEnqueueBadInputNamesTheField(t *testing.T) {
	b := setup(t, nil, nil)
	batchOf := func(n int, job string) string {
		return `{"jobs":[` + strings.TrimSuffix(strings.Repeat(job+",", n), ",") + `]}`
	}
	cases := []struct {
		name, path, body string
		status           int
		field            string            // for 400s: the key expected in "fields"
		hdr              map[string]string // default jsonHdr
	}{
		{"malformed JSON", "/v1/jobs", `{"kind":"noop"`, 400, "body", nil},
		{"not an object", "/v1/jobs", `[1,2]`, 400, "body", nil},
		{"trailing data", "/v1/jobs", `{"kind":"noop"} {}`, 400, "body", nil},
		{"unknown field", "/v1/jobs", `{"kind":"noop","prio":1}`, 400, "prio", nil},
		{"wrong type", "/v1/jobs", `{"kind":"noop","priority":"high"}`, 400, "priority", nil},
		{"no kind", "/v1/jobs", `{}`, 400, "kind", nil},
		{"unknown kind", "/v1/jobs", `{"kind":"nope"}`, 400, "kind", nil},
		{"unknown queue", "/v1/jobs", `{"kind":"noop","queue":"mail"}`, 400, "queue", nil},
		{"priority too high", "/v1/jobs", `{"kind":"noop","priority":10}`, 400, "priority", nil},
		{"priority negative", "/v1/jobs", `{"kind":"noop","priority":-1}`, 400, "priority", nil},
		{"negative delay", "/v1/jobs", `{"kind":"noop","delay":"-5s"}`, 400, "delay", nil},
		{"negative delay seconds", "/v1/jobs", `{"kind":"noop","delay":-5}`, 400, "delay", nil},
		{"bad delay", "/v1/jobs", `{"kind":"noop","delay":"5x"}`, 400, "delay", nil},
		{"bad run_at", "/v1/jobs", `{"kind":"noop","run_at":"tomorrow"}`, 400, "run_at", nil},
		{"payload not JSON text", "/v1/jobs", `{"kind":"noop","payload":"x"` + "\x00" + `}`, 400, "body", nil},
		{"payload over the limit", "/v1/jobs", `{"kind":"noop","payload":"` + strings.Repeat("x", 1<<16) + `"}`, 413, "", nil},
		{"batch empty", "/v1/jobs/batch", `{"jobs":[]}`, 400, "jobs", nil},
		{"batch over the limit", "/v1/jobs/batch", batchOf(1001, `{"kind":"noop"}`), 400, "jobs", nil},
		{"batch with one bad job", "/v1/jobs/batch", `{"jobs":[{"kind":"noop"},{"kind":"noop","priority":42}]}`, 400, "jobs[1].priority", nil},
		{"batch malformed", "/v1/jobs/batch", `{"jobs":[{"kind":"noop"}`, 400, "body", nil},
		// A page on another site can make a browser POST a text/plain body: that must not enqueue.
		{"cross-site page (Sec-Fetch-Site)", "/v1/jobs", `{"kind":"noop"}`, 403, "", map[string]string{"Content-Type": "text/plain", "Sec-Fetch-Site": "cross-site"}},
		{"cross-site page (Origin)", "/v1/jobs", `{"kind":"noop"}`, 403, "", map[string]string{"Content-Type": "text/plain", "Origin": "http://evil.example"}},
	}
	for _, tc := range cases {
		hdr := tc.hdr
		if hdr == nil {
			hdr = jsonHdr
		}
		t.Run(tc.name, func(t *testing.T) {
			before := countJobs(t, b)
			code, _, body := b.do(t, "POST", b.base+tc.path, tc.body, hdr)
			if code != tc.status {
				t.Fatalf("status %d, want %d: %s", code, tc.status, body)
			}
			e := decodeJSON[errorBody](t, "error", body)
			if e.Error == "" {
				t.Fatalf("no error message: %s", body)
			}
			if tc.field != "" && e.Fields[tc.field] == "" {
				t.Fatalf("fields %v do not name %q (error %q)", e.Fields, tc.field, e.Error)
			}
			if after := countJobs(t, b); after != before {
				t.Fatalf("a refused request wrote jobs: %d -> %d", before, after)
			}
		})
	}
}

// apiJob is the part of a job the API tests look at.
type apiJob struct {
	ID, State, Queue, Kind string
	UniqueKey              string `json:"unique_key"`
}

// TestJobAPILifecycle walks the job API over HTTP: enqueue (201 and Location), a live unique key
// (200, the same job), get, newest-first pagination, cancel, retry, delete, the queue counts, and
// pause and resume on the admin listener.
func TestJobAPILifecycle(t *testing.T) {
	b := setup(t, nil, nil)
	post := func(path, body string, want int) string {
		t.Helper()
		code, hdr, out := b.do(t, "POST", b.base+path, body, jsonHdr)
		if code != want {
			t.Fatalf("POST %s %s: %d, want %d: %s", path, body, code, want, out)
		}
		if code == http.StatusCreated && path == "/v1/jobs" && hdr.Get("Location") == "" {
			t.Fatalf("201 without Location")
		}
		return out
	}
	get := func(path string, want int) string {
		t.Helper()
		code, _, out := b.do(t, "GET", b.base+path, "", nil)
		if code != want {
			t.Fatalf("GET %s: %d, want %d: %s", path, code, want, out)
		}
		return out
	}

	first := decodeJSON[apiJob](t, "enqueue", post("/v1/jobs", `{"kind":"noop","delay":"1h","unique_key":"nightly"}`, 201))
	if first.State != "scheduled" || first.UniqueKey != "nightly" {
		t.Fatalf("enqueued %+v", first)
	}
	again := decodeJSON[apiJob](t, "unique", post("/v1/jobs", `{"kind":"noop","unique_key":"nightly"}`, 200))
	if again.ID != first.ID {
		t.Fatalf("a live unique key gave a new job %s, want %s", again.ID, first.ID)
	}
	batch := decodeJSON[struct{ Jobs []apiJob }](t, "batch",
		post("/v1/jobs/batch", `{"jobs":[{"kind":"noop","delay":60},{"kind":"noop","delay":60},{"kind":"noop","delay":60}]}`, 201))
	if len(batch.Jobs) != 3 {
		t.Fatalf("batch returned %d jobs", len(batch.Jobs))
	}
	if got := decodeJSON[apiJob](t, "get", get("/v1/jobs/"+first.ID, 200)); got.ID != first.ID {
		t.Fatalf("get returned %+v", got)
	}
	get("/v1/jobs/00000000-0000-7000-8000-000000000000", 404)

	// Pages of 2, newest first, cover the four jobs once each.
	var seen []string
	cursor := ""
	for page := 0; page < 5; page++ {
		p := decodeJSON[struct {
			Jobs       []apiJob
			NextCursor string `json:"next_cursor"`
		}](t, "list", get("/v1/jobs?state=scheduled&limit=2&cursor="+cursor, 200))
		for _, j := range p.Jobs {
			seen = append(seen, j.ID)
		}
		if cursor = p.NextCursor; cursor == "" {
			break
		}
	}
	want := []string{batch.Jobs[2].ID, batch.Jobs[1].ID, batch.Jobs[0].ID, first.ID}
	if fmt.Sprint(seen) != fmt.Sprint(want) {
		t.Fatalf("paged list %v, want newest first %v", seen, want)
	}
	for _, q := range []string{"state=bogus", "limit=0", "limit=x", "cursor=zzz"} {
		e := decodeJSON[errorBody](t, "bad list", get("/v1/jobs?"+q, 400))
		if field := strings.SplitN(q, "=", 2)[0]; e.Fields[field] == "" {
			t.Errorf("GET /v1/jobs?%s: fields %v do not name %s", q, e.Fields, field)
		}
	}

	// Cancel, retry, delete.
	if j := decodeJSON[apiJob](t, "cancel", post("/v1/jobs/"+first.ID+"/cancel", ``, 200)); j.State != "canceled" {
		t.Fatalf("cancel: %+v", j)
	}
	post("/v1/jobs/"+first.ID+"/cancel", ``, 409)
	if j := decodeJSON[apiJob](t, "retry", post("/v1/jobs/"+first.ID+"/retry", ``, 200)); j.State != "ready" {
		t.Fatalf("retry: %+v", j)
	}
	post("/v1/jobs/"+batch.Jobs[0].ID+"/retry", ``, 409) // scheduled: not retryable
	if code, _, out := b.do(t, "DELETE", b.base+"/v1/jobs/"+batch.Jobs[0].ID, "", nil); code != 409 {
		t.Fatalf("delete of a waiting job: %d %s", code, out)
	}
	tandemtest.WaitFor(t, "the retried job to succeed", func() bool {
		return decodeJSON[apiJob](t, "get", get("/v1/jobs/"+first.ID, 200)).State == "succeeded"
	})
	if code, _, out := b.do(t, "DELETE", b.base+"/v1/jobs/"+first.ID, "", nil); code != 204 {
		t.Fatalf("delete of a finished job: %d %s", code, out)
	}
	get("/v1/jobs/"+first.ID, 404)

	// Queue counts, then pause and resume (admin listener).
	type queue struct {
		Name                 string
		Paused               bool
		Scheduled, Succeeded int
	}
	queues := func() queue {
		qs := decodeJSON[struct{ Queues []queue }](t, "queues", get("/v1/queues", 200))
		if len(qs.Queues) != 1 || qs.Queues[0].Name != "default" {
			t.Fatalf("queues %+v", qs)
		}
		return qs.Queues[0]
	}
	if q := queues(); q.Scheduled != 3 || q.Paused {
		t.Fatalf("queue %+v, want 3 scheduled, not paused", q)
	}
	for _, c := range []struct {
		path   string
		paused bool
	}{{"/admin/queues/default/pause", true}, {"/admin/queues/default/resume", false}} {
		if code, _, out := b.do(t, "POST", b.adminURL+c.path, "", nil); code != 200 {
			t.Fatalf("POST %s: %d %s", c.path, code, out)
		}
		if q := queues(); q.Paused != c.paused {
			t.Fatalf("after %s: %+v", c.path, q)
		}
	}
	if code, _, _ := b.do(t, "POST", b.adminURL+"/admin/queues/nosuch/pause", "", nil); code != 404 && code != 400 {
		t.Fatalf("pausing an unknown queue: %d", code)
	}
}
