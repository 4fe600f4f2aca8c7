package e2e

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os/exec"
	"testing"

	"github.com/tandem-run/tandem/internal/tandemtest"
)

// proc is a running `tandem serve` started by a test.
type proc = tandemtest.Process

// startTandem runs the binary under test (see tandemtest.Start).
func startTandem(t *testing.T, env ...string) *proc {
	t.Helper()
	return tandemtest.Start(t, tandemBin, env...)
}

// startTandemNoWait starts the binary under test; cmdHook may adjust the command first.
func startTandemNoWait(t *testing.T, cmdHook func(*exec.Cmd), env ...string) *proc {
	t.Helper()
	return tandemtest.StartNoWait(t, tandemBin, cmdHook, env...)
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
