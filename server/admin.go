package server

import (
	"crypto/subtle"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"mime"
	"net/http"
	"runtime"
	"sort"
	"strings"
	"time"

	"github.com/go-chi/chi/v5"
	"github.com/go-chi/chi/v5/middleware"
	"github.com/tandem-run/tandem/internal/strictjson"
	"github.com/tandem-run/tandem/jobs"
	"github.com/tandem-run/tandem/pool"
	"github.com/tandem-run/tandem/resize"
)

// adminRouter builds the admin listener. Every route requires the token (when one is set) except
// the patterns in publicRoutes.
func (s *Server) adminRouter() chi.Router {
	a := chi.NewRouter()
	a.NotFound(notFound)
	a.MethodNotAllowed(methodNotAllowed(a))
	a.Use(middleware.GetHead, onAdmin, s.adminAuth(a), sameOrigin, requireJSON, s.limitBody)
	a.Group(func(a chi.Router) {
		a.Use(queryParams())
		a.Get("/admin/runtime", s.runtimeInfo)
		a.Get("/admin/pools", s.listPools)
		a.Put("/admin/pools/{name}", s.resizePool)
		a.Delete("/admin/pools/{name}/pin", s.unpinPool)
		if s.opts.Jobs != nil {
			a.Get("/admin/nodes", s.listNodes)
			a.Post("/admin/queues/{name}/pause", s.pauseQueue(true))
			a.Post("/admin/queues/{name}/resume", s.pauseQueue(false))
			a.Post("/admin/jobs/bulk", s.bulkJobs)
		}
	})
	if s.opts.Jobs != nil {
		// The dashboard lives on this listener, so it reaches the job API here, behind the token.
		a.Route("/admin/api/v1", s.jobRoutes)
	}
	if s.opts.Metrics != nil {
		a.Method(http.MethodGet, "/metrics", s.opts.Metrics)
	}
	if s.opts.UI != nil {
		a.Get("/", http.RedirectHandler("/admin/ui/", http.StatusFound).ServeHTTP)
		a.Get("/admin/ui", http.RedirectHandler("/admin/ui/", http.StatusMovedPermanently).ServeHTTP)
		a.Method(http.MethodGet, "/admin/ui/*", http.StripPrefix("/admin/ui", s.opts.UI))
	}
	return a
}

// publicRoutes are the admin route patterns served without the token: the dashboard's static
// files (the page must load to ask for the token; its API calls carry it) and, unless
// MetricsAuth, the metrics. Everything else, including routes added later, requires the token.
func (s *Server) publicRoutes() map[string]bool {
	m := map[string]bool{"GET /": true, "GET /admin/ui": true, "GET /admin/ui/*": true}
	if !s.opts.MetricsAuth {
		m["GET /metrics"] = true
	}
	return m
}

// adminAuth is the one authentication check of the admin listener. It matches the request against
// the router to find its route pattern, so the public list names routes, not path prefixes.
func (s *Server) adminAuth(mux *chi.Mux) func(http.Handler) http.Handler {
	public := s.publicRoutes()
	want := []byte("Bearer " + s.opts.AdminToken)
	return func(next http.Handler) http.Handler {
		return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			if s.opts.AdminToken == "" {
				next.ServeHTTP(w, r)
				return
			}
			rctx := chi.NewRouteContext()
			if mux.Match(rctx, r.Method, r.URL.Path) && public[r.Method+" "+rctx.RoutePattern()] {
				next.ServeHTTP(w, r)
				return
			}
			got := []byte(r.Header.Get("Authorization"))
			if subtle.ConstantTimeCompare(got, want) != 1 {
				w.Header().Set("WWW-Authenticate", `Bearer realm="tandem admin"`)
				writeError(w, r, http.StatusUnauthorized, "missing or wrong admin token (Authorization: Bearer <admin.token>)")
				return
			}
			next.ServeHTTP(w, r)
		})
	}
}

// requireJSON refuses a mutating request whose body is not application/json. A request with no
// body (pause, resume, unpin) needs no Content-Type, so `curl -X POST` works; sameOrigin is what
// keeps other sites' pages out.
func requireJSON(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		switch r.Method {
		case http.MethodPost, http.MethodPut, http.MethodPatch, http.MethodDelete:
			if r.ContentLength == 0 { // -1 (unknown, chunked) counts as a body
				break
			}
			mt, _, err := mime.ParseMediaType(r.Header.Get("Content-Type"))
			if err != nil || mt != "application/json" {
				writeError(w, r, http.StatusUnsupportedMediaType, "send Content-Type: application/json")
				return
			}
		}
		next.ServeHTTP(w, r)
	})
}

