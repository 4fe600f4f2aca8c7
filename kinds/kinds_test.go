package kinds

import (
	"context"
	"encoding/json"
	"errors"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/tandem-run/tandem/jobs"
	"github.com/tandem-run/tandem/pool"
	"github.com/tandem-run/tandem/store"
	"go.uber.org/goleak"
)

// ants starts the goroutines of its package-level default pool at init; they are not ours.
func TestMain(m *testing.M) { goleak.VerifyTestMain(m, goleak.IgnoreCurrent()) }

func setup(t *testing.T, opts Options) *jobs.Runtime {
	t.Helper()
	logger := slog.New(slog.NewTextHandler(io.Discard, nil))
	st, err := store.Open(context.Background(), store.Options{Path: filepath.Join(t.TempDir(), "db"), NoSync: true, Logger: logger})
	if err != nil {
		t.Fatal(err)
	}
	p, _ := pool.New(pool.Options{Name: "jobs", Size: 4, Backlog: 100, Logger: logger})
	rt, err := jobs.New(jobs.Options{Store: st, Pool: p, Logger: logger, Backoff: func(int) time.Duration { return time.Millisecond }})
	if err != nil {
		t.Fatal(err)
	}
	if err := Register(rt, opts); err != nil {
		t.Fatal(err)
	}
	if err := rt.Start(context.Background()); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		_ = rt.Stop(context.Background())
		_ = p.Release(context.Background())
		st.Close()
	})
	return rt
}

func enqueue(t *testing.T, rt *jobs.Runtime, kind, payload string, attempts int) (*jobs.Job, error) {
	t.Helper()
	j, _, err := rt.Enqueue(context.Background(), jobs.EnqueueParams{Kind: kind, Payload: json.RawMessage(payload), MaxAttempts: attempts, Timeout: 2 * time.Second})
	return j, err
}

func finish(t *testing.T, rt *jobs.Runtime, id string) *jobs.Job {
	t.Helper()
	deadline := time.Now().Add(15 * time.Second)
	for {
		j, err := rt.Get(context.Background(), id)
		if err != nil {
			t.Fatal(err)
		}
		if j.State.Finished() {
			return j
		}
		if time.Now().After(deadline) {
			t.Fatalf("job %s still %s", id, j.State)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

func TestValidationAtEnqueue(t *testing.T) {
	rt := setup(t, Options{ExecAllow: []string{"/bin/echo"}})
	for _, tc := range []struct{ kind, payload, field string }{
		{"sleep", `{"ms":-1}`, "payload.ms"},
		{"sleep", `{"ms":"x"}`, "payload.ms"},
		{"sleep", `{"sec":1}`, "payload.sec"},
		{"sleep", `{"ms":10,"steps":-1}`, "payload.steps"},
		{"sleep", `{"ms":10,"steps":1001}`, "payload.steps"},
		{"cpu", `{"n":1000000000}`, "payload.n"},
		{"http", `{"url":"ftp://x"}`, "payload.url"},
		{"http", `{"url":"http://x","method":"FETCH"}`, "payload.method"},
		{"exec", `{"argv":["/bin/sh","-c","id"]}`, "payload.argv"},
		{"exec", `{"argv":[]}`, "payload.argv"},
		{"exec", `{"argv":["/bin/echo"],"env":{"A":1}}`, "payload.env.A"},
		{"http", `{"url":"http://x","headers":[]}`, "payload.headers"},
		{"cpu", `{"n":1} {"n":2}`, "payload"},
	} {
		_, err := enqueue(t, rt, tc.kind, tc.payload, 1)
		var ve *jobs.ValidationError
		if !errors.As(err, &ve) || ve.Fields[tc.field] == "" {
			t.Errorf("%s %s: got %v, want a validation error on %s", tc.kind, tc.payload, err, tc.field)
		}
	}
}

func TestNoopSleepCPU(t *testing.T) {
	rt := setup(t, Options{})
	n, _ := enqueue(t, rt, "noop", `{}`, 1)
	s, _ := enqueue(t, rt, "sleep", `{"ms":20}`, 1)
	stepped, _ := enqueue(t, rt, "sleep", `{"ms":20,"steps":4}`, 1)
	c, _ := enqueue(t, rt, "cpu", `{"n":100}`, 1)
	if j := finish(t, rt, n.ID); j.State != jobs.StateSucceeded {
		t.Errorf("noop: %s", j.State)
	}
	if j := finish(t, rt, s.ID); j.State != jobs.StateSucceeded || string(j.Result) != `{"slept_ms":20}` {
		t.Errorf("sleep: %s %s", j.State, j.Result)
	}
	// With steps, the last report is on record once it has finished: 100%, "4 of 4".
	if j := finish(t, rt, stepped.ID); j.State != jobs.StateSucceeded || j.Progress == nil || j.Progress.Percent != 100 || j.Progress.Message != "4 of 4" {
		t.Errorf("sleep in steps: %s, progress %+v", j.State, j.Progress)
	}
	want, _ := CPUWork(context.Background(), 100)
	if j := finish(t, rt, c.ID); j.State != jobs.StateSucceeded || !strings.Contains(string(j.Result), strings.ToLower(hexOf(want[:]))) {
		t.Errorf("cpu: %s %s", j.State, j.Result)
	}
	// Both honour their context: a 1 ms timeout ends a long sleep and a long hash.
	for _, kind := range []string{"sleep", "cpu"} {
		payload := `{"ms":60000}`
		if kind == "cpu" {
			payload = `{"n":100000000}`
		}
		j, _, err := rt.Enqueue(context.Background(), jobs.EnqueueParams{Kind: kind, Payload: json.RawMessage(payload), MaxAttempts: 1, Timeout: 50 * time.Millisecond})
		if err != nil {
			t.Fatal(err)
		}
		if done := finish(t, rt, j.ID); done.State != jobs.StateDead || !strings.Contains(done.Errors[0].Error, "timed out") {
			t.Errorf("%s with a 50ms timeout: %s %v", kind, done.State, done.Errors)
		}
	}
}

func hexOf(b []byte) string {
	const digits = "0123456789abcdef"
	out := make([]byte, 0, 2*len(b))
	for _, c := range b {
		out = append(out, digits[c>>4], digits[c&15])
	}
	return string(out)
}

func TestHTTPKind(t *testing.T) {
	var flaky atomic.Int32
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		switch r.URL.Path {
		case "/ok":
			if r.Method != "POST" || r.Header.Get("X-Test") != "1" {
				http.Error(w, "bad request shape", http.StatusBadRequest)
				return
			}
			body, _ := io.ReadAll(r.Body)
			_, _ = w.Write([]byte("got " + string(body)))
		case "/flaky": // 503 twice, then 200
			if flaky.Add(1) <= 2 {
				http.Error(w, "busy", http.StatusServiceUnavailable)
				return
			}
			_, _ = w.Write([]byte("finally"))
		case "/missing":
			http.NotFound(w, r)
		case "/slow":
			time.Sleep(3 * time.Second)
		}
	}))
	defer srv.Close()
	rt := setup(t, Options{})
	ok, _ := enqueue(t, rt, "http", `{"method":"POST","url":"`+srv.URL+`/ok","headers":{"X-Test":"1"},"body":"hi"}`, 1)
	fl, _ := enqueue(t, rt, "http", `{"url":"`+srv.URL+`/flaky"}`, 5)
	mi, _ := enqueue(t, rt, "http", `{"url":"`+srv.URL+`/missing"}`, 5)
	sl, _ := enqueue(t, rt, "http", `{"url":"`+srv.URL+`/slow"}`, 1)
	if j := finish(t, rt, ok.ID); j.State != jobs.StateSucceeded || !strings.Contains(string(j.Result), "got hi") {
		t.Errorf("2xx: %s %s", j.State, j.Result)
	}
	if j := finish(t, rt, fl.ID); j.State != jobs.StateSucceeded || j.Attempt != 3 {
		t.Errorf("5xx then 2xx: %s after %d attempts", j.State, j.Attempt)
	}
	if j := finish(t, rt, mi.ID); j.State != jobs.StateDead || j.Attempt != 1 {
		t.Errorf("404 must not be retried: %s after %d attempts", j.State, j.Attempt)
	}
	if j := finish(t, rt, sl.ID); j.State != jobs.StateDead || !strings.Contains(j.Errors[0].Error, "timed out") {
		t.Errorf("timeout: %s %v", j.State, j.Errors)
	}
}

