package main

import (
	"fmt"
	"math"
	"net"
	"net/url"
	"path/filepath"
	"regexp"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/tandem-run/tandem/pool"
)

// Config is tandem's typed configuration. Sizes of 0 mean "auto" (derived from the CPU quota).
type Config struct {
	Server ServerConfig
	Admin  AdminConfig
	Log    LogConfig
	Sizing SizingConfig
	Store  StoreConfig
	Jobs   JobsConfig
	Node   NodeConfig
}

// ServerConfig is the server section.
type ServerConfig struct {
	Addr              string
	Threads           int // 0 = auto
	Backlog           int
	Parked            int
	QueueTimeout      time.Duration
	RequestTimeout    time.Duration
	ReadHeaderTimeout time.Duration
	ReadTimeout       time.Duration
	WriteTimeout      time.Duration
	IdleTimeout       time.Duration
	MaxHeaderBytes    int
	MaxBodyBytes      int
	MaxWaiters        int
	BodyTimeout       time.Duration
	ShutdownTimeout   time.Duration
	ShutdownDelay     time.Duration
	DemoRoutes        bool
	Autoscale         Bounds
}

// AdminConfig is the admin section.
type AdminConfig struct {
	Addr        string
	Token       string
	MetricsAuth bool
}

// LogConfig is the log section.
type LogConfig struct {
	Level, Format string
	Access        string // all, errors or off
	SlowRequest   time.Duration
}

// SizingConfig is the runtime section: how GOMAXPROCS and GOMEMLIMIT are derived (package sizing).
type SizingConfig struct {
	GOMAXPROCS      int // 0 = auto
	GOMEMLIMITRatio float64
	WatchInterval   time.Duration // how often the limits are read again; 0 = off
	HeapFloor       int           // bytes: the smallest heap goal of the GC (sizing.HeapFloor); 0 = off
}

// StoreConfig is the store section: Backend says which of the other fields apply (Path,
// OpenTimeout and Sync to bbolt; URL and MaxConns to postgres).
type StoreConfig struct {
	Backend     string // bbolt or postgres
	Path        string
	OpenTimeout time.Duration
	Sync        string
	URL         string // a Postgres URL; secret: printed and logged only through redactURL
	MaxConns    int    // 0 = auto (postgres.Options.MaxConns's default)
}

// NodeConfig is the node section: this process among the replicas sharing a Postgres store.
type NodeConfig struct {
	Name string // "" = hostname:pid (jobs.DefaultNode)
}

// JobsConfig is the jobs section.
type JobsConfig struct {
	Concurrency     int // 0 = auto
	PinCPUs         bool
	Prefetch        int // 0 = auto
	PrefetchMax     int
	MaxAttempts     int
	Timeout         time.Duration
	Retention       time.Duration
	MaxPending      int
	MaxPayloadBytes int
	MaxResultBytes  int
	BatchMax        int
	ShutdownTimeout time.Duration
	RescueAfter     time.Duration
	Queues          map[string]QueueConfig
	Autoscale       Bounds
	YieldToHTTP     bool          // jobs.yield_to_http
	YieldMinWorkers int           // jobs.yield_min_workers
	YieldCPUWait    time.Duration // jobs.yield_cpu_wait
	ExecAllow       []string
	Periodic        []PeriodicConfig
}

// QueueConfig is one entry of jobs.queues.
type QueueConfig struct {
	Weight      int `yaml:"weight"`
	Concurrency int `yaml:"concurrency"`
	MaxPending  int `yaml:"max_pending"`
}

// Bounds is an autoscale range; Min == Max == 0 means off. Quiet is how long a pool must be
// quiet (nothing waiting, at most half of it busy) before the autoscaler shrinks it.
type Bounds struct {
	Min, Max int
	Quiet    time.Duration
}

// Enabled reports whether autoscaling is on.
func (b Bounds) Enabled() bool { return b.Min != 0 || b.Max != 0 }

// option is one configuration key: how to parse it and where it lands in Config.
type option struct {
	key   string
	help  string
	parse func(v any) (any, error)
	apply func(c *Config, v any)
}

