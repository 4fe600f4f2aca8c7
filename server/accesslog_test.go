package server

import (
	"encoding/json"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/go-chi/chi/v5"
)

// accessLines decodes the access log lines ("msg":"request") written so far.
func accessLines(t *testing.T, b *bundle) []map[string]any {
	t.Helper()
	var out []map[string]any
	for _, line := range strings.Split(b.logs.String(), "\n") {
		if !strings.Contains(line, `"msg":"request"`) {
			continue
		}
		var m map[string]any
		if err := json.Unmarshal([]byte(line), &m); err != nil {
			t.Fatalf("access line %q: %v", line, err)
		}
		out = append(out, m)
	}
	return out
}

// TestAccessLogPolicy: which requests each log.access mode writes a line for. errors (the
// default) logs 4xx, 5xx and requests slower than SlowRequest, never the probes or the admin
// listener's reads; all logs everything; off nothing. The mode changes live.
func TestAccessLogPolicy(t *testing.T) {
	type req struct {
		admin        bool
		method, path string
	}
	probes := []req{{false, "GET", "/healthz"}, {false, "HEAD", "/readyz"}, {true, "GET", "/admin/pools"},
		{true, "GET", "/admin/api/v1/jobs?limit=x"}, {true, "GET", "/admin/runtime"}}
	cases := []struct {
		name   string
		mode   AccessLog
		reqs   []req
		logged []string // routes with a line, in order
	}{
		{"errors: a fast 200 is not logged", AccessErrors, []req{{false, "GET", "/demo/hello"}}, nil},
		{"errors: 4xx and 5xx are", AccessErrors, []req{{false, "GET", "/nope"}, {false, "GET", "/demo/io?ms=x"}, {false, "GET", "/fail"}},
			[]string{"unmatched", "/demo/io", "/fail"}},
		{"errors: a slow 200 is", AccessErrors, []req{{false, "GET", "/demo/io?ms=450"}}, []string{"/demo/io"}},
		{"errors: probes and admin reads never, even failing", AccessErrors, probes, nil},
		{"errors: admin writes are", AccessErrors, []req{{true, "PUT", "/admin/pools/nope"}}, []string{"/admin/pools/{name}"}},
		{"all: everything", AccessAll, append([]req{{false, "GET", "/demo/hello"}}, probes...),
			[]string{"/demo/hello", "/healthz", "/readyz", "/admin/pools", "/admin/api/v1/jobs", "/admin/runtime"}},
		{"off: nothing", AccessOff, []req{{false, "GET", "/nope"}, {false, "GET", "/fail"}, {true, "PUT", "/admin/pools/nope"}}, nil},
	}
	b := setup(t, func(o *Options) { o.SlowRequest = 400 * time.Millisecond }, func(r chi.Router) {
		r.Get("/fail", func(w http.ResponseWriter, r *http.Request) { writeError(w, r, http.StatusInternalServerError, "boom") })
	})
	b.srv.SetReady(false) // /readyz answers 503: a failing probe
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			b.srv.SetAccessLog(tc.mode)
			before := len(accessLines(t, b))
			for _, rq := range tc.reqs {
				base := b.base
				if rq.admin {
					base = b.adminURL
				}
				b.do(t, rq.method, base+rq.path, "", jsonHdr)
			}
			var got []string
			for _, m := range accessLines(t, b)[before:] {
				got = append(got, m["route"].(string))
				if _, ok := m["duration_ms"].(float64); !ok || m["duration"] != nil {
					t.Errorf("duration not a number of milliseconds: %v", m)
				}
			}
			if strings.Join(got, " ") != strings.Join(tc.logged, " ") {
				t.Errorf("logged %v, want %v", got, tc.logged)
			}
		})
	}
	// The slow line says how slow, in milliseconds.
	b.srv.SetAccessLog(AccessErrors)
	b.do(t, "GET", b.base+"/demo/io?ms=450", "", nil)
	lines := accessLines(t, b)
	if ms := lines[len(lines)-1]["duration_ms"].(float64); ms < 450 {
		t.Errorf("a request that slept 450 ms logged duration_ms %v", ms)
	}
}

func TestParseAccessLog(t *testing.T) {
	for _, s := range []string{"all", "errors", "off"} {
		a, err := ParseAccessLog(s)
		if err != nil || a.String() != s {
			t.Errorf("%s: %v %v", s, a, err)
		}
	}
	if _, err := ParseAccessLog("some"); err == nil || !strings.Contains(err.Error(), "all, errors or off") {
		t.Errorf("bad value: %v", err)
	}
	var zero Options
	if zero.AccessLog != AccessErrors {
		t.Error("the zero AccessLog is not the default, errors")
	}
}
