package metrics

import (
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/tandem-run/tandem/jobs"
)

// TestBulkCounter: the jobs observer is a jobs.BulkObserver, and what it is told shows as
// tandem_jobs_bulk_changed_total by action.
func TestBulkCounter(t *testing.T) {
	m := New(Options{})
	bo, ok := m.JobsObserver().(jobs.BulkObserver)
	if !ok {
		t.Fatal("the jobs observer does not count bulk actions")
	}
	bo.Bulk(jobs.BulkRetry, 500)
	bo.Bulk(jobs.BulkRetry, 12)
	bo.Bulk(jobs.BulkPurge, 3)
	w := httptest.NewRecorder()
	m.Handler().ServeHTTP(w, httptest.NewRequest("GET", "/metrics", nil))
	for _, want := range []string{`tandem_jobs_bulk_changed_total{action="retry"} 512`, `tandem_jobs_bulk_changed_total{action="purge"} 3`} {
		if !strings.Contains(w.Body.String(), want) {
			t.Errorf("scrape lacks %s", want)
		}
	}
}
