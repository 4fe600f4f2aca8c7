// Command load is the job benchmarks' HTTP load generator (bench/jobs.sh): it POSTs JSON bodies
// (or, with -method GET, fetches a page such as /demo/hello) with a fixed number of concurrent
// clients, either as fast as it can or at a steady rate, for a bounded count, and prints the rate and latency percentiles as one JSON line. With -drain N it
// then polls GET /v1/queues every 5 ms until N more jobs succeeded than when it started, and adds
// the seconds from its first request to that moment (end to end), so the figure carries no
// shell polling.
//
// With -urls A,B,C (several tandem replicas on one Postgres) request i goes to URL i mod 3, round
// robin, and -drain polls the first one's /v1/queues (a shared store's counts are the cluster's).
// With -csv FILE it also samples GET /v1/queues every -every from its start until the drain ends,
// one line "unix_seconds,succeeded,waiting" each (waiting: scheduled, ready, prefetched, running and
// retrying), for the backlog plots of bench/postgres.sh; -n 0 only watches.
package main

import (
	"bytes"
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"net/http"
	"os"
	"sort"
	"strings"
	"sync"
	"sync/atomic"
	"time"
)

func main() {
	url := flag.String("url", "http://127.0.0.1:8080/v1/jobs", "endpoint (loopback)")
	n := flag.Int("n", 20000, "requests to send")
	c := flag.Int("c", 64, "concurrent clients")
	body := flag.String("body", `{"kind":"noop"}`, "JSON body of each request")
	method := flag.String("method", "POST", "POST (with -body) or GET (no body)")
	rate := flag.Float64("rate", 0, "requests per second in total (0: as fast as possible)")
	maxDur := flag.Duration("max", 5*time.Minute, "stop after this long whatever is left")
	drain := flag.Int("drain", 0, "then wait until this many more jobs succeeded (GET /v1/queues beside -url)")
	urlList := flag.String("urls", "", "comma-separated endpoints, taken round robin (replaces -url)")
	csvPath := flag.String("csv", "", "write a time series of GET /v1/queues to this file")
	every := flag.Duration("every", 100*time.Millisecond, "the -csv sampling period")
	flag.Parse()
	if *method != "POST" && *method != "GET" {
		fmt.Fprintf(os.Stderr, "-method: POST or GET, got %q\n", *method)
		os.Exit(2)
	}
	urls := []string{*url}
	if *urlList != "" {
		urls = strings.Split(*urlList, ",")
	}
	queuesURL := strings.TrimSuffix(strings.TrimSuffix(urls[0], "/batch"), "/jobs") + "/queues"
	base := 0
	if *drain > 0 {
		c, err := counts(queuesURL)
		if err != nil {
			fmt.Fprintln(os.Stderr, err)
			os.Exit(1)
		}
		base = c.succeeded
	}
	stopWatch := func() {}
	if *csvPath != "" {
		var err error
		if stopWatch, err = watch(*csvPath, queuesURL, *every); err != nil {
			fmt.Fprintln(os.Stderr, err)
			os.Exit(1)
		}
	}

	tr := &http.Transport{MaxIdleConnsPerHost: *c, MaxConnsPerHost: *c}
	client := &http.Client{Transport: tr, Timeout: 30 * time.Second}
	lat := make([]time.Duration, *n)
	var next, ok, fail atomic.Int64
	start := time.Now()
	deadline := start.Add(*maxDur)
	var wg sync.WaitGroup
	for range *c {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				i := next.Add(1) - 1
				if i >= int64(*n) || time.Now().After(deadline) {
					return
				}
				if *rate > 0 { // open loop: request i is due at start + i/rate
					if d := time.Until(start.Add(time.Duration(float64(i) / *rate * float64(time.Second)))); d > 0 {
						time.Sleep(d)
					}
				}
				t0 := time.Now()
				u := urls[i%int64(len(urls))]
				var resp *http.Response
				var err error
				if *method == "GET" {
					resp, err = client.Get(u)
				} else {
					resp, err = client.Post(u, "application/json", bytes.NewReader([]byte(*body)))
				}
				if err != nil {
					fail.Add(1)
					continue
				}
				_, _ = io.Copy(io.Discard, resp.Body)
				resp.Body.Close()
				lat[i] = time.Since(t0)
				if resp.StatusCode/100 == 2 {
					ok.Add(1)
				} else {
					fail.Add(1)
				}
			}
		}()
	}
	wg.Wait()
	elapsed := time.Since(start)
	var got []time.Duration
	for _, d := range lat {
		if d > 0 {
			got = append(got, d)
		}
	}
	sort.Slice(got, func(i, j int) bool { return got[i] < got[j] })
	pct := func(p float64) float64 {
		if len(got) == 0 {
			return 0
		}
		return float64(got[min(len(got)-1, int(p*float64(len(got))))]) / 1e6
	}
	out := map[string]any{
		"ok": ok.Load(), "failed": fail.Load(), "seconds": elapsed.Seconds(),
		"rate": float64(ok.Load()) / elapsed.Seconds(), "p50_ms": pct(0.50), "p99_ms": pct(0.99), "max_ms": pct(1),
	}
	if *drain > 0 {
		for {
			c, err := counts(queuesURL)
			if err != nil {
				fmt.Fprintln(os.Stderr, err)
				os.Exit(1)
			}
			n := c.succeeded
			if n >= base+*drain {
				break
			}
			if time.Now().After(deadline) {
				fmt.Fprintf(os.Stderr, "only %d of %d jobs succeeded within -max\n", n-base, *drain)
				os.Exit(1)
			}
			time.Sleep(5 * time.Millisecond)
		}
		out["drained_seconds"] = time.Since(start).Seconds()
	}
	stopWatch()
	if err := json.NewEncoder(os.Stdout).Encode(out); err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
}

