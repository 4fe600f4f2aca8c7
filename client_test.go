package main

import (
	"fmt"
	"regexp"
	"strings"
	"testing"

	"github.com/tandem-run/tandem/internal/tandemtest"
)

// TestDialAddr: a listen address becomes the address a client on the same host dials.
func TestDialAddr(t *testing.T) {
	t.Parallel()
	for listen, want := range map[string]string{
		":3000":           "127.0.0.1:3000",
		"0.0.0.0:3000":    "127.0.0.1:3000",
		"[::]:3000":       "[::1]:3000",
		"127.0.0.1:9090":  "127.0.0.1:9090",
		"[::1]:9090":      "[::1]:9090",
		"10.1.2.3:8080":   "10.1.2.3:8080",
		"localhost:8080":  "localhost:8080",
		"tandem.svc:8080": "tandem.svc:8080",
	} {
		if got := dialAddr(listen); got != want {
			t.Errorf("dialAddr(%q) = %q, want %q", listen, got, want)
		}
	}
}

// TestCommandOf: the client flags may come before the command; anything else is serve's.
func TestCommandOf(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		args []string
		name string
		rest []string
	}{
		{[]string{"--server", "http://h:1", "jobs", "retry", "ID"}, "jobs", []string{"--server", "http://h:1", "retry", "ID"}},
		{[]string{"--json", "--admin=http://h:2", "pools"}, "pools", []string{"--json", "--admin=http://h:2"}},
		{[]string{"--config", "c.yaml", "config", "--sources"}, "config", []string{"--config", "c.yaml", "--sources"}},
		{[]string{"--threads", "16"}, "serve", []string{"--threads", "16"}},
		{[]string{"--config", "c.yaml", "--threads", "16"}, "serve", []string{"--config", "c.yaml", "--threads", "16"}},
		{[]string{"jobs", "list", "--json"}, "jobs", []string{"list", "--json"}},
		{nil, "serve", nil},
	} {
		name, rest := commandOf(tc.args)
		if name != tc.name || fmt.Sprint(rest) != fmt.Sprint(tc.rest) {
			t.Errorf("commandOf(%q) = %q %q, want %q %q", tc.args, name, rest, tc.name, tc.rest)
		}
	}
}

// TestClientRefusedConnection: nothing listening says where the client looked.
func TestClientRefusedConnection(t *testing.T) {
	t.Parallel()
	port := tandemtest.FreePort(t)
	want := fmt.Sprintf("is tandem running at http://127.0.0.1:%d?", port)
	for _, args := range [][]string{{"jobs", "list"}, {"healthcheck"}, {"enqueue", "noop"}} {
		r := runCmd(t, []string{fmt.Sprintf("TANDEM_SERVER_ADDR=:%d", port)}, append([]string{"--config", emptyConfig(t)}, args...)...)
		if r.code != exitFail || !strings.Contains(r.stderr, want) {
			t.Errorf("tandem %v: %+v, want exit 1 and %q", args, r, want)
		}
	}
}

// TestClientVerbs: the help lists every verb of every client command, and an unknown verb, given
// alone or with an argument, says so and lists them.
func TestClientVerbs(t *testing.T) {
	t.Parallel()
	help := runCmd(t, nil, "--help")
	for _, tc := range []struct {
		cmd   string
		verbs []string
	}{
		{"jobs", []string{"list", "show", "wait", "cancel", "retry", "delete"}},
		{"queues", []string{"list", "pause", "resume"}},
		{"pools", []string{"show", "resize", "unpin"}},
		{"periodic", []string{"list"}},
	} {
		line := regexp.MustCompile(`(?m)^  ` + tc.cmd + ` .*$`).FindString(help.stdout)
		for _, v := range tc.verbs {
			if !strings.Contains(line, v) {
				t.Errorf("tandem --help says %q for %s, without %s", line, tc.cmd, v)
			}
		}
		for _, args := range [][]string{{tc.cmd, "frob"}, {tc.cmd, "frob", "x"}} {
			r := runCmd(t, nil, args...)
			if r.code != exitConfig || !strings.Contains(r.stderr, `unknown verb "frob"; the verbs are `+strings.Join(tc.verbs, ", ")) {
				t.Errorf("tandem %v: %+v", args, r)
			}
		}
	}
	r := runCmd(t, nil, "--json", "frobnicate")
	if r.code != exitConfig || !strings.Contains(r.stderr, `unknown command "frobnicate"; the commands are serve, config, check-config, version, healthcheck, enqueue, jobs, queues, pools, nodes, migrate, periodic`) {
		t.Errorf("tandem --json frobnicate: %+v", r)
	}
}

// TestClientEnvIsNotConfiguration: the client's own variables do not stop serve's configuration.
func TestClientEnvIsNotConfiguration(t *testing.T) {
	t.Parallel()
	env := []string{"TANDEM_SERVER_URL=http://127.0.0.1:1", "TANDEM_ADMIN_URL=http://127.0.0.1:2", "TANDEM_HEALTHCHECK_URL=http://127.0.0.1:1/readyz"}
	if r := runCmd(t, env, "check-config", "--config", emptyConfig(t)); r.code != 0 {
		t.Fatalf("check-config with the client's variables set: %+v", r)
	}
}
