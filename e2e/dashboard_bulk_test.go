package e2e

import (
	"fmt"
	"net/http"
	"net/http/httptest"
	"testing"
	"time"

	"github.com/chromedp/chromedp"
	"github.com/tandem-run/tandem/internal/tandemtest"
)

// TestDashboardBulkActions drives the bulk action form of the job list in a real headless
// Chromium against a real tandem: with the list filtered to dead jobs it shows the count in a
// confirmation dialog, changes nothing when sent back, retries all of them on confirm (they run
// again) and says so; a purge without a queue shows the API's error; a created range in the
// future matches nothing; then the dead jobs are deleted.
func TestDashboardBulkActions(t *testing.T) {
	t.Parallel()
	if testing.Short() {
		t.Skip("starts Chromium")
	}
	ctx := browser(t)
	tu := startDashboard(t, dashToken)

	// Dead jobs: http jobs whose target answers 400 fail for good at once.
	bad := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { http.Error(w, "no", 400) }))
	defer bad.Close()
	var ids []string
	for range 3 {
		var j struct{ ID string }
		if code := tu.api(t, "POST", tu.http+"/v1/jobs", map[string]any{"kind": "http", "payload": map[string]any{"url": bad.URL}}, &j); code != 201 {
			t.Fatalf("enqueue: %d", code)
		}
		ids = append(ids, j.ID)
	}
	type job struct {
		State  string
		Errors []any
	}
	get := func(id string) (job, int) {
		var j job
		code := tu.api(t, "GET", tu.http+"/v1/jobs/"+id, nil, &j)
		return j, code
	}
	waitDead := func(errors int) {
		for _, id := range ids {
			tandemtest.WaitFor(t, fmt.Sprintf("job %s dead with %d errors", id, errors), func() bool {
				j, _ := get(id)
				return j.State == "dead" && len(j.Errors) == errors
			})
		}
	}
	waitDead(1)

	ui := tu.admin + "/admin/ui/"
	do(t, ctx, chromedp.Navigate(ui))
	waitJS(t, ctx, "the token prompt", `!document.querySelector('#login').hidden`)
	do(t, ctx, chromedp.SendKeys(chromedp.CSS("#token"), dashToken), chromedp.Click(chromedp.CSS("#login-form button")))
	waitJS(t, ctx, "live", `document.querySelector('#status').textContent === 'live'`)
	do(t, ctx, chromedp.Navigate(ui+"#/jobs?state=dead"))
	waitJS(t, ctx, "the three dead jobs", `document.querySelectorAll('#job-list tbody tr').length === 3`)

	// Count, then back out: nothing changes.
	dialogOpen := `document.querySelector('#bulk-dialog').open`
	do(t, ctx, chromedp.Click(chromedp.CSS("#bulk-start")))
	waitJS(t, ctx, "the confirmation with the count", dialogOpen+` && document.querySelector('#bulk-question').textContent === '3 jobs will be retried (state dead).'`)
	shot(t, ctx, "30-bulk-confirm")
	do(t, ctx, chromedp.Click(chromedp.CSS("#bulk-back")))
	waitJS(t, ctx, "nothing changed", `!`+dialogOpen+` && document.querySelector('#bulk-result').textContent === 'Nothing was changed.'`)
	if j, _ := get(ids[0]); j.State != "dead" || len(j.Errors) != 1 {
		t.Fatalf("after backing out of the bulk retry: %+v", j)
	}

	// Confirm: all three are retried, run again and die again.
	do(t, ctx, chromedp.Click(chromedp.CSS("#bulk-start")))
	waitJS(t, ctx, "the confirmation", dialogOpen)
	do(t, ctx, chromedp.Click(chromedp.CSS("#bulk-confirm")))
	waitJS(t, ctx, "the result", `document.querySelector('#bulk-result').textContent === 'Done: 3 of 3 matching jobs retried.'`)
	shot(t, ctx, "31-bulk-done")
	waitDead(2)

	// Purge needs a queue: the API's error is shown, no dialog.
	do(t, ctx, chromedp.SetValue(chromedp.CSS("#bulk-action"), "purge"), chromedp.SetValue(chromedp.CSS(`#filters [name=state]`), ""),
		chromedp.Click(chromedp.CSS("#bulk-start")))
	waitJS(t, ctx, "the purge error", `document.querySelector('#bulk-result').textContent.includes('purge needs a queue') && !`+dialogOpen)

	// A created range in the future matches nothing.
	future := time.Now().Add(48 * time.Hour).Format("2006-01-02T15:04:05")
	do(t, ctx, chromedp.SetValue(chromedp.CSS("#bulk-action"), "delete"), chromedp.SetValue(chromedp.CSS(`#filters [name=created_after]`), future),
		chromedp.Click(chromedp.CSS("#filters button")))
	waitJS(t, ctx, "an empty list", `document.querySelectorAll('#job-list tbody tr').length === 0`)
	do(t, ctx, chromedp.Click(chromedp.CSS("#bulk-start")))
	waitJS(t, ctx, "no match", `document.querySelector('#bulk-result').textContent.startsWith('No job matches') && !`+dialogOpen)

	// Delete the dead jobs.
	do(t, ctx, chromedp.SetValue(chromedp.CSS(`#filters [name=created_after]`), ""), chromedp.SetValue(chromedp.CSS(`#filters [name=state]`), "dead"),
		chromedp.Click(chromedp.CSS("#filters button")))
	waitJS(t, ctx, "the dead jobs again", `document.querySelectorAll('#job-list tbody tr').length === 3`)
	do(t, ctx, chromedp.Click(chromedp.CSS("#bulk-start")))
	waitJS(t, ctx, "the delete confirmation", dialogOpen+` && document.querySelector('#bulk-question').textContent === '3 jobs will be deleted (state dead). This cannot be undone.'`)
	do(t, ctx, chromedp.Click(chromedp.CSS("#bulk-confirm")))
	waitJS(t, ctx, "the delete result", `document.querySelector('#bulk-result').textContent === 'Done: 3 of 3 matching jobs deleted.'`)
	waitJS(t, ctx, "an empty list", `document.querySelectorAll('#job-list tbody tr').length === 0`)
	for _, id := range ids {
		if _, code := get(id); code != http.StatusNotFound {
			t.Fatalf("a bulk-deleted job answers %d", code)
		}
	}
}
