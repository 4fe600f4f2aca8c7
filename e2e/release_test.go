package e2e

import (
	"debug/elf"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
)

// TestReleaseBuildIsStatic runs the Dockerfile's build line (make release) outside Docker and
// checks that the binary is static and reports the injected version, commit and date.
func TestReleaseBuildIsStatic(t *testing.T) {
	t.Parallel()
	if testing.Short() {
		t.Skip("builds a release binary")
	}
	docker, err := os.ReadFile(filepath.Join(repoDir, "Dockerfile"))
	if err != nil {
		t.Fatal(err)
	}
	if !regexp.MustCompile(`(?m)^RUN make release VERSION=\$\{VERSION\} COMMIT=\$\{COMMIT\} DATE=\$\{DATE\} OUT=/out/tandem$`).Match(docker) {
		t.Fatal("the Dockerfile no longer builds with `make release`; update this test with it")
	}
	out := filepath.Join(t.TempDir(), "tandem")
	cmd := exec.Command("make", "release", "VERSION=v9.8.7", "COMMIT=abc1234", "DATE=2026-11-24T00:00:00Z", "OUT="+out)
	cmd.Dir = repoDir
	if b, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("make release: %v\n%s", err, b)
	}
	f, err := elf.Open(out)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	for _, p := range f.Progs {
		if p.Type == elf.PT_INTERP {
			t.Fatal("the release binary has an ELF interpreter: it is dynamically linked")
		}
	}
	if libs, _ := f.ImportedLibraries(); len(libs) > 0 {
		t.Fatalf("the release binary needs shared libraries: %v", libs)
	}
	v, err := exec.Command(out, "version").Output()
	if err != nil {
		t.Fatal(err)
	}
	if !strings.HasPrefix(string(v), "tandem v9.8.7 commit=abc1234 date=2026-11-24T00:00:00Z go=go") {
		t.Fatalf("version: %q", v)
	}
}

// TestHealthcheckCommand: exit 0 against a ready tandem, non-zero when nothing answers.
func TestHealthcheckCommand(t *testing.T) {
	t.Parallel()
	p := startTandem(t, "TANDEM_STORE_PATH="+filepath.Join(t.TempDir(), "db"))
	if r := runTandem(t, t.TempDir(), nil, "healthcheck", "--url", p.HTTPURL+"/readyz"); r.code != 0 {
		t.Fatalf("healthy: %+v", r)
	}
	p.Kill9()
	if r := runTandem(t, t.TempDir(), nil, "healthcheck", "--url", p.HTTPURL+"/readyz", "--timeout", "1s"); r.code != 1 {
		t.Fatalf("down: %+v", r)
	}
}
