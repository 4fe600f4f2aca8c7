package server

import (
	"context"
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
)

// enqueueSeeds are bodies for POST /v1/jobs: valid ones, and each way a body can be wrong.
var enqueueSeeds = []string{
	`{"kind":"noop"}`,
	`{"kind":"noop","queue":"default","payload":{"a":[1,2]},"priority":9,"delay":"1s","timeout":30,"unique_key":"u"}`,
	`{"kind":"noop","run_at":"2030-01-02T03:04:05Z","max_attempts":3}`,
	`{"kind":"noop","delay":-1}`, `{"kind":"noop","priority":"high"}`, `{"kind":"nope"}`, `{"kind":"noop","extra":1}`,
	`{"kind":"noop"} trailing`, `[]`, `null`, ``, `{`, `{"kind":"noop","payload":null}`, `{"kind":"noop","delay":"1e400s"}`,
	// Duplicate keys, at the top, in the payload, spelled with an escape; names in another case.
	`{"kind":"noop","kind":"fail"}`, `{"kind":"noop","payload":{"a":1,"a":2}}`, `{"kind":"noop","payload":[{"b":{"c":1,"c":1}}]}`,
	`{"k\u0069nd":"fail","kind":"noop"}`, `{"Kind":"noop"}`, `{"kind":"noop","PRIORITY":1}`,
	// null for each field that has none; null where it is allowed.
	`{"kind":null}`, `{"kind":"noop","queue":null}`, `{"kind":"noop","priority":null}`, `{"kind":"noop","run_at":null}`,
	`{"kind":"noop","delay":null}`, `{"kind":"noop","max_attempts":null}`, `{"kind":"noop","timeout":null}`,
	`{"kind":"noop","unique_key":null}`, `{"kind":"noop","payload":{"a":null}}`,
	// Explicit values that are not the default they would silently become.
	`{"kind":"noop","max_attempts":0}`, `{"kind":"noop","max_attempts":-0}`, `{"kind":"noop","max_attempts":0.0}`,
	`{"kind":"noop","timeout":0}`, `{"kind":"noop","timeout":"0s"}`, `{"kind":"noop","max_attempts":1001}`,
	// A payload near and over jobs.max_payload_bytes (the body limit of setup is the same 64 KiB).
	`{"kind":"noop","payload":"` + strings.Repeat("x", 65000) + `"}`,
}

// batchSeeds are bodies for POST /v1/jobs/batch.
var batchSeeds = []string{
	`{"jobs":[{"kind":"noop"},{"kind":"noop","priority":3}]}`, `{"jobs":[]}`, `{"jobs":null}`, `{"jobs":[null]}`,
	`{"jobs":[{"kind":"noop"},{"kind":"noop","kind":"fail"}]}`, `{"jobs":[{"kind":"noop"}],"jobs":[{"kind":"fail"}]}`,
	`{"jobs":[{"kind":"noop"},{"kind":"noop","priority":null}]}`, `{"jobs":[{"kind":"noop","payload":{"x":1,"x":2}}]}`,
	`{"jobs":[{"kind":"noop","max_attempts":0}]}`, `{"Jobs":[{"kind":"noop"}]}`, `{"jobs":{"kind":"noop"}}`,
}

// resizeSeeds are bodies for PUT /admin/pools/http.
var resizeSeeds = []string{
	`{"size":4}`, `{"backlog":16}`, `{"size":4,"backlog":16}`, `{"backlog":null}`, `{"size":null}`, `{"size":4,"size":5}`,
	`{"Size":4}`, `{"size":2.5}`, `{"size":"4"}`, `{}`, `[]`, `null`, ``, `{"size":4} {}`, `{"size":0}`, `{"backlog":-1}`,
}

// FuzzEnqueue sends arbitrary bodies through the real enqueue handler: the answer is always one of
// the documented statuses with a JSON body, a refused job writes nothing, and a body that holds a
// duplicate key, a null outside the payload or max_attempts 0 is refused.
func FuzzEnqueue(f *testing.F) {
	for _, seed := range enqueueSeeds {
		f.Add(seed)
	}
	b := setup(f, nil, nil)
	f.Fuzz(func(t *testing.T, body string) {
		checkAnswer(t, b, b.srv.Handler(), http.MethodPost, "/v1/jobs", body, func(j map[string]any) bool { return j["id"] != nil })
	})
}

// FuzzEnqueueBatch is FuzzEnqueue for POST /v1/jobs/batch.
func FuzzEnqueueBatch(f *testing.F) {
	for _, seed := range batchSeeds {
		f.Add(seed)
	}
	b := setup(f, nil, nil)
	f.Fuzz(func(t *testing.T, body string) {
		checkAnswer(t, b, b.srv.Handler(), http.MethodPost, "/v1/jobs/batch", body, func(j map[string]any) bool { return j["jobs"] != nil })
	})
}

// FuzzResize is FuzzEnqueue for PUT /admin/pools/http: a refused resize changes nothing.
func FuzzResize(f *testing.F) {
	for _, seed := range resizeSeeds {
		f.Add(seed)
	}
	b := setup(f, nil, nil)
	f.Fuzz(func(t *testing.T, body string) {
		before := b.threads.Stats()
		if ok := checkAnswer(t, b, b.srv.AdminHandler(), http.MethodPut, "/admin/pools/http", body, func(p map[string]any) bool { return p["size"] != nil }); !ok {
			if after := b.threads.Stats(); after.Size != before.Size || after.Backlog != before.Backlog {
				t.Fatalf("a refused resize changed the pool: %+v -> %+v", before, after)
			}
		}
	})
}

