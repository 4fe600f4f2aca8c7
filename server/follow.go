package server

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"time"

	"github.com/go-chi/chi/v5"
	"github.com/tandem-run/tandem/jobs"
)

// Following a job: GET /v1/jobs/{id}?wait=10s answers once the job has finished or the wait is
// over (then with the job as it is), and GET /v1/jobs/{id}/events streams its changes as
// Server-Sent Events until it has finished. Both wait on the runtime's change feed (jobs.Watch),
// not on a thread: on the main listener they are taken out before admission (parkFollowers), and
// MaxWaiters bounds them instead; a waiter costs its connection's goroutine, a timer and a
// follower entry.

// maxWait bounds ?wait: a client that wants longer asks again.
const maxWait = 60 * time.Second

// sseKeepalive is how often a quiet event stream sends a comment, so proxies and load balancers
// that close idle connections (often after 30-60 s) keep it open.
var sseKeepalive = 15 * time.Second

// sseWriteTimeout bounds each write of an event stream: a client that stopped reading is dropped.
const sseWriteTimeout = 20 * time.Second

// parkFollowers serves ?wait requests and event streams of the main listener before admission, so
// that they hold no threads slot while they wait; everything else goes on to next.
func (s *Server) parkFollowers(next http.Handler) http.Handler {
	follow := chi.NewRouter()
	follow.NotFound(notFound)
	follow.With(sameOrigin, queryParams("wait")).Get("/v1/jobs/{id}", s.getJob)
	follow.With(sameOrigin, queryParams()).Get("/v1/jobs/{id}/events", s.jobEvents)
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if !isFollow(r) {
			next.ServeHTTP(w, r)
			return
		}
		if rctx := chi.RouteContext(r.Context()); rctx != nil {
			// Routed afresh by follow, so the route pattern (logs, metrics) is its own.
			rctx.Reset()
			rctx.Routes, rctx.RouteMethod = follow, http.MethodGet
		}
		follow.ServeHTTP(w, r)
	})
}

// isFollow reports whether r is GET /v1/jobs/{id}/events, or GET /v1/jobs/{id} with a wait.
func isFollow(r *http.Request) bool {
	if r.Method != http.MethodGet && r.Method != http.MethodHead {
		return false
	}
	rest, ok := strings.CutPrefix(r.URL.Path, "/v1/jobs/")
	if !ok || rest == "" {
		return false
	}
	if id, ok := strings.CutSuffix(rest, "/events"); ok && id != "" && !strings.Contains(id, "/") {
		return true
	}
	return !strings.Contains(rest, "/") && hasWait(r.URL.RawQuery)
}

// hasWait reports whether a query names the wait parameter (not merely contains "wait=", as
// ?await= does); an unparseable query is left to the job API, which refuses it.
func hasWait(rawQuery string) bool {
	if !strings.Contains(rawQuery, "wait") {
		return false
	}
	q, err := url.ParseQuery(rawQuery)
	return err == nil && q.Has("wait")
}

// parseWait reads ?wait: a Go duration ("10s", "1m") or a number of seconds ("10", "2.5"), from 0
// (no wait) to maxWait.
func parseWait(v string) (time.Duration, error) {
	d, err := time.ParseDuration(v)
	if err != nil {
		f, ferr := strconv.ParseFloat(v, 64)
		if ferr != nil || math.IsNaN(f) {
			return 0, errors.New(`must be a duration like "10s" or a number of seconds`)
		}
		f = min(max(f, -1), maxWait.Seconds()+1) // out of range is refused below, without overflowing
		d = time.Duration(f * float64(time.Second))
	}
	if d < 0 || d > maxWait {
		return 0, fmt.Errorf("must be from 0 to %s", maxWait)
	}
	return d, nil
}

// takeWaiter counts a waiting request against MaxWaiters; over it the client gets 503 with
// Retry-After. The caller calls release when the wait is over.
func (s *Server) takeWaiter(w http.ResponseWriter, r *http.Request) (release func(), ok bool) {
	if s.waiters.Add(1) > int64(s.opts.MaxWaiters) {
		s.waiters.Add(-1)
		w.Header().Set("Retry-After", "1")
		writeError(w, r, http.StatusServiceUnavailable, fmt.Sprintf("too many waiting clients (server.max_waiters %d), retry later", s.opts.MaxWaiters))
		return nil, false
	}
	return func() { s.waiters.Add(-1) }, true
}

// Waiters returns how many requests wait on jobs now (?wait and event streams).
func (s *Server) Waiters() int { return int(s.waiters.Load()) }

// followContext is the context a wait runs under: the request's, ended too when Shutdown begins
// to close the listener, so that waits and streams do not hold the drain up.
func (s *Server) followContext(parent context.Context) (context.Context, context.CancelFunc) {
	ctx, cancel := context.WithCancel(parent)
	stop := context.AfterFunc(s.closing, cancel)
	return ctx, func() { stop(); cancel() }
}