var options = []option{
	{"server.addr", "main listener address", addrValue, func(c *Config, v any) { c.Server.Addr = v.(string) }},
	{"server.threads", "requests served at once (auto = 2 x cpus + 1)", autoInt(1, pool.MaxSize), func(c *Config, v any) { c.Server.Threads = v.(int) }},
	{"server.backlog", "requests allowed to wait for a thread", intRange(0, pool.MaxBacklog), func(c *Config, v any) { c.Server.Backlog = v.(int) }},
	{"server.parked", "requests waiting on a durable write without holding a thread", intRange(0, pool.MaxBacklog), func(c *Config, v any) { c.Server.Parked = v.(int) }},
	{"server.queue_timeout", "longest wait in the backlog", durRange(time.Millisecond, time.Hour), func(c *Config, v any) { c.Server.QueueTimeout = v.(time.Duration) }},
	{"server.request_timeout", "per-request handler timeout", durRange(time.Millisecond, 24*time.Hour), func(c *Config, v any) { c.Server.RequestTimeout = v.(time.Duration) }},
	{"server.read_header_timeout", "time to read request headers", durRange(time.Millisecond, time.Hour), func(c *Config, v any) { c.Server.ReadHeaderTimeout = v.(time.Duration) }},
	{"server.read_timeout", "time to read the whole request", durRange(time.Millisecond, 24*time.Hour), func(c *Config, v any) { c.Server.ReadTimeout = v.(time.Duration) }},
	{"server.write_timeout", "time to write the response", durRange(time.Millisecond, 24*time.Hour), func(c *Config, v any) { c.Server.WriteTimeout = v.(time.Duration) }},
	{"server.idle_timeout", "keep-alive idle timeout", durRange(time.Millisecond, 24*time.Hour), func(c *Config, v any) { c.Server.IdleTimeout = v.(time.Duration) }},
	{"server.max_header_bytes", "largest request header", intRange(4096, 64<<20), func(c *Config, v any) { c.Server.MaxHeaderBytes = v.(int) }},
	{"server.max_body_bytes", "largest request body", intRange(1024, 1<<30), func(c *Config, v any) { c.Server.MaxBodyBytes = v.(int) }},
	{"server.max_waiters", "most requests waiting on jobs at once (?wait, event streams)", intRange(1, 1_000_000), func(c *Config, v any) { c.Server.MaxWaiters = v.(int) }},
	{"server.body_timeout", "time to read a request body once its headers are in (at most read_timeout)", durRange(time.Millisecond, 24*time.Hour), func(c *Config, v any) { c.Server.BodyTimeout = v.(time.Duration) }},
	{"server.shutdown_timeout", "time for requests in flight at shutdown", durRange(0, time.Hour), func(c *Config, v any) { c.Server.ShutdownTimeout = v.(time.Duration) }},
	{"server.shutdown_delay", "time /readyz answers 503 before the listener closes at shutdown", durRange(0, time.Hour), func(c *Config, v any) { c.Server.ShutdownDelay = v.(time.Duration) }},
	{"server.demo_routes", "serve /demo/*", boolValue, func(c *Config, v any) { c.Server.DemoRoutes = v.(bool) }},
	{"server.autoscale.min", "threads autoscale lower bound (0 with max 0: off)", intRange(0, pool.MaxSize), func(c *Config, v any) { c.Server.Autoscale.Min = v.(int) }},
	{"server.autoscale.max", "threads autoscale upper bound", intRange(0, pool.MaxSize), func(c *Config, v any) { c.Server.Autoscale.Max = v.(int) }},
	{"server.autoscale.quiet", "quiet time before threads autoscale shrinks", durRange(time.Second, 24*time.Hour), func(c *Config, v any) { c.Server.Autoscale.Quiet = v.(time.Duration) }},
	{"admin.addr", "admin listener address", addrValue, func(c *Config, v any) { c.Admin.Addr = v.(string) }},
	{"admin.token", "admin bearer token", stringValue, func(c *Config, v any) { c.Admin.Token = v.(string) }},
	{"admin.metrics_auth", "require the token on /metrics", boolValue, func(c *Config, v any) { c.Admin.MetricsAuth = v.(bool) }},
	{"log.level", "debug, info, warn or error", enum("debug", "info", "warn", "error"), func(c *Config, v any) { c.Log.Level = v.(string) }},
	{"log.format", "json or text", enum("json", "text"), func(c *Config, v any) { c.Log.Format = v.(string) }},
	{"log.access", "access log lines: all, errors (4xx, 5xx, slow) or off", enum("all", "errors", "off"), func(c *Config, v any) { c.Log.Access = v.(string) }},
	{"log.slow_request", "log.access errors also logs requests slower than this", durRange(time.Millisecond, 24*time.Hour), func(c *Config, v any) { c.Log.SlowRequest = v.(time.Duration) }},
	{"runtime.gomaxprocs", "GOMAXPROCS (auto = floor(cpus), at least 1)", autoInt(1, 1024), func(c *Config, v any) { c.Sizing.GOMAXPROCS = v.(int) }},
	{"runtime.gomemlimit_ratio", "GOMEMLIMIT as a fraction of the memory limit", floatRange(0.1, 1), func(c *Config, v any) { c.Sizing.GOMEMLIMITRatio = v.(float64) }},
	{"runtime.gc_heap_floor_bytes", "smallest heap goal of the garbage collector (0: Go's GOGC=100 as it is)", intRange(0, 1<<40), func(c *Config, v any) { c.Sizing.HeapFloor = v.(int) }},
	{"runtime.watch_interval", "how often the CPU and memory limits are read again to follow a live resize (off: never)", offDuration(100*time.Millisecond, time.Hour), func(c *Config, v any) { c.Sizing.WatchInterval = v.(time.Duration) }},
	{"store.backend", "bbolt (one process, a local file) or postgres (replicas share one queue)", enum("bbolt", "postgres"), func(c *Config, v any) { c.Store.Backend = v.(string) }},
	{"store.path", "database file", pathValue, func(c *Config, v any) { c.Store.Path = v.(string) }},
	{"store.open_timeout", "wait for the store at start (bbolt: the file lock; postgres: the database)", durRange(time.Millisecond, time.Hour), func(c *Config, v any) { c.Store.OpenTimeout = v.(time.Duration) }},
	{"store.sync", "always or none (unsafe)", enum("always", "none"), func(c *Config, v any) { c.Store.Sync = v.(string) }},
	{"store.url", "postgres URL, like postgres://user:password@host:5432/tandem (prefer TANDEM_STORE_URL)", postgresURLValue, func(c *Config, v any) { c.Store.URL = v.(string) }},
	{"store.max_conns", "postgres connections at most (auto = 10)", autoInt(2, 1000), func(c *Config, v any) { c.Store.MaxConns = v.(int) }},
	{"jobs.concurrency", "jobs run at once (auto = cpus)", autoInt(1, pool.MaxSize), func(c *Config, v any) { c.Jobs.Concurrency = v.(int) }},
	{"jobs.pin_cpus", "pin job workers to CPUs", boolValue, func(c *Config, v any) { c.Jobs.PinCPUs = v.(bool) }},
	{"jobs.prefetch", "jobs of a queue leased beyond free workers (auto = adapts to commit latency and job duration, up to prefetch_max)", autoInt(1, 1024), func(c *Config, v any) { c.Jobs.Prefetch = v.(int) }},
	{"jobs.prefetch_max", "most jobs auto prefetch leases; a crash runs at most concurrency + this again", intRange(1, 1024), func(c *Config, v any) { c.Jobs.PrefetchMax = v.(int) }},
	{"jobs.max_attempts", "attempts before dead", intRange(1, 1000), func(c *Config, v any) { c.Jobs.MaxAttempts = v.(int) }},
	{"jobs.timeout", "per-attempt timeout", durRange(time.Millisecond, 24*time.Hour), func(c *Config, v any) { c.Jobs.Timeout = v.(time.Duration) }},
	{"jobs.retention", "keep finished jobs this long", durRange(time.Second, 10*365*24*time.Hour), func(c *Config, v any) { c.Jobs.Retention = v.(time.Duration) }},
	{"jobs.max_pending", "waiting jobs per queue", intRange(1, 100_000_000), func(c *Config, v any) { c.Jobs.MaxPending = v.(int) }},
	{"jobs.max_payload_bytes", "largest payload", intRange(2, 16<<20), func(c *Config, v any) { c.Jobs.MaxPayloadBytes = v.(int) }},
	{"jobs.max_result_bytes", "largest stored result", intRange(64, 16<<20), func(c *Config, v any) { c.Jobs.MaxResultBytes = v.(int) }},
	{"jobs.batch_max", "most jobs per batch", intRange(1, 100_000), func(c *Config, v any) { c.Jobs.BatchMax = v.(int) }},
	{"jobs.shutdown_timeout", "time for running jobs at shutdown", durRange(0, time.Hour), func(c *Config, v any) { c.Jobs.ShutdownTimeout = v.(time.Duration) }},
	{"jobs.rescue_after", "postgres: a dead replica's jobs run elsewhere this long after its last heartbeat", durRange(100*time.Millisecond, 24*time.Hour), func(c *Config, v any) { c.Jobs.RescueAfter = v.(time.Duration) }},
	{"jobs.queues", "named queues (file only)", queuesValue, func(c *Config, v any) { c.Jobs.Queues = v.(map[string]QueueConfig) }},
	{"jobs.autoscale.min", "job pool autoscale lower bound (0 with max 0: off)", intRange(0, pool.MaxSize), func(c *Config, v any) { c.Jobs.Autoscale.Min = v.(int) }},
	{"jobs.autoscale.max", "job pool autoscale upper bound", intRange(0, pool.MaxSize), func(c *Config, v any) { c.Jobs.Autoscale.Max = v.(int) }},
	{"jobs.autoscale.quiet", "quiet time before job pool autoscale shrinks", durRange(time.Second, 24*time.Hour), func(c *Config, v any) { c.Jobs.Autoscale.Quiet = v.(time.Duration) }},
	{"jobs.yield_to_http", "jobs hold workers back while HTTP requests wait for a core", boolValue, func(c *Config, v any) { c.Jobs.YieldToHTTP = v.(bool) }},
	{"jobs.yield_min_workers", "workers that keep taking jobs however busy HTTP is", intRange(1, pool.MaxSize), func(c *Config, v any) { c.Jobs.YieldMinWorkers = v.(int) }},
	{"jobs.yield_cpu_wait", "CPU wait (p90 scheduling latency) at which jobs yield to HTTP", durRange(10*time.Microsecond, time.Second), func(c *Config, v any) { c.Jobs.YieldCPUWait = v.(time.Duration) }},
	{"jobs.exec.allow", "programs the exec kind may run (comma-separated in env and flags)", pathList, func(c *Config, v any) { c.Jobs.ExecAllow = v.([]string) }},
	{"jobs.periodic", "periodic jobs (file only)", periodicValue, func(c *Config, v any) { c.Jobs.Periodic = v.([]PeriodicConfig) }},
	{"node.name", "this replica's name in attempted_by and /admin/nodes (empty = hostname:pid)", nodeNameValue, func(c *Config, v any) { c.Node.Name = v.(string) }},
}

