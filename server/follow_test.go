package server

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/tandem-run/tandem/internal/tandemtest"
	"github.com/tandem-run/tandem/jobs"
)

// gateKinds names the test kinds made by gate, so each is registered once per runtime.
var gateKinds atomic.Int64

// gate registers a kind whose jobs wait for report to be called, then report 50% progress
// ("half"), then wait for open to be called and succeed. It returns the kind's name, report and
// open; a test that does not call them leaves its jobs running until its cleanup.
func gate(t *testing.T, b *bundle) (kind string, report, open func()) {
	t.Helper()
	kind = fmt.Sprintf("gate%d", gateKinds.Add(1))
	reported, opened := make(chan struct{}), make(chan struct{})
	if err := b.rt.RegisterFunc(kind, func(ctx context.Context, j *jobs.Job) (any, error) {
		select {
		case <-reported:
		case <-ctx.Done():
			return nil, ctx.Err()
		}
		if err := jobs.Progress(ctx, 50, "half"); err != nil {
			return nil, err
		}
		select {
		case <-opened:
			return "opened", nil
		case <-ctx.Done():
			return nil, ctx.Err()
		}
	}); err != nil {
		t.Fatal(err)
	}
	var once1, once2 sync.Once
	report = func() { once1.Do(func() { close(reported) }) }
	open = func() { report(); once2.Do(func() { close(opened) }) }
	t.Cleanup(open) // a job still waiting must not hold the runtime's Stop up
	return kind, report, open
}

// enqueueKind enqueues a job of kind over the API and returns its id.
func enqueueKind(t *testing.T, b *bundle, kind string) string {
	t.Helper()
	code, _, body := b.do(t, "POST", b.base+"/v1/jobs", `{"kind":"`+kind+`"}`, jsonHdr)
	if code != http.StatusCreated {
		t.Fatalf("enqueue %s: %d %s", kind, code, body)
	}
	return decodeJSON[apiJob](t, "enqueue", body).ID
}

// TestWaitAnswersAtFinish: ?wait answers as soon as the job has finished, with the finished job,
// long before the wait (30 s, beyond the client's 10 s timeout) is over; a short wait answers the
// job as it is; wait=0 does not wait.
func TestWaitAnswersAtFinish(t *testing.T) {
	b := setup(t, nil, nil)
	kind, _, open := gate(t, b)
	id := enqueueKind(t, b, kind)
	code, _, body := b.do(t, "GET", b.base+"/v1/jobs/"+id+"?wait=100ms", "", nil)
	if j := decodeJSON[apiJob](t, "short wait", body); code != http.StatusOK || j.ID != id || j.State == "succeeded" {
		t.Fatalf("a wait that ends first: %d %s, want 200 with the unfinished job", code, body)
	}
	if code, _, body := b.do(t, "GET", b.base+"/v1/jobs/"+id+"?wait=0", "", nil); code != http.StatusOK || decodeJSON[apiJob](t, "wait=0", body).ID != id {
		t.Fatalf("wait=0: %d %s", code, body)
	}
	type answer struct {
		code int
		body string
	}
	done := make(chan answer, 1)
	go func() {
		code, _, body := b.do(t, "GET", b.base+"/v1/jobs/"+id+"?wait=30", "", nil)
		done <- answer{code, body}
	}()
	tandemtest.WaitFor(t, "the waiter parked", func() bool { return b.srv.Waiters() == 1 })
	open()
	a := <-done
	if j := decodeJSON[apiJob](t, "wait", a.body); a.code != http.StatusOK || j.State != "succeeded" {
		t.Fatalf("wait across the finish: %d %s, want 200 succeeded", a.code, a.body)
	}
}