// follow takes a waiter's place for the request and watches its job under followContext; done
// gives both back. When it cannot (too many waiters, no such job) it has answered, and ok is false.
func (s *Server) follow(w http.ResponseWriter, r *http.Request) (ctx context.Context, watch *jobs.Watcher, done func(), ok bool) {
	release, ok := s.takeWaiter(w, r)
	if !ok {
		return nil, nil, nil, false
	}
	ctx, cancel := s.followContext(r.Context())
	watch, err := s.opts.Jobs.Watch(ctx, chi.URLParam(r, "id"))
	if err != nil {
		cancel()
		release()
		s.writeErr(w, r, err)
		return nil, nil, nil, false
	}
	return ctx, watch, func() { watch.Close(); cancel(); release() }, true
}

// waitJob answers GET /v1/jobs/{id}?wait=d: the job once it has finished, or as it is when d is
// over, the client went away or the server shuts down.
func (s *Server) waitJob(w http.ResponseWriter, r *http.Request, d time.Duration) {
	// The wait must outlast neither the server's write timeout nor its read timeout (whose
	// deadline, reached while the handler runs, would end the request's context).
	rc := http.NewResponseController(w)
	_ = rc.SetReadDeadline(time.Time{})
	_ = rc.SetWriteDeadline(time.Now().Add(d + sseWriteTimeout))
	ctx, watch, done, ok := s.follow(w, r)
	if !ok {
		return
	}
	defer done()
	timed, stop := context.WithTimeout(ctx, d)
	defer stop()
	var last *jobs.Job
	for {
		j, err := watch.Next(timed)
		if err != nil {
			break // the first Next always has the job: last is set
		}
		if last = j; j.State.Finished() {
			break
		}
	}
	if r.Context().Err() != nil {
		return // no one to answer
	}
	writeJSON(w, http.StatusOK, newJobResponse(last))
}

// jobEvents streams GET /v1/jobs/{id}/events: an event "state" with the job as it is, then one per
// change ("state" when its state or attempt changed, "progress" when only its progress did), each
// with the job as data (as GET /v1/jobs/{id} answers it) and its updated_at as id, and a comment
// every sseKeepalive while nothing happens. It ends after the event of a finished state, when the
// client goes away, or when the server shuts down. A client that reconnects with a Last-Event-ID
// of a finished job that has not changed since gets 204, which tells an EventSource to stop.
func (s *Server) jobEvents(w http.ResponseWriter, r *http.Request) {
	ctx, watch, done, ok := s.follow(w, r)
	if !ok {
		return
	}
	defer done()
	j, err := watch.Next(ctx)
	if err != nil {
		s.writeErr(w, r, err)
		return
	}
	if j.State.Finished() && r.Header.Get("Last-Event-ID") == eventID(j) {
		w.WriteHeader(http.StatusNoContent)
		return
	}
	rc := http.NewResponseController(w)
	_ = rc.SetReadDeadline(time.Time{}) // the read timeout would end the request's context
	h := w.Header()
	h.Set("Content-Type", "text/event-stream")
	h.Set("Cache-Control", "no-cache")
	h.Set("X-Accel-Buffering", "no") // nginx: pass events on as they come
	w.WriteHeader(http.StatusOK)
	if r.Method == http.MethodHead {
		return
	}
	send := func(chunk []byte) bool {
		if err := rc.SetWriteDeadline(time.Now().Add(sseWriteTimeout)); err != nil && !errors.Is(err, http.ErrNotSupported) {
			return false
		}
		if _, err := w.Write(chunk); err != nil {
			return false
		}
		return rc.Flush() == nil
	}
	prev := j
	if !send(event("state", j)) {
		return
	}
	for !prev.State.Finished() {
		quiet, stop := context.WithTimeout(ctx, sseKeepalive)
		j, err := watch.Next(quiet)
		stop()
		switch {
		case err == nil:
			name := "progress"
			if j.State != prev.State || j.Attempt != prev.Attempt {
				name = "state"
			}
			if !send(event(name, j)) {
				return
			}
			prev = j
		case errors.Is(err, context.DeadlineExceeded) && ctx.Err() == nil:
			if !send([]byte(": keepalive\n\n")) {
				return
			}
		default:
			return // the client went away, the server shuts down, the job was deleted
		}
	}
}

// event formats one Server-Sent Event; a job's JSON has no newline, so it is one data line.
func event(name string, j *jobs.Job) []byte {
	data, _ := json.Marshal(newJobResponse(j))
	b := make([]byte, 0, len(data)+64)
	b = append(b, "event: "...)
	b = append(b, name...)
	b = append(b, "\nid: "...)
	b = append(b, eventID(j)...)
	b = append(b, "\ndata: "...)
	b = append(b, data...)
	return append(b, "\n\n"...)
}

// eventID names a version of a job: its updated_at, in microseconds.
func eventID(j *jobs.Job) string { return strconv.FormatInt(j.UpdatedAt.UnixMicro(), 10) }