func lookupOption(key string) (option, bool) {
	for _, o := range options {
		if o.key == key {
			return o, true
		}
	}
	return option{}, false
}

// buildConfig applies parsed values and checks the rules that span keys.
func buildConfig(values map[string]any) (Config, error) {
	var c Config
	for _, o := range options {
		v, ok := values[o.key]
		if !ok {
			return c, &ConfigError{Key: o.key, Allowed: "missing from the built-in defaults (a bug)"}
		}
		o.apply(&c, v)
	}
	for _, b := range []struct {
		key string
		b   Bounds
	}{{"server.autoscale", c.Server.Autoscale}, {"jobs.autoscale", c.Jobs.Autoscale}} {
		if b.b.Enabled() && (b.b.Min < 1 || b.b.Max < b.b.Min) {
			return c, &ConfigError{Key: b.key + ".min", Value: fmt.Sprintf("min=%d max=%d", b.b.Min, b.b.Max), Allowed: "need 1 <= min <= max (both 0 turns autoscaling off)"}
		}
	}
	if c.Server.WriteTimeout <= c.Server.RequestTimeout {
		return c, &ConfigError{Key: "server.write_timeout", Value: c.Server.WriteTimeout, Allowed: fmt.Sprintf("must be longer than server.request_timeout (%s) so the timeout answer can still be written", c.Server.RequestTimeout)}
	}
	if c.Server.Addr == c.Admin.Addr && !strings.HasSuffix(c.Server.Addr, ":0") {
		return c, &ConfigError{Key: "admin.addr", Value: c.Admin.Addr, Allowed: "must differ from server.addr"}
	}
	if c.Store.Backend == "postgres" && c.Store.URL == "" {
		return c, &ConfigError{Key: "store.url", Because: "store.backend", Allowed: "required with store.backend postgres: a URL like postgres://user:password@host:5432/tandem (set TANDEM_STORE_URL to keep the password out of files)"}
	}
	for _, p := range c.Jobs.ExecAllow {
		if !filepath.IsAbs(p) {
			return c, &ConfigError{Key: "jobs.exec.allow", Value: p, Allowed: "each program must be an absolute path"}
		}
	}
	return c, nil
}

