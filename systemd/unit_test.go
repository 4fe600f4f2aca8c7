package systemd

import (
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"
)

// unitForTest copies the shipped unit with ExecStart pointing at an executable that exists here
// (systemd-analyze verify checks that), and the working directory at one that exists.
func unitForTest(t *testing.T) string {
	t.Helper()
	raw, err := os.ReadFile("../deploy/systemd/tandem.service")
	if err != nil {
		t.Fatal(err)
	}
	exe, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	unit := strings.Replace(string(raw), "ExecStart=/usr/local/bin/tandem", "ExecStart="+exe, 1)
	unit = strings.Replace(unit, "WorkingDirectory=/etc/tandem", "WorkingDirectory="+dir, 1)
	path := filepath.Join(dir, "tandem.service")
	if err := os.WriteFile(path, []byte(unit), 0o644); err != nil {
		t.Fatal(err)
	}
	return path
}

func systemdAnalyze(t *testing.T) string {
	path, err := exec.LookPath("systemd-analyze")
	if err != nil {
		if os.Getenv("CI") != "" {
			t.Fatal("systemd-analyze not found; .ci/run installs the systemd package")
		}
		t.Skip("systemd-analyze not found (apt-get install systemd)")
	}
	return path
}

// TestUnitVerifies: systemd-analyze verify reports nothing at all about the unit.
func TestUnitVerifies(t *testing.T) {
	sa := systemdAnalyze(t)
	out, err := exec.Command(sa, "verify", unitForTest(t)).CombinedOutput()
	if err != nil || strings.TrimSpace(string(out)) != "" {
		t.Fatalf("systemd-analyze verify: %v\n%s", err, out)
	}
}

// TestUnitExposure: systemd-analyze security rates the unit's exposure at most 2.0.
func TestUnitExposure(t *testing.T) {
	sa := systemdAnalyze(t)
	out, err := exec.Command(sa, "security", "--offline=yes", unitForTest(t)).CombinedOutput()
	if err != nil {
		t.Fatalf("systemd-analyze security: %v\n%s", err, out)
	}
	m := regexp.MustCompile(`Overall exposure level for \S+: ([0-9.]+)`).FindSubmatch(out)
	if m == nil {
		t.Fatalf("no exposure level in:\n%s", out)
	}
	score, _ := strconv.ParseFloat(string(m[1]), 64)
	t.Logf("exposure %.1f", score)
	if score > 2.0 {
		t.Fatalf("exposure %.1f, want at most 2.0:\n%s", score, out)
	}
}

// TestUnitKeys: the unit keeps what tandem relies on.
func TestUnitKeys(t *testing.T) {
	raw, _ := os.ReadFile("../deploy/systemd/tandem.service")
	for _, want := range []string{"Type=notify", "WatchdogSec=", "DynamicUser=yes", "StateDirectory=tandem",
		"ProtectSystem=strict", "NoNewPrivileges=yes", "ProtectHome=yes", "PrivateTmp=yes", "CapabilityBoundingSet=\n",
		"LimitNOFILE=", "#CPUQuota=", "TANDEM_STORE_PATH=%S/tandem/tandem.db", "ExecReload=/bin/kill -HUP $MAINPID"} {
		if !strings.Contains(string(raw), want) {
			t.Errorf("unit lacks %q", want)
		}
	}
}
