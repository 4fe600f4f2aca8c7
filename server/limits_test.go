package server

import (
	"encoding/json"
	"testing"
	"time"

	"github.com/tandem-run/tandem/resize"
)

// TestRuntimeShowsLimitsChange: /admin/runtime shows the derived values with their sources, the
// watch interval and the last limits change, old and new, no limit as null; /admin/pools says who
// set each size and whether it follows the limits.
func TestRuntimeShowsLimitsChange(t *testing.T) {
	at := time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)
	b := setup(t, func(o *Options) {
		o.Sizing = func() SizingInfo {
			return SizingInfo{GOMAXPROCS: 1, GOMAXPROCSSource: "cgroup", CPUQuota: 1, CPUsAllowed: 2, CPUs: 1,
				GOMEMLIMITSource: "none", WatchInterval: 5 * time.Second, LimitsChanges: 1,
				LastLimitsChange: &LimitsChange{At: at,
					Old: Derived{CPUQuota: 2, CPUsAllowed: 2, CPUs: 2, MemoryLimit: 1 << 30, GOMAXPROCS: 2, GOMEMLIMIT: 966367641, Threads: 5, Concurrency: 2},
					New: Derived{CPUQuota: 1, CPUsAllowed: 2, CPUs: 1, GOMAXPROCS: 1, Threads: 3, Concurrency: 1}}}
		}
		o.Resizer = resize.New(resize.Options{})
		o.Resizer.Add("http", o.Threads.Size, o.Threads.Tune)
		o.Resizer.Add("jobs", o.Pools["jobs"].Size, o.Pools["jobs"].Tune)
		_ = o.Resizer.Follow("jobs")
	}, nil)
	code, _, body := b.do(t, "GET", b.adminURL+"/admin/runtime", "", nil)
	var rt struct {
		Source   string  `json:"gomaxprocs_source"`
		MemSrc   string  `json:"gomemlimit_source"`
		CPUs     float64 `json:"cpus"`
		Interval string  `json:"limits_watch_interval"`
		Changes  int     `json:"limits_changes"`
		Last     struct {
			At       time.Time
			Old, New map[string]any
		} `json:"last_limits_change"`
	}
	if err := json.Unmarshal([]byte(body), &rt); code != 200 || err != nil {
		t.Fatalf("%d %v %s", code, err, body)
	}
	if rt.Source != "cgroup" || rt.MemSrc != "none" || rt.CPUs != 1 || rt.Interval != "5s" || rt.Changes != 1 || !rt.Last.At.Equal(at) {
		t.Fatalf("runtime %+v", rt)
	}
	if rt.Last.Old["gomaxprocs"] != float64(2) || rt.Last.New["threads"] != float64(3) || rt.Last.Old["memory_limit"] != float64(1<<30) ||
		rt.Last.New["memory_limit"] != nil || rt.Last.New["gomemlimit"] != nil {
		t.Fatalf("last change %+v", rt.Last)
	}
	var pools map[string]struct {
		SizeSource string `json:"size_source"`
		Follows    bool   `json:"follows_limits"`
	}
	_, _, body = b.do(t, "GET", b.adminURL+"/admin/pools", "", nil)
	if err := json.Unmarshal([]byte(body), &pools); err != nil {
		t.Fatal(err)
	}
	if pools["http"].SizeSource != "config" || pools["http"].Follows || pools["jobs"].SizeSource != "auto" || !pools["jobs"].Follows {
		t.Fatalf("pools %s", body)
	}
}

// TestRuntimeBeforeAnyChange: no change yet is null, and a watch that is off says so.
func TestRuntimeBeforeAnyChange(t *testing.T) {
	b := setup(t, func(o *Options) { o.Sizing = func() SizingInfo { return SizingInfo{GOMAXPROCSSource: "affinity"} } }, nil)
	_, _, body := b.do(t, "GET", b.adminURL+"/admin/runtime", "", nil)
	var rt map[string]any
	if err := json.Unmarshal([]byte(body), &rt); err != nil {
		t.Fatal(err)
	}
	if v, ok := rt["last_limits_change"]; !ok || v != nil || rt["limits_watch_interval"] != "off" {
		t.Fatalf("runtime %s", body)
	}
}
