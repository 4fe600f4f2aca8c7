package autoscale

import (
	"net/http"
	"time"

	"github.com/go-chi/chi/v5"
)

// The HTTP controller's latency signal. A mean over all requests is no latency of anything when
// routes differ: one poll of a 0.1 ms route left the lowest latency of the window at 0.1 ms, and
// the controller took a 200 ms I/O-bound route for one that had slowed 2000 times and halved its
// threads every tick down to min. So each route is measured against its own lowest, and the
// ratios are averaged, weighted by the time each route's requests held a thread. And a request
// whose client went away ends early (a handler returns once its context is done), so its
// duration is left out: counted, the tick in which wrk closed its connections measured 68.6 ms
// for /demo/io?ms=200, which then stood as the route's lowest for the whole window.

// maxRoutes bounds the routes measured one by one; the rest share one entry. Route patterns are
// few (they come from the router, not from the paths asked for), so this is only a safety net.
const maxRoutes = 64

// routeKey names a route: method and chi's route pattern ("GET /v1/jobs/{id}").
type routeKey struct{ method, pattern string }

// routeStat is one route's service times: this tick's, and the per-tick means of the window.
type routeStat struct {
	sum     time.Duration
	count   int
	window  []tickMean // oldest first, at most Window ticks back
	mean    float64    // this tick's mean, seconds; 0 when it had no request
	atProbe float64    // the mean at the tick the running probe compares with; 0 if none
}

type tickMean struct {
	tick int
	mean float64
}

// routeOf returns the route r was served by, once its handler has run (a mounted router fills in
// the rest of the pattern as it routes).
func routeOf(r *http.Request) routeKey {
	pattern := r.Pattern
	if rc := chi.RouteContext(r.Context()); rc != nil {
		pattern = rc.RoutePattern()
	}
	return routeKey{r.Method, pattern}
}

// tickStats is what one tick measured over all routes. Routes weigh by the time their requests
// held a thread, which is what the thread count is about: by requests, a route polled thousands
// of times a second at 0.1 ms outweighed a 50 ms route that kept every thread busy, and its
// jitter (a tenth of a millisecond is 2x there) cut the threads.
type tickStats struct {
	count   int
	rtt     float64 // mean service time of the answered requests, seconds: the latency estimate
	slower  float64 // how much slower than its own lowest each route was, weighted (>= 1)
	changed float64 // routes' latency now over their latency at the probe's tick, weighted; 0 if none in both
}

// measure closes the tick: each route's mean joins its window, the window drops what is older
// than window ticks, routes with nothing left are forgotten.
func measure(routes map[routeKey]*routeStat, tick, window int) tickStats {
	var st tickStats
	var total, changedW float64
	for k, r := range routes {
		drop := 0
		for drop < len(r.window) && r.window[drop].tick <= tick-window {
			drop++
		}
		r.window = r.window[drop:]
		r.mean = 0
		if r.count == 0 {
			if len(r.window) == 0 {
				delete(routes, k)
			}
			continue
		}
		w := r.sum.Seconds()
		r.mean = w / float64(r.count)
		r.window = append(r.window, tickMean{tick, r.mean})
		low := r.mean
		for _, m := range r.window {
			low = min(low, m.mean)
		}
		if low > 0 {
			st.slower += w * r.mean / low
		}
		if r.atProbe > 0 {
			st.changed += w * r.mean / r.atProbe
			changedW += w
		}
		st.count += r.count
		total += w
		r.sum, r.count = 0, 0
	}
	switch {
	case total > 0:
		st.rtt = total / float64(st.count)
		st.slower /= total
	case st.count > 0:
		st.slower = 1 // requests that took no measurable time
	}
	if changedW > 0 {
		st.changed /= changedW
	}
	return st
}

// markProbe makes this tick's means what the probe compares the next tick with.
func markProbe(routes map[routeKey]*routeStat) {
	for _, r := range routes {
		r.atProbe = r.mean
	}
}