// --- parsers: each takes what YAML, the environment or a flag gave and returns the typed value ---

func asString(v any) (string, bool) {
	switch x := v.(type) {
	case string:
		return strings.TrimSpace(x), true
	case int, int64, float64, bool:
		return fmt.Sprint(x), true
	}
	return "", false
}

func intRange(lo, hi int) func(any) (any, error) {
	return func(v any) (any, error) {
		n, err := toInt(v)
		if err != nil || n < lo || n > hi {
			return nil, fmt.Errorf("must be an integer from %d to %d", lo, hi)
		}
		return n, nil
	}
}

// autoInt accepts "auto" (stored as 0) or an integer in range.
func autoInt(lo, hi int) func(any) (any, error) {
	return func(v any) (any, error) {
		if s, ok := v.(string); ok && strings.EqualFold(strings.TrimSpace(s), "auto") {
			return 0, nil
		}
		n, err := toInt(v)
		if err != nil || n < lo || n > hi {
			return nil, fmt.Errorf("must be auto or an integer from %d to %d", lo, hi)
		}
		return n, nil
	}
}

func toInt(v any) (int, error) {
	switch x := v.(type) {
	case int:
		return x, nil
	case int64:
		return int(x), nil
	case float64:
		if x != math.Trunc(x) || math.Abs(x) > 1<<53 {
			return 0, fmt.Errorf("not an integer")
		}
		return int(x), nil
	case string:
		return strconv.Atoi(strings.TrimSpace(x))
	}
	return 0, fmt.Errorf("not an integer")
}

