package main

import (
	_ "embed"
	"errors"
	"fmt"
	"os"
	"slices"
	"sort"
	"strings"

	"github.com/knadh/koanf/parsers/yaml"
	"github.com/knadh/koanf/providers/env/v2"
	"github.com/knadh/koanf/providers/file"
	"github.com/knadh/koanf/providers/posflag"
	"github.com/knadh/koanf/v2"
	"github.com/spf13/pflag"
)

// defaultConfigYAML is the repository's config.yaml: the built-in defaults layer, so the file that
// documents every default is also the one that sets it.
//
//go:embed config.yaml
var defaultConfigYAML []byte

// fileOnly are the keys that only a file sets: maps and lists of maps, which have no flag or
// environment variable.
var fileOnly = map[string]bool{"jobs.queues": true, "jobs.periodic": true}

// envPrefix starts every configuration environment variable.
const envPrefix = "TANDEM_"

// clientEnv are TANDEM_* variables read by the CLI clients, not configuration keys.
var clientEnv = []string{"TANDEM_SERVER_URL", "TANDEM_ADMIN_URL", "TANDEM_HEALTHCHECK_URL"}

// flagAliases are the short flags, each naming a configuration key.
var flagAliases = map[string]string{
	"addr":        "server.addr",
	"threads":     "server.threads",
	"concurrency": "jobs.concurrency",
	"data":        "store.path",
}

// Source names the layer a configuration value came from.
type Source string

// ConfigError is an invalid configuration value or an unknown key. Exit status 2.
type ConfigError struct {
	Key     string // "server.threads"
	Value   any    // what was given, when there was one
	Allowed string // what is allowed
	Source  Source // where it came from
	// Because, when set, is the key whose value makes Key required (store.backend for store.url);
	// the error then names that key's layer instead of Key's.
	Because string
}

func (e *ConfigError) Error() string {
	var b strings.Builder
	b.WriteString(e.Key)
	if e.Because != "" {
		fmt.Fprintf(&b, " (because of %s, from %s)", e.Because, e.Source)
	} else if e.Source != "" {
		fmt.Fprintf(&b, " (from %s)", e.Source)
	}
	if e.Value == nil {
		fmt.Fprintf(&b, ": %s", e.Allowed)
	} else {
		fmt.Fprintf(&b, ": invalid value %q: %s", fmt.Sprint(e.Value), e.Allowed)
	}
	return b.String()
}

// LoadOptions say where to read configuration from; the zero value reads ./config.yaml when present,
// no environment variables and no flags.
type LoadOptions struct {
	ConfigPath string // --config; "" = ./config.yaml if it exists
	// Environ is the environment, NAME=value (main passes os.Environ()); nil = none. It is never
	// read from the process, so a test gives each load its own.
	Environ []string
	Flags   *pflag.FlagSet // parsed flag set from registerConfigFlags, or nil
}

// Loaded is the merged configuration with the layer each key came from.
type Loaded struct {
	Config  Config
	Values  map[string]any    // key -> parsed value
	Sources map[string]Source // key -> layer
	File    string            // the config file read, "" when none
}

// loadConfig merges defaults < file < environment < flags and validates the result.
func loadConfig(o LoadOptions) (*Loaded, error) {
	merged := map[string]any{}
	sources := map[string]Source{}
	set := func(layer map[string]any, src func(key string) Source) error {
		for key, v := range layer {
			opt, ok := lookupOption(key)
			if !ok {
				return &ConfigError{Key: key, Allowed: "unknown key (see config.yaml for every option)", Source: src(key)}
			}
			parsed, err := opt.parse(v)
			var fe *fieldError
			if errors.As(err, &fe) {
				return &ConfigError{Key: key + fe.Sub, Value: fe.Value, Allowed: fe.Msg, Source: src(key)}
			}
			if err != nil {
				return &ConfigError{Key: key, Value: shownValue(key, v), Allowed: err.Error(), Source: src(key)}
			}
			merged[key] = parsed
			sources[key] = src(key)
		}
		return nil
	}

	defaults, err := yamlLayer(defaultConfigYAML)
	if err != nil {
		return nil, fmt.Errorf("built-in defaults: %w", err)
	}
	if err := set(defaults, func(string) Source { return "default" }); err != nil {
		return nil, fmt.Errorf("built-in defaults: %w", err)
	}

	path := o.ConfigPath
	if path == "" {
		if _, err := os.Stat("config.yaml"); err == nil {
			path = "config.yaml"
		}
	}
	var fileName string
	if path != "" {
		k := koanf.New(".")
		if err := k.Load(file.Provider(path), yaml.Parser()); err != nil {
			return nil, usageError{fmt.Errorf("config file %s: %w", path, err)}
		}
		fileName = path
		if err := set(flattenLayer(k), func(string) Source { return Source("file " + path) }); err != nil {
			return nil, err
		}
	}

	envLayer, envNames, err := loadEnv(o.Environ)
	if err != nil {
		return nil, err
	}
	if err := set(envLayer, func(key string) Source { return Source("env " + envNames[key]) }); err != nil {
		return nil, err
	}

	if o.Flags != nil {
		flagLayer, flagNames, err := loadFlags(o.Flags)
		if err != nil {
			return nil, err
		}
		if err := set(flagLayer, func(key string) Source { return Source("flag --" + flagNames[key]) }); err != nil {
			return nil, err
		}
	}

	cfg, err := buildConfig(merged)
	if err != nil {
		var ce *ConfigError
		if errors.As(err, &ce) && ce.Source == "" {
			ce.Source = sources[ce.Key]
			if ce.Because != "" {
				ce.Source = sources[ce.Because]
			}
		}
		return nil, err
	}
	return &Loaded{Config: cfg, Values: merged, Sources: sources, File: fileName}, nil
}

