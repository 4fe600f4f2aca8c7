package server

import (
	"net/http"
	"strings"
	"testing"

	"github.com/go-chi/chi/v5"
)

// TestMethodsAllowAndHead: a path served with other methods answers 405 with the Allow header RFC
// 9110 requires, OPTIONS answers 204 with it, and HEAD is served wherever GET is, on both
// listeners and on routes a Go program adds; an unknown path stays 404 for every method.
func TestMethodsAllowAndHead(t *testing.T) {
	b := setup(t, nil, func(r chi.Router) {
		r.Post("/photos/{name}", func(w http.ResponseWriter, r *http.Request) { w.WriteHeader(http.StatusCreated) })
		r.Get("/photos", func(w http.ResponseWriter, r *http.Request) {
			w.Header().Set("Content-Type", "text/plain")
			_, _ = w.Write([]byte("three photos"))
		})
	})
	const id = "/019ac1d2-0000-7000-8000-000000000000"
	for _, c := range []struct {
		method, url string
		code        int
		allow       string
	}{
		{"PUT", b.base + "/v1/jobs", 405, "GET, HEAD, POST, OPTIONS"},
		{"PATCH", b.base + "/v1/jobs" + id, 405, "GET, HEAD, DELETE, OPTIONS"},
		{"GET", b.base + "/v1/jobs" + id + "/cancel", 405, "POST, OPTIONS"},
		{"OPTIONS", b.base + "/v1/jobs", 204, "GET, HEAD, POST, OPTIONS"},
		{"DELETE", b.base + "/healthz", 405, "GET, HEAD, OPTIONS"},
		{"GET", b.base + "/photos/cat", 405, "POST, OPTIONS"},
		{"OPTIONS", b.base + "/photos", 204, "GET, HEAD, OPTIONS"},
		{"DELETE", b.adminURL + "/admin/pools", 405, "GET, HEAD, OPTIONS"},
		{"GET", b.adminURL + "/admin/pools/http", 405, "PUT, OPTIONS"},
		{"OPTIONS", b.base + "/nothing/here", 404, ""},
		{"PUT", b.adminURL + "/admin/nothing", 404, ""},
	} {
		code, hdr, body := b.do(t, c.method, c.url, "", nil)
		if code != c.code || hdr.Get("Allow") != c.allow {
			t.Errorf("%s %s: %d, Allow %q; want %d, Allow %q (%s)", c.method, c.url, code, hdr.Get("Allow"), c.code, c.allow, body)
		}
		if code == 405 && !strings.Contains(body, `"error":"method `+c.method+` not allowed`) {
			t.Errorf("%s %s: body %s", c.method, c.url, body)
		}
	}

	for _, c := range []struct{ url, contentType string }{
		{b.base + "/healthz", "application/json"},
		{b.base + "/v1/jobs", "application/json"},
		{b.base + "/photos", "text/plain"},
		{b.adminURL + "/admin/pools", "application/json"},
	} {
		get, getHdr, getBody := b.do(t, "GET", c.url, "", nil)
		head, headHdr, headBody := b.do(t, "HEAD", c.url, "", nil)
		if get != 200 || head != 200 || headBody != "" || headHdr.Get("Content-Type") != c.contentType ||
			getHdr.Get("Content-Type") != c.contentType {
			t.Errorf("HEAD %s: %d %q %q; GET: %d %q %.80s", c.url, head, headHdr.Get("Content-Type"), headBody, get, getHdr.Get("Content-Type"), getBody)
		}
	}
	if code, _, _ := b.do(t, "HEAD", b.base+"/v1/jobs"+id, "", nil); code != 404 {
		t.Errorf("HEAD of a missing job: %d, want 404", code)
	}
	if strings.Contains(b.logs.String(), "panic") {
		t.Errorf("a request panicked:\n%s", b.logs.String())
	}
}
