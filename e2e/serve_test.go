package e2e

import (
	"fmt"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

// TestListenerDeathExits kills tandem's main listening socket from outside the process (shutdown(2)
// on a copy of its descriptor, taken with pidfd_getfd), so the listener's Serve fails with an
// accept error as on a real socket failure: tandem must log it, drain and exit non-zero rather
// than keep running with a dead listener.
func TestListenerDeathExits(t *testing.T) {
	t.Parallel()
	for _, which := range []string{"main", "admin"} {
		t.Run(which, func(t *testing.T) {
			t.Parallel()
			p := startTandem(t, "TANDEM_STORE_PATH="+filepath.Join(t.TempDir(), "db"))
			addr := strings.TrimPrefix(p.HTTPURL, "http://")
			if which == "admin" {
				addr = strings.TrimPrefix(p.AdminURL, "http://")
			}
			killListener(t, p.Cmd.Process.Pid, addr)
			if code := p.Wait(30 * time.Second); code != exitFail {
				t.Fatalf("exit %d after its %s listener died, want %d", code, which, exitFail)
			}
			logs := p.Logs()
			for _, want := range []string{`"msg":"listener stopped"`, "tandem serve: a listener stopped", "invalid argument"} {
				if !strings.Contains(logs, want) {
					t.Errorf("logs lack %q:\n%s", want, logs)
				}
			}
			if strings.Contains(logs, `"msg":"tandem stopped"`) {
				t.Errorf("a dead listener was reported as a clean stop:\n%s", logs)
			}
		})
	}
}

// killListener shuts down the listening socket bound to addr in process pid: accept(2) on it then
// fails with EINVAL. It skips the test where pidfd_getfd is not allowed.
func killListener(t *testing.T, pid int, addr string) {
	t.Helper()
	_, portStr, err := net.SplitHostPort(addr)
	if err != nil {
		t.Fatal(err)
	}
	port, _ := strconv.Atoi(portStr)
	pidfd, err := unix.PidfdOpen(pid, 0)
	if err != nil {
		t.Skipf("pidfd_open: %v", err)
	}
	defer unix.Close(pidfd)
	dir := fmt.Sprintf("/proc/%d/fd", pid)
	entries, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	for _, e := range entries {
		target, _ := os.Readlink(filepath.Join(dir, e.Name()))
		n, err := strconv.Atoi(e.Name())
		if err != nil || !strings.HasPrefix(target, "socket:") {
			continue
		}
		fd, err := unix.PidfdGetfd(pidfd, n, 0)
		if err != nil {
			t.Skipf("pidfd_getfd: %v", err)
		}
		listening, _ := unix.GetsockoptInt(fd, unix.SOL_SOCKET, unix.SO_ACCEPTCONN)
		sa, _ := unix.Getsockname(fd)
		if in4, ok := sa.(*unix.SockaddrInet4); ok && listening == 1 && in4.Port == port {
			err := unix.Shutdown(fd, unix.SHUT_RD)
			unix.Close(fd)
			if err != nil {
				t.Fatalf("shutdown the listener: %v", err)
			}
			return
		}
		unix.Close(fd)
	}
	t.Fatalf("no listening socket on port %d in process %d", port, pid)
}
