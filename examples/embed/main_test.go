package main

import (
	"bytes"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
)

// TestREADMEShowsThisProgram: the README's embedding example is this file, byte for byte, so the
// snippet a reader copies is the program this package builds and TestRun runs.
func TestREADMEShowsThisProgram(t *testing.T) {
	readme, err := os.ReadFile("../../README.md")
	if err != nil {
		t.Fatal(err)
	}
	src, err := os.ReadFile("main.go")
	if err != nil {
		t.Fatal(err)
	}
	block := "```go\n" + string(src) + "```\n"
	if !bytes.Contains(readme, []byte(block)) {
		t.Fatal("README.md does not show examples/embed/main.go as a ```go block; copy the file into it")
	}
}

// TestRun builds the program and runs it in a fresh directory: its job runs and succeeds before
// it exits, and the job is in the bbolt file it leaves.
func TestRun(t *testing.T) {
	bin := filepath.Join(t.TempDir(), "embed")
	if out, err := exec.Command("go", "build", "-o", bin, ".").CombinedOutput(); err != nil {
		t.Fatalf("go build: %v\n%s", err, out)
	}
	dir := t.TempDir()
	cmd := exec.Command(bin)
	cmd.Dir = dir
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	if err := cmd.Run(); err != nil {
		t.Fatalf("run: %v\n%s", err, stderr.String())
	}
	if got, want := strings.TrimSpace(stdout.String()), `email succeeded {"sent_to":"a@b.c"}`; got != want {
		t.Fatalf("output %q, want %q (stderr %s)", got, want, stderr.String())
	}
	if _, err := os.Stat(filepath.Join(dir, "data", "tandem.db")); err != nil {
		t.Fatalf("no store file: %v", err)
	}
}
