package server

import (
	"context"
	"errors"
	"io"
	"log/slog"
	"net/http"
	"net/url"
	"strings"
	"testing"
)

// TestBodiesSayOneThing: a body that could be read two ways (a key given twice, at any depth; a
// null for a field that has no null; a name in another case; an explicit value that is not the
// default it would silently become) is a 400 naming the field, on every endpoint that takes a
// body, and writes nothing.
func TestBodiesSayOneThing(t *testing.T) {
	b := setup(t, nil, nil)
	cases := []struct {
		name, path, body string
		field, msg       string
	}{
		{"duplicate kind", "/v1/jobs", `{"kind":"noop","kind":"sleep"}`, "kind", "duplicate key"},
		{"duplicate in the payload", "/v1/jobs", `{"kind":"noop","payload":{"a":{"b":1,"b":2}}}`, "payload.a.b", "duplicate key"},
		{"duplicate in a batch item", "/v1/jobs/batch", `{"jobs":[{"kind":"noop"},{"kind":"noop","kind":"fail"}]}`, "jobs[1].kind", "duplicate key"},
		{"duplicate jobs", "/v1/jobs/batch", `{"jobs":[{"kind":"noop"}],"jobs":[{"kind":"fail"}]}`, "jobs", "duplicate key"},
		{"name in another case", "/v1/jobs", `{"Kind":"noop"}`, "Kind", "unknown field"},
		{"both cases of a name", "/v1/jobs", `{"kind":"noop","KIND":"fail"}`, "KIND", "unknown field"},
		{"null kind", "/v1/jobs", `{"kind":null}`, "kind", "must not be null"},
		{"null queue", "/v1/jobs", `{"kind":"noop","queue":null}`, "queue", "must not be null"},
		{"null priority", "/v1/jobs", `{"kind":"noop","priority":null}`, "priority", "must not be null"},
		{"null run_at", "/v1/jobs", `{"kind":"noop","run_at":null}`, "run_at", "must not be null"},
		{"null delay", "/v1/jobs", `{"kind":"noop","delay":null}`, "delay", "must not be null"},
		{"null max_attempts", "/v1/jobs", `{"kind":"noop","max_attempts":null}`, "max_attempts", "must not be null"},
		{"null timeout", "/v1/jobs", `{"kind":"noop","timeout":null}`, "timeout", "must not be null"},
		{"null unique_key", "/v1/jobs", `{"kind":"noop","unique_key":null}`, "unique_key", "must not be null"},
		{"null body", "/v1/jobs", `null`, "body", "must not be null"},
		{"null jobs", "/v1/jobs/batch", `{"jobs":null}`, "jobs", "must not be null"},
		{"null batch item", "/v1/jobs/batch", `{"jobs":[{"kind":"noop"},null]}`, "jobs[1]", "must not be null"},
		{"null in a batch item", "/v1/jobs/batch", `{"jobs":[{"kind":"noop"},{"kind":"noop","priority":null}]}`, "jobs[1].priority", "must not be null"},
		{"max_attempts 0", "/v1/jobs", `{"kind":"noop","max_attempts":0}`, "max_attempts", "must be from 1 to 1000, got 0"},
		{"max_attempts 0 in a batch", "/v1/jobs/batch", `{"jobs":[{"kind":"noop"},{"kind":"noop","max_attempts":0}]}`, "jobs[1].max_attempts", "must be from 1 to 1000, got 0"},
		{"timeout 0", "/v1/jobs", `{"kind":"noop","timeout":0}`, "timeout", "must be above 0 and at most 24h"},
		{"timeout 0s", "/v1/jobs", `{"kind":"noop","timeout":"0s"}`, "timeout", "must be above 0 and at most 24h"},
		{"wrong type in a batch item", "/v1/jobs/batch", `{"jobs":[{"kind":"noop"},{"kind":"noop","priority":"high"}]}`, "jobs[1].priority", "must be an integer, got string"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			before := countJobs(t, b)
			code, _, body := b.do(t, "POST", b.base+tc.path, tc.body, jsonHdr)
			if code != http.StatusBadRequest {
				t.Fatalf("status %d, want 400: %s", code, body)
			}
			if e := decodeJSON[errorBody](t, "error", body); e.Fields[tc.field] != tc.msg || !strings.Contains(e.Error, tc.msg) {
				t.Fatalf("fields %v, error %q; want %q: %q", e.Fields, e.Error, tc.field, tc.msg)
			}
			if after := countJobs(t, b); after != before {
				t.Fatalf("a refused request wrote jobs: %d -> %d", before, after)
			}
		})
	}

	// What stays accepted: payload null is {}, as when left out; max_attempts left out is the
	// default, 1 is 1.
	for body, attempts := range map[string]int{
		`{"kind":"noop","delay":"1h","payload":null}`:                                   25,
		`{"kind":"noop","delay":"1h","max_attempts":1,"payload":{"a":null,"b":[null]}}`: 1,
	} {
		code, _, out := b.do(t, "POST", b.base+"/v1/jobs", body, jsonHdr)
		j := decodeJSON[struct {
			Payload     map[string]any
			MaxAttempts int `json:"max_attempts"`
		}](t, "job", out)
		if code != http.StatusCreated || j.MaxAttempts != attempts || j.Payload == nil {
			t.Errorf("%s: %d %s, want 201 with max_attempts %d and an object payload", body, code, out, attempts)
		}
	}
}

