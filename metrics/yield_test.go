package metrics

import (
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/tandem-run/tandem/jobs"
)

// TestScrapeHasTheYield: the yield limit and the count of yields are read from the runtime's
// state at each scrape.
func TestScrapeHasTheYield(t *testing.T) {
	m := New(Options{})
	y := jobs.Yield{Limit: 1, Yields: 3}
	m.RegisterYield(func() jobs.Yield { return y })
	scrape := func() string {
		w := httptest.NewRecorder()
		m.Handler().ServeHTTP(w, httptest.NewRequest("GET", "/metrics", nil))
		return w.Body.String()
	}
	for _, want := range []string{"tandem_jobs_yield_limit 1\n", "tandem_jobs_yields_total 3\n"} {
		if body := scrape(); !strings.Contains(body, want) {
			t.Errorf("scrape lacks %q", want)
		}
	}
	y = jobs.Yield{Limit: 0, Yields: 4}
	if body := scrape(); !strings.Contains(body, "tandem_jobs_yield_limit 0\n") || !strings.Contains(body, "tandem_jobs_yields_total 4\n") {
		t.Error("scrape does not follow the runtime's yield")
	}
}