func TestExecKind(t *testing.T) {
	rt := setup(t, Options{ExecAllow: []string{"/bin/echo", "/bin/sh"}, MaxOutputBytes: 64})
	ok, err := enqueue(t, rt, "exec", `{"argv":["/bin/echo","hello","world"]}`, 1)
	if err != nil {
		t.Fatal(err)
	}
	big, _ := enqueue(t, rt, "exec", `{"argv":["/bin/sh","-c","head -c 1000 /dev/zero | tr '\\0' x"]}`, 1)
	fail, _ := enqueue(t, rt, "exec", `{"argv":["/bin/sh","-c","echo oops >&2; exit 3"]}`, 1)
	env, _ := enqueue(t, rt, "exec", `{"argv":["/bin/sh","-c","echo $GREETING"],"env":{"GREETING":"hej"}}`, 1)
	if j := finish(t, rt, ok.ID); j.State != jobs.StateSucceeded || !strings.Contains(string(j.Result), `"stdout":"hello world\n"`) {
		t.Errorf("echo: %s %s", j.State, j.Result)
	}
	if j := finish(t, rt, big.ID); j.State != jobs.StateSucceeded || !strings.Contains(string(j.Result), "936 bytes dropped") {
		t.Errorf("bounded output: %s %s", j.State, j.Result)
	}
	if j := finish(t, rt, fail.ID); j.State != jobs.StateDead || !strings.Contains(j.Errors[0].Error, "exit status 3") || !strings.Contains(j.Errors[0].Error, "oops") {
		t.Errorf("non-zero exit: %s %v", j.State, j.Errors)
	}
	if j := finish(t, rt, env.ID); !strings.Contains(string(j.Result), `"stdout":"hej\n"`) {
		t.Errorf("env: %s", j.Result)
	}
	// Refused when not allowed, at enqueue; and by default nothing is allowed. The client who is
	// refused learns neither the configuration key nor which programs are allowed (an answer of
	// the public listener).
	rt2 := setup(t, Options{})
	if _, err := enqueue(t, rt2, "exec", `{"argv":["/bin/echo","x"]}`, 1); err == nil || !strings.Contains(err.Error(), "payload.argv: /bin/echo: program not allowed") {
		t.Errorf("default allow list: %v", err)
	}
	_, err = enqueue(t, setup(t, Options{ExecAllow: []string{"/bin/echo"}}), "exec", `{"argv":["/bin/sh","-c","id"]}`, 1)
	if err == nil || strings.Contains(err.Error(), "jobs.exec") || strings.Contains(err.Error(), "/bin/echo") {
		t.Errorf("a refused program's error tells the configuration: %v", err)
	}
}
