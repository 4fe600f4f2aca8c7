package main

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
)

// proc is a running `tandem serve` started by a test.
type proc struct {
	t        *testing.T
	cmd      *exec.Cmd
	httpURL  string
	adminURL string
	started  map[string]any // the "tandem started" log line

	mu   sync.Mutex
	logs bytes.Buffer
	done chan struct{}
	err  error
}

// startTandem runs `tandem serve` on loopback ports 0 with env added to a minimal environment and
// waits for its "tandem started" line. The process is killed (by PID) at cleanup if still running.
func startTandem(t *testing.T, env ...string) *proc {
	t.Helper()
	p := startTandemNoWait(t, nil, env...)
	p.waitStarted()
	return p
}

// startTandemNoWait starts the process; cmdHook may adjust the command before it starts.
func startTandemNoWait(t *testing.T, cmdHook func(*exec.Cmd), env ...string) *proc {
	t.Helper()
	cmd := exec.Command(tandemBin, "serve")
	cmd.Dir = t.TempDir()
	cmd.Env = append([]string{
		"PATH=" + os.Getenv("PATH"),
		"TANDEM_SERVER_ADDR=127.0.0.1:0",
		"TANDEM_ADMIN_ADDR=127.0.0.1:0",
	}, env...)
	p := &proc{t: t, cmd: cmd, done: make(chan struct{})}
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
				if p.started == nil {
					p.started = m
				}
				p.mu.Unlock()
			}
		}
	}()
	return p
}

// waitStarted waits up to 30 s for the start line and fills in the URLs.
func (p *proc) waitStarted() {
	p.t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for {
		p.mu.Lock()
		m := p.started
		p.mu.Unlock()
		if m != nil {
			p.httpURL = "http://" + fmt.Sprint(m["http_addr"])
			p.adminURL = "http://" + fmt.Sprint(m["admin_addr"])
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
func (p *proc) Logs() string {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.logs.String()
}

// signal sends sig to the process (by its PID).
func (p *proc) signal(sig syscall.Signal) {
	if err := p.cmd.Process.Signal(sig); err != nil {
		p.t.Fatalf("signal %v: %v", sig, err)
	}
}

// wait waits up to d for the process to exit and returns its exit code.
func (p *proc) wait(d time.Duration) int {
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

// kill9 sends SIGKILL and waits for the process to be gone.
func (p *proc) kill9() {
	p.t.Helper()
	p.signal(syscall.SIGKILL)
	p.wait(10 * time.Second)
}

// call sends a JSON request and decodes a JSON answer; it returns the status.
func call(ctx context.Context, c *http.Client, method, url, token string, body, out any) (int, error) {
	var rd io.Reader
	if body != nil {
		b, err := json.Marshal(body)
		if err != nil {
			return 0, err
		}
		rd = bytes.NewReader(b)
	}
	req, err := http.NewRequestWithContext(ctx, method, url, rd)
	if err != nil {
		return 0, err
	}
	if body != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	resp, err := c.Do(req)
	if err != nil {
		return 0, err
	}
	defer resp.Body.Close()
	raw, err := io.ReadAll(resp.Body)
	if err != nil {
		return resp.StatusCode, err
	}
	if out != nil && len(raw) > 0 {
		if err := json.Unmarshal(raw, out); err != nil {
			return resp.StatusCode, fmt.Errorf("decode %s: %w", raw, err)
		}
	}
	return resp.StatusCode, nil
}