// TestResizeSaysOneThing: PUT /admin/pools/{name} refuses a null, a duplicate and an unknown
// field with a 400 naming it, and changes nothing.
func TestResizeSaysOneThing(t *testing.T) {
	b := setup(t, nil, nil)
	before := b.threads.Stats()
	for _, tc := range []struct{ body, field, msg string }{
		{`{"backlog":null}`, "backlog", "must not be null"},
		{`{"size":null}`, "size", "must not be null"},
		{`{"size":2,"size":3}`, "size", "duplicate key"},
		{`{"backlog":8,"Backlog":9}`, "Backlog", "unknown field (size, backlog)"},
		{`{"size":2.5}`, "size", `must be a whole number or "auto", got 2.5`},
		{`{"size":"eight"}`, "size", `must be a whole number or "auto", got "eight"`},
		{`{"size":[8]}`, "size", `must be a whole number or "auto", got [8]`},
		{`{"size":0}`, "size", `must be between 1 and 4096, or "auto", got 0`},
		{`{"size":"auto"}`, "size", "auto is not available here: give a whole number"}, // no AutoSize
		{`{}`, "size", "give size and/or backlog"},
		{`[8]`, "body", `must be an object, got array: send a JSON object like {"size": 8}`},
	} {
		code, _, out := b.do(t, "PUT", b.adminURL+"/admin/pools/http", tc.body, jsonHdr)
		if e := decodeJSON[errorBody](t, "error", out); code != http.StatusBadRequest || e.Fields[tc.field] != tc.msg {
			t.Errorf("%s: %d %s, want 400 with %s: %q", tc.body, code, out, tc.field, tc.msg)
		}
	}
	if after := b.threads.Stats(); after.Size != before.Size || after.Backlog != before.Backlog {
		t.Fatalf("refused resizes changed the pool: %+v -> %+v", before, after)
	}
	if code, _, out := b.do(t, "PUT", b.adminURL+"/admin/pools/http", `{"backlog":0}`, jsonHdr); code != http.StatusOK || b.threads.Stats().Backlog != 0 {
		t.Fatalf("backlog 0, said outright: %d %s", code, out)
	}
}

