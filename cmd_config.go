package main

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"runtime"
	"sort"
	"strings"
	"time"

	"github.com/spf13/pflag"
	"go.yaml.in/yaml/v3"
)

// autoKeys print 0 as "auto".
var autoKeys = map[string]bool{"server.threads": true, "jobs.concurrency": true, "runtime.gomaxprocs": true, "store.max_conns": true, "jobs.prefetch": true}

// offKeys print a duration of 0 as "off".
var offKeys = map[string]bool{"runtime.watch_interval": true}

// secretKeys are never printed.
var secretKeys = map[string]bool{"admin.token": true}

// redactedKeys are printed only through their redaction: a URL whose password is hidden.
var redactedKeys = map[string]func(string) string{"store.url": redactURL}

// shownValue is what an error or a listing may show of a raw value of key.
func shownValue(key string, v any) any {
	s, ok := v.(string)
	switch {
	case secretKeys[key]:
		return "(not shown)"
	case redactedKeys[key] != nil && ok:
		return redactedKeys[key](s)
	case redactedKeys[key] != nil:
		return "(not shown)"
	}
	return v
}

// loadFromArgs registers the configuration flags on fs, parses args and loads the configuration.
func loadFromArgs(fs *pflag.FlagSet, args []string, environ []string) (*Loaded, error) {
	registerConfigFlags(fs)
	if err := parseFlags(fs, args); err != nil {
		return nil, err
	}
	if fs.NArg() > 0 {
		return nil, usageError{fmt.Errorf("unexpected argument %q", fs.Arg(0))}
	}
	path, _ := fs.GetString("config")
	return loadConfig(LoadOptions{ConfigPath: path, Flags: fs, Environ: environ})
}

func runConfig(_ context.Context, args, env []string, stdout, stderr io.Writer) error {
	fs := newFlagSet("config", "[--sources] [config flags]", stderr)
	sources := fs.Bool("sources", false, "annotate each value with the layer it came from")
	l, err := loadFromArgs(fs, args, env)
	if err != nil {
		return err
	}
	out, err := renderConfig(l, *sources)
	if err != nil {
		return err
	}
	_, err = stdout.Write(out)
	return err
}

func runCheckConfig(_ context.Context, args, env []string, stdout, stderr io.Writer) error {
	fs := newFlagSet("check-config", "[config flags]", stderr)
	l, err := loadFromArgs(fs, args, env)
	if err != nil {
		return err
	}
	if err := checkStartable(l.Config); err != nil {
		return err
	}
	from := "built-in defaults"
	if l.File != "" {
		from = l.File
	}
	fmt.Fprintf(stdout, "configuration ok (%s)\n", from)
	return nil
}

func runVersion(_ context.Context, args, env []string, stdout, stderr io.Writer) error {
	fs := newFlagSet("version", "[--json]", stderr)
	asJSON := fs.Bool("json", false, "print JSON")
	if err := parseFlags(fs, args); err != nil {
		return err
	}
	if *asJSON {
		return json.NewEncoder(stdout).Encode(map[string]string{"version": version, "commit": commit, "date": date, "go": runtime.Version()})
	}
	fmt.Fprintf(stdout, "tandem %s commit=%s date=%s go=%s\n", version, commit, date, runtime.Version())
	return nil
}

// renderConfig prints the merged configuration as YAML, in config.yaml's order, optionally with
// each value's source as a line comment.
func renderConfig(l *Loaded, withSources bool) ([]byte, error) {
	root := &yaml.Node{Kind: yaml.MappingNode}
	for _, key := range sortedKeys(l.Values) {
		parts := strings.Split(key, ".")
		parent := root
		for _, p := range parts[:len(parts)-1] {
			parent = childMap(parent, p)
		}
		val := &yaml.Node{}
		if err := val.Encode(printable(key, l.Values[key])); err != nil {
			return nil, fmt.Errorf("render %s: %w", key, err)
		}
		k := &yaml.Node{Kind: yaml.ScalarNode, Value: parts[len(parts)-1]}
		if withSources {
			k.LineComment = string(l.Sources[key])
			if val.Kind == yaml.ScalarNode {
				val.LineComment, k.LineComment = k.LineComment, ""
			}
		}
		parent.Content = append(parent.Content, k, val)
	}
	return yaml.Marshal(&yaml.Node{Kind: yaml.DocumentNode, Content: []*yaml.Node{root}})
}

func childMap(parent *yaml.Node, name string) *yaml.Node {
	for i := 0; i+1 < len(parent.Content); i += 2 {
		if parent.Content[i].Value == name {
			return parent.Content[i+1]
		}
	}
	m := &yaml.Node{Kind: yaml.MappingNode}
	parent.Content = append(parent.Content, &yaml.Node{Kind: yaml.ScalarNode, Value: name}, m)
	return m
}

// printable turns a parsed value back into what config.yaml would say.
func printable(key string, v any) any {
	switch x := v.(type) {
	case time.Duration:
		if x == 0 && offKeys[key] {
			return "off"
		}
		return x.String()
	case int:
		if x == 0 && autoKeys[key] {
			return "auto"
		}
	case string:
		if secretKeys[key] && x != "" {
			return "(set, not shown)"
		}
		if r := redactedKeys[key]; r != nil && x != "" {
			return r(x)
		}
	case []string:
		if x == nil {
			return []string{}
		}
	case []PeriodicConfig:
		if x == nil {
			return []PeriodicConfig{}
		}
	case map[string]QueueConfig:
		names := make([]string, 0, len(x))
		for n := range x {
			names = append(names, n)
		}
		sort.Strings(names)
		m := &yaml.Node{Kind: yaml.MappingNode}
		for _, n := range names {
			q := &yaml.Node{}
			_ = q.Encode(x[n])
			m.Content = append(m.Content, &yaml.Node{Kind: yaml.ScalarNode, Value: n}, q)
		}
		return m
	}
	return v
}
