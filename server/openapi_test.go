package server

import (
	"net/http"
	"os"
	"regexp"
	"sort"
	"strings"
	"testing"

	"github.com/go-chi/chi/v5"
	"go.yaml.in/yaml/v3"
)

// TestOpenAPIMatchesRouter: every route either router serves is in api/openapi.yaml, and every
// path there is served. The admin mirror of the job API (/admin/api/v1/...) is documented once,
// under /v1, as the spec says.
func TestOpenAPIMatchesRouter(t *testing.T) {
	raw, err := os.ReadFile("../api/openapi.yaml")
	if err != nil {
		t.Fatal(err)
	}
	var spec struct {
		Paths map[string]map[string]any `yaml:"paths"`
	}
	if err := yaml.Unmarshal(raw, &spec); err != nil {
		t.Fatal(err)
	}
	documented := map[string]bool{}
	for path, ops := range spec.Paths {
		for method := range ops {
			if method == "parameters" {
				continue
			}
			documented[strings.ToUpper(method)+" "+path] = true
		}
	}
	b := setup(t, func(o *Options) {
		o.Metrics = http.NotFoundHandler()
		o.UI = http.NotFoundHandler()
	}, nil)
	served := map[string]bool{}
	wildcard := regexp.MustCompile(`/\*$`)
	walk := func(r chi.Routes) {
		_ = chi.Walk(r, func(method, route string, _ http.Handler, _ ...func(http.Handler) http.Handler) error {
			route = strings.TrimSuffix(route, "/")
			route = strings.Replace(route, "/admin/api/v1", "/v1", 1)
			route = wildcard.ReplaceAllString(route, "/{path}")
			if route == "" || route == "/admin/ui" {
				return nil // redirects to the dashboard
			}
			served[method+" "+route] = true
			return nil
		})
	}
	walk(b.srv.mainRoot)
	walk(b.srv.admin)
	var missing, stale []string
	for r := range served {
		if !documented[r] {
			missing = append(missing, r)
		}
	}
	for r := range documented {
		if !served[r] {
			stale = append(stale, r)
		}
	}
	sort.Strings(missing)
	sort.Strings(stale)
	if len(missing) > 0 {
		t.Errorf("served but not in api/openapi.yaml: %v", missing)
	}
	if len(stale) > 0 {
		t.Errorf("in api/openapi.yaml but not served: %v", stale)
	}
}
