package main

import (
	"os/exec"
	"slices"
	"strings"
	"testing"
)

// TestOnlyJobsIsTheDoorToTheStore: the API and the metrics know the jobs runtime, never the store
// behind it, and jobs knows only its own Store interface, so that a backend can be swapped without
// touching them. The package that picks the backend (main) and the tests of real files may
// import store and store/postgres; the conformance suite (jobs/storetest) knows only the
// interface, and its backends package opens each implementation.
func TestOnlyJobsIsTheDoorToTheStore(t *testing.T) {
	const mod = "github.com/tandem-run/tandem/"
	for _, pkg := range []string{"server", "metrics", "jobs", "jobs/storetest", "web", "pool", "autoscale"} {
		out, err := exec.Command("go", "list", "-deps", "./"+pkg).CombinedOutput()
		if err != nil {
			t.Fatalf("go list -deps ./%s: %v\n%s", pkg, err, out)
		}
		deps := strings.Fields(string(out))
		if !slices.Contains(deps, mod+pkg) {
			t.Fatalf("go list -deps ./%s does not list the package itself:\n%s", pkg, out)
		}
		for _, backend := range []string{"store", "store/postgres"} {
			if slices.Contains(deps, mod+backend) {
				t.Errorf("package %s depends on package %s (go list -deps ./%s): only main and tests pick the backend; the rest know the jobs runtime and its types", pkg, backend, pkg)
			}
		}
	}
}