func floatRange(lo, hi float64) func(any) (any, error) {
	return func(v any) (any, error) {
		var f float64
		var err error
		switch x := v.(type) {
		case float64:
			f = x
		case int:
			f = float64(x)
		case string:
			f, err = strconv.ParseFloat(strings.TrimSpace(x), 64)
		default:
			err = fmt.Errorf("not a number")
		}
		if err != nil || math.IsNaN(f) || f < lo || f > hi {
			return nil, fmt.Errorf("must be a number from %g to %g", lo, hi)
		}
		return f, nil
	}
}

func durRange(lo, hi time.Duration) func(any) (any, error) {
	return func(v any) (any, error) {
		s, ok := asString(v)
		d, err := time.ParseDuration(s)
		if !ok || err != nil || d < lo || d > hi {
			return nil, fmt.Errorf("must be a duration from %s to %s, like 250ms, 5s or 2m", lo, hi)
		}
		return d, nil
	}
}

// offDuration accepts "off" or a zero duration (stored as 0) or a duration in range.
func offDuration(lo, hi time.Duration) func(any) (any, error) {
	in := durRange(lo, hi)
	return func(v any) (any, error) {
		if s, ok := asString(v); ok {
			if d, err := time.ParseDuration(s); strings.EqualFold(s, "off") || (err == nil && d == 0) {
				return time.Duration(0), nil
			}
		}
		if b, ok := v.(bool); ok && !b { // YAML 1.1 reads a bare off as false
			return time.Duration(0), nil
		}
		d, err := in(v)
		if err != nil {
			return nil, fmt.Errorf("must be off or a duration from %s to %s, like 5s", lo, hi)
		}
		return d, nil
	}
}

func boolValue(v any) (any, error) {
	if b, ok := v.(bool); ok {
		return b, nil
	}
	if s, ok := v.(string); ok {
		if b, err := strconv.ParseBool(strings.TrimSpace(s)); err == nil {
			return b, nil
		}
	}
	return nil, fmt.Errorf("must be true or false")
}

func stringValue(v any) (any, error) {
	s, ok := v.(string)
	if !ok {
		return nil, fmt.Errorf("must be a string")
	}
	return s, nil
}

func pathValue(v any) (any, error) {
	s, ok := v.(string)
	if !ok || strings.TrimSpace(s) == "" {
		return nil, fmt.Errorf("must be a non-empty file path")
	}
	return s, nil
}

func enum(allowed ...string) func(any) (any, error) {
	return func(v any) (any, error) {
		s, _ := v.(string)
		for _, a := range allowed {
			if strings.EqualFold(strings.TrimSpace(s), a) {
				return a, nil
			}
		}
		return nil, fmt.Errorf("must be one of %s", strings.Join(allowed, ", "))
	}
}

