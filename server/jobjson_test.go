package server

import (
	"bytes"
	"encoding/json"
	"net/http/httptest"
	"os"
	"slices"
	"testing"
	"time"

	"github.com/tandem-run/tandem/jobs"
	"go.yaml.in/yaml/v3"
)

// fullJob sets every field of a job, so that every field the API shows is on the wire.
func fullJob() *jobs.Job {
	t0 := time.Date(2026, 1, 2, 15, 4, 5, 123456789, time.UTC)
	t1, t2, t3 := t0.Add(time.Second), t0.Add(2*time.Second), t0.Add(3*time.Second)
	return &jobs.Job{ID: "019ac1d2-0000-7000-8000-000000000000", Kind: "email", Queue: "mail",
		Payload: json.RawMessage(`{"to":"a@b"}`), Priority: 7, RunAt: t0, Attempt: 2, MaxAttempts: 5,
		Timeout: 90 * time.Second, State: jobs.StateRunning,
		Errors: []jobs.AttemptError{{Attempt: 1, At: t1, Error: "boom"}},
		Result: json.RawMessage(`{"ok":true}`), UniqueKey: "u-1", CreatedAt: t0, UpdatedAt: t3,
		StartedAt: &t1, FinishedAt: &t2, LeaseUntil: &t3, AttemptedBy: []string{"web-0:7", "web-1:9"},
		Progress: &jobs.ProgressReport{Percent: 40, Message: "2 of 5", At: t2}, Periodic: "nightly", Slot: t0.Truncate(time.Hour)}
}

// TestJobJSONIsTheWireFormat pins a job's JSON byte for byte (clients were built against it) and
// checks that its fields are exactly api/openapi.yaml's Job, and an attempt error's its items.
func TestJobJSONIsTheWireFormat(t *testing.T) {
	rec := httptest.NewRecorder()
	writeJSON(rec, 200, newJobResponse(fullJob()))
	const want = `{"id":"019ac1d2-0000-7000-8000-000000000000","kind":"email","queue":"mail","payload":{"to":"a@b"},` +
		`"priority":7,"run_at":"2026-01-02T15:04:05.123456789Z","attempt":2,"max_attempts":5,"state":"running",` +
		`"errors":[{"attempt":1,"at":"2026-01-02T15:04:06.123456789Z","error":"boom"}],"result":{"ok":true},` +
		`"unique_key":"u-1","created_at":"2026-01-02T15:04:05.123456789Z","updated_at":"2026-01-02T15:04:08.123456789Z",` +
		`"started_at":"2026-01-02T15:04:06.123456789Z","finished_at":"2026-01-02T15:04:07.123456789Z",` +
		`"lease_until":"2026-01-02T15:04:08.123456789Z","timeout":"1m30s","attempted_by":["web-0:7","web-1:9"],` +
		`"progress":{"percent":40,"message":"2 of 5","at":"2026-01-02T15:04:07.123456789Z"},"periodic":"nightly",` +
		`"slot":"2026-01-02T15:00:00Z"}` + "\n"
	if got := rec.Body.String(); got != want {
		t.Errorf("job JSON changed:\n got %s\nwant %s", got, want)
	}
	// An empty job leaves out what is empty, and no more.
	rec = httptest.NewRecorder()
	writeJSON(rec, 200, newJobResponse(&jobs.Job{}))
	const empty = `{"id":"","kind":"","queue":"","priority":0,"run_at":"0001-01-01T00:00:00Z","attempt":0,"max_attempts":0,` +
		`"state":"","created_at":"0001-01-01T00:00:00Z","updated_at":"0001-01-01T00:00:00Z","timeout":"0s","attempted_by":[]}` + "\n"
	if got := rec.Body.String(); got != empty {
		t.Errorf("empty job JSON changed:\n got %s\nwant %s", got, empty)
	}

	raw, err := os.ReadFile("../api/openapi.yaml")
	if err != nil {
		t.Fatal(err)
	}
	type schema struct {
		Properties map[string]struct {
			Items struct {
				Properties map[string]any `yaml:"properties"`
			} `yaml:"items"`
		} `yaml:"properties"`
	}
	var spec struct {
		Components struct {
			Schemas map[string]schema `yaml:"schemas"`
		} `yaml:"components"`
	}
	if err := yaml.Unmarshal(raw, &spec); err != nil {
		t.Fatal(err)
	}
	var got map[string]json.RawMessage
	if err := json.NewDecoder(bytes.NewReader([]byte(want))).Decode(&got); err != nil {
		t.Fatal(err)
	}
	doc := spec.Components.Schemas["Job"].Properties
	if k, d := keys(got), keys(doc); !slices.Equal(k, d) {
		t.Errorf("a job's JSON has fields %v, api/openapi.yaml's Job documents %v", k, d)
	}
	var errs []map[string]any
	_ = json.Unmarshal(got["errors"], &errs)
	if k, d := keys(errs[0]), keys(doc["errors"].Items.Properties); !slices.Equal(k, d) {
		t.Errorf("an attempt error's JSON has fields %v, api/openapi.yaml documents %v", k, d)
	}
}

func keys[V any](m map[string]V) []string {
	out := make([]string, 0, len(m))
	for k := range m {
		out = append(out, k)
	}
	slices.Sort(out)
	return out
}