// TestResizeAuto: {"size": "auto"} goes to Options.AutoSize with the request's audit attributes,
// and answers with the pool as it left it; an error of AutoSize is a 400 naming size.
func TestResizeAuto(t *testing.T) {
	var asked []string
	var attrs int
	b := setup(t, func(o *Options) {
		o.AutoSize = func(_ context.Context, name string, a ...slog.Attr) (int, error) {
			asked = append(asked, name)
			attrs = len(a)
			if name == "jobs" {
				return 0, errors.New("pool jobs is autoscaled")
			}
			return o.Threads.Tune(3)
		}
	}, nil)
	code, _, out := b.do(t, "PUT", b.adminURL+"/admin/pools/http", `{"size":"auto","backlog":7}`, jsonHdr)
	if code != http.StatusOK || b.threads.Size() != 3 || b.threads.Stats().Backlog != 7 || len(asked) != 1 || asked[0] != "http" || attrs == 0 {
		t.Fatalf("auto: %d %s, size %d, asked %v with %d attrs", code, out, b.threads.Size(), asked, attrs)
	}
	if p := decodeJSON[struct{ Size int }](t, "pool", out); p.Size != 3 {
		t.Fatalf("answer %s, want the pool at size 3", out)
	}
	code, _, out = b.do(t, "PUT", b.adminURL+"/admin/pools/jobs", `{"size":"auto"}`, jsonHdr)
	if e := decodeJSON[errorBody](t, "error", out); code != http.StatusBadRequest || !strings.Contains(e.Fields["size"], "autoscaled") {
		t.Fatalf("auto refused: %d %s, want 400 naming size", code, out)
	}
}

// TestUnknownQueryParameters: on both listeners, a query parameter an endpoint does not take, or
// one given twice, is a 400 naming it; the parameters it takes still work.
func TestUnknownQueryParameters(t *testing.T) {
	b := setup(t, nil, nil)
	cases := []struct {
		method, url string
		want        int
		field       string // for 400s
	}{
		{"GET", b.base + "/v1/jobs?stat=dead", 400, "stat"},
		{"GET", b.base + "/v1/jobs?State=dead", 400, "State"},
		{"GET", b.base + "/v1/jobs?state=dead&state=ready", 400, "state"},
		{"GET", b.base + "/v1/jobs?limit=5&x=1&y=2", 400, "y"},
		{"GET", b.base + "/v1/jobs?a=%zz", 400, "query"},
		{"GET", b.base + "/v1/jobs?state=dead&limit=5&queue=default&kind=noop&cursor=", 200, ""},
		{"GET", b.base + "/v1/queues?queue=default", 400, "queue"},
		{"GET", b.base + "/v1/queues", 200, ""},
		{"GET", b.base + "/v1/jobs/00000000-0000-7000-8000-000000000000?verbose=1", 400, "verbose"},
		{"POST", b.base + "/v1/jobs?queue=default", 400, "queue"},
		{"POST", b.base + "/v1/jobs/batch?dry_run=1", 400, "dry_run"},
		{"GET", b.base + "/demo/io?ms=1&sleep=1", 400, "sleep"},
		{"GET", b.base + "/demo/io?ms=1", 200, ""},
		{"GET", b.base + "/demo/cpu?m=1", 400, "m"},
		{"GET", b.base + "/demo/hello?x", 400, "x"},
		{"GET", b.adminURL + "/admin/api/v1/jobs?stat=dead", 400, "stat"},
		{"GET", b.adminURL + "/admin/api/v1/jobs?state=dead", 200, ""},
		{"GET", b.adminURL + "/admin/api/v1/queues?x=1", 400, "x"},
		{"GET", b.adminURL + "/admin/pools?name=http", 400, "name"},
		{"GET", b.adminURL + "/admin/runtime?x=1", 400, "x"},
		{"PUT", b.adminURL + "/admin/pools/http?size=3", 400, "size"},
		{"DELETE", b.adminURL + "/admin/pools/http/pin?x=1", 400, "x"},
		{"POST", b.adminURL + "/admin/queues/default/pause?x=1", 400, "x"},
	}
	for _, tc := range cases {
		body := ""
		if tc.method == "POST" || tc.method == "PUT" {
			body = `{"kind":"noop"}`
			if strings.Contains(tc.url, "batch") {
				body = `{"jobs":[{"kind":"noop"}]}`
			}
		}
		code, _, out := b.do(t, tc.method, tc.url, body, jsonHdr)
		if code != tc.want {
			t.Errorf("%s %s: %d %s, want %d", tc.method, tc.url, code, out, tc.want)
			continue
		}
		if tc.field != "" {
			if e := decodeJSON[errorBody](t, "error", out); e.Fields[tc.field] == "" {
				u, _ := url.Parse(tc.url)
				t.Errorf("%s %s: fields %v do not name %q", tc.method, u.RequestURI(), e.Fields, tc.field)
			}
		}
	}
	if n := countJobs(t, b); n != 0 {
		t.Fatalf("refused requests wrote %d jobs", n)
	}
	if paused := decodeJSON[struct{ Queues []struct{ Paused bool } }](t, "queues", func() string {
		_, _, out := b.do(t, "GET", b.base+"/v1/queues", "", nil)
		return out
	}()); paused.Queues[0].Paused {
		t.Fatal("a refused pause paused the queue")
	}
}

