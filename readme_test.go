package main

import (
	"context"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"

	"github.com/tandem-run/tandem/jobs"
	"github.com/tandem-run/tandem/kinds"
	"github.com/tandem-run/tandem/pool"
	"github.com/tandem-run/tandem/store"
)

// TestREADMEListsTheBuiltInKinds: every kind the binary registers has a row in the README's table
// of built-in kinds, and the table lists no other.
func TestREADMEListsTheBuiltInKinds(t *testing.T) {
	ctx := context.Background()
	st, err := store.Open(ctx, store.Options{Path: filepath.Join(t.TempDir(), "db")})
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	workers, err := pool.New(pool.Options{Name: "jobs", Size: 1, Backlog: pool.MaxBacklog})
	if err != nil {
		t.Fatal(err)
	}
	defer workers.Release(ctx)
	rt, err := jobs.New(jobs.Options{Store: st, Pool: workers})
	if err != nil {
		t.Fatal(err)
	}
	if err := kinds.Register(rt, kinds.Options{}); err != nil {
		t.Fatal(err)
	}
	readme, err := os.ReadFile("README.md")
	if err != nil {
		t.Fatal(err)
	}
	_, section, _ := strings.Cut(string(readme), "## Job kinds built into the binary\n")
	section, _, _ = strings.Cut(section, "\n## ")
	var listed []string
	for _, line := range strings.Split(section, "\n") {
		if name, ok := strings.CutPrefix(line, "| `"); ok {
			listed = append(listed, name[:strings.Index(name, "`")])
		}
	}
	slices.Sort(listed)
	if got, want := strings.Join(listed, " "), strings.Join(rt.Kinds(), " "); got != want {
		t.Fatalf("README lists kinds %q, the binary registers %q", got, want)
	}
}

// TestREADMECommandsRunOnLinux: the shell lines a reader copies use no macOS-only command.
func TestREADMECommandsRunOnLinux(t *testing.T) {
	readme, err := os.ReadFile("README.md")
	if err != nil {
		t.Fatal(err)
	}
	for _, line := range strings.Split(string(readme), "\n") {
		if strings.HasPrefix(line, "open ") || strings.HasPrefix(line, "pbcopy") || strings.HasPrefix(line, "brew ") {
			t.Errorf("README line %q does not run on Linux", line)
		}
	}
}

// TestREADMENamesTheWiringFile: the file the README's layout says wires the process is the one
// holding serve's life.
func TestREADMENamesTheWiringFile(t *testing.T) {
	readme, err := os.ReadFile("README.md")
	if err != nil {
		t.Fatal(err)
	}
	m := regexp.MustCompile("`([a-z_]+\\.go)` wires configuration").FindSubmatch(readme)
	if m == nil {
		t.Fatal("the README's layout no longer says which file wires the process")
	}
	src, err := os.ReadFile(string(m[1]))
	if err != nil || !strings.Contains(string(src), "\nfunc runServe(") {
		t.Fatalf("the README says %s wires the process, but runServe is not there (%v)", m[1], err)
	}
}