// TestWaitBadInput: a wait that is not a duration, negative, or over 60 s is 400 naming the
// parameter; an unknown job is 404, with a wait and for its events.
func TestWaitBadInput(t *testing.T) {
	b := setup(t, nil, nil)
	id := enqueueKind(t, b, "noop")
	for _, v := range []string{"soon", "-1s", "-1", "61s", "61", "1e12", "NaN", "", "1h"} {
		code, _, body := b.do(t, "GET", b.base+"/v1/jobs/"+id+"?wait="+v, "", nil)
		e := decodeJSON[struct {
			Error  string            `json:"error"`
			Fields map[string]string `json:"fields"`
		}](t, "bad wait", body)
		if code != http.StatusBadRequest || e.Fields["wait"] == "" {
			t.Errorf("wait=%q: %d %s, want 400 naming wait", v, code, body)
		}
	}
	unknown := "00000000-0000-7000-8000-000000000000"
	for _, path := range []string{"/v1/jobs/" + unknown + "?wait=1s", "/v1/jobs/" + unknown + "/events", "/v1/jobs/not-an-id/events"} {
		if code, _, body := b.do(t, "GET", b.base+path, "", nil); code != http.StatusNotFound || !strings.Contains(body, `"error"`) {
			t.Errorf("GET %s: %d %s, want 404 JSON", path, code, body)
		}
	}
	if code, _, body := b.do(t, "GET", b.base+"/v1/jobs/"+id+"/events?x=1", "", nil); code != http.StatusBadRequest {
		t.Errorf("events with an unknown parameter: %d %s, want 400", code, body)
	}
	if b.srv.Waiters() != 0 {
		t.Errorf("%d waiters left", b.srv.Waiters())
	}
}

// sseEvent is one Server-Sent Event, or a comment (name "", comment set).
type sseEvent struct{ name, id, data, comment string }

// readEvent reads the next event or comment of a stream; io.EOF at its end.
func readEvent(rd *bufio.Reader) (sseEvent, error) {
	var ev sseEvent
	for {
		line, err := rd.ReadString('\n')
		if err != nil {
			return ev, err
		}
		line = strings.TrimSuffix(line, "\n")
		switch {
		case line == "":
			if ev != (sseEvent{}) {
				return ev, nil
			}
		case strings.HasPrefix(line, ":"):
			ev.comment = strings.TrimSpace(line[1:])
		case strings.HasPrefix(line, "event: "):
			ev.name = line[len("event: "):]
		case strings.HasPrefix(line, "id: "):
			ev.id = line[len("id: "):]
		case strings.HasPrefix(line, "data: "):
			ev.data = line[len("data: "):]
		}
	}
}

// openEvents opens a job's event stream and returns its reader and the response.
func openEvents(t *testing.T, ctx context.Context, b *bundle, url string, hdr map[string]string) (*http.Response, *bufio.Reader) {
	t.Helper()
	req, _ := http.NewRequestWithContext(ctx, "GET", url, nil)
	for k, v := range hdr {
		req.Header.Set(k, v)
	}
	resp, err := (&http.Client{}).Do(req) // no client timeout: the stream is long
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { resp.Body.Close() })
	return resp, bufio.NewReader(resp.Body)
}

