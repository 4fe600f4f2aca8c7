// Package kinds holds the job kinds built into the tandem binary: noop, sleep, cpu, http and exec.
// Each validates its payload at enqueue, so a bad payload is refused rather than turned into a
// dead job.
package kinds

import (
	"bytes"
	"cmp"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"os/exec"
	"slices"
	"strings"
	"time"

	"github.com/tandem-run/tandem/jobs"
)

// Options configure the built-in kinds.
type Options struct {
	// ExecAllow lists the programs (absolute paths) the exec kind may run. Empty: exec is refused.
	ExecAllow []string
	// MaxOutputBytes caps what http and exec keep of a body or output stream. Default 16 KiB.
	MaxOutputBytes int
	// HTTPClient sends the http kind's requests. Default: a client with no overall timeout (the
	// job's timeout bounds each attempt through its context).
	HTTPClient *http.Client
}

// Limits of the payloads, checked at enqueue.
const (
	MaxSleep     = 24 * time.Hour
	MaxCPURounds = 100_000_000
)

// Register adds every built-in kind to rt.
func Register(rt *jobs.Runtime, opts Options) error {
	opts.MaxOutputBytes = cmp.Or(opts.MaxOutputBytes, 16<<10)
	if opts.HTTPClient == nil {
		opts.HTTPClient = &http.Client{}
	}
	e := execKind{allow: opts.ExecAllow, max: opts.MaxOutputBytes}
	h := httpKind{client: opts.HTTPClient, max: opts.MaxOutputBytes}
	for name, k := range map[string]jobs.Kind{
		"noop":  {Handler: jobs.HandlerFunc(noop)},
		"sleep": {Handler: jobs.HandlerFunc(sleep), Validate: validateSleep},
		"cpu":   {Handler: jobs.HandlerFunc(cpu), Validate: validateCPU},
		"http":  {Handler: jobs.HandlerFunc(h.run), Validate: h.validate},
		"exec":  {Handler: jobs.HandlerFunc(e.run), Validate: e.validate},
	} {
		if err := rt.Register(name, k); err != nil {
			return err
		}
	}
	return nil
}

func fieldErr(field, msg string) error {
	return &jobs.ValidationError{Fields: map[string]string{field: msg}}
}

func noop(context.Context, *jobs.Job) (any, error) { return nil, nil }

// sleepPayload: sleep ms milliseconds; with steps, in that many equal parts, reporting the
// progress after each ("2 of 5"), to show a job being followed.
type sleepPayload struct {
	MS    int64 `json:"ms"`
	Steps int   `json:"steps"`
}

// maxSleepSteps bounds sleep's steps: each is a progress write.
const maxSleepSteps = 1000

func validateSleep(p json.RawMessage) error {
	var s sleepPayload
	if err := jobs.DecodePayload(p, &s); err != nil {
		return err
	}
	if s.MS < 0 || time.Duration(s.MS)*time.Millisecond > MaxSleep {
		return fieldErr("payload.ms", fmt.Sprintf("must be from 0 to %d", MaxSleep.Milliseconds()))
	}
	if s.Steps < 0 || s.Steps > maxSleepSteps {
		return fieldErr("payload.steps", fmt.Sprintf("must be from 0 to %d", maxSleepSteps))
	}
	return nil
}

func sleep(ctx context.Context, j *jobs.Job) (any, error) {
	var s sleepPayload
	if err := jobs.DecodePayload(j.Payload, &s); err != nil {
		return nil, jobs.Permanent(err)
	}
	steps := max(s.Steps, 1)
	total := time.Duration(s.MS) * time.Millisecond
	t := time.NewTimer(total / time.Duration(steps))
	defer t.Stop()
	for i := 1; ; i++ {
		select {
		case <-t.C:
		case <-ctx.Done():
			return nil, context.Cause(ctx)
		}
		if s.Steps > 0 {
			if err := jobs.Progress(ctx, i*100/steps, fmt.Sprintf("%d of %d", i, steps)); err != nil {
				return nil, err
			}
		}
		if i >= steps {
			return map[string]int64{"slept_ms": s.MS}, nil
		}
		t.Reset(total*time.Duration(i+1)/time.Duration(steps) - total*time.Duration(i)/time.Duration(steps))
	}
}

type cpuPayload struct {
	N int `json:"n"`
}

func validateCPU(p json.RawMessage) error {
	var c cpuPayload
	if err := jobs.DecodePayload(p, &c); err != nil {
		return err
	}
	if c.N < 0 || c.N > MaxCPURounds {
		return fieldErr("payload.n", fmt.Sprintf("must be from 0 to %d", MaxCPURounds))
	}
	return nil
}

// CPUWork runs n rounds of SHA-256 over 64 bytes, checking ctx every 4096 rounds; the demo route
// and the cpu kind share it.
func CPUWork(ctx context.Context, n int) ([32]byte, error) {
	var buf [64]byte
	var sum [32]byte
	for i := range n {
		if i%4096 == 0 && ctx.Err() != nil {
			return sum, context.Cause(ctx)
		}
		sum = sha256.Sum256(buf[:])
		copy(buf[:32], sum[:])
	}
	return sum, nil
}

func cpu(ctx context.Context, j *jobs.Job) (any, error) {
	var c cpuPayload
	if err := jobs.DecodePayload(j.Payload, &c); err != nil {
		return nil, jobs.Permanent(err)
	}
	sum, err := CPUWork(ctx, c.N)
	if err != nil {
		return nil, err
	}
	return map[string]string{"digest": hex.EncodeToString(sum[:])}, nil
}

