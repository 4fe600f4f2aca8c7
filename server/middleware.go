package server

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"math"
	"net/http"
	"runtime/debug"
	"strconv"
	"sync/atomic"
	"time"

	"github.com/go-chi/chi/v5"
	"github.com/tandem-run/tandem/pool"
)

type ctxKey int

const requestIDKey ctxKey = iota

// RequestID returns the request's id (from X-Request-Id or generated).
func RequestID(ctx context.Context) string {
	id, _ := ctx.Value(requestIDKey).(string)
	return id
}

var (
	idPrefix = func() string {
		var b [4]byte
		_, _ = rand.Read(b[:])
		return hex.EncodeToString(b[:])
	}()
	idSeq atomic.Uint64
)

// requestID honours a sane X-Request-Id (at most 128 printable ASCII bytes) or makes one: a random
// per-process prefix and a counter, unique without a random read per request. It also seeds chi's
// route context for routes, the listener's router, as chi would: chi middlewares read its Routes
// (middleware.GetHead looks routes up in it).
func (s *Server) requestID(routes chi.Routes, next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		id := r.Header.Get("X-Request-Id")
		if !saneID(id) {
			id = idPrefix + "-" + strconv.FormatUint(idSeq.Add(1), 36)
		}
		w.Header().Set("X-Request-Id", id)
		if s.draining.Load() {
			w.Header().Set("Connection", "close") // move clients off an instance that is going away
		}
		rc := &requestCtx{deadlineCtx: deadlineCtx{Context: r.Context()}, id: id, route: chi.NewRouteContext()}
		rc.route.Routes = routes
		defer rc.release()
		next.ServeHTTP(w, r.WithContext(rc))
	})
}

func saneID(id string) bool {
	if id == "" || len(id) > 128 {
		return false
	}
	for i := 0; i < len(id); i++ {
		if id[i] < 0x21 || id[i] > 0x7e {
			return false
		}
	}
	return true
}

// limitBody caps request bodies; reading past the cap fails with *http.MaxBytesError (413).
func (s *Server) limitBody(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.ContentLength > s.opts.MaxBodyBytes {
			bodyTooLarge(w, s.opts.MaxBodyBytes)
			return
		}
		r.Body = http.MaxBytesReader(w, r.Body, s.opts.MaxBodyBytes)
		next.ServeHTTP(w, r)
	})
}

// admission runs each request's handler only while it holds a slot of the threads pool. The
// request waits in the pool's backlog at most QueueTimeout, then gets 503 with Retry-After. Once
// admitted the handler runs right here, on the connection's goroutine: handing it to an ants
// worker cost two cross-thread wake-ups per request, 25% of /demo/hello's throughput on 2 cores
// (bench/http.sh, BenchmarkAdmission), while the gate alone costs nothing measurable. Its context
// ends after RequestTimeout (a deadlineCtx: no timer unless the handler waits on it); a handler
// that has not answered by the time it returns gets a 503, so handlers must honour their context
// (net/http's own timeout handler needs a goroutine per request to do better). A panic answers
// 500 and is logged with its stack.
//
// The slot is lent back while the handler waits in pool.Wait: the job API waits so for its
// enqueue's group commit, which needs the disk, not a core, and a handler of one's own may do the
// same around any such wait. Those waiting so are bounded by the pool's MaxParked (server.parked),
// take a slot again before they go on, and are requests in flight like any other: Shutdown waits
// for them.
func (s *Server) admission(next http.Handler) http.Handler {
	retryAfter := strconv.Itoa(max(1, int(math.Ceil(s.opts.QueueTimeout.Seconds()))))
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		rc, _ := r.Context().(*requestCtx)
		var held *pool.Held
		if rc != nil {
			held = &rc.held // allocated with the rest of the request's state
		} else {
			held = new(pool.Held)
		}
		if err := s.opts.Threads.HoldWithin(r.Context(), s.opts.QueueTimeout, held); err != nil {
			reason := "backlog_full"
			if errors.Is(err, pool.ErrQueueTimeout) {
				reason = "queue_timeout"
			}
			if s.opts.OnShed != nil {
				s.opts.OnShed(reason)
			}
			w.Header().Set("Retry-After", retryAfter)
			writeError(w, r, http.StatusServiceUnavailable, "server busy ("+reason+"), retry later")
			return
		}
		defer held.Release()
		// Arm the deadline of the context requestID made, which also carries held for pool.Wait;
		// only a caller that put its own context in between (or waited on it before admission)
		// needs a new one.
		deadline := time.Now().Add(s.opts.RequestTimeout)
		var ctx *deadlineCtx
		var aw *answerWriter
		if rc != nil && rc.arm(deadline, errRequestTimeout) {
			ctx, aw = &rc.deadlineCtx, &rc.answer
		} else {
			ctx, aw = &deadlineCtx{Context: pool.ContextWithHeld(r.Context(), held)}, &answerWriter{}
			ctx.arm(deadline, errRequestTimeout)
			defer ctx.release()
			r = r.WithContext(ctx)
		}
		aw.ResponseWriter = w
		defer func() {
			if v := recover(); v != nil {
				if v == http.ErrAbortHandler {
					panic(v)
				}
				s.log.Error("handler panicked", "panic", fmt.Sprint(v), "path", r.URL.Path,
					"request_id", RequestID(r.Context()), "stack", string(debug.Stack()))
				aw.fail(r, http.StatusInternalServerError, "internal server error")
			}
		}()
		next.ServeHTTP(aw, r)
		if !aw.wrote && ctx.expired() { // a handler that answered needs no clock read
			aw.fail(r, http.StatusServiceUnavailable, fmt.Sprintf("request took longer than %s", s.opts.RequestTimeout))
		}
	})
}

var errRequestTimeout = errors.New("request timeout")

// answerWriter remembers whether the handler started its answer, so the admission layer answers
// a timeout or a panic only when the client has heard nothing yet.
type answerWriter struct {
	http.ResponseWriter
	wrote bool
}

func (a *answerWriter) WriteHeader(code int) {
	a.wrote = true
	a.ResponseWriter.WriteHeader(code)
}

func (a *answerWriter) Write(b []byte) (int, error) {
	a.wrote = true
	return a.ResponseWriter.Write(b)
}

// Flush lets streaming handlers flush through the wrapper.
func (a *answerWriter) Flush() {
	if f, ok := a.ResponseWriter.(http.Flusher); ok {
		a.wrote = true
		f.Flush()
	}
}

func (a *answerWriter) Unwrap() http.ResponseWriter { return a.ResponseWriter }

func (a *answerWriter) fail(r *http.Request, code int, msg string) {
	if a.wrote {
		return
	}
	a.wrote = true
	writeError(a.ResponseWriter, r, code, msg)
}

// crossOrigin is the standard library's CSRF check: it tells a browser's cross-site request by its
// Sec-Fetch-Site or Origin header, and lets through clients that send neither (curl, SDKs).
var crossOrigin = http.NewCrossOriginProtection()

// sameOrigin refuses state-changing requests that a page on another site made a browser send,
// with 403. Without it any page a user opens could enqueue jobs (a text/plain form body is enough)
// or resize pools on a tandem that the user's browser can reach but the page's author cannot.
func sameOrigin(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if err := crossOrigin.Check(r); err != nil {
			writeError(w, r, http.StatusForbidden, err.Error())
			return
		}
		next.ServeHTTP(w, r)
	})
}
