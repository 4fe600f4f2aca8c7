package e2e

import (
	"encoding/json"
	"fmt"
	"path/filepath"
	"regexp"
	"strings"
	"testing"

	"github.com/tandem-run/tandem/internal/tandemtest"
)

// TestJobsCLI drives the operator CLI against a running tandem: enqueue (with a bad payload, an
// unknown kind and a unique key), list, show, cancel, retry and delete, and their exit statuses.
func TestJobsCLI(t *testing.T) {
	t.Parallel()
	db := filepath.Join(t.TempDir(), "db")
	p := startTandem(t, "TANDEM_STORE_PATH="+db)
	if p.Started["store"] != db || p.Started["store_sync"] != "always" {
		t.Errorf("start line: store %v sync %v, want %s and always", p.Started["store"], p.Started["store_sync"], db)
	}
	cli := func(args ...string) result {
		return runTandem(t, t.TempDir(), []string{"TANDEM_SERVER_URL=" + p.HTTPURL, "TANDEM_ADMIN_URL=" + p.AdminURL}, args...)
	}
	r := cli("enqueue", "sleep", "--payload", `{"ms":60000}`, "--delay", "1h", "--unique", "nightly", "--json")
	var j struct{ ID, State string }
	if r.code != 0 || json.Unmarshal([]byte(r.stdout), &j) != nil || j.State != "scheduled" {
		t.Fatalf("enqueue: %+v", r)
	}
	if r := cli("enqueue", "sleep", "--unique", "nightly"); r.code != 0 || !strings.Contains(r.stdout, j.ID) {
		t.Fatalf("unique enqueue did not return the live job: %+v", r)
	}
	for _, bad := range []struct {
		args []string
		code int
		want string
	}{
		{[]string{"enqueue", "sleep", "--payload", `{"ms":`}, 2, "not valid JSON"},
		{[]string{"enqueue", "nope"}, 1, "unknown kind"},
		{[]string{"enqueue", "sleep", "--payload", `{"ms":-5}`}, 1, "payload.ms"},
		{[]string{"enqueue"}, 2, "exactly one KIND"},
		{[]string{"jobs", "show", "00000000-0000-7000-8000-000000000000"}, 1, "404"},
		{[]string{"jobs", "frob", "x"}, 2, "unknown verb"},
		{[]string{"jobs", "show"}, 2, "needs one job ID"},
	} {
		r := cli(bad.args...)
		if r.code != bad.code || !strings.Contains(r.stderr, bad.want) {
			t.Errorf("tandem %v: exit %d stderr %q, want %d and %q", bad.args, r.code, r.stderr, bad.code, bad.want)
		}
	}
	if r := cli("jobs", "list", "--state", "scheduled"); r.code != 0 || !strings.Contains(r.stdout, j.ID) || !strings.Contains(r.stdout, "STATE") {
		t.Fatalf("list: %+v", r)
	}
	if r := cli("jobs", "show", j.ID); r.code != 0 || !regexp.MustCompile(`(?m)^unique_key +nightly$`).MatchString(r.stdout) {
		t.Fatalf("show: %+v", r)
	}
	if r := cli("jobs", "cancel", j.ID, "--json"); r.code != 0 || !strings.Contains(r.stdout, `"state": "canceled"`) {
		t.Fatalf("cancel: %+v", r)
	}
	if r := cli("jobs", "cancel", j.ID); r.code != 1 || !strings.Contains(r.stderr, "409") {
		t.Fatalf("second cancel: %+v", r)
	}
	if r := cli("jobs", "retry", j.ID); r.code != 0 || !regexp.MustCompile(`(?m)^state +ready$`).MatchString(r.stdout) {
		t.Fatalf("retry: %+v", r)
	}
	if r := cli("jobs", "delete", j.ID); r.code != 1 || !strings.Contains(r.stderr, "409") {
		t.Fatalf("delete of an unfinished job: %+v", r)
	}
	if r := cli("jobs", "cancel", j.ID); r.code != 0 {
		t.Fatalf("cancel again: %+v", r)
	}
	if r := cli("jobs", "delete", j.ID); r.code != 0 || r.stdout != "deleted "+j.ID+"\n" {
		t.Fatalf("delete: %+v", r)
	}
	if r := cli("jobs", "list", "--json"); r.code != 0 || strings.Contains(r.stdout, j.ID) || !strings.Contains(r.stdout, `"jobs"`) {
		t.Fatalf("list after delete: %+v", r)
	}

	// A job that ran names the node that ran it; the node list has this process alone.
	node := fmt.Sprint(p.Started["node"])
	r = cli("enqueue", "noop", "--json")
	if r.code != 0 || json.Unmarshal([]byte(r.stdout), &j) != nil {
		t.Fatalf("enqueue noop: %+v", r)
	}
	attempted := regexp.MustCompile(`(?m)^attempted_by +` + regexp.QuoteMeta(node) + `$`)
	tandemtest.WaitFor(t, "the noop job's attempted_by", func() bool {
		return attempted.MatchString(cli("jobs", "show", j.ID).stdout)
	})
	r = cli("nodes")
	row := regexp.MustCompile(`(?m)^` + regexp.QuoteMeta(node) + ` +\S+ +true +\d+ +\d+/\d+ +\d+/\d+ +[0-9.]+m?s ago +\S+$`)
	if r.code != 0 || !strings.HasPrefix(r.stdout, "NAME ") || !row.MatchString(r.stdout) || !strings.Contains(r.stdout, "bbolt: this process is the only node") {
		t.Fatalf("nodes: %+v", r)
	}
	var nodes struct {
		Nodes  []struct{ Name string }
		Shared bool
	}
	if r := cli("nodes", "--json"); r.code != 0 || json.Unmarshal([]byte(r.stdout), &nodes) != nil || nodes.Shared || len(nodes.Nodes) != 1 || nodes.Nodes[0].Name != node {
		t.Fatalf("nodes --json: %+v", r)
	}
}