type httpPayload struct {
	Method  string            `json:"method"`
	URL     string            `json:"url"`
	Headers map[string]string `json:"headers"`
	Body    string            `json:"body"`
}

type httpKind struct {
	client *http.Client
	max    int
}

func (h httpKind) validate(p json.RawMessage) error {
	var hp httpPayload
	if err := jobs.DecodePayload(p, &hp); err != nil {
		return err
	}
	u, err := url.Parse(hp.URL)
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		return fieldErr("payload.url", "must be an absolute http or https URL")
	}
	if hp.Method != "" && !slices.Contains([]string{"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"}, strings.ToUpper(hp.Method)) {
		return fieldErr("payload.method", "must be an HTTP method such as GET or POST")
	}
	return nil
}

// run succeeds on 2xx, retries on 5xx, 408, 429 and network errors, and fails for good on other
// statuses (the request itself is wrong: retrying cannot help).
func (h httpKind) run(ctx context.Context, j *jobs.Job) (any, error) {
	var hp httpPayload
	if err := jobs.DecodePayload(j.Payload, &hp); err != nil {
		return nil, jobs.Permanent(err)
	}
	req, err := http.NewRequestWithContext(ctx, cmp.Or(strings.ToUpper(hp.Method), "GET"), hp.URL, strings.NewReader(hp.Body))
	if err != nil {
		return nil, jobs.Permanent(err)
	}
	for k, v := range hp.Headers {
		req.Header.Set(k, v)
	}
	resp, err := h.client.Do(req)
	if err != nil {
		return nil, fmt.Errorf("http %s %s: %w", req.Method, hp.URL, err)
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(io.LimitReader(resp.Body, int64(h.max)))
	result := map[string]any{"status": resp.StatusCode, "body": string(body)}
	switch {
	case resp.StatusCode >= 200 && resp.StatusCode < 300:
		return result, nil
	case resp.StatusCode >= 500, resp.StatusCode == http.StatusRequestTimeout, resp.StatusCode == http.StatusTooManyRequests:
		return nil, fmt.Errorf("http %s %s: status %d", req.Method, hp.URL, resp.StatusCode)
	default:
		return nil, jobs.Permanent(fmt.Errorf("http %s %s: status %d: %s", req.Method, hp.URL, resp.StatusCode, truncate(string(body), 200)))
	}
}

type execPayload struct {
	Argv []string          `json:"argv"`
	Env  map[string]string `json:"env"`
}

type execKind struct {
	allow []string
	max   int
}

// ErrNotAllowed means the program is not in Options.ExecAllow. Its text names neither the
// configuration nor the programs allowed: it is what an API client who asked for another is told.
var ErrNotAllowed = errors.New("program not allowed")

func (e execKind) check(p execPayload) error {
	if len(p.Argv) == 0 || p.Argv[0] == "" {
		return fieldErr("payload.argv", "must name a program and its arguments")
	}
	if !slices.Contains(e.allow, p.Argv[0]) {
		return fieldErr("payload.argv", fmt.Sprintf("%s: %v", p.Argv[0], ErrNotAllowed))
	}
	return nil
}

func (e execKind) validate(p json.RawMessage) error {
	var ep execPayload
	if err := jobs.DecodePayload(p, &ep); err != nil {
		return err
	}
	return e.check(ep)
}

// run starts the program without a shell, with only the payload's environment, and keeps a
// bounded share of its output. A non-zero exit is a (retryable) failure.
func (e execKind) run(ctx context.Context, j *jobs.Job) (any, error) {
	var ep execPayload
	if err := jobs.DecodePayload(j.Payload, &ep); err != nil {
		return nil, jobs.Permanent(err)
	}
	if err := e.check(ep); err != nil { // the allow list may have changed since enqueue
		return nil, jobs.Permanent(err)
	}
	cmd := exec.CommandContext(ctx, ep.Argv[0], ep.Argv[1:]...)
	cmd.Env = []string{}
	for k, v := range ep.Env {
		cmd.Env = append(cmd.Env, k+"="+v)
	}
	stdout, stderr := &capped{max: e.max}, &capped{max: e.max}
	cmd.Stdout, cmd.Stderr = stdout, stderr
	cmd.WaitDelay = time.Second // do not hang on a grandchild holding the pipes
	err := cmd.Run()
	result := map[string]any{"exit_code": cmd.ProcessState.ExitCode(), "stdout": stdout.String(), "stderr": stderr.String()}
	if err != nil {
		if ctx.Err() != nil {
			return nil, context.Cause(ctx)
		}
		return nil, fmt.Errorf("exec %s: %w: %s", ep.Argv[0], err, truncate(stderr.String(), 200))
	}
	return result, nil
}

// capped keeps the first max bytes written and counts the rest.
type capped struct {
	buf     bytes.Buffer
	max     int
	dropped int
}

func (c *capped) Write(p []byte) (int, error) {
	room := c.max - c.buf.Len()
	if room > 0 {
		c.buf.Write(p[:min(room, len(p))])
	}
	c.dropped += max(len(p)-max(room, 0), 0)
	return len(p), nil
}

func (c *capped) String() string {
	if c.dropped > 0 {
		return c.buf.String() + fmt.Sprintf("\n[%d bytes dropped]", c.dropped)
	}
	return c.buf.String()
}

func truncate(s string, n int) string {
	if len(s) <= n {
		return s
	}
	return s[:n] + "..."
}