func (s *Server) runtimeInfo(w http.ResponseWriter, r *http.Request) {
	var ms runtime.MemStats
	runtime.ReadMemStats(&ms)
	var info SizingInfo
	if s.opts.Sizing != nil {
		info = s.opts.Sizing()
	}
	writeJSON(w, http.StatusOK, map[string]any{
		"gomaxprocs": runtime.GOMAXPROCS(0), "gomaxprocs_source": info.GOMAXPROCSSource,
		"cpu_quota": nullIfZero(info.CPUQuota), "cpus_allowed": info.CPUsAllowed, "num_cpu": runtime.NumCPU(),
		"memory_limit": nullIfZero(info.MemoryLimit), "gomemlimit": nullIfZero(info.GOMEMLIMIT),
		"gomemlimit_source": info.GOMEMLIMITSource, "cpus": info.CPUs, "gogc": info.GOGC, "gogc_source": info.GOGCSource,
		"limits_watch_interval": watchInterval(info.WatchInterval), "limits_changes": info.LimitsChanges,
		"last_limits_change": info.LastLimitsChange.view(), "uptime_seconds": time.Since(s.started).Seconds(),
		"goroutines": runtime.NumGoroutine(), "waiters": s.Waiters(), "heap_alloc_bytes": ms.HeapAlloc, "heap_sys_bytes": ms.HeapSys,
		"started_at": s.started.UTC(), "version": s.opts.Version, "go_version": runtime.Version(),
	})
}

func nullIfZero[T int64 | float64](v T) any {
	if v == 0 {
		return nil
	}
	return v
}

// poolView is a pool as the admin API shows it.
type poolView struct {
	Size      int    `json:"size"`
	Running   int    `json:"running"`
	Waiting   int    `json:"waiting"`
	Backlog   *int   `json:"backlog,omitempty"` // the threads pool only: the jobs pool's backlog is internal
	Rejected  uint64 `json:"rejected"`
	Pinned    bool   `json:"pinned"`
	Autoscale bool   `json:"autoscale"`
	// SizeSource says who set the size: config, auto (derived from the limits), admin, reload,
	// autoscale or limits (re-derived after the limits changed).
	SizeSource string `json:"size_source"`
	// FollowsLimits: the size is on auto and will follow a change of the CPU limit.
	FollowsLimits bool `json:"follows_limits"`
	// Yield is the jobs pool's yield to HTTP (jobs.Runtime.Yield), shown once a controller set it
	// (jobs.yield_to_http).
	Yield *yieldView `json:"yield,omitempty"`
}

// yieldView is how far the jobs pool gives way to HTTP requests.
type yieldView struct {
	Limit  int        `json:"limit"` // most jobs run at once; 0: no limit
	Reason string     `json:"reason"`
	Since  *time.Time `json:"since,omitempty"`
	Yields uint64     `json:"yields"`
}

func (s *Server) viewPool(name string, p *pool.Pool) poolView {
	st := p.Stats()
	v := poolView{Size: st.Size, Running: st.Running, Waiting: st.Waiting, Rejected: st.Rejected}
	if p == s.opts.Threads {
		v.Backlog = &st.Backlog
	}
	v.Autoscale, v.Pinned = s.opts.Resizer.Autoscaled(name), s.opts.Resizer.Pinned(name)
	v.SizeSource, v.FollowsLimits = string(s.opts.Resizer.SetBy(name)), s.opts.Resizer.Follows(name)
	if s.opts.Jobs != nil && p == s.opts.Jobs.Pool() {
		if y := s.opts.Jobs.Yield(); y.Reason != "" {
			v.Yield = &yieldView{Limit: y.Limit, Reason: y.Reason, Yields: y.Yields}
			if !y.Since.IsZero() {
				v.Yield.Since = &y.Since
			}
		}
	}
	return v
}

func (s *Server) listPools(w http.ResponseWriter, r *http.Request) {
	out := map[string]poolView{}
	for name, p := range s.opts.Pools {
		out[name] = s.viewPool(name, p)
	}
	writeJSON(w, http.StatusOK, out)
}

func (s *Server) lookupPool(w http.ResponseWriter, r *http.Request) (string, *pool.Pool, bool) {
	name := chi.URLParam(r, "name")
	p, ok := s.opts.Pools[name]
	if !ok {
		names := make([]string, 0, len(s.opts.Pools))
		for n := range s.opts.Pools {
			names = append(names, n)
		}
		sort.Strings(names)
		writeError(w, r, http.StatusNotFound, fmt.Sprintf("no pool %q (pools: %s)", name, strings.Join(names, ", ")))
	}
	return name, p, ok
}

// poolSize is a resize's size: a whole number, or "auto" (Options.AutoSize).
type poolSize struct {
	n    int
	auto bool
}

