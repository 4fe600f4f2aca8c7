package server

import (
	"fmt"
	"log/slog"
	"net/http"
	"sync/atomic"
	"time"

	"github.com/go-chi/chi/v5"
)

// AccessLog says which requests get an access log line.
type AccessLog uint8

const (
	// AccessErrors, the default, logs the requests answered 4xx or 5xx and those slower than
	// Options.SlowRequest: a line per request cost 226 bytes per /demo/hello, and an open
	// dashboard alone wrote 39 MB a day (issue 13).
	AccessErrors AccessLog = iota
	// AccessAll logs every request.
	AccessAll
	// AccessOff logs none.
	AccessOff
)

var accessLogNames = [...]string{AccessErrors: "errors", AccessAll: "all", AccessOff: "off"}

// String is the configuration's name for a: "errors", "all" or "off".
func (a AccessLog) String() string {
	if int(a) < len(accessLogNames) {
		return accessLogNames[a]
	}
	return fmt.Sprintf("AccessLog(%d)", uint8(a))
}

// ParseAccessLog reads a configuration value: "all", "errors" or "off".
func ParseAccessLog(s string) (AccessLog, error) {
	for i, n := range accessLogNames {
		if s == n {
			return AccessLog(i), nil
		}
	}
	return 0, fmt.Errorf("access log %q: must be all, errors or off", s)
}

// accessPolicy is what accessLog reads on every request; SIGHUP can change it while requests run.
type accessPolicy struct {
	mode atomic.Uint32 // an AccessLog
	slow atomic.Int64  // a time.Duration
}

// SetAccessLog changes which requests are logged, live.
func (s *Server) SetAccessLog(a AccessLog) { s.access.mode.Store(uint32(a)) }

// SetSlowRequest changes the duration past which AccessErrors logs a request, live; 0 means the
// default (1s).
func (s *Server) SetSlowRequest(d time.Duration) {
	if d <= 0 {
		d = time.Second
	}
	s.access.slow.Store(int64(d))
}

// statusWriter records the status and size of a response.
type statusWriter struct {
	http.ResponseWriter
	status int
	bytes  int
}

func (w *statusWriter) WriteHeader(code int) {
	if w.status == 0 {
		w.status = code
	}
	w.ResponseWriter.WriteHeader(code)
}

func (w *statusWriter) Write(b []byte) (int, error) {
	if w.status == 0 {
		w.status = http.StatusOK
	}
	n, err := w.ResponseWriter.Write(b)
	w.bytes += n
	return n, err
}

func (w *statusWriter) Unwrap() http.ResponseWriter { return w.ResponseWriter }

// Flush lets streaming handlers flush through the wrapper.
func (w *statusWriter) Flush() {
	if f, ok := w.ResponseWriter.(http.Flusher); ok {
		f.Flush()
	}
}

// accessLog writes one structured INFO line per request the policy picks, labelled by route
// pattern (bounded) with the raw path beside it and the duration in milliseconds (a number, for
// queries like duration_ms > 500). log.level warn or above silences it whatever the policy.
// admin says which listener this is, for quiet.
func (s *Server) accessLog(admin bool, next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		mode := AccessLog(s.access.mode.Load())
		if mode == AccessOff || !s.log.Enabled(r.Context(), slog.LevelInfo) {
			next.ServeHTTP(w, r)
			return
		}
		start := time.Now()
		var sw *statusWriter
		if rc, ok := r.Context().(*requestCtx); ok {
			sw = &rc.status // allocated with the rest of the request's state
		} else {
			sw = &statusWriter{}
		}
		sw.ResponseWriter = w
		next.ServeHTTP(sw, r)
		took := time.Since(start)
		status := cmpStatus(sw.status)
		if mode != AccessAll && status < 400 && took <= time.Duration(s.access.slow.Load()) {
			return // the usual request under AccessErrors: decided before the route is built
		}
		route := "unmatched"
		if rc := chi.RouteContext(r.Context()); rc != nil {
			// RoutePattern joins and rewrites the matched patterns: once, and only for a line.
			if p := rc.RoutePattern(); p != "" {
				route = p
			}
		}
		if mode != AccessAll && quiet(admin, r.Method, route) {
			return
		}
		s.log.LogAttrs(r.Context(), slog.LevelInfo, "request",
			slog.String("method", r.Method), slog.String("route", route), slog.String("path", r.URL.Path),
			slog.Int("status", status), slog.Int("bytes", sw.bytes),
			slog.Float64("duration_ms", float64(took.Microseconds())/1000), slog.String("request_id", RequestID(r.Context())),
			slog.String("remote", r.RemoteAddr))
	})
}

// quiet reports whether a request is logged only under AccessAll, whatever its status or
// duration: the probes (/healthz and /readyz on the main listener, which orchestrators poll every
// few seconds and which answer 503 on purpose while starting and draining) and every read (GET or
// HEAD) on the admin listener: the dashboard's polling every 1.5 s, its static files, and
// Prometheus's /metrics scrapes. Writes on the admin listener (resizes, cancels, pauses) are
// operator actions and are logged like any request.
func quiet(admin bool, method, route string) bool {
	if admin {
		return method == http.MethodGet || method == http.MethodHead
	}
	return route == "/healthz" || route == "/readyz"
}

func cmpStatus(s int) int {
	if s == 0 {
		return http.StatusOK
	}
	return s
}