// checkAnswer sends body and checks the answer: a 2xx that valid accepts, or an error status
// with a JSON error (fields on 400 and 413, a request id on 5xx) that wrote no job. It reports
// whether the request was accepted.
func checkAnswer(t *testing.T, b *bundle, h http.Handler, method, path, body string, valid func(map[string]any) bool) bool {
	t.Helper()
	before := countJobs(t, b)
	req := httptest.NewRequest(method, path, strings.NewReader(body))
	req.Header.Set("Content-Type", "application/json")
	w := httptest.NewRecorder()
	h.ServeHTTP(w, req)
	switch w.Code {
	case 200, 201:
		var v map[string]any
		if err := json.Unmarshal(w.Body.Bytes(), &v); err != nil || !valid(v) {
			t.Fatalf("%d without the answer's value: %s", w.Code, w.Body)
		}
		if mustRefuse(body) {
			t.Fatalf("%d for %q, which holds a duplicate key, a null outside the payload or max_attempts 0: %s", w.Code, body, w.Body)
		}
		return true
	case 400, 413, 503:
		var e errorBody
		if err := json.Unmarshal(w.Body.Bytes(), &e); err != nil || e.Error == "" {
			t.Fatalf("%d without a JSON error: %s", w.Code, w.Body)
		}
		if w.Code != 503 && len(e.Fields) == 0 {
			t.Fatalf("%d without fields: %s", w.Code, w.Body)
		}
		if w.Code == 503 && e.RequestID == "" {
			t.Fatalf("503 without a request id: %s", w.Body)
		}
		if after := countJobs(t, b); after != before {
			t.Fatalf("a refused request (%d) wrote a job: %d -> %d", w.Code, before, after)
		}
		return false
	}
	t.Fatalf("status %d for %q: %s", w.Code, body, w.Body)
	return false
}

// mustRefuse reports whether body is JSON whose first value holds what tandem refuses whatever
// else it says: a key given twice in one object, a null outside a payload, max_attempts 0. It is
// written apart from strictjson (on encoding/json's tokens) so that each checks the other.
func mustRefuse(body string) bool {
	d := json.NewDecoder(strings.NewReader(body))
	d.UseNumber()
	type frame struct {
		keys    map[string]bool // nil for an array
		wantKey bool            // an object's next token is a key (or its end)
		key     string          // the key whose value comes next ("" in arrays)
		payload bool            // inside a payload
	}
	var stack []*frame
	refuse := false
	for {
		tok, err := d.Token()
		if errors.Is(err, io.EOF) || err != nil {
			return false // not JSON (as far as it matters): no claim
		}
		var top *frame
		if len(stack) > 0 {
			top = stack[len(stack)-1]
		}
		if top != nil && top.wantKey {
			if tok == json.Delim('}') {
				stack = stack[:len(stack)-1]
			} else { // a key
				k := tok.(string)
				refuse = refuse || top.keys[k]
				top.keys[k], top.key, top.wantKey = true, k, false
				continue
			}
		} else {
			inPayload := top != nil && (top.payload || top.key == "payload")
			switch tok {
			case json.Delim('{'):
				stack = append(stack, &frame{keys: map[string]bool{}, wantKey: true, payload: inPayload})
				continue
			case json.Delim('['):
				stack = append(stack, &frame{payload: inPayload})
				continue
			case json.Delim(']'):
				stack = stack[:len(stack)-1]
			case nil:
				refuse = refuse || !inPayload
			default:
				if n, ok := tok.(json.Number); ok && top != nil && top.key == "max_attempts" && !inPayload {
					f, _ := n.Float64()
					refuse = refuse || f == 0
				}
			}
		}
		// A value ended: the object around it waits for its next key.
		if len(stack) == 0 {
			return refuse
		}
		if top := stack[len(stack)-1]; top.keys != nil {
			top.key, top.wantKey = "", true
		}
	}
}

func TestMustRefuse(t *testing.T) {
	for body, want := range map[string]bool{
		`{"kind":"noop"}`: false, `{"kind":"noop","kind":"x"}`: true, `{"payload":{"a":{"b":1,"b":2}}}`: true,
		`{"jobs":[{"kind":"a"},{"kind":"a"}]}`: false, `{"jobs":[{"kind":"a"},{"kind":"a","kind":"b"}]}`: true,
		`{"kind":null}`: true, `{"payload":null}`: false, `{"payload":{"a":[null]}}`: false, `{"jobs":[null]}`: true,
		`{"max_attempts":0}`: true, `{"max_attempts":0.0}`: true, `{"max_attempts":2}`: false, `{"payload":{"max_attempts":0}}`: false,
		`{"a":{"x":1},"b":{"x":1}}`: false, `{`: false, `null`: true, `{"":1,"":2}`: true, `{"payload":{"":null}}`: false,
	} {
		if got := mustRefuse(body); got != want {
			t.Errorf("mustRefuse(%s) = %v, want %v", body, got, want)
		}
	}
}

func countJobs(t testing.TB, b *bundle) int {
	qs, err := b.rt.Queues(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	n := 0
	for _, q := range qs {
		for _, c := range q.Counts {
			n += c
		}
	}
	return n
}