func (p *poolSize) UnmarshalJSON(b []byte) error {
	if string(b) == `"auto"` {
		p.auto = true
		return nil
	}
	if err := json.Unmarshal(b, &p.n); err != nil {
		msg := `must be a whole number or "auto"`
		if len(b) <= 40 {
			msg += ", got " + string(b)
		}
		return strictjson.ValueError(msg)
	}
	return nil
}

// resizePool applies {"size": N or "auto"} and/or {"backlog": N}. Everything is checked before
// anything changes, so a bad field changes nothing.
func (s *Server) resizePool(w http.ResponseWriter, r *http.Request) {
	name, p, ok := s.lookupPool(w, r)
	if !ok {
		return
	}
	body, ok := s.readBody(w, r)
	if !ok {
		return
	}
	// Pointers tell a field left out from 0; a null, a duplicate or an unknown field is refused.
	var req struct {
		Size    *poolSize `json:"size"`
		Backlog *int      `json:"backlog"`
	}
	fields := map[string]string{}
	if field, err := decodeStrict(body, &req); err != nil {
		msg := err.Error()
		switch {
		case errors.Is(err, strictjson.ErrUnknownField):
			msg += " (size, backlog)"
		case field == "body":
			msg += `: send a JSON object like {"size": 8}`
		}
		fields[field] = msg
	} else {
		if req.Size == nil && req.Backlog == nil {
			fields["size"] = "give size and/or backlog"
		}
		switch {
		case req.Size == nil:
		case req.Size.auto && s.opts.AutoSize == nil:
			fields["size"] = "auto is not available here: give a whole number"
		case !req.Size.auto && pool.ValidateSize(req.Size.n) != nil:
			fields["size"] = fmt.Sprintf(`must be between 1 and %d, or "auto", got %d`, pool.MaxSize, req.Size.n)
		}
		switch {
		case req.Backlog == nil:
		case p != s.opts.Threads:
			fields["backlog"] = "only the http pool has a backlog"
		case pool.ValidateBacklog(*req.Backlog) != nil:
			fields["backlog"] = fmt.Sprintf("must be between 0 and %d, got %d", pool.MaxBacklog, *req.Backlog)
		}
	}
	if len(fields) > 0 {
		badRequest(w, (&jobs.ValidationError{Subject: "resize", Fields: fields}).Error(), fields)
		return
	}
	if req.Size != nil {
		// The one door: it validates, applies (the jobs pool wakes its dispatcher), pins an
		// autoscaled pool and writes the audit line. Auto goes through it too.
		var err error
		if req.Size.auto {
			_, err = s.opts.AutoSize(r.Context(), name, auditAttrs(r)...)
		} else {
			_, err = s.opts.Resizer.Resize(r.Context(), name, req.Size.n, resize.Admin, auditAttrs(r)...)
		}
		if err != nil {
			badRequest(w, err.Error(), map[string]string{"size": err.Error()})
			return
		}
	}
	if req.Backlog != nil {
		old, _ := p.SetBacklog(*req.Backlog)
		s.audit(r, "pool "+name+" backlog", old, *req.Backlog)
	}
	writeJSON(w, http.StatusOK, s.viewPool(name, p))
}

func (s *Server) unpinPool(w http.ResponseWriter, r *http.Request) {
	name, p, ok := s.lookupPool(w, r)
	if !ok {
		return
	}
	if _, err := s.opts.Resizer.Unpin(r.Context(), name, auditAttrs(r)...); err != nil {
		s.writeErr(w, r, err)
		return
	}
	writeJSON(w, http.StatusOK, s.viewPool(name, p))
}

func (s *Server) pauseQueue(paused bool) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		name := chi.URLParam(r, "name")
		before, err := s.opts.Jobs.Queue(r.Context(), name)
		if err == nil {
			if paused {
				err = s.opts.Jobs.Pause(r.Context(), name)
			} else {
				err = s.opts.Jobs.Resume(r.Context(), name)
			}
		}
		if err != nil {
			s.writeErr(w, r, err)
			return
		}
		s.audit(r, "queue "+name+" paused", before.Paused, paused)
		q, err := s.opts.Jobs.Queue(r.Context(), name)
		if err != nil {
			s.writeErr(w, r, err)
			return
		}
		writeJSON(w, http.StatusOK, newQueueResponse(q, time.Now()))
	}
}

// audit logs a change made through the admin API.
func (s *Server) audit(r *http.Request, what string, old, new any) {
	s.log.Info("admin change", "what", what, "old", old, "new", new, "remote", r.RemoteAddr, "request_id", RequestID(r.Context()))
}

// auditAttrs say who asked, for the audit line of a change made through another package's door.
func auditAttrs(r *http.Request) []slog.Attr {
	return []slog.Attr{slog.String("remote", r.RemoteAddr), slog.String("request_id", RequestID(r.Context()))}
}
