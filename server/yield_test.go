package server

import (
	"encoding/json"
	"testing"
)

// TestAdminPoolsShowsTheYield: GET /admin/pools shows the jobs pool's yield to HTTP once a
// controller set one (limit, reason, how many yields), and never on the http pool.
func TestAdminPoolsShowsTheYield(t *testing.T) {
	b := setup(t, nil, nil)
	pools := func() map[string]map[string]json.RawMessage {
		code, _, body := b.do(t, "GET", b.adminURL+"/admin/pools", "", nil)
		if code != 200 {
			t.Fatalf("GET /admin/pools: %d %s", code, body)
		}
		var out map[string]map[string]json.RawMessage
		if err := json.Unmarshal([]byte(body), &out); err != nil {
			t.Fatal(err)
		}
		return out
	}
	if y, ok := pools()["jobs"]["yield"]; ok {
		t.Fatalf("yield %s before any controller set one", y)
	}
	b.rt.SetYield(1, "requests wait for a core")
	got := pools()
	if _, ok := got["http"]["yield"]; ok {
		t.Fatal("the http pool shows a yield")
	}
	var y struct {
		Limit  int     `json:"limit"`
		Reason string  `json:"reason"`
		Since  *string `json:"since"`
		Yields int     `json:"yields"`
	}
	if err := json.Unmarshal(got["jobs"]["yield"], &y); err != nil {
		t.Fatalf("jobs yield %s: %v", got["jobs"]["yield"], err)
	}
	if y.Limit != 1 || y.Reason != "requests wait for a core" || y.Since == nil || y.Yields != 1 {
		t.Fatalf("jobs yield %s", got["jobs"]["yield"])
	}
}
