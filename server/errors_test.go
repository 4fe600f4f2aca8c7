package server

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/tandem-run/tandem/jobs"
)

// TestInternalErrorsStayInTheLog: an error from inside (the store's, naming the database's path or
// a setting) reaches a client of the main listener as a generic message and the request id, with
// the same Retry-After; the log line with that request id has the detail. The admin listener's
// operator gets the detail in the answer too.
func TestInternalErrorsStayInTheLog(t *testing.T) {
	var logs bytes.Buffer
	s, err := New(Options{Addr: "127.0.0.1:0", Logger: slog.New(slog.NewJSONHandler(&logs, nil))})
	if err != nil {
		t.Fatal(err)
	}
	const path = "/var/lib/tandem/tandem.db"
	cases := []struct {
		name    string
		err     error
		status  int
		secrets []string // what the main listener's answer must not say
	}{
		{"full disk", fmt.Errorf("enqueue: commit: write %s: %w", path, syscall.ENOSPC), 503, []string{path, "no space", "commit"}},
		{"queue full", fmt.Errorf("enqueue: %w: default holds 3 waiting jobs (max_pending 3)", jobs.ErrQueueFull), 503, []string{"max_pending"}},
		{"unreadable body", fmt.Errorf("%w: read tcp 127.0.0.1:8080->127.0.0.1:5555: connection reset by peer", errReadBody), 400, []string{"127.0.0.1", "tcp"}},
	}
	for _, tc := range cases {
		for _, admin := range []bool{false, true} {
			t.Run(fmt.Sprintf("%s admin=%v", tc.name, admin), func(t *testing.T) {
				logs.Reset()
				id := "rid-" + strings.ReplaceAll(tc.name, " ", "-")
				ctx := context.WithValue(context.Background(), requestIDKey, id)
				if admin {
					ctx = context.WithValue(ctx, adminKey{}, true)
				}
				w := httptest.NewRecorder()
				s.writeErr(w, httptest.NewRequestWithContext(ctx, "POST", "/v1/jobs", nil), tc.err)
				var e errorBody
				if err := json.Unmarshal(w.Body.Bytes(), &e); err != nil || w.Code != tc.status || e.Error == "" || e.RequestID != id {
					t.Fatalf("%d %s: want %d with an error and request_id %s", w.Code, w.Body, tc.status, id)
				}
				if tc.status == http.StatusServiceUnavailable && w.Header().Get("Retry-After") != storeRetryAfter {
					t.Errorf("Retry-After %q", w.Header().Get("Retry-After"))
				}
				for _, secret := range tc.secrets {
					if got := strings.Contains(e.Error, secret); got != admin {
						t.Errorf("answer %q: says %q: %v, want %v", e.Error, secret, got, admin)
					}
				}
				var line struct {
					RequestID string `json:"request_id"`
					Err       string
				}
				if err := json.Unmarshal(logs.Bytes(), &line); err != nil || line.RequestID != id || line.Err != tc.err.Error() {
					t.Errorf("log %q: want one line with request_id %s and the error %q", logs.String(), id, tc.err)
				}
			})
		}
	}

	// What the client did wrong stays precise and is not logged as a failure.
	logs.Reset()
	w := httptest.NewRecorder()
	s.writeErr(w, httptest.NewRequest("GET", "/v1/jobs", nil), fmt.Errorf("list: %w: %q", jobs.ErrBadCursor, "zzz"))
	if w.Code != 400 || !strings.Contains(w.Body.String(), `"cursor"`) || logs.Len() != 0 {
		t.Errorf("bad cursor: %d %s, log %q", w.Code, w.Body, logs.String())
	}
}

// TestUnreadableBodyIsNotTheStores: a body that stops arriving is the client's problem, a 408
// (not the 503 of a store that cannot write), and its answer names no address.
func TestUnreadableBodyIsNotTheStores(t *testing.T) {
	b := setup(t, func(o *Options) { o.ReadTimeout = 300 * time.Millisecond }, nil)
	conn, err := net.Dial("tcp", b.srv.Addr())
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	// Ten bytes of the hundred announced, then nothing: the read deadline ends the body.
	fmt.Fprintf(conn, "POST /v1/jobs HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: 100\r\n\r\n{\"kind\":\"n")
	_ = conn.SetReadDeadline(time.Now().Add(10 * time.Second))
	resp, err := http.ReadResponse(bufio.NewReader(conn), nil)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	raw, _ := io.ReadAll(resp.Body)
	var e errorBody
	if err := json.Unmarshal(raw, &e); err != nil || resp.StatusCode != http.StatusRequestTimeout || strings.Contains(e.Error, "127.0.0.1") || e.RequestID == "" {
		t.Fatalf("%d %s: want 408 with a request id and no address", resp.StatusCode, raw)
	}
	if !strings.Contains(b.logs.String(), e.RequestID) || !strings.Contains(b.logs.String(), "timeout") {
		t.Fatalf("the log has no line for %s with the detail:\n%s", e.RequestID, b.logs)
	}
}
