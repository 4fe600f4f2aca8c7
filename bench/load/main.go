// Command load is the job benchmarks' HTTP load generator (bench/jobs.sh): it POSTs JSON bodies
// with a fixed number of concurrent clients, either as fast as it can or at a steady rate, for a
// bounded count, and prints the rate and latency percentiles as one JSON line. With -drain N it
// then polls GET /v1/queues every 5 ms until N more jobs succeeded than when it started, and adds
// the seconds from its first request to that moment (end to end), so the figure carries no
// shell polling.
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
	rate := flag.Float64("rate", 0, "requests per second in total (0: as fast as possible)")
	maxDur := flag.Duration("max", 5*time.Minute, "stop after this long whatever is left")
	drain := flag.Int("drain", 0, "then wait until this many more jobs succeeded (GET /v1/queues beside -url)")
	flag.Parse()
	queuesURL := strings.TrimSuffix(strings.TrimSuffix(*url, "/batch"), "/jobs") + "/queues"
	base := 0
	if *drain > 0 {
		var err error
		if base, err = succeeded(queuesURL); err != nil {
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
				resp, err := client.Post(*url, "application/json", bytes.NewReader([]byte(*body)))
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
			n, err := succeeded(queuesURL)
			if err != nil {
				fmt.Fprintln(os.Stderr, err)
				os.Exit(1)
			}
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
	if err := json.NewEncoder(os.Stdout).Encode(out); err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
}

// succeeded sums the succeeded jobs of every queue.
func succeeded(queuesURL string) (int, error) {
	resp, err := http.Get(queuesURL)
	if err != nil {
		return 0, err
	}
	defer resp.Body.Close()
	var body struct {
		Queues []struct {
			Succeeded int `json:"succeeded"`
		} `json:"queues"`
	}
	if err := json.NewDecoder(resp.Body).Decode(&body); err != nil {
		return 0, fmt.Errorf("GET %s: %w", queuesURL, err)
	}
	n := 0
	for _, q := range body.Queues {
		n += q.Succeeded
	}
	return n, nil
}