// TestTooLargeNamesTheLimit: a payload over jobs.max_payload_bytes is a 413 naming the payload's
// field (jobs[i].payload in a batch), its size and the limit; a body over the body limit is a 413
// naming the body and that limit, whether or not the client said its length up front.
func TestTooLargeNamesTheLimit(t *testing.T) {
	b := setup(t, func(o *Options) { o.MaxBodyBytes = 1 << 20 }, nil)
	payload := `{"pad":"` + strings.Repeat("x", 70000) + `"}` // 70010 bytes, over the 65536 default
	cases := []struct {
		name, path, body string
		chunked          bool // no Content-Length: the limit is met while reading
		field, msg       string
	}{
		{"payload", "/v1/jobs", `{"kind":"noop","payload":` + payload + `}`, false,
			"payload", "must be at most 65536 bytes, got 70010"},
		{"payload in a batch", "/v1/jobs/batch", `{"jobs":[{"kind":"noop"},{"kind":"noop","payload":` + payload + `}]}`, false,
			"jobs[1].payload", "must be at most 65536 bytes, got 70010"},
		{"body", "/v1/jobs", `{"kind":"noop","payload":"` + strings.Repeat("x", 1<<20) + `"}`, false,
			"body", "must be at most 1048576 bytes"},
		{"body without a length", "/v1/jobs", `{"kind":"noop","payload":"` + strings.Repeat("x", 1<<20) + `"}`, true,
			"body", "must be at most 1048576 bytes"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			var rd io.Reader = strings.NewReader(tc.body)
			if tc.chunked {
				rd = io.MultiReader(rd) // hides the length from the client
			}
			req, _ := http.NewRequest("POST", b.base+tc.path, rd)
			req.Header.Set("Content-Type", "application/json")
			resp, err := b.client.Do(req)
			if err != nil {
				t.Fatal(err)
			}
			defer resp.Body.Close()
			raw, _ := io.ReadAll(resp.Body)
			e := decodeJSON[errorBody](t, "error", string(raw))
			if resp.StatusCode != http.StatusRequestEntityTooLarge || e.Fields[tc.field] != tc.msg || !strings.Contains(e.Error, tc.msg) {
				t.Fatalf("%d %s; want 413 with %s: %q", resp.StatusCode, raw, tc.field, tc.msg)
			}
			if strings.Contains(e.Error, "jobs[0]") && tc.path == "/v1/jobs" {
				t.Fatalf("a single job's error names a batch item: %q", e.Error)
			}
		})
	}
	if n := countJobs(t, b); n != 0 {
		t.Fatalf("refused requests wrote %d jobs", n)
	}
}
