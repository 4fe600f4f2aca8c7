package server

import (
	"bytes"
	"encoding/json"
	"io"
	"math"
	"net/http/httptest"
	"testing"
	"time"

	"github.com/tandem-run/tandem/jobs"
)

// writeJSON encodes with goccy/go-json for speed; every answer must stay byte for byte what
// encoding/json writes, since clients and the OpenAPI description were built against it. The fuzz
// target feeds the answer types odd strings (HTML, control bytes, invalid UTF-8, U+2028), raw JSON
// with spaces, any instant and zone, and any float.
func FuzzResponseEncodingMatchesStdlib(f *testing.F) {
	f.Add("noop", "default", `{"ms": 5}`, "boom", "k", int64(0), int32(0), 1.5, 3)
	f.Add("no<op>&\u2028", "q\x01\x7f", `{ "a" : [1, 2 ,"<&>"] , "b":"\u00e9" }`, "bad \xff utf8\t", "", int64(1798459200123456789), int32(3600), 1e21, 0)
	f.Add("日本", "", `"x"`, "", "ü", int64(-62135596800000000), int32(-34200), math.SmallestNonzeroFloat64, 25)
	f.Add("", "", "", "", "", int64(0), int32(0), math.Copysign(0, -1), -1)
	f.Fuzz(func(t *testing.T, kind, queue, payload, errText, unique string, nanos int64, zone int32, age float64, n int) {
		if math.IsNaN(age) || math.IsInf(age, 0) {
			return // encoding/json refuses them; tandem never produces them
		}
		at := time.Unix(0, nanos).In(time.FixedZone("z", int(zone%86400)))
		j := &jobs.Job{ID: "019ac1d2-0000-7000-8000-000000000000", Kind: kind, Queue: queue, Priority: n % 10, RunAt: at,
			Attempt: n, MaxAttempts: n * 2, Timeout: time.Duration(n) * time.Second, State: jobs.StateRetrying,
			UniqueKey: unique, CreatedAt: at.UTC(), UpdatedAt: at}
		if json.Valid([]byte(payload)) {
			j.Payload, j.Result = json.RawMessage(payload), json.RawMessage(payload)
		}
		if errText != "" {
			j.Errors = []jobs.AttemptError{{Attempt: n, At: at, Error: errText}}
			j.StartedAt, j.FinishedAt = &at, &at
		}
		values := []any{
			newJobResponse(j),
			map[string]any{"jobs": []jobResponse{newJobResponse(j), newJobResponse(&jobs.Job{})}, "created": n},
			map[string]any{"jobs": []jobResponse{}, "next_cursor": unique},
			map[string]any{"queues": []queueResponse{{Name: queue, Paused: n%2 == 0, Ready: n, OldestReadyAgeSeconds: age}}},
			errorBody{Error: errText, Fields: map[string]string{kind: errText, queue: unique}},
			map[string]any{"uptime_seconds": age, "started_at": at, "memory_limit": nil, "version": kind},
		}
		for _, v := range values {
			var want bytes.Buffer
			if err := json.NewEncoder(&want).Encode(v); err != nil {
				t.Fatalf("encoding/json: %v", err)
			}
			rec := httptest.NewRecorder()
			writeJSON(rec, 200, v)
			if got := rec.Body.String(); got != want.String() {
				t.Fatalf("writeJSON differs from encoding/json for %#v\n got %s\nwant %s", v, got, want.String())
			}
		}
	})
}

// BenchmarkWriteJSONBatch is the answer to POST /v1/jobs/batch with 100 jobs, the response
// encoding's share of a batch enqueue.
func BenchmarkWriteJSONBatch(b *testing.B) {
	now := time.Now().UTC()
	views := make([]jobResponse, 100)
	for i := range views {
		views[i] = newJobResponse(&jobs.Job{ID: "019ac1d2-0000-7000-8000-000000000000", Kind: "noop", Queue: "default",
			RunAt: now, MaxAttempts: 25, Timeout: 30 * time.Minute, State: jobs.StateReady, CreatedAt: now, UpdatedAt: now})
	}
	v := map[string]any{"jobs": views, "created": 100}
	w := discardWriter{httptest.NewRecorder()}
	b.ReportAllocs()
	for b.Loop() {
		writeJSON(w, 201, v)
	}
}

// discardWriter keeps a recorder's headers but drops the body, so the benchmark measures encoding.
type discardWriter struct{ *httptest.ResponseRecorder }

func (discardWriter) Write(p []byte) (int, error) { return io.Discard.Write(p) }
