package systemd

import (
	"context"
	"errors"
	"net"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"go.uber.org/goleak"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

// listen opens a real unixgram NOTIFY_SOCKET and returns a channel of the datagrams it receives.
func listen(t *testing.T) <-chan string {
	t.Helper()
	path := filepath.Join(t.TempDir(), "notify.sock")
	conn, err := net.ListenUnixgram("unixgram", &net.UnixAddr{Name: path, Net: "unixgram"})
	if err != nil {
		t.Fatal(err)
	}
	t.Setenv("NOTIFY_SOCKET", path)
	msgs := make(chan string, 100)
	go func() {
		buf := make([]byte, 4096)
		for {
			n, _, err := conn.ReadFromUnix(buf)
			if err != nil {
				close(msgs)
				return
			}
			msgs <- string(buf[:n])
		}
	}()
	t.Cleanup(func() {
		conn.Close()
		for range msgs {
		}
	})
	return msgs
}

func next(t *testing.T, msgs <-chan string) string {
	t.Helper()
	select {
	case m := <-msgs:
		return m
	case <-time.After(5 * time.Second):
		t.Fatal("no notification")
		return ""
	}
}

func TestReadyWatchdogStopping(t *testing.T) {
	msgs := listen(t)
	t.Setenv("WATCHDOG_USEC", "40000") // 40 ms: a ping every 20 ms
	n := NewNotifier(NotifierOptions{})
	if err := n.Ready("serving"); err != nil {
		t.Fatal(err)
	}
	if m := next(t, msgs); !strings.Contains(m, "READY=1") || !strings.Contains(m, "STATUS=serving") {
		t.Fatalf("got %q", m)
	}
	if err := n.Start(context.Background()); err != nil {
		t.Fatal(err)
	}
	for range 3 {
		if m := next(t, msgs); m != "WATCHDOG=1" {
			t.Fatalf("got %q, want WATCHDOG=1", m)
		}
	}
	n.Stop()
	_ = n.Stopping("draining")
	for {
		if m := next(t, msgs); strings.Contains(m, "STOPPING=1") {
			break
		}
	}
}

// TestFailingHealthStopsPings: while the health check fails, no WATCHDOG=1 is sent.
func TestFailingHealthStopsPings(t *testing.T) {
	msgs := listen(t)
	t.Setenv("WATCHDOG_USEC", "40000")
	var healthy atomic.Bool
	n := NewNotifier(NotifierOptions{Health: func(context.Context) error {
		if healthy.Load() {
			return nil
		}
		return errors.New("store stuck")
	}})
	if err := n.Start(context.Background()); err != nil {
		t.Fatal(err)
	}
	defer n.Stop()
	select {
	case m := <-msgs:
		t.Fatalf("pinged while unhealthy: %q", m)
	case <-time.After(150 * time.Millisecond):
	}
	healthy.Store(true)
	if m := next(t, msgs); m != "WATCHDOG=1" {
		t.Fatalf("got %q", m)
	}
}

func TestNoSocketIsNoop(t *testing.T) {
	t.Setenv("NOTIFY_SOCKET", "")
	n := NewNotifier(NotifierOptions{})
	if err := n.Ready("x"); err != nil {
		t.Fatal(err)
	}
	if err := n.Start(context.Background()); err != nil {
		t.Fatal(err)
	}
	n.Stop()
}
