package main

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
)

// tandemBin is the real binary, built once by TestMain for the tests that run it as a process.
var tandemBin string

func TestMain(m *testing.M) {
	dir, err := os.MkdirTemp("", "tandem-bin-")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	tandemBin = filepath.Join(dir, "tandem")
	build := exec.Command("go", "build", "-race", "-ldflags", "-X main.version=test-build", "-o", tandemBin, ".")
	if !raceEnabled {
		build = exec.Command("go", "build", "-ldflags", "-X main.version=test-build", "-o", tandemBin, ".")
	}
	build.Stdout, build.Stderr = os.Stderr, os.Stderr
	if err := build.Run(); err != nil {
		fmt.Fprintln(os.Stderr, "build tandem:", err)
		os.Exit(1)
	}
	code := m.Run()
	os.RemoveAll(dir)
	os.Exit(code)
}

// result is what a finished tandem process left.
type result struct {
	code           int
	stdout, stderr string
}

// runTandem runs the binary in dir with only the given environment (plus PATH and HOME) and
// waits up to 60 s.
func runTandem(t *testing.T, dir string, env []string, args ...string) result {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, tandemBin, args...)
	cmd.Dir = dir
	cmd.Env = append([]string{"PATH=" + os.Getenv("PATH"), "HOME=" + os.Getenv("HOME")}, env...)
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

func writeFile(t *testing.T, path, content string) {
	t.Helper()
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(path, []byte(content), 0o644); err != nil {
		t.Fatal(err)
	}
}

func TestVersionCommand(t *testing.T) {
	r := runTandem(t, t.TempDir(), nil, "version")
	want := "tandem test-build commit=none date=unknown go=" + runtime.Version()
	if r.code != 0 || strings.TrimSpace(r.stdout) != want {
		t.Fatalf("version: code %d stdout %q, want %q", r.code, r.stdout, want)
	}
}

func TestUnknownCommand(t *testing.T) {
	r := runTandem(t, t.TempDir(), nil, "frobnicate")
	if r.code != 2 || !strings.Contains(r.stderr, `unknown command "frobnicate"`) {
		t.Fatalf("got %+v", r)
	}
}

// TestHelp: a new user's first tries list the commands on stdout and exit 0; help for one
// command prints its flags; help for an unknown command is a usage error.
func TestHelp(t *testing.T) {
	dir := t.TempDir()
	for _, args := range [][]string{{"--help"}, {"-h"}, {"help"}} {
		r := runTandem(t, dir, nil, args...)
		if r.code != 0 || !strings.Contains(r.stdout, "Commands:") || !strings.Contains(r.stdout, "enqueue ") {
			t.Errorf("tandem %v: %+v, want the command list on stdout", args, r)
		}
	}
	r := runTandem(t, dir, nil, "help", "enqueue")
	if r.code != 0 || !strings.Contains(r.stderr, "--payload") {
		t.Errorf("tandem help enqueue: %+v, want enqueue's flags", r)
	}
	if r := runTandem(t, dir, nil, "help", "frobnicate"); r.code != 2 || !strings.Contains(r.stderr, `unknown command "frobnicate"`) {
		t.Errorf("tandem help frobnicate: %+v", r)
	}
}

// TestConfigLayers checks defaults < file < env < flags through `tandem config --sources`.
func TestConfigLayers(t *testing.T) {
	dir := t.TempDir()
	writeFile(t, filepath.Join(dir, "config.yaml"), "server:\n  threads: 7\n  backlog: 11\njobs:\n  concurrency: 3\n")
	r := runTandem(t, dir,
		[]string{"TANDEM_SERVER_BACKLOG=12", "TANDEM_JOBS_CONCURRENCY=4", "TANDEM_SERVER_QUEUE_TIMEOUT=3s"},
		"config", "--sources", "--concurrency=5")
	if r.code != 0 {
		t.Fatalf("config: %+v", r)
	}
	for _, want := range []string{
		"threads: 7 # file config.yaml",
		"backlog: 12 # env TANDEM_SERVER_BACKLOG",
		"queue_timeout: 3s # env TANDEM_SERVER_QUEUE_TIMEOUT",
		"concurrency: 5 # flag --concurrency",
		"addr: :8080 # default",
		"pin_cpus: true # default",
	} {
		if !strings.Contains(r.stdout, want) {
			t.Errorf("config --sources lacks %q:\n%s", want, r.stdout)
		}
	}
	// --config names another file; the long flag form works too.
	other := filepath.Join(dir, "other.yaml")
	writeFile(t, other, "log:\n  level: debug\n")
	r = runTandem(t, dir, nil, "config", "--config", other, "--server.threads=9")
	if r.code != 0 || !strings.Contains(r.stdout, "level: debug") || !strings.Contains(r.stdout, "threads: 9") || strings.Contains(r.stdout, "threads: 7") {
		t.Fatalf("--config other.yaml: %+v", r)
	}
}

