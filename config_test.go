package main

import (
	"errors"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/spf13/pflag"
)

// TestDefaultsMatchSchema: config.yaml (the defaults layer) names every schema key and nothing else,
// so the documented defaults are the real ones.
func TestDefaultsMatchSchema(t *testing.T) {
	t.Parallel()
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
	if c.Store.Backend != "bbolt" || c.Store.URL != "" || c.Store.MaxConns != 0 || c.Jobs.RescueAfter != 30*time.Second || c.Node.Name != "" {
		t.Fatalf("unexpected store, rescue or node defaults: %+v %v %+v", c.Store, c.Jobs.RescueAfter, c.Node)
	}
	if q := c.Jobs.Queues["default"]; q.Weight != 1 {
		t.Fatalf("default queue = %+v", c.Jobs.Queues)
	}
}

// TestRenderedConfigLoadsBack: what `tandem config` prints is a valid config file that yields the
// same configuration.
func TestRenderedConfigLoadsBack(t *testing.T) {
	t.Parallel()
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
	t.Parallel()
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

// TestConfigLayers checks defaults < file < env < flags through `tandem config --sources`, and that
// --config names the file (e2e's TestConfigFileInWorkingDirectory checks ./config.yaml).
func TestConfigLayers(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	file := filepath.Join(dir, "config.yaml")
	writeFile(t, file, "server:\n  threads: 7\n  backlog: 11\njobs:\n  concurrency: 3\n")
	r := runCmd(t,
		[]string{"TANDEM_SERVER_BACKLOG=12", "TANDEM_JOBS_CONCURRENCY=4", "TANDEM_SERVER_QUEUE_TIMEOUT=3s", "TANDEM_LOG_LEVEL=warn", "TANDEM_LOG_LEVEL=error",
			"TANDEM_RUNTIME_WATCH_INTERVAL=0s"},
		"config", "--config", file, "--sources", "--concurrency=5")
	if r.code != 0 {
		t.Fatalf("config: %+v", r)
	}
	for _, want := range []string{
		"threads: 7 # file " + file,
		"backlog: 12 # env TANDEM_SERVER_BACKLOG",
		"queue_timeout: 3s # env TANDEM_SERVER_QUEUE_TIMEOUT",
		"level: error # env TANDEM_LOG_LEVEL", // the last of a name wins, as exec.Cmd passes it on
		"concurrency: 5 # flag --concurrency",
		"addr: :8080 # default",
		"pin_cpus: true # default",
		`watch_interval: "off" # env TANDEM_RUNTIME_WATCH_INTERVAL`,
	} {
		if !strings.Contains(r.stdout, want) {
			t.Errorf("config --sources lacks %q:\n%s", want, r.stdout)
		}
	}
	// The long flag form works too.
	other := filepath.Join(dir, "other.yaml")
	writeFile(t, other, "log:\n  level: debug\n")
	r = runCmd(t, nil, "config", "--config", other, "--server.threads=9")
	if r.code != 0 || !strings.Contains(r.stdout, "level: debug") || !strings.Contains(r.stdout, "threads: 9") || strings.Contains(r.stdout, "threads: 7") {
		t.Fatalf("--config other.yaml: %+v", r)
	}
}

func TestConfigHidesToken(t *testing.T) {
	t.Parallel()
	r := runCmd(t, []string{"TANDEM_ADMIN_TOKEN=s3cret-value"}, "config", "--config", emptyConfig(t))
	if r.code != 0 || strings.Contains(r.stdout, "s3cret-value") || !strings.Contains(r.stdout, "token: (set, not shown)") {
		t.Fatalf("token leaked or missing: %+v", r)
	}
}

// TestInvalidConfig checks that each kind of mistake stops the start with exit status 2 and a
// message naming the key, the value and what is allowed. $FILE in a wanted text is the file's path.
func TestInvalidConfig(t *testing.T) {
	t.Parallel()
	cases := []struct {
		name string
		file string
		env  []string
		args []string
		want []string
	}{
		{"zero threads", "", nil, []string{"--threads=0"}, []string{"server.threads", `"0"`, "auto or an integer from 1 to 4096"}},
		{"negative threads env", "", []string{"TANDEM_SERVER_THREADS=-3"}, nil, []string{"server.threads", "env TANDEM_SERVER_THREADS", `"-3"`}},
		{"threads abc in file", "server:\n  threads: abc\n", nil, nil, []string{"server.threads", "file $FILE", `"abc"`}},
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
		{"bad backend", "", []string{"TANDEM_STORE_BACKEND=sqlite"}, nil, []string{"store.backend", "bbolt, postgres"}},
		{"postgres without url", "store:\n  backend: postgres\n", nil, nil, []string{"store.url", "because of store.backend, from file $FILE", "required with store.backend postgres"}},
		{"url not postgres", "", []string{"TANDEM_STORE_URL=mysql://u@h/db"}, nil, []string{"store.url", "env TANDEM_STORE_URL", "postgres://"}},
		{"max_conns 1", "", nil, []string{"--store.max_conns=1"}, []string{"store.max_conns", "auto or an integer from 2 to 1000"}},
		{"rescue_after 0", "", []string{"TANDEM_JOBS_RESCUE_AFTER=0s"}, nil, []string{"jobs.rescue_after", "from 100ms to 24h"}},
		{"node name with a space", "", []string{"TANDEM_NODE_NAME=web 1"}, nil, []string{"node.name", "without spaces"}},
		{"watch interval too short", "", []string{"TANDEM_RUNTIME_WATCH_INTERVAL=1ms"}, nil, []string{"runtime.watch_interval", "off or a duration from 100ms to 1h"}},
		{"watch interval not a duration", "runtime:\n  watch_interval: often\n", nil, nil, []string{"runtime.watch_interval", `"often"`, "off or a duration"}},
		{"malformed yaml", "server: [\n", nil, nil, []string{"config file $FILE"}},
		{"bad cron expression", "jobs:\n  periodic:\n    - {name: a, kind: noop, schedule: '@every 1s'}\n    - {name: b, kind: noop, schedule: '61 * * * *'}\n", nil, nil,
			[]string{"jobs.periodic[1].schedule (from file $FILE)", `"61 * * * *"`, "bad schedule", "above maximum"}},
		{"periodic without schedule", "jobs:\n  periodic:\n    - {name: a, kind: noop}\n", nil, nil, []string{"jobs.periodic[0].schedule", "required"}},
		{"periodic bad timezone", "jobs:\n  periodic:\n    - {name: a, kind: noop, schedule: '@daily', timezone: Mars/Olympus}\n", nil, nil, []string{"jobs.periodic[0].timezone", `"Mars/Olympus"`}},
		{"periodic bad catch_up", "jobs:\n  periodic:\n    - {name: a, kind: noop, schedule: '@daily', catch_up: all}\n", nil, nil, []string{"jobs.periodic[0].catch_up", "one", "none"}},
		{"periodic unknown key", "jobs:\n  periodic:\n    - {name: a, kind: noop, schedule: '@daily', every: 1s}\n", nil, nil, []string{"jobs.periodic[0].every", "unknown key"}},
		{"periodic duplicate name", "jobs:\n  periodic:\n    - {name: a, kind: noop, schedule: '@daily'}\n    - {name: a, kind: noop, schedule: '@hourly'}\n", nil, nil, []string{"jobs.periodic[1].name", "jobs.periodic[0]"}},
	}
	for _, tc := range cases {
		for _, cmd := range []string{"check-config", "serve"} {
			t.Run(tc.name+"/"+cmd, func(t *testing.T) {
				t.Parallel()
				dir := t.TempDir()
				file := filepath.Join(dir, "config.yaml")
				writeFile(t, file, tc.file)
				// Loopback ports 0 before the case's own variables (the last of a name wins): a
				// mistake that went unnoticed would start serve here, not on :8080.
				env := append([]string{"TANDEM_SERVER_ADDR=127.0.0.1:0", "TANDEM_ADMIN_ADDR=127.0.0.1:0",
					"TANDEM_STORE_PATH=" + filepath.Join(dir, "db")}, tc.env...)
				r := runCmd(t, env, append([]string{cmd, "--config", file}, tc.args...)...)
				if r.code != exitConfig {
					t.Fatalf("exit %d, want %d; stderr: %s", r.code, exitConfig, r.stderr)
				}
				for _, w := range tc.want {
					if w = strings.ReplaceAll(w, "$FILE", file); !strings.Contains(r.stderr, w) {
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

// TestGetenv: the last entry of a name wins, and a name is never matched by its prefix.
func TestGetenv(t *testing.T) {
	t.Parallel()
	env := []string{"TANDEM_SERVER_URL=a", "TANDEM_SERVER_URLX=b", "TANDEM_SERVER_URL=c", "EMPTY="}
	for name, want := range map[string]string{"TANDEM_SERVER_URL": "c", "TANDEM_SERVER": "", "EMPTY": "", "UNSET": ""} {
		if got := getenv(env, name); got != want {
			t.Errorf("getenv(%s) = %q, want %q", name, got, want)
		}
	}
}

// TestStoreURLPasswordNeverShown: the password of store.url is in no output of config,
// config --sources or an error about the URL, while the rest of the URL is, to tell which
// database it is.
func TestStoreURLPasswordNeverShown(t *testing.T) {
	t.Parallel()
	const secret = "pa55-w0rd-xyz"
	for _, tc := range []struct {
		name string
		env  []string
		args []string
		code int
		want string
	}{
		{"config", []string{"TANDEM_STORE_URL=postgres://tandem:" + secret + "@db.internal:5432/tandem?sslmode=disable"}, []string{"config"}, 0, "url: postgres://tandem:xxxxx@db.internal:5432/tandem?sslmode=disable"},
		{"config --sources", []string{"TANDEM_STORE_URL=postgres://tandem:" + secret + "@db.internal/tandem"}, []string{"config", "--sources"}, 0, "url: postgres://tandem:xxxxx@db.internal/tandem # env TANDEM_STORE_URL"},
		{"password parameter", []string{"TANDEM_STORE_URL=postgres://db.internal/tandem?user=tandem&password=" + secret}, []string{"config"}, 0, "password=xxxxx"},
		{"bad scheme", []string{"TANDEM_STORE_URL=mysql://tandem:" + secret + "@db.internal/tandem"}, []string{"check-config"}, exitConfig, "mysql://tandem:xxxxx@db.internal/tandem"},
		{"not a URL", []string{"TANDEM_STORE_URL=postgres://tandem:" + secret + "@db internal:x/%zz"}, []string{"check-config"}, exitConfig, "store.url"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			r := runCmd(t, tc.env, append(tc.args, "--config", emptyConfig(t))...)
			if r.code != tc.code || strings.Contains(r.stdout+r.stderr, secret) || !strings.Contains(r.stdout+r.stderr, tc.want) {
				t.Fatalf("want exit %d, %q and no password: %+v", tc.code, tc.want, r)
			}
		})
	}
}

// TestRedactURL: every place a password can sit in a Postgres URL is hidden.
func TestRedactURL(t *testing.T) {
	t.Parallel()
	for in, want := range map[string]string{
		"postgres://u:secret@h:5432/db":                     "postgres://u:xxxxx@h:5432/db",
		"postgres://u@h/db":                                 "postgres://u@h/db",
		"postgresql://h/db?password=secret&sslmode=require": "postgresql://h/db?password=xxxxx&sslmode=require",
		"postgres://u:secret@h/db?password=secret":          "postgres://u:xxxxx@h/db?password=xxxxx",
		"postgres://u:secret@h/%zz":                         "(not shown: not a URL)",
	} {
		if got := redactURL(in); got != want || strings.Contains(got, "secret") {
			t.Errorf("redactURL(%q) = %q, want %q", in, got, want)
		}
	}
}

// TestPeriodicConfig: jobs.periodic entries load with their fields (payload as JSON, the zone
// loaded), print back as a file that loads the same schedules, and serve refuses an entry whose
// kind or queue it does not have (known only once the kinds are registered), naming the key.
func TestPeriodicConfig(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	file := filepath.Join(dir, "config.yaml")
	writeFile(t, file, "jobs:\n  periodic:\n    - name: report\n      kind: http\n      schedule: '30 2 * * *'\n      timezone: Europe/Paris\n"+
		"      payload: {url: 'http://x', n: [1, 2]}\n      priority: 7\n      catch_up: none\n    - {name: tick, kind: noop, schedule: '@every 30s'}\n")
	l, err := loadConfig(LoadOptions{ConfigPath: file, Environ: []string{}})
	if err != nil {
		t.Fatal(err)
	}
	ps := l.Config.Jobs.Periodic
	if len(ps) != 2 || ps[0].Name != "report" || ps[0].Kind != "http" || ps[0].Schedule != "30 2 * * *" || ps[0].Priority != 7 ||
		ps[0].CatchUp != "none" || ps[0].Location.String() != "Europe/Paris" || string(ps[0].PayloadJSON) != `{"n":[1,2],"url":"http://x"}` ||
		ps[1].Name != "tick" || ps[1].Location != time.UTC || ps[1].PayloadJSON != nil {
		t.Fatalf("jobs.periodic = %+v", ps)
	}
	out, err := renderConfig(l, false)
	if err != nil {
		t.Fatal(err)
	}
	again := filepath.Join(dir, "rendered.yaml")
	writeFile(t, again, string(out))
	l2, err := loadConfig(LoadOptions{ConfigPath: again, Environ: []string{}})
	if err != nil {
		t.Fatalf("rendered config does not load: %v\n%s", err, out)
	}
	if p2 := l2.Config.Jobs.Periodic; len(p2) != 2 || p2[0].Schedule != ps[0].Schedule || string(p2[0].PayloadJSON) != string(ps[0].PayloadJSON) ||
		p2[0].Location.String() != "Europe/Paris" || p2[1].Schedule != "@every 30s" {
		t.Fatalf("rendered jobs.periodic loads back as %+v", p2)
	}
	for _, c := range []struct{ entry, want string }{
		{"{name: a, kind: nope, schedule: '@daily'}", `jobs.periodic[0].kind: invalid value "nope": no such kind`},
		{"{name: a, kind: noop, schedule: '@daily', queue: mail}", `jobs.periodic[0].queue: unknown queue "mail"`},
	} {
		file := filepath.Join(t.TempDir(), "config.yaml")
		writeFile(t, file, "jobs:\n  periodic:\n    - "+c.entry+"\n")
		r := runCmd(t, []string{"TANDEM_SERVER_ADDR=127.0.0.1:0", "TANDEM_ADMIN_ADDR=127.0.0.1:0", "TANDEM_STORE_PATH=" + filepath.Join(dir, "db")},
			"serve", "--config", file)
		if r.code != exitConfig || !strings.Contains(r.stderr, c.want) {
			t.Errorf("serve with %s: exit %d, stderr %s; want %d and %q", c.entry, r.code, r.stderr, exitConfig, c.want)
		}
	}
}
