package main

import (
	"bytes"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/tandem-run/tandem/internal/tandemtest"
)

func TestMain(m *testing.M) { os.Exit(tandemtest.RunWithPostgres(m)) }

// TestDocShowsThisProgram: docs/postgres.md shows this file byte for byte, so what a reader
// copies is what TestRun runs.
func TestDocShowsThisProgram(t *testing.T) {
	doc, err := os.ReadFile("../../docs/postgres.md")
	if err != nil {
		t.Fatal(err)
	}
	src, err := os.ReadFile("main.go")
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Contains(doc, []byte("```go\n"+string(src)+"```\n")) {
		t.Fatal("docs/postgres.md does not show examples/enqueuetx/main.go as a ```go block; copy the file into it")
	}
}

// TestRun builds the program and runs it on a fresh database: the committed job runs, the
// rolled-back one never existed.
func TestRun(t *testing.T) {
	url := tandemtest.Postgres(t)
	bin := filepath.Join(t.TempDir(), "enqueuetx")
	if out, err := exec.Command("go", "build", "-o", bin, ".").CombinedOutput(); err != nil {
		t.Fatalf("go build: %v\n%s", err, out)
	}
	cmd := exec.Command(bin)
	cmd.Env = append(os.Environ(), "TANDEM_STORE_URL="+url)
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	if err := cmd.Run(); err != nil {
		t.Fatalf("run: %v\n%s", err, stderr.String())
	}
	want := "welcomed kept@example.com\ncommitted job: succeeded | rolled-back job exists: false"
	if got := strings.TrimSpace(stdout.String()); got != want {
		t.Fatalf("output %q, want %q (stderr %s)", got, want, stderr.String())
	}
}