// queueCounts are the sums over every queue of GET /v1/queues.
type queueCounts struct{ succeeded, waiting int }

// counts sums the succeeded and the waiting (not yet finished) jobs of every queue.
func counts(queuesURL string) (queueCounts, error) {
	resp, err := http.Get(queuesURL)
	if err != nil {
		return queueCounts{}, err
	}
	defer resp.Body.Close()
	var body struct {
		Queues []struct {
			Succeeded  int `json:"succeeded"`
			Scheduled  int `json:"scheduled"`
			Ready      int `json:"ready"`
			Prefetched int `json:"prefetched"`
			Running    int `json:"running"`
			Retrying   int `json:"retrying"`
		} `json:"queues"`
	}
	if err := json.NewDecoder(resp.Body).Decode(&body); err != nil {
		return queueCounts{}, fmt.Errorf("GET %s: %w", queuesURL, err)
	}
	var c queueCounts
	for _, q := range body.Queues {
		c.succeeded += q.Succeeded
		c.waiting += q.Scheduled + q.Ready + q.Prefetched + q.Running + q.Retrying
	}
	return c, nil
}

// watch samples counts into path every period until the returned stop is called (which waits
// for the sampler and closes the file). A failed sample is skipped: a replica may be restarting.
func watch(path, queuesURL string, period time.Duration) (stop func(), err error) {
	f, err := os.Create(path)
	if err != nil {
		return nil, fmt.Errorf("-csv: %w", err)
	}
	fmt.Fprintln(f, "unix_seconds,succeeded,waiting")
	done := make(chan struct{})
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		t := time.NewTicker(period)
		defer t.Stop()
		for {
			if c, err := counts(queuesURL); err == nil {
				fmt.Fprintf(f, "%.3f,%d,%d\n", float64(time.Now().UnixNano())/1e9, c.succeeded, c.waiting)
			}
			select {
			case <-done:
				if c, err := counts(queuesURL); err == nil { // the last line is the end
					fmt.Fprintf(f, "%.3f,%d,%d\n", float64(time.Now().UnixNano())/1e9, c.succeeded, c.waiting)
				}
				return
			case <-t.C:
			}
		}
	}()
	return func() {
		close(done)
		wg.Wait()
		if err := f.Close(); err != nil {
			fmt.Fprintln(os.Stderr, "-csv:", err)
		}
	}, nil
}
