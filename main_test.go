package main

import (
	"bytes"
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/tandem-run/tandem/internal/tandemtest"
)

// The root package's tests run the commands in this process, through run with an environment of
// their own, so they run in parallel and build nothing. Tests of the built binary as a process
// (signals, exit, a running server, the stamped version) are in e2e/.

// TestMain stops the Postgres server that the tests of store.backend postgres start (once, on
// a free loopback port; or they use TANDEM_TEST_POSTGRES_URL's).
func TestMain(m *testing.M) { os.Exit(tandemtest.RunWithPostgres(m)) }

// result is what a command run by runCmd left.
type result struct {
	code           int
	stdout, stderr string
}

// runCmd runs the command line args in this process with only the environment env, as main does
// with os.Environ(), and waits up to 60 s.
func runCmd(t *testing.T, env []string, args ...string) result {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	var stdout, stderr bytes.Buffer
	code := run(ctx, args, env, &stdout, &stderr)
	return result{code: code, stdout: stdout.String(), stderr: stderr.String()}
}

// writeFile writes content to path, creating its directory.
func writeFile(t *testing.T, path, content string) { tandemtest.WriteFile(t, path, content) }

// emptyConfig returns an empty config file to pass as --config, so that a command run in this
// process does not read the repository's ./config.yaml (the working directory of the tests).
func emptyConfig(t *testing.T) string {
	t.Helper()
	path := filepath.Join(t.TempDir(), "empty.yaml")
	writeFile(t, path, "")
	return path
}

func TestUnknownCommand(t *testing.T) {
	t.Parallel()
	r := runCmd(t, nil, "frobnicate")
	if r.code != exitConfig || !strings.Contains(r.stderr, `unknown command "frobnicate"`) {
		t.Fatalf("got %+v", r)
	}
}

// TestHelp: a new user's first tries list the commands on stdout and exit 0; help for one
// command prints its flags; help for an unknown command is a usage error.
func TestHelp(t *testing.T) {
	t.Parallel()
	for _, args := range [][]string{{"--help"}, {"-h"}, {"help"}} {
		r := runCmd(t, nil, args...)
		if r.code != 0 || !strings.Contains(r.stdout, "Commands:") || !strings.Contains(r.stdout, "enqueue ") {
			t.Errorf("tandem %v: %+v, want the command list on stdout", args, r)
		}
	}
	r := runCmd(t, nil, "help", "enqueue")
	if r.code != 0 || !strings.Contains(r.stderr, "--payload") {
		t.Errorf("tandem help enqueue: %+v, want enqueue's flags", r)
	}
	if r := runCmd(t, nil, "help", "frobnicate"); r.code != exitConfig || !strings.Contains(r.stderr, `unknown command "frobnicate"`) {
		t.Errorf("tandem help frobnicate: %+v", r)
	}
}
