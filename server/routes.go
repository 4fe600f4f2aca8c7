package server

import (
	"encoding/hex"
	"net/http"
	"strconv"
	"strings"
	"time"

	"github.com/go-chi/chi/v5"
	"github.com/go-chi/chi/v5/middleware"
	"github.com/tandem-run/tandem/kinds"
)

// Demo route limits.
const (
	maxDemoIO    = 10 * time.Second
	maxDemoCPU   = 10_000_000
	defDemoCPU   = 10_000
	demoHelloMsg = "hello from tandem\n"
)

// mainRouter builds the main listener's routes: health outside admission, everything else behind it.
func (s *Server) mainRouter() chi.Router {
	root := chi.NewRouter()
	root.NotFound(notFound)
	root.MethodNotAllowed(methodNotAllowed(root))
	root.Use(middleware.GetHead)
	s.mainRoot = root
	// Probes never queue behind user traffic: a liveness probe stuck in the backlog gets healthy
	// pods killed exactly when they are busiest.
	root.Get("/healthz", func(w http.ResponseWriter, r *http.Request) {
		writeJSON(w, http.StatusOK, map[string]string{"status": "ok"})
	})
	root.Get("/readyz", func(w http.ResponseWriter, r *http.Request) {
		if s.draining.Load() {
			writeError(w, r, http.StatusServiceUnavailable, "shutting down")
			return
		}
		if !s.ready.Load() {
			writeError(w, r, http.StatusServiceUnavailable, "not ready")
			return
		}
		// A shared job store (Postgres) that stopped answering makes this replica useless for
		// enqueues: the load balancer sends elsewhere until the runtime's ping succeeds again.
		// The cause is in the runtime's log, not here: the main listener names no internals.
		if s.opts.Jobs != nil && s.opts.Jobs.Healthy() != nil {
			writeError(w, r, http.StatusServiceUnavailable, "the job store is unavailable")
			return
		}
		writeJSON(w, http.StatusOK, map[string]string{"status": "ready"})
	})
	// The body is read before admission: a request holds no thread while it waits on its client.
	mws := []func(http.Handler) http.Handler{s.bufferBody}
	if s.opts.Jobs != nil {
		mws = append(mws, s.parkFollowers) // waits on jobs hold no thread (follow.go)
	}
	if s.opts.Threads != nil {
		mws = append(mws, s.admission)
	}
	admitted := root.With(append(mws, s.opts.Admitted...)...)
	if s.opts.DemoRoutes {
		admitted.With(queryParams()).Get("/demo/hello", demoHello)
		admitted.With(queryParams("ms")).Get("/demo/io", demoIO)
		admitted.With(queryParams("n")).Get("/demo/cpu", demoCPU)
	}
	if s.opts.Jobs != nil {
		admitted.With(sameOrigin).Route("/v1", s.jobRoutes)
	}
	return admitted
}

func notFound(w http.ResponseWriter, r *http.Request) {
	writeError(w, r, http.StatusNotFound, "no route for "+r.Method+" "+r.URL.Path)
}

// allowable are the methods an Allow header may list, in the order it lists them.
var allowable = []string{http.MethodGet, http.MethodHead, http.MethodPost, http.MethodPut, http.MethodPatch, http.MethodDelete}

// methodNotAllowed answers a request for a path that router serves, but not with the request's
// method: 405 with the Allow header RFC 9110 requires, so a client can tell which methods the
// path takes. OPTIONS gets 204 and the same header. HEAD is allowed wherever GET is
// (middleware.GetHead serves it).
func methodNotAllowed(router chi.Routes) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		path := r.URL.RawPath
		if path == "" {
			path = r.URL.Path
		}
		var allow []string
		for _, m := range allowable {
			if router.Match(chi.NewRouteContext(), m, path) ||
				(m == http.MethodHead && router.Match(chi.NewRouteContext(), http.MethodGet, path)) {
				allow = append(allow, m)
			}
		}
		w.Header().Set("Allow", strings.Join(append(allow, http.MethodOptions), ", "))
		if r.Method == http.MethodOptions {
			w.WriteHeader(http.StatusNoContent)
			return
		}
		writeError(w, r, http.StatusMethodNotAllowed, "method "+r.Method+" not allowed on "+r.URL.Path)
	}
}

func demoHello(w http.ResponseWriter, _ *http.Request) {
	w.Header().Set("Content-Type", "text/plain; charset=utf-8")
	_, _ = w.Write([]byte(demoHelloMsg))
}

// queryInt reads an integer query parameter in [0, hi], or def when absent.
func queryInt(r *http.Request, name string, def, hi int) (int, bool) {
	v := r.URL.Query().Get(name)
	if v == "" {
		return def, true
	}
	n, err := strconv.Atoi(v)
	if err != nil || n < 0 || n > hi {
		return 0, false
	}
	return n, true
}

func demoIO(w http.ResponseWriter, r *http.Request) {
	ms, ok := queryInt(r, "ms", 0, int(maxDemoIO.Milliseconds()))
	if !ok {
		badRequest(w, "ms must be an integer from 0 to 10000", map[string]string{"ms": "must be an integer from 0 to 10000"})
		return
	}
	t := time.NewTimer(time.Duration(ms) * time.Millisecond)
	defer t.Stop()
	select {
	case <-t.C:
		writeJSON(w, http.StatusOK, map[string]int{"slept_ms": ms})
	case <-r.Context().Done():
	}
}

func demoCPU(w http.ResponseWriter, r *http.Request) {
	n, ok := queryInt(r, "n", defDemoCPU, maxDemoCPU)
	if !ok {
		badRequest(w, "n must be an integer from 0 to 10000000", map[string]string{"n": "must be an integer from 0 to 10000000"})
		return
	}
	sum, err := kinds.CPUWork(r.Context(), n) // the same work as the cpu job kind
	if err != nil {
		return // the admission layer answers the timeout
	}
	writeJSON(w, http.StatusOK, map[string]any{"rounds": n, "digest": hex.EncodeToString(sum[:])})
}
