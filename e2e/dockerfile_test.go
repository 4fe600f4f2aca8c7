package e2e

import (
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"

	"github.com/tandem-run/tandem/internal/tandemtest"
)

// dockerfile is what the image's HEALTHCHECK depends on, read from the Dockerfile.
type dockerfile struct {
	env         []string // ENV of the final stage, as NAME=value
	workdir     string
	healthcheck []string // the exec form of HEALTHCHECK CMD
	copies      map[string]string
}

func readDockerfile(t *testing.T) dockerfile {
	t.Helper()
	raw, err := os.ReadFile(filepath.Join(repoDir, "Dockerfile"))
	if err != nil {
		t.Fatal(err)
	}
	text := strings.ReplaceAll(string(raw), "\\\n", " ") // join continued lines
	d := dockerfile{copies: map[string]string{}}
	for _, line := range strings.Split(text, "\n") {
		word, rest, _ := strings.Cut(strings.TrimSpace(line), " ")
		switch word {
		case "FROM":
			d = dockerfile{copies: map[string]string{}} // only the final stage counts
		case "ENV":
			d.env = append(d.env, strings.Fields(rest)...)
		case "WORKDIR":
			d.workdir = strings.TrimSpace(rest)
		case "COPY":
			if f := strings.Fields(rest); len(f) == 2 {
				d.copies[f[1]] = f[0]
			}
		case "HEALTHCHECK":
			m := regexp.MustCompile(`CMD (\[.*\])`).FindStringSubmatch(rest)
			if m == nil || json.Unmarshal([]byte(m[1]), &d.healthcheck) != nil {
				t.Fatalf("HEALTHCHECK is not in exec form: %s", rest)
			}
		}
	}
	if len(d.healthcheck) == 0 || filepath.Base(d.healthcheck[0]) != "tandem" {
		t.Fatalf("no HEALTHCHECK running tandem: %+v", d)
	}
	return d
}

// TestDockerHealthcheckFollowsTheConfiguration runs the image's HEALTHCHECK command the way
// Docker does (the image's ENV, its WORKDIR with the image's config.yaml) against a tandem that
// `docker run -e TANDEM_SERVER_ADDR=...` moved off port 8080: the check must follow it.
func TestDockerHealthcheckFollowsTheConfiguration(t *testing.T) {
	t.Parallel()
	d := readDockerfile(t)
	src, ok := d.copies[filepath.Join(d.workdir, "config.yaml")]
	if !ok {
		t.Fatalf("the image has no config.yaml in its WORKDIR %s", d.workdir)
	}
	dir := t.TempDir() // the WORKDIR
	conf, err := os.ReadFile(filepath.Join(repoDir, src))
	if err != nil {
		t.Fatal(err)
	}
	writeFile(t, filepath.Join(dir, "config.yaml"), string(conf))
	env := func(port int) []string {
		out := []string{fmt.Sprintf("TANDEM_SERVER_ADDR=127.0.0.1:%d", port), "TANDEM_STORE_PATH=" + filepath.Join(t.TempDir(), "db")}
		for _, kv := range d.env {
			if name, _, _ := strings.Cut(kv, "="); name != "TANDEM_SERVER_ADDR" && name != "TANDEM_STORE_PATH" {
				out = append(out, kv)
			}
		}
		return out
	}
	port := tandemtest.FreePort(t)
	startTandem(t, env(port)...)
	if r := runTandem(t, dir, env(port), d.healthcheck[1:]...); r.code != 0 {
		t.Fatalf("HEALTHCHECK %v against tandem on port %d: %+v", d.healthcheck, port, r)
	}
	if r := runTandem(t, dir, env(tandemtest.FreePort(t)), d.healthcheck[1:]...); r.code != 1 {
		t.Fatalf("HEALTHCHECK with nothing on the configured port: %+v, want exit 1", r)
	}
}
