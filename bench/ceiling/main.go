// Command ceiling is the ceiling of the HTTP job benchmarks (bench/jobs.sh): it answers every
// request with 201 and a constant job-sized JSON body, with nothing but net/http: no router, no
// store, no fsync. Driven by the same load generator as tandem, its rate is the most requests per
// second this machine serves over loopback, so tandem's J1 figure can be read as a share of it.
package main

import (
	"flag"
	"io"
	"log"
	"net/http"
)

// answer is the size and shape of tandem's answer to POST /v1/jobs.
const answer = `{"id":"019ac1d2-0000-7000-8000-000000000000","kind":"noop","queue":"default","priority":0,` +
	`"run_at":"2026-11-28T12:00:00.123456789Z","attempt":0,"max_attempts":25,"state":"ready",` +
	`"created_at":"2026-11-28T12:00:00.123456789Z","updated_at":"2026-11-28T12:00:00.123456789Z","timeout":"30m0s"}` + "\n"

func main() {
	addr := flag.String("addr", "127.0.0.1:18082", "listen address (loopback)")
	flag.Parse()
	log.Fatal(http.ListenAndServe(*addr, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		_, _ = io.Copy(io.Discard, r.Body)
		w.Header().Set("Content-Type", "application/json")
		w.WriteHeader(http.StatusCreated)
		_, _ = io.WriteString(w, answer)
	})))
}
