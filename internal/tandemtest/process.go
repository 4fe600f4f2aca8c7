// Package tandemtest runs the tandem binary as a real process for tests: on loopback ports
// chosen by the kernel, its logs captured, its addresses read from its "tandem started" line, and
// killed by PID at the test's cleanup if still running. The process tests in e2e/ (the dashboard's
// browser test among them) start the binary their TestMain built through it; the store's and the
// binary's disk-full tests share Tmpfs and FillDisk; package tests poll with WaitFor. Postgres gives
// a test a fresh database on a server the test binary starts (RunWithPostgres stops it),
// StartPostgres a server of its own to stop and restart.
package tandemtest

import (
	"bufio"
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"os/exec"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
)

// Process is a running `tandem serve` started by a test.
type Process struct {
	t *testing.T
	// Cmd is the process; end it only through Signal, Kill9 or the test's cleanup.
	Cmd *exec.Cmd
	// HTTPURL and AdminURL are the listeners' base URLs, set by WaitStarted.
	HTTPURL, AdminURL string
	// Started is the "tandem started" log line, decoded; set by WaitStarted.
	Started map[string]any

	mu   sync.Mutex
	logs bytes.Buffer
	done chan struct{}
	err  error
}

// Start runs `bin serve` on loopback ports 0 with env added to a minimal environment and waits
// for its "tandem started" line. The process is killed (by PID) at cleanup if still running.
func Start(t *testing.T, bin string, env ...string) *Process {
	t.Helper()
	p := StartNoWait(t, bin, nil, env...)
	p.WaitStarted()
	return p
}

// StartNoWait starts the process; cmdHook may adjust the command before it starts.
func StartNoWait(t *testing.T, bin string, cmdHook func(*exec.Cmd), env ...string) *Process {
	t.Helper()
	cmd := exec.Command(bin, "serve")
	cmd.Dir = t.TempDir()
	cmd.Env = append([]string{
		"PATH=" + os.Getenv("PATH"),
		"TANDEM_SERVER_ADDR=127.0.0.1:0",
		"TANDEM_ADMIN_ADDR=127.0.0.1:0",
	}, env...)
	p := &Process{t: t, Cmd: cmd, done: make(chan struct{})}
	stderr, err := cmd.StderrPipe()
	if err != nil {
		t.Fatal(err)
	}
	cmd.Stdout = io.Discard
	if cmdHook != nil {
		cmdHook(cmd)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	lines := make(chan string, 1024)
	go func() {
		sc := bufio.NewScanner(stderr)
		sc.Buffer(make([]byte, 1<<20), 1<<20)
		for sc.Scan() {
			p.mu.Lock()
			p.logs.WriteString(sc.Text() + "\n")
			p.mu.Unlock()
			select {
			case lines <- sc.Text():
			default:
			}
		}
		p.err = cmd.Wait()
		close(lines)
		close(p.done)
	}()
	t.Cleanup(func() {
		select {
		case <-p.done:
		default:
			_ = cmd.Process.Kill()
			<-p.done
		}
		if t.Failed() {
			t.Logf("tandem logs (pid %d):\n%s", cmd.Process.Pid, p.Logs())
		}
	})
	go func() {
		for line := range lines {
			if !strings.Contains(line, `"msg":"tandem started"`) {
				continue
			}
			var m map[string]any
			if json.Unmarshal([]byte(line), &m) == nil {
				p.mu.Lock()
				if p.Started == nil {
					p.Started = m
				}
				p.mu.Unlock()
			}
		}
	}()
	return p
}

// WaitStarted waits up to 30 s for the start line and fills in the URLs.
func (p *Process) WaitStarted() {
	p.t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for {
		p.mu.Lock()
		m := p.Started
		p.mu.Unlock()
		if m != nil {
			p.HTTPURL = "http://" + fmt.Sprint(m["http_addr"])
			p.AdminURL = "http://" + fmt.Sprint(m["admin_addr"])
			return
		}
		select {
		case <-p.done:
			p.t.Fatalf("tandem exited before starting: %v\n%s", p.err, p.Logs())
		default:
		}
		if time.Now().After(deadline) {
			p.t.Fatalf("tandem did not start in 30 s:\n%s", p.Logs())
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// Logs returns everything the process wrote to stderr so far.
func (p *Process) Logs() string {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.logs.String()
}

// Signal sends sig to the process (by its PID).
func (p *Process) Signal(sig syscall.Signal) {
	if err := p.Cmd.Process.Signal(sig); err != nil {
		p.t.Fatalf("signal %v: %v", sig, err)
	}
}

// Wait waits up to d for the process to exit and returns its exit code.
func (p *Process) Wait(d time.Duration) int {
	p.t.Helper()
	select {
	case <-p.done:
	case <-time.After(d):
		p.t.Fatalf("tandem still running after %s", d)
	}
	if p.err == nil {
		return 0
	}
	if ee, ok := p.err.(*exec.ExitError); ok {
		if ws, ok := ee.Sys().(syscall.WaitStatus); ok && ws.Signaled() {
			return -int(ws.Signal())
		}
		return ee.ExitCode()
	}
	p.t.Fatalf("wait: %v", p.err)
	return -1
}

// Kill9 sends SIGKILL and waits for the process to be gone.
func (p *Process) Kill9() {
	p.t.Helper()
	p.Signal(syscall.SIGKILL)
	p.Wait(10 * time.Second)
}
