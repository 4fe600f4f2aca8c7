package server

import (
	"context"
	"net"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/tandem-run/tandem/internal/tandemtest"
)

// TestShutdownDelay: once Shutdown begins, /readyz answers 503 "shutting down" at once while
// the other routes keep answering (with Connection: close, to move clients elsewhere) for
// ShutdownDelay; then the listener closes. Before, the listener closed at once: a load balancer
// polling /readyz saw connection refused, not "going away".
func TestShutdownDelay(t *testing.T) {
	b := setup(t, func(o *Options) { o.ShutdownDelay = time.Minute }, nil)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- b.srv.Shutdown(ctx) }()
	tandemtest.WaitFor(t, "readiness off", func() bool {
		code, _, _ := b.do(t, "GET", b.base+"/readyz", "", nil)
		return code == http.StatusServiceUnavailable
	})
	if code, _, body := b.do(t, "GET", b.base+"/readyz", "", nil); !strings.Contains(body, "shutting down") {
		t.Errorf("/readyz while draining: %d %s", code, body)
	}
	resp, err := b.client.Get(b.base + "/demo/hello")
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK || !resp.Close {
		t.Errorf("a route during the delay: %d, Connection: close %v", resp.StatusCode, resp.Close)
	}
	if code, _, body := b.do(t, "POST", b.base+"/v1/jobs", `{"kind":"noop"}`, jsonHdr); code != http.StatusCreated {
		t.Errorf("enqueue during the delay: %d %s", code, body)
	}
	select {
	case err := <-done:
		t.Fatalf("Shutdown returned during its delay: %v", err)
	default:
	}
	cancel() // the context bounds the delay too; the drain then has no time left
	<-done
	if _, err := net.DialTimeout("tcp", b.srv.Addr(), time.Second); err == nil {
		t.Error("new connection accepted after shutdown")
	}
}

// TestShutdownAfterDeadListenerSkipsTheDelay: once a listener's Serve failed, Shutdown drains at
// once instead of serving on for shutdown_delay with half of tandem gone.
func TestShutdownAfterDeadListenerSkipsTheDelay(t *testing.T) {
	b := setup(t, func(o *Options) { o.ShutdownDelay = time.Minute }, nil)
	_ = b.srv.mainLn.Close() // Serve returns an error that is not ErrServerClosed
	select {
	case <-b.srv.Errors():
	case <-time.After(10 * time.Second):
		t.Fatal("the closed listener was not reported")
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	_ = b.srv.Shutdown(ctx)
	if ctx.Err() != nil {
		t.Fatal("Shutdown waited out its delay after a listener had died")
	}
}
