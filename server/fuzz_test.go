package server

import (
	"context"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
)

// FuzzEnqueue sends arbitrary bodies through the real enqueue handler: the answer is always one of
// the documented statuses with a JSON body, and a refused job writes nothing.
func FuzzEnqueue(f *testing.F) {
	for _, seed := range []string{
		`{"kind":"noop"}`,
		`{"kind":"noop","queue":"default","payload":{"a":[1,2]},"priority":9,"delay":"1s","timeout":30,"unique_key":"u"}`,
		`{"kind":"noop","run_at":"2030-01-02T03:04:05Z","max_attempts":3}`,
		`{"kind":"noop","delay":-1}`, `{"kind":"noop","priority":"high"}`, `{"kind":"nope"}`, `{"kind":"noop","extra":1}`,
		`{"kind":"noop"} trailing`, `[]`, `null`, ``, `{`, `{"kind":"noop","payload":null}`, `{"kind":"noop","delay":"1e400s"}`,
	} {
		f.Add(seed)
	}
	b := setup(f, nil, nil)
	f.Fuzz(func(t *testing.T, body string) {
		before := countJobs(t, b)
		req := httptest.NewRequest(http.MethodPost, "/v1/jobs", strings.NewReader(body))
		req.Header.Set("Content-Type", "application/json")
		w := httptest.NewRecorder()
		b.srv.Handler().ServeHTTP(w, req)
		switch w.Code {
		case 200, 201:
			var j map[string]any
			if err := json.Unmarshal(w.Body.Bytes(), &j); err != nil || j["id"] == nil {
				t.Fatalf("%d without a job: %s", w.Code, w.Body)
			}
		case 400, 413, 503:
			var e errorBody
			if err := json.Unmarshal(w.Body.Bytes(), &e); err != nil || e.Error == "" {
				t.Fatalf("%d without a JSON error: %s", w.Code, w.Body)
			}
			if after := countJobs(t, b); after != before {
				t.Fatalf("a refused enqueue (%d) wrote a job: %d -> %d", w.Code, before, after)
			}
		default:
			t.Fatalf("status %d for %q: %s", w.Code, body, w.Body)
		}
	})
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
