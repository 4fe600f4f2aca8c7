package main

import (
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"
)

// TestMakeBenchRunsEveryBenchmark: `make bench` (dry run) runs every script in bench/, each of
// which exists, and the Go benchmarks.
func TestMakeBenchRunsEveryBenchmark(t *testing.T) {
	cmd := exec.Command("make", "-s", "bench")
	cmd.Env = append(os.Environ(), "DRY_RUN=1")
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("make bench: %v\n%s", err, out)
	}
	var ran []string
	for _, m := range regexp.MustCompile(`(?m)^== bash (bench/\S+\.sh)$`).FindAllStringSubmatch(string(out), -1) {
		if _, err := os.Stat(m[1]); err != nil {
			t.Errorf("make bench runs %s: %v", m[1], err)
		}
		ran = append(ran, m[1])
	}
	scripts, _ := filepath.Glob("bench/*.sh")
	scripts = slices.DeleteFunc(scripts, func(s string) bool { return s == "bench/lib.sh" || s == "bench/run.sh" })
	slices.Sort(scripts)
	slices.Sort(ran)
	if !slices.Equal(ran, scripts) {
		t.Errorf("make bench runs %v, bench/ holds %v", ran, scripts)
	}
	if !strings.Contains(string(out), "== go test -run ^$ -bench . ") {
		t.Errorf("make bench does not run the Go benchmarks:\n%s", out)
	}
}