// TestEventsStreamStatesAndProgress: the stream opens with the job as it is, goes on with its
// progress and states in order, ends after the finished state, and a reconnect that already saw
// that end gets 204; the admin listener (the dashboard's) serves the same stream.
func TestEventsStreamStatesAndProgress(t *testing.T) {
	b := setup(t, nil, nil)
	kind, report, open := gate(t, b)
	id := enqueueKind(t, b, kind)
	for _, base := range []string{b.base + "/v1", b.adminURL + "/admin/api/v1"} {
		if base != b.base+"/v1" {
			id = enqueueKind(t, b, "noop")
		}
		resp, rd := openEvents(t, context.Background(), b, base+"/jobs/"+id+"/events", nil)
		if resp.StatusCode != http.StatusOK || resp.Header.Get("Content-Type") != "text/event-stream" {
			t.Fatalf("%s: %d %s", base, resp.StatusCode, resp.Header.Get("Content-Type"))
		}
		var names []string
		var last sseEvent
		sawProgress, finished := false, false
		for {
			ev, err := readEvent(rd)
			if errors.Is(err, io.EOF) {
				break
			}
			if err != nil {
				t.Fatalf("%s: reading the stream: %v", base, err)
			}
			if ev.comment != "" {
				continue
			}
			if finished {
				t.Fatalf("%s: an event after the finished state: %+v", base, ev)
			}
			j := decodeJSON[struct {
				apiJob
				Progress *struct {
					Percent int    `json:"percent"`
					Message string `json:"message"`
				} `json:"progress"`
			}](t, "event data", ev.data)
			if j.ID != id || ev.id == "" || (ev.name != "state" && ev.name != "progress") {
				t.Fatalf("%s: event %+v", base, ev)
			}
			if j.State == "running" {
				report() // once the stream shows it running, so the report is a change of its own
			}
			if j.Progress != nil && j.State == "running" && !sawProgress {
				if j.Progress.Percent != 50 || j.Progress.Message != "half" {
					t.Fatalf("%s: progress %+v", base, j.Progress)
				}
				sawProgress = true
				open() // the job finishes once its progress was seen
			}
			names = append(names, ev.name+":"+j.State)
			last, finished = ev, j.State == "succeeded"
		}
		if len(names) == 0 || !strings.HasPrefix(names[0], "state:") || !finished {
			t.Fatalf("%s: events %v, want a state first and the finished state last", base, names)
		}
		if base == b.base+"/v1" && (!sawProgress || !slices.Contains(names, "progress:running")) {
			t.Errorf("no progress event in %v", names)
		}
		again, _ := openEvents(t, context.Background(), b, base+"/jobs/"+id+"/events", map[string]string{"Last-Event-ID": last.id})
		if again.StatusCode != http.StatusNoContent {
			t.Errorf("%s: reconnect after the end: %d, want 204", base, again.StatusCode)
		}
	}
}

// TestEventsKeepaliveOutlivesTimeouts: a quiet stream sends keepalive comments, and neither it
// nor a wait is cut by the server's read and write timeouts, far shorter here than either.
func TestEventsKeepaliveOutlivesTimeouts(t *testing.T) {
	old := sseKeepalive
	sseKeepalive = 20 * time.Millisecond
	t.Cleanup(func() { sseKeepalive = old })
	b := setup(t, func(o *Options) { o.ReadTimeout, o.WriteTimeout = 100*time.Millisecond, 100*time.Millisecond }, nil)
	kind, _, _ := gate(t, b)
	id := enqueueKind(t, b, kind)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	_, rd := openEvents(t, ctx, b, b.base+"/v1/jobs/"+id+"/events", nil)
	keepalives := 0
	for keepalives < 20 { // 400 ms of keepalives at least: four write timeouts
		ev, err := readEvent(rd)
		if err != nil {
			t.Fatalf("stream cut after %d keepalives: %v", keepalives, err)
		}
		if ev.comment == "keepalive" {
			keepalives++
		}
	}
	code, _, body := b.do(t, "GET", b.base+"/v1/jobs/"+id+"?wait=500ms", "", nil)
	if code != http.StatusOK || decodeJSON[apiJob](t, "wait", body).ID != id {
		t.Fatalf("a wait longer than the timeouts: %d %s", code, body)
	}
}

// TestEventsClientGoneFreesTheWaiter: a client that hangs up ends its stream and its follower.
func TestEventsClientGoneFreesTheWaiter(t *testing.T) {
	b := setup(t, nil, nil)
	kind, _, _ := gate(t, b)
	id := enqueueKind(t, b, kind)
	ctx, cancel := context.WithCancel(context.Background())
	_, rd := openEvents(t, ctx, b, b.base+"/v1/jobs/"+id+"/events", nil)
	if _, err := readEvent(rd); err != nil {
		t.Fatal(err)
	}
	if b.srv.Waiters() != 1 {
		t.Fatalf("%d waiters with one stream open", b.srv.Waiters())
	}
	cancel()
	tandemtest.WaitFor(t, "the waiter freed", func() bool { return b.srv.Waiters() == 0 })
}