func TestConfigHidesToken(t *testing.T) {
	r := runTandem(t, t.TempDir(), []string{"TANDEM_ADMIN_TOKEN=s3cret-value"}, "config")
	if r.code != 0 || strings.Contains(r.stdout, "s3cret-value") || !strings.Contains(r.stdout, "token: (set, not shown)") {
		t.Fatalf("token leaked or missing: %+v", r)
	}
}

// TestInvalidConfig checks that each kind of mistake stops the start with exit status 2 and a
// message naming the key, the value and what is allowed.
func TestInvalidConfig(t *testing.T) {
	cases := []struct {
		name string
		file string
		env  []string
		args []string
		want []string
	}{
		{"zero threads", "", nil, []string{"--threads=0"}, []string{"server.threads", `"0"`, "auto or an integer from 1 to 4096"}},
		{"negative threads env", "", []string{"TANDEM_SERVER_THREADS=-3"}, nil, []string{"server.threads", "env TANDEM_SERVER_THREADS", `"-3"`}},
		{"threads abc in file", "server:\n  threads: abc\n", nil, nil, []string{"server.threads", "file config.yaml", `"abc"`}},
		{"bad duration", "server:\n  queue_timeout: soon\n", nil, nil, []string{"server.queue_timeout", `"soon"`, "duration"}},
		{"backlog over max", "", nil, []string{"--server.backlog=100001"}, []string{"server.backlog", "from 0 to 100000"}},
		{"unknown file key", "server:\n  treads: 4\n", nil, nil, []string{"server.treads", "unknown key"}},
		{"unknown env var", "", []string{"TANDEM_SERVER_TREADS=4"}, nil, []string{"TANDEM_SERVER_TREADS", "unknown environment variable"}},
		{"unknown flag", "", nil, []string{"--server.treads=4"}, []string{"unknown flag: --server.treads"}},
		{"bad enum", "", []string{"TANDEM_STORE_SYNC=sometimes"}, nil, []string{"store.sync", "always, none"}},
		{"bad bool", "", []string{"TANDEM_JOBS_PIN_CPUS=maybe"}, nil, []string{"jobs.pin_cpus", "true or false"}},
		{"bad addr", "", []string{"TANDEM_SERVER_ADDR=8080"}, nil, []string{"server.addr", "host:port"}},
		{"bad queue key", "jobs:\n  queues:\n    mail:\n      wieght: 2\n", nil, nil, []string{"jobs.queues", `unknown key "wieght"`}},
		{"relative exec path", "", []string{"TANDEM_JOBS_EXEC_ALLOW=echo"}, nil, []string{"jobs.exec.allow", "absolute path"}},
		{"autoscale min over max", "jobs:\n  autoscale:\n    min: 5\n    max: 2\n", nil, nil, []string{"jobs.autoscale.min", "min <= max"}},
		{"public admin without token", "", []string{"TANDEM_ADMIN_ADDR=0.0.0.0:9090"}, nil, []string{"admin.addr", "token"}},
		{"malformed yaml", "server: [\n", nil, nil, []string{"config file config.yaml"}},
	}
	for _, tc := range cases {
		for _, cmd := range []string{"check-config", "serve"} {
			t.Run(tc.name+"/"+cmd, func(t *testing.T) {
				dir := t.TempDir()
				if tc.file != "" {
					writeFile(t, filepath.Join(dir, "config.yaml"), tc.file)
				}
				r := runTandem(t, dir, append(tc.env, "TANDEM_STORE_PATH="+filepath.Join(dir, "db")), append([]string{cmd}, tc.args...)...)
				if r.code != 2 {
					t.Fatalf("exit %d, want 2; stderr: %s", r.code, r.stderr)
				}
				for _, w := range tc.want {
					if !strings.Contains(r.stderr, w) {
						t.Errorf("stderr lacks %q: %s", w, r.stderr)
					}
				}
				if _, err := os.Stat(filepath.Join(dir, "db")); err == nil {
					t.Errorf("a rejected configuration created the database")
				}
			})
		}
	}
}

func TestCheckConfigOK(t *testing.T) {
	dir := t.TempDir()
	writeFile(t, filepath.Join(dir, "config.yaml"), "jobs:\n  queues:\n    default: {weight: 2}\n    mail: {weight: 1, concurrency: 2}\n  exec:\n    allow: [/bin/echo]\n")
	r := runTandem(t, dir, nil, "check-config")
	if r.code != 0 || !strings.Contains(r.stdout, "configuration ok (config.yaml)") {
		t.Fatalf("%+v", r)
	}
}