// TestClientReadsTheConfiguration: a tandem on non-default ports, set by the environment, is found
// by `tandem healthcheck` and the client commands given the same environment, or a config file
// naming the same addresses (":PORT", which they dial on 127.0.0.1) and the admin token.
func TestClientReadsTheConfiguration(t *testing.T) {
	t.Parallel()
	const token = "file-token"
	httpPort, adminPort := tandemtest.FreePort(t), tandemtest.FreePort(t)
	env := []string{fmt.Sprintf("TANDEM_SERVER_ADDR=127.0.0.1:%d", httpPort), fmt.Sprintf("TANDEM_ADMIN_ADDR=127.0.0.1:%d", adminPort)}
	startTandem(t, append(env, "TANDEM_STORE_PATH="+filepath.Join(t.TempDir(), "db"), "TANDEM_ADMIN_TOKEN="+token)...)

	for _, args := range [][]string{{"healthcheck"}, {"jobs", "list"}, {"queues"}} {
		if r := runTandem(t, t.TempDir(), env, args...); r.code != 0 {
			t.Errorf("tandem %v with the server's environment: %+v", args, r)
		}
	}
	if r := runTandem(t, t.TempDir(), append(env, "TANDEM_ADMIN_TOKEN="+token), "pools"); r.code != 0 || !strings.Contains(r.stdout, "jobs") {
		t.Errorf("tandem pools with the server's environment: %+v", r)
	}
	if r := runTandem(t, t.TempDir(), env, "pools"); r.code != 1 || !strings.Contains(r.stderr, "401") {
		t.Errorf("tandem pools without the token: %+v, want 401", r)
	}

	dir := t.TempDir()
	writeFile(t, filepath.Join(dir, "config.yaml"), fmt.Sprintf("server:\n  addr: \":%d\"\nadmin:\n  addr: \"127.0.0.1:%d\"\n  token: %s\n", httpPort, adminPort, token))
	for _, args := range [][]string{{"healthcheck"}, {"jobs", "list"}, {"pools"}} {
		if r := runTandem(t, dir, nil, args...); r.code != 0 {
			t.Errorf("tandem %v with ./config.yaml: %+v", args, r)
		}
	}
	other := t.TempDir()
	if r := runTandem(t, other, nil, "--config", filepath.Join(dir, "config.yaml"), "pools", "show"); r.code != 0 {
		t.Errorf("tandem --config FILE pools show: %+v", r)
	}
	// Flags beat both, and may come before the command.
	url := fmt.Sprintf("http://127.0.0.1:%d", httpPort)
	if r := runTandem(t, other, []string{"TANDEM_SERVER_ADDR=127.0.0.1:1"}, "--server", url, "--json", "jobs", "list"); r.code != 0 || !strings.Contains(r.stdout, `"jobs"`) {
		t.Errorf("tandem --server URL --json jobs list: %+v", r)
	}
	if r := runTandem(t, other, nil, "--server="+url, "enqueue", "noop"); r.code != 0 || !regexp.MustCompile(`(?m)^kind +noop$`).MatchString(r.stdout) {
		t.Errorf("tandem --server=URL enqueue noop: %+v", r)
	}
}

// TestClientJSON: every client command prints a table by default and the server's JSON with --json.
func TestClientJSON(t *testing.T) {
	t.Parallel()
	p := startTandem(t, "TANDEM_STORE_PATH="+filepath.Join(t.TempDir(), "db"))
	env := []string{"TANDEM_SERVER_URL=" + p.HTTPURL, "TANDEM_ADMIN_URL=" + p.AdminURL}
	// The two halves share the process, each with a job of its own: no command's answer depends on
	// what the other half did (a paused queue, a resized pool), so they run side by side.
	for _, asJSON := range []bool{false, true} {
		t.Run(map[bool]string{false: "table", true: "json"}[asJSON], func(t *testing.T) {
			t.Parallel()
			r := runTandem(t, t.TempDir(), env, "enqueue", "sleep", "--payload", `{"ms":60000}`, "--delay", "1h", "--json")
			var j struct{ ID string }
			if r.code != 0 || json.Unmarshal([]byte(r.stdout), &j) != nil {
				t.Fatalf("enqueue: %+v", r)
			}
			for _, args := range [][]string{
				{"version"}, {"healthcheck"}, {"enqueue", "noop"}, {"jobs", "list"}, {"jobs", "show", j.ID}, {"jobs", "cancel", j.ID},
				{"jobs", "retry", j.ID}, {"jobs", "cancel", j.ID}, {"jobs", "delete", j.ID}, {"queues", "list"},
				{"queues", "pause", "default"}, {"queues", "resume", "default"}, {"pools", "show"}, {"pools", "resize", "jobs", "3"},
				{"pools", "unpin", "jobs"}, {"nodes"}, {"periodic", "list"},
			} {
				if asJSON {
					args = append(args, "--json")
				}
				r := runTandem(t, t.TempDir(), env, args...)
				if r.code != 0 || json.Valid([]byte(r.stdout)) != asJSON || r.stdout == "" {
					t.Errorf("tandem %v: %+v, want JSON %v", args, r, asJSON)
				}
			}
		})
	}
}
