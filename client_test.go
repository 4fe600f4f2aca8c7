package main

import (
	"fmt"
	"testing"
)

// TestDialAddr: a listen address becomes the address a client on the same host dials.
func TestDialAddr(t *testing.T) {
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
