package server

import (
	"encoding/hex"
	"net/http"
	"strconv"
	"time"

	"github.com/go-chi/chi/v5"
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
	root.MethodNotAllowed(methodNotAllowed)
	s.mainRoot = root
	// Probes never queue behind user traffic: a liveness probe stuck in the backlog gets healthy
	// pods killed exactly when they are busiest.
	root.Get("/healthz", func(w http.ResponseWriter, r *http.Request) {
		writeJSON(w, http.StatusOK, map[string]string{"status": "ok"})
	})
	root.Get("/readyz", func(w http.ResponseWriter, r *http.Request) {
		if !s.ready.Load() {
			writeError(w, r, http.StatusServiceUnavailable, "not ready")
			return
		}
		writeJSON(w, http.StatusOK, map[string]string{"status": "ready"})
	})
	mws := []func(http.Handler) http.Handler{s.limitBody}
	if s.opts.Threads != nil {
		mws = append(mws, s.admission)
	}
	admitted := root.With(append(mws, s.opts.Admitted...)...)
	if s.opts.DemoRoutes {
		admitted.Get("/demo/hello", demoHello)
		admitted.Get("/demo/io", demoIO)
		admitted.Get("/demo/cpu", demoCPU)
	}
	if s.opts.Jobs != nil {
		admitted.With(sameOrigin).Route("/v1", s.jobRoutes)
	}
	return admitted
}

func notFound(w http.ResponseWriter, r *http.Request) {
	writeError(w, r, http.StatusNotFound, "no route for "+r.Method+" "+r.URL.Path)
}

func methodNotAllowed(w http.ResponseWriter, r *http.Request) {
	writeError(w, r, http.StatusMethodNotAllowed, "method "+r.Method+" not allowed on "+r.URL.Path)
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
