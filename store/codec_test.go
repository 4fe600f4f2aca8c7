package store

import (
	"encoding/json"
	"fmt"
	"reflect"
	"testing"
	"time"
	"unsafe"

	"github.com/tandem-run/tandem/jobs"
)

func sampleJob() *jobs.Job {
	t0 := time.Date(2026, 11, 24, 1, 2, 3, 4, time.UTC)
	t1, t2 := t0.Add(time.Second), t0.Add(time.Minute)
	return &jobs.Job{
		ID: "01a20fb4-9ac1-75d3-aff7-22b7b8850f9c", Kind: "http", Queue: "mail", Payload: json.RawMessage(`{"url":"http://x"}`),
		Priority: 7, RunAt: t0, Attempt: 2, MaxAttempts: 25, Timeout: 90 * time.Second, State: jobs.StateRetrying,
		Errors: []jobs.AttemptError{{Attempt: 1, At: t0, Error: "boom"}, {Attempt: 2, At: t1, Error: ""}},
		Result: json.RawMessage(`{"ok":true}`), UniqueKey: "u-1", CreatedAt: t0, UpdatedAt: t1, StartedAt: &t1, LeaseUntil: &t2,
	}
}

func TestCodecRoundTrip(t *testing.T) {
	withBy := sampleJob()
	withBy.AttemptedBy = []string{"a:1", "b:2"}
	periodic := sampleJob()
	periodic.Periodic, periodic.Slot = "nightly", time.Date(2026, 12, 2, 3, 0, 0, 0, time.UTC)
	progress := sampleJob()
	progress.AttemptedBy = []string{"a:1"}
	progress.Progress = &jobs.ProgressReport{Percent: 40, Message: "step 2 of 5", At: time.Date(2026, 12, 2, 3, 0, 1, 0, time.UTC)}
	bare := &jobs.Job{ID: "y", State: jobs.StateRunning, Progress: &jobs.ProgressReport{}}
	for _, j := range []*jobs.Job{sampleJob(), {ID: "x", State: jobs.StateReady}, withBy, periodic, progress, bare} {
		got, err := decodeJob(encodeV2(j))
		if err != nil {
			t.Fatal(err)
		}
		if !reflect.DeepEqual(got, j) {
			t.Fatalf("round trip:\n got %+v\nwant %+v", got, j)
		}
	}
	// Version-1 (JSON) records written by earlier builds still read: this is sampleJob as they
	// wrote it.
	const v1 = `{"id":"01a20fb4-9ac1-75d3-aff7-22b7b8850f9c","kind":"http","queue":"mail","payload":{"url":"http://x"},` +
		`"priority":7,"run_at":"2026-11-24T01:02:03.000000004Z","attempt":2,"max_attempts":25,"timeout":90000000000,` +
		`"state":"retrying","errors":[{"attempt":1,"at":"2026-11-24T01:02:03.000000004Z","error":"boom"},` +
		`{"attempt":2,"at":"2026-11-24T01:02:04.000000004Z","error":""}],"result":{"ok":true},"unique_key":"u-1",` +
		`"created_at":"2026-11-24T01:02:03.000000004Z","updated_at":"2026-11-24T01:02:04.000000004Z",` +
		`"started_at":"2026-11-24T01:02:04.000000004Z","lease_until":"2026-11-24T01:03:03.000000004Z"}`
	got, err := decodeJob(append([]byte{recordV1}, v1...))
	if err != nil || !reflect.DeepEqual(got, sampleJob()) {
		t.Fatalf("v1:\n got %+v %v\nwant %+v", got, err, sampleJob())
	}
}

// FuzzDecodeRecord: no input makes the decoder panic, and whatever decodes re-encodes to the same bytes.
func FuzzDecodeRecord(f *testing.F) {
	f.Add(encodeV2(sampleJob()))
	f.Add(encodeV2(&jobs.Job{}))
	f.Add(encodeV2(&jobs.Job{Periodic: "p", AttemptedBy: []string{"n"}, Progress: &jobs.ProgressReport{Percent: 5, Message: "m"}}))
	f.Add([]byte{recordV2})
	f.Add([]byte{recordV1, '{', '}'})
	f.Fuzz(func(t *testing.T, b []byte) {
		j, err := decodeJob(b)
		if err != nil || len(b) == 0 || b[0] != recordV2 {
			return
		}
		again, err := decodeJob(encodeV2(j))
		if err != nil || !reflect.DeepEqual(again, j) {
			t.Fatalf("re-encode changed the record: %v", err)
		}
	})
}

func BenchmarkCodec(b *testing.B) {
	j := sampleJob()
	b.Run("binary", func(b *testing.B) {
		for b.Loop() {
			if _, err := decodeJob(encodeV2(j)); err != nil {
				b.Fatal(err)
			}
		}
	})
	b.Run("json", func(b *testing.B) {
		for b.Loop() {
			v, _ := json.Marshal(j)
			var out jobs.Job
			if err := json.Unmarshal(v, &out); err != nil {
				b.Fatal(err)
			}
		}
	})
}

func TestInternAndStates(t *testing.T) {
	a, b := intern([]byte("mail")), intern([]byte("mail"))
	if a != "mail" || unsafe.StringData(a) != unsafe.StringData(b) {
		t.Fatalf("intern gave %q and %q at different addresses", a, b)
	}
	for i := range maxInterned + 10 { // past the bound names are still right, just not shared
		name := fmt.Sprintf("q%d", i)
		if got := intern([]byte(name)); got != name {
			t.Fatalf("intern(%q) = %q", name, got)
		}
	}
	if m := interned.Load(); len(*m) > maxInterned {
		t.Fatalf("%d names interned, bound %d", len(*m), maxInterned)
	}
	for _, st := range jobs.States {
		if got := stateOf([]byte(st)); got != st {
			t.Fatalf("stateOf(%q) = %q", st, got)
		}
	}
	if got := stateOf([]byte("weird")); got != "weird" {
		t.Fatalf("unknown state read as %q", got)
	}
}