// TestWaitsHoldNoThreads: with one thread, fifty parked waits and streams leave it free for
// ordinary requests; past MaxWaiters a wait gets 503 with Retry-After; and Shutdown ends the
// waits at once, with the job as it is, rather than draining until its deadline.
func TestWaitsHoldNoThreads(t *testing.T) {
	b := setup(t, func(o *Options) { o.MaxWaiters = 50 }, nil)
	if _, err := b.threads.Tune(1); err != nil {
		t.Fatal(err)
	}
	kind, _, _ := gate(t, b)
	id := enqueueKind(t, b, kind)
	var wg sync.WaitGroup
	codes := make(chan int, 50)
	for i := range 50 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			if i%2 == 0 {
				resp, err := b.client.Get(b.base + "/v1/jobs/" + id + "?wait=60s")
				if err != nil {
					codes <- -1
					return
				}
				_, _ = io.Copy(io.Discard, resp.Body)
				resp.Body.Close()
				codes <- resp.StatusCode
				return
			}
			req, _ := http.NewRequest("GET", b.base+"/v1/jobs/"+id+"/events", nil)
			resp, err := (&http.Client{}).Do(req)
			if err != nil {
				codes <- -1
				return
			}
			_, _ = io.Copy(io.Discard, resp.Body)
			resp.Body.Close()
			codes <- resp.StatusCode
		}()
	}
	tandemtest.WaitFor(t, "50 waiters parked", func() bool { return b.srv.Waiters() == 50 })
	for range 5 {
		if code, _, body := b.do(t, "GET", b.base+"/demo/hello", "", nil); code != http.StatusOK {
			t.Fatalf("an ordinary request with 50 waiters parked and 1 thread: %d %s", code, body)
		}
	}
	code, hdr, body := b.do(t, "GET", b.base+"/v1/jobs/"+id+"?wait=1s", "", nil)
	if code != http.StatusServiceUnavailable || hdr.Get("Retry-After") == "" || !strings.Contains(body, "max_waiters") {
		t.Errorf("the 51st waiter: %d (Retry-After %q) %s, want 503", code, hdr.Get("Retry-After"), body)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := b.srv.Shutdown(ctx); err != nil {
		t.Fatalf("shutdown with 50 waiters: %v", err)
	}
	wg.Wait()
	close(codes)
	for c := range codes {
		if c != http.StatusOK {
			t.Errorf("a waiter ended by the shutdown got %d, want 200", c)
		}
	}
}

// TestIsFollow: only a job's events, or a job's GET naming the wait parameter, skip admission.
func TestIsFollow(t *testing.T) {
	for target, want := range map[string]bool{
		"/v1/jobs/abc?wait=10s":       true,
		"/v1/jobs/abc?x=1&wait=2":     true,
		"/v1/jobs/abc/events":         true,
		"/v1/jobs/abc":                false,
		"/v1/jobs/abc?await=1":        false,
		"/v1/jobs/abc?x=wait%3D1":     false,
		"/v1/jobs/abc/retry?wait=1":   false,
		"/v1/jobs?wait=1":             false,
		"/v1/jobs//events":            false,
		"/v1/jobs/abc?wait=1&bad=%zz": false,
	} {
		r := httptest.NewRequest(http.MethodGet, target, nil)
		if got := isFollow(r); got != want {
			t.Errorf("isFollow(GET %s) = %v, want %v", target, got, want)
		}
	}
	if isFollow(httptest.NewRequest(http.MethodPost, "/v1/jobs/abc?wait=1", nil)) {
		t.Error("a POST is followed")
	}
}
