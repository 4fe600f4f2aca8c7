package server

import (
	"net/http"
	"net/url"
	"strings"

	"github.com/tandem-run/tandem/jobs"
)

// queryParams refuses, with a 400 naming each, a query parameter the route does not take and
// one given more than once: a misspelt filter (?stat=dead) must not silently list every job,
// as an unknown key in a JSON body does not go unnoticed either. Names match exactly.
func queryParams(names ...string) func(http.Handler) http.Handler {
	allowed := make(map[string]bool, len(names))
	for _, n := range names {
		allowed[n] = true
	}
	unknown := "unknown parameter (this endpoint takes none)"
	if len(names) > 0 {
		unknown = "unknown parameter (takes " + strings.Join(names, ", ") + ")"
	}
	return func(next http.Handler) http.Handler {
		return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			if r.URL.RawQuery == "" {
				next.ServeHTTP(w, r)
				return
			}
			// url.ParseQuery, unlike URL.Query, says when it had to drop a part it could not read.
			q, err := url.ParseQuery(r.URL.RawQuery)
			fields := map[string]string{}
			if err != nil {
				fields["query"] = "malformed query string"
			}
			for k, vs := range q {
				switch {
				case !allowed[k]:
					fields[k] = unknown
				case len(vs) > 1:
					fields[k] = "given more than once"
				}
			}
			if len(fields) > 0 {
				badRequest(w, (&jobs.ValidationError{Subject: "query", Fields: fields}).Error(), fields)
				return
			}
			next.ServeHTTP(w, r)
		})
	}
}
