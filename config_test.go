package main

import (
	"errors"
	"os"
	"path/filepath"
	"reflect"
	"testing"
	"time"

	"github.com/spf13/pflag"
)

// TestDefaultsMatchSchema: config.yaml (the defaults layer) names every schema key and nothing else,
// so the documented defaults are the real ones.
func TestDefaultsMatchSchema(t *testing.T) {
	defaults, err := yamlLayer(defaultConfigYAML)
	if err != nil {
		t.Fatal(err)
	}
	for _, o := range options {
		if _, ok := defaults[o.key]; !ok {
			t.Errorf("config.yaml lacks %s", o.key)
		}
	}
	for key := range defaults {
		if _, ok := lookupOption(key); !ok {
			t.Errorf("config.yaml has %s, which the schema does not know", key)
		}
	}
	l, err := loadConfig(LoadOptions{ConfigPath: "", Environ: []string{}})
	if err != nil {
		t.Fatal(err)
	}
	c := l.Config
	if c.Server.Threads != 0 || c.Jobs.Concurrency != 0 || c.Server.QueueTimeout != 2*time.Second || c.Store.Sync != "always" || !c.Jobs.PinCPUs {
		t.Fatalf("unexpected defaults: %+v", c)
	}
	if q := c.Jobs.Queues["default"]; q.Weight != 1 {
		t.Fatalf("default queue = %+v", c.Jobs.Queues)
	}
}

// TestRenderedConfigLoadsBack: what `tandem config` prints is a valid config file that yields the
// same configuration.
func TestRenderedConfigLoadsBack(t *testing.T) {
	fs := pflag.NewFlagSet("t", pflag.ContinueOnError)
	registerConfigFlags(fs)
	if err := fs.Parse([]string{"--threads=12", "--server.queue_timeout=750ms", "--jobs.exec.allow=/bin/true,/bin/echo"}); err != nil {
		t.Fatal(err)
	}
	l, err := loadConfig(LoadOptions{Flags: fs, Environ: []string{"TANDEM_JOBS_PIN_CPUS=false"}})
	if err != nil {
		t.Fatal(err)
	}
	out, err := renderConfig(l, false)
	if err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(t.TempDir(), "rendered.yaml")
	if err := os.WriteFile(path, out, 0o600); err != nil {
		t.Fatal(err)
	}
	again, err := loadConfig(LoadOptions{ConfigPath: path, Environ: []string{}})
	if err != nil {
		t.Fatalf("rendered config does not load: %v\n%s", err, out)
	}
	if !reflect.DeepEqual(again.Config, l.Config) {
		t.Fatalf("round trip changed the config:\n%+v\n%+v", l.Config, again.Config)
	}
}

// TestEnvNamesAreUnambiguous: every key has its own variable and none is a prefix-collision.
func TestEnvNamesAreUnambiguous(t *testing.T) {
	seen := map[string]string{}
	for _, o := range options {
		n := envName(o.key)
		if prev, dup := seen[n]; dup {
			t.Errorf("%s and %s share %s", prev, o.key, n)
		}
		seen[n] = o.key
	}
	l, err := loadConfig(LoadOptions{Environ: []string{"TANDEM_SERVER_READ_HEADER_TIMEOUT=1s", "TANDEM_SERVER_READ_TIMEOUT=2s", "TANDEM_SERVER_URL=http://x"}})
	if err != nil {
		t.Fatal(err)
	}
	if l.Config.Server.ReadHeaderTimeout != time.Second || l.Config.Server.ReadTimeout != 2*time.Second {
		t.Fatalf("got %v / %v", l.Config.Server.ReadHeaderTimeout, l.Config.Server.ReadTimeout)
	}
	var ce *ConfigError
	if _, err := loadConfig(LoadOptions{Environ: []string{"TANDEM_JOBS_QUEUES=x"}}); !errors.As(err, &ce) {
		t.Fatalf("TANDEM_JOBS_QUEUES: got %v, want a ConfigError (queues are set in the file)", err)
	}
}
