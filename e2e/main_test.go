package e2e

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"testing"
	"time"

	"github.com/tandem-run/tandem/internal/tandemtest"
)

// tandemBin is the real binary, built once by TestMain for every test here (with the race
// detector when the tests run with -race) and removed after the run.
var tandemBin string

// repoDir is the repository's root: go test runs these tests in e2e/.
const repoDir = ".."

// The binary's exit statuses (main.go).
const (
	exitOK     = 0
	exitFail   = 1
	exitConfig = 2
)

func TestMain(m *testing.M) {
	os.Exit(buildAndRun(m))
}

// buildAndRun builds tandemBin into a temporary directory, runs the tests and removes it; the
// Postgres server the replica tests share is started by the first of them and stopped after all.
func buildAndRun(m *testing.M) int {
	dir, err := os.MkdirTemp("", "tandem-bin-")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	defer os.RemoveAll(dir)
	tandemBin = filepath.Join(dir, "tandem")
	args := []string{"build", "-ldflags", "-X main.version=test-build", "-o", tandemBin}
	if raceEnabled {
		args = append(args, "-race")
	}
	build := exec.Command("go", append(args, "github.com/tandem-run/tandem")...)
	build.Stdout, build.Stderr = os.Stderr, os.Stderr
	if err := build.Run(); err != nil {
		fmt.Fprintln(os.Stderr, "build tandem:", err)
		return 1
	}
	return tandemtest.RunWithPostgres(m)
}

// result is what a finished tandem process left.
type result struct {
	code           int
	stdout, stderr string
}

// runTandem runs the binary in dir with only the given environment (plus PATH, HOME and GORACE)
// and waits up to 60 s.
//
// A race-enabled binary that exits 0 sleeps for GORACE's atexit_sleep_ms (1 s by default) so that
// goroutines still running may report a race; the tests run about eighty short commands, so
// runTandem sets it to 0: races found while the command runs still fail it (exit status 66).
func runTandem(t *testing.T, dir string, env []string, args ...string) result {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, tandemBin, args...)
	cmd.Dir = dir
	cmd.Env = append([]string{"PATH=" + os.Getenv("PATH"), "HOME=" + os.Getenv("HOME"),
		strings.TrimSpace("GORACE=" + os.Getenv("GORACE") + " atexit_sleep_ms=0")}, env...)
	var out, errb bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errb
	err := cmd.Run()
	code := 0
	if err != nil {
		ee, ok := err.(*exec.ExitError)
		if !ok {
			t.Fatalf("run tandem %v: %v", args, err)
		}
		code = ee.ExitCode()
	}
	return result{code: code, stdout: out.String(), stderr: errb.String()}
}

// writeFile writes content to path, creating its directory.
func writeFile(t *testing.T, path, content string) { tandemtest.WriteFile(t, path, content) }

// TestVersionCommand: the binary reports the version stamped into it at link time.
func TestVersionCommand(t *testing.T) {
	t.Parallel()
	r := runTandem(t, t.TempDir(), nil, "version")
	want := "tandem test-build commit=none date=unknown go=" + runtime.Version()
	if r.code != exitOK || strings.TrimSpace(r.stdout) != want {
		t.Fatalf("version: code %d stdout %q, want %q", r.code, r.stdout, want)
	}
}

// TestConfigFileInWorkingDirectory: the process reads ./config.yaml of its working directory and
// its environment; --config names another file instead of ./config.yaml, not on top of it. (The
// root package's TestConfigLayers and TestInvalidConfig check the layers in-process.)
func TestConfigFileInWorkingDirectory(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	writeFile(t, filepath.Join(dir, "config.yaml"), "server:\n  threads: 7\n  backlog: 11\njobs:\n  queues:\n    default: {weight: 2}\n    mail: {weight: 1, concurrency: 2}\n  exec:\n    allow: [/bin/echo]\n")
	r := runTandem(t, dir, []string{"TANDEM_SERVER_BACKLOG=12"}, "config", "--sources")
	if r.code != exitOK || !strings.Contains(r.stdout, "threads: 7 # file config.yaml") || !strings.Contains(r.stdout, "backlog: 12 # env TANDEM_SERVER_BACKLOG") {
		t.Fatalf("config --sources beside config.yaml: %+v", r)
	}
	if r := runTandem(t, dir, nil, "check-config"); r.code != exitOK || !strings.Contains(r.stdout, "configuration ok (config.yaml)") {
		t.Fatalf("check-config: %+v", r)
	}
	other := filepath.Join(dir, "other.yaml")
	writeFile(t, other, "log:\n  level: debug\n")
	r = runTandem(t, dir, nil, "config", "--config", other)
	if r.code != exitOK || !strings.Contains(r.stdout, "level: debug") || strings.Contains(r.stdout, "threads: 7") {
		t.Fatalf("--config other.yaml beside config.yaml: %+v", r)
	}
}