func addrValue(v any) (any, error) {
	s, ok := v.(string)
	if !ok {
		return nil, fmt.Errorf("must be host:port")
	}
	_, port, err := net.SplitHostPort(s)
	if err != nil {
		return nil, fmt.Errorf("must be host:port, like :8080 or 127.0.0.1:9090")
	}
	if n, err := strconv.Atoi(port); err != nil || n < 0 || n > 65535 {
		return nil, fmt.Errorf("port must be a number from 0 to 65535")
	}
	return s, nil
}

// pathList accepts a YAML list or a comma-separated string.
func pathList(v any) (any, error) {
	var items []string
	switch x := v.(type) {
	case []any:
		for _, it := range x {
			s, ok := it.(string)
			if !ok {
				return nil, fmt.Errorf("must be a list of absolute paths")
			}
			items = append(items, s)
		}
	case []string:
		items = x
	case string:
		for s := range strings.SplitSeq(x, ",") {
			if s = strings.TrimSpace(s); s != "" {
				items = append(items, s)
			}
		}
	case nil:
	default:
		return nil, fmt.Errorf("must be a list of absolute paths")
	}
	return items, nil
}

var queueName = regexp.MustCompile(`^[a-zA-Z0-9_.-]{1,64}$`)

func queuesValue(v any) (any, error) {
	m, ok := v.(map[string]any)
	if !ok {
		return nil, fmt.Errorf("must be a map of queue name to {weight, concurrency, max_pending}")
	}
	if len(m) == 0 {
		return nil, fmt.Errorf("must name at least one queue")
	}
	out := map[string]QueueConfig{}
	names := make([]string, 0, len(m))
	for name := range m {
		names = append(names, name)
	}
	sort.Strings(names)
	for _, name := range names {
		if !queueName.MatchString(name) {
			return nil, fmt.Errorf("queue name %q: use 1 to 64 letters, digits, '_', '.' or '-'", name)
		}
		q := QueueConfig{Weight: 1}
		fields, ok := m[name].(map[string]any)
		if !ok && m[name] != nil {
			return nil, fmt.Errorf("queue %s: must be a map with weight, concurrency, max_pending", name)
		}
		for f, fv := range fields {
			n, err := toInt(fv)
			switch {
			case f == "weight" && err == nil && n >= 1 && n <= 1000:
				q.Weight = n
			case f == "concurrency" && err == nil && n >= 0 && n <= pool.MaxSize:
				q.Concurrency = n
			case f == "max_pending" && err == nil && n >= 0 && n <= 100_000_000:
				q.MaxPending = n
			case f == "weight" || f == "concurrency" || f == "max_pending":
				return nil, fmt.Errorf("queue %s: %s: must be an integer (weight 1..1000, concurrency 0..%d, max_pending 0..100000000)", name, f, pool.MaxSize)
			default:
				return nil, fmt.Errorf("queue %s: unknown key %q (weight, concurrency, max_pending)", name, f)
			}
		}
		out[name] = q
	}
	return out, nil
}

// postgresURLValue accepts "" (no Postgres) or a postgres:// or postgresql:// URL with a host. Its
// errors never repeat the value: it may hold a password (loadConfig redacts the Value it reports).
func postgresURLValue(v any) (any, error) {
	s, ok := v.(string)
	if !ok {
		return nil, fmt.Errorf("must be a string")
	}
	s = strings.TrimSpace(s)
	if s == "" {
		return "", nil
	}
	u, err := url.Parse(s)
	if err != nil || (u.Scheme != "postgres" && u.Scheme != "postgresql") || u.Host == "" {
		return nil, fmt.Errorf("must be a URL like postgres://user:password@host:5432/tandem?sslmode=disable")
	}
	return s, nil
}

// nodeNameValue accepts "" (hostname:pid) or a name of printable characters without spaces: it
// is shown in tables and the dashboard, and sent in every heartbeat.
func nodeNameValue(v any) (any, error) {
	s, ok := asString(v)
	if !ok {
		return nil, fmt.Errorf("must be a string")
	}
	if len(s) > 128 || strings.ContainsFunc(s, func(r rune) bool { return r <= ' ' || r == 0x7f }) {
		return nil, fmt.Errorf("must be at most 128 printable characters without spaces (empty: hostname:pid)")
	}
	return s, nil
}
