package server

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/go-chi/chi/v5"
	"github.com/tandem-run/tandem/internal/tandemtest"
)

// slowBody opens a connection and sends a POST to path whose headers promise length bytes of
// body, then only the first of them: the client that then waits is what a slow upload, or
// slowhttptest -B, looks like to the server.
func slowBody(t *testing.T, addr, path string, length int) net.Conn {
	t.Helper()
	conn, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close() })
	head := fmt.Sprintf("POST %s HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: %d\r\n\r\n{", path, length)
	if _, err := conn.Write([]byte(head)); err != nil {
		t.Fatal(err)
	}
	return conn
}

// entered counts the requests whose headers the server has read, outermost, so a test can wait
// until its slow clients are inside the server without sleeping.
func entered(n *atomic.Int64) func(http.Handler) http.Handler {
	return func(next http.Handler) http.Handler {
		return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			n.Add(1)
			next.ServeHTTP(w, r)
		})
	}
}

// TestSlowBodiesHoldNoThread: twice as many clients as threads send their headers and then dribble
// their bodies; a normal client's enqueues still get 201, because a request reads its body before
// it asks for a thread. Before the fix the slow clients held every thread and the normal client
// was shed with 503 after queue_timeout.
func TestSlowBodiesHoldNoThread(t *testing.T) {
	var in atomic.Int64
	b := setup(t, func(o *Options) {
		o.Middleware = append(o.Middleware, entered(&in))
		o.BodyTimeout = time.Minute // the slow clients stay for the whole test
	}, nil)
	const slow = 8 // threads 4, backlog 16
	for range slow {
		slowBody(t, b.srv.Addr(), "/v1/jobs", 1000)
	}
	tandemtest.WaitFor(t, "the slow clients' headers read", func() bool { return in.Load() == slow })
	for i := range 20 {
		code, _, body := b.do(t, "POST", b.base+"/v1/jobs", `{"kind":"noop"}`, jsonHdr)
		if code != http.StatusCreated {
			t.Fatalf("enqueue %d beside %d slow bodies: %d %s", i, slow, code, body)
		}
	}
	if st := b.threads.Stats(); st.Running != 0 || st.Waiting != 0 {
		t.Errorf("slow bodies hold threads: %+v", st)
	}
}

// TestBodyTimeout408: a body that has not arrived within BodyTimeout gets 408 with a JSON error and
// the connection is closed; a body sent whole, however slowly within the timeout, is served.
func TestBodyTimeout408(t *testing.T) {
	b := setup(t, func(o *Options) { o.BodyTimeout = 300 * time.Millisecond }, nil)
	conn := slowBody(t, b.srv.Addr(), "/v1/jobs", 1000)
	_ = conn.SetReadDeadline(time.Now().Add(10 * time.Second)) // a bound for the test, not the server's
	br := bufio.NewReader(conn)
	resp, err := http.ReadResponse(br, nil)
	if err != nil {
		t.Fatalf("no answer to a stalled body: %v", err)
	}
	raw, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != http.StatusRequestTimeout || resp.Header.Get("Content-Type") != "application/json" ||
		!strings.Contains(string(raw), `"error":"the request body did not arrive within 300ms"`) {
		t.Errorf("stalled body: %d %s %s", resp.StatusCode, resp.Header.Get("Content-Type"), raw)
	}
	if !resp.Close {
		t.Error("the 408 does not say the connection closes")
	}
	if n, err := br.Read(make([]byte, 1)); n != 0 || !errors.Is(err, io.EOF) {
		t.Errorf("connection still open after the 408: %d %v", n, err)
	}
	// Within the timeout a body dribbled in pieces is served as usual.
	conn2, err := net.Dial("tcp", b.srv.Addr())
	if err != nil {
		t.Fatal(err)
	}
	defer conn2.Close()
	body := `{"kind":"noop"}`
	fmt.Fprintf(conn2, "POST /v1/jobs HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: %d\r\n\r\n", len(body))
	for i := range len(body) {
		if _, err := conn2.Write([]byte{body[i]}); err != nil {
			t.Fatal(err)
		}
	}
	_ = conn2.SetReadDeadline(time.Now().Add(10 * time.Second))
	resp, err = http.ReadResponse(bufio.NewReader(conn2), nil)
	if err != nil || resp.StatusCode != http.StatusCreated {
		t.Fatalf("a whole body: %v %v", resp, err)
	}
	resp.Body.Close()
}

// TestBodyLimits: a body over MaxBodyBytes gets 413 whether it says its length or not (chunked),
// and a handler that runs longer than BodyTimeout after its body arrived keeps its context: the
// body's deadline is cleared, not left to cancel the request from net/http's background read.
func TestBodyLimits(t *testing.T) {
	b := setup(t, func(o *Options) { o.BodyTimeout = 100 * time.Millisecond }, func(r chi.Router) {
		r.Post("/echo-later", func(w http.ResponseWriter, r *http.Request) {
			body, _ := io.ReadAll(r.Body)
			select {
			case <-time.After(400 * time.Millisecond):
				_, _ = w.Write(body)
			case <-r.Context().Done():
				t.Errorf("the handler's context ended after its body was in: %v", context.Cause(r.Context()))
			}
		})
	})
	big := strings.Repeat("x", 1<<16+1)
	req, _ := http.NewRequest("POST", b.base+"/v1/jobs", io.MultiReader(strings.NewReader(big))) // length unknown: chunked
	req.Header.Set("Content-Type", "application/json")
	resp, err := b.client.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	raw, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != http.StatusRequestEntityTooLarge || !strings.Contains(string(raw), `"body":"must be at most 65536 bytes"`) {
		t.Errorf("chunked body over the limit: %d %s", resp.StatusCode, raw)
	}
	if code, _, body := b.do(t, "POST", b.base+"/echo-later", "hello", nil); code != http.StatusOK || body != "hello" {
		t.Errorf("handler after its body: %d %q", code, body)
	}
}