// yamlLayer parses a YAML document into flat keys.
func yamlLayer(b []byte) (map[string]any, error) {
	k := koanf.New(".")
	if err := k.Load(rawBytes(b), yaml.Parser()); err != nil {
		return nil, err
	}
	return flattenLayer(k), nil
}

// flattenLayer flattens a koanf tree to dotted keys, stopping at the dynamic jobs.queues map,
// whose entries are keyed by queue name.
func flattenLayer(k *koanf.Koanf) map[string]any {
	out := map[string]any{}
	for key, v := range k.All() {
		if strings.HasPrefix(key, "jobs.queues.") {
			out["jobs.queues"] = k.Get("jobs.queues")
			continue
		}
		out[key] = v
	}
	// An empty map or list in YAML ("queues: {}") has no leaves; keep the parent.
	for _, key := range []string{"jobs.queues", "jobs.exec.allow", "jobs.periodic"} {
		if _, ok := out[key]; !ok && k.Exists(key) {
			out[key] = k.Get(key)
		}
	}
	return out
}

// loadEnv reads TANDEM_* variables, matching each against the known keys so underscores inside
// key names (queue_timeout) are never confused with the section separator.
func loadEnv(environ []string) (map[string]any, map[string]string, error) {
	byEnv := map[string]string{}
	for _, o := range options {
		if fileOnly[o.key] {
			continue // a map or a list of maps: set it in the file
		}
		byEnv[envName(o.key)] = o.key
	}
	names := map[string]string{}
	var unknown error
	k := koanf.New(".")
	err := k.Load(env.Provider(".", env.Opt{
		Prefix:      envPrefix,
		EnvironFunc: func() []string { return environ },
		TransformFunc: func(name, value string) (string, any) {
			if slices.Contains(clientEnv, name) {
				return "", nil
			}
			key, ok := byEnv[name]
			if !ok {
				if unknown == nil {
					unknown = &ConfigError{Key: name, Allowed: "unknown environment variable; known ones are TANDEM_<SECTION>_<KEY> for the keys in config.yaml", Source: "env"}
				}
				return "", nil
			}
			names[key] = name
			// Keys are dotted; keep them whole so koanf does not split on our own dots again.
			return strings.ReplaceAll(key, ".", "\x00"), value
		},
	}), nil)
	if err != nil {
		return nil, nil, fmt.Errorf("environment: %w", err)
	}
	if unknown != nil {
		return nil, nil, unknown
	}
	out := map[string]any{}
	for key, v := range k.All() {
		out[strings.ReplaceAll(key, "\x00", ".")] = v
	}
	return out, names, nil
}

// getenv returns the value of name in env (NAME=value entries), "" when unset. The last entry of
// a name wins, as in the environment exec.Cmd passes on and as the env layer reads it.
func getenv(env []string, name string) string {
	for i := len(env) - 1; i >= 0; i-- {
		if v, ok := strings.CutPrefix(env[i], name+"="); ok {
			return v
		}
	}
	return ""
}

// envName is the environment variable for a key: server.queue_timeout -> TANDEM_SERVER_QUEUE_TIMEOUT.
func envName(key string) string {
	return envPrefix + strings.ToUpper(strings.ReplaceAll(key, ".", "_"))
}

// registerConfigFlags adds --config, a --<key> flag for every option, and the short aliases.
func registerConfigFlags(fs *pflag.FlagSet) {
	fs.String("config", "", "configuration file (default ./config.yaml when present)")
	for _, o := range options {
		if fileOnly[o.key] {
			continue
		}
		fs.String(o.key, "", o.help)
	}
	for alias, key := range flagAliases {
		fs.String(alias, "", "same as --"+key)
	}
}

// loadFlags returns the flags the user set, as keys.
func loadFlags(fs *pflag.FlagSet) (map[string]any, map[string]string, error) {
	names := map[string]string{}
	k := koanf.New("\x00") // flag names contain dots; do not split them
	err := k.Load(posflag.ProviderWithFlag(fs, "\x00", nil, func(f *pflag.Flag) (string, any) {
		if !f.Changed || f.Name == "config" {
			return "", nil
		}
		key := f.Name
		if alias, ok := flagAliases[f.Name]; ok {
			key = alias
		}
		if _, ok := lookupOption(key); !ok {
			return "", nil
		}
		names[key] = f.Name
		return key, f.Value.String()
	}), nil)
	if err != nil {
		return nil, nil, fmt.Errorf("flags: %w", err)
	}
	return k.All(), names, nil
}

// rawBytes is a koanf provider for an in-memory document.
type rawBytes []byte

func (r rawBytes) ReadBytes() ([]byte, error) { return r, nil }
func (r rawBytes) Read() (map[string]any, error) {
	return nil, errors.New("rawBytes: Read not supported")
}

// sortedKeys returns the option keys in schema order (the order of config.yaml).
func sortedKeys(m map[string]any) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	idx := map[string]int{}
	for i, o := range options {
		idx[o.key] = i
	}
	sort.Slice(keys, func(i, j int) bool { return idx[keys[i]] < idx[keys[j]] })
	return keys
}
