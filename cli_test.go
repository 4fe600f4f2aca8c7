package main

import (
	"encoding/json"
	"path/filepath"
	"strings"
	"testing"
)

// TestJobsCLI drives the operator CLI against a running tandem: enqueue (with a bad payload, an
// unknown kind and a unique key), list, show, cancel, retry and delete, and their exit statuses.
func TestJobsCLI(t *testing.T) {
	db := filepath.Join(t.TempDir(), "db")
	p := startTandem(t, "TANDEM_STORE_PATH="+db)
	if p.Started["store"] != db || p.Started["store_sync"] != "always" {
		t.Errorf("start line: store %v sync %v, want %s and always", p.Started["store"], p.Started["store_sync"], db)
	}
	cli := func(args ...string) result {
		return runTandem(t, t.TempDir(), []string{"TANDEM_SERVER_URL=" + p.HTTPURL, "TANDEM_ADMIN_URL=" + p.AdminURL}, args...)
	}
	r := cli("enqueue", "sleep", "--payload", `{"ms":60000}`, "--delay", "1h", "--unique", "nightly")
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
	} {
		r := cli(bad.args...)
		if r.code != bad.code || !strings.Contains(r.stderr, bad.want) {
			t.Errorf("tandem %v: exit %d stderr %q, want %d and %q", bad.args, r.code, r.stderr, bad.code, bad.want)
		}
	}
	if r := cli("jobs", "list", "--state", "scheduled"); r.code != 0 || !strings.Contains(r.stdout, j.ID) || !strings.Contains(r.stdout, "STATE") {
		t.Fatalf("list: %+v", r)
	}
	if r := cli("jobs", "show", j.ID); r.code != 0 || !strings.Contains(r.stdout, `"unique_key": "nightly"`) {
		t.Fatalf("show: %+v", r)
	}
	if r := cli("jobs", "cancel", j.ID); r.code != 0 || !strings.Contains(r.stdout, `"state": "canceled"`) {
		t.Fatalf("cancel: %+v", r)
	}
	if r := cli("jobs", "cancel", j.ID); r.code != 1 || !strings.Contains(r.stderr, "409") {
		t.Fatalf("second cancel: %+v", r)
	}
	if r := cli("jobs", "retry", j.ID); r.code != 0 || !strings.Contains(r.stdout, `"state": "ready"`) {
		t.Fatalf("retry: %+v", r)
	}
	if r := cli("jobs", "delete", j.ID); r.code != 1 || !strings.Contains(r.stderr, "409") {
		t.Fatalf("delete of an unfinished job: %+v", r)
	}
	if r := cli("jobs", "cancel", j.ID); r.code != 0 {
		t.Fatalf("cancel again: %+v", r)
	}
	if r := cli("jobs", "delete", j.ID); r.code != 0 {
		t.Fatalf("delete: %+v", r)
	}
	if r := cli("jobs", "list", "--json"); r.code != 0 || strings.Contains(r.stdout, j.ID) || !strings.Contains(r.stdout, `"jobs"`) {
		t.Fatalf("list after delete: %+v", r)
	}
}
