package e2e

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/chromedp/chromedp"
	"github.com/tandem-run/tandem/internal/tandemtest"
)

// dashToken is the admin token of the dashboard tests' tandem.
const dashToken = "e2e-token"

// tandemUnderTest is a real tandem process serving the dashboard.
type tandemUnderTest struct {
	*tandemtest.Process
	http, admin string
}

// startDashboard starts tandem with adminToken as its admin.token ("": none) and, when given, a
// config file of that content.
func startDashboard(t *testing.T, adminToken string, configYAML ...string) *tandemUnderTest {
	t.Helper()
	var hook func(*exec.Cmd)
	if len(configYAML) > 0 {
		path := filepath.Join(t.TempDir(), "config.yaml")
		writeFile(t, path, strings.Join(configYAML, ""))
		hook = func(c *exec.Cmd) { c.Args = append(c.Args, "--config", path) }
	}
	p := tandemtest.StartNoWait(t, tandemBin, hook, "TANDEM_ADMIN_TOKEN="+adminToken,
		"TANDEM_STORE_PATH="+filepath.Join(t.TempDir(), "db"), "TANDEM_JOBS_CONCURRENCY=2")
	p.WaitStarted()
	return &tandemUnderTest{Process: p, http: p.HTTPURL, admin: p.AdminURL}
}

func (tu *tandemUnderTest) api(t *testing.T, method, url string, body any, out any) int {
	t.Helper()
	var rd io.Reader
	if body != nil {
		b, _ := json.Marshal(body)
		rd = bytes.NewReader(b)
	}
	req, _ := http.NewRequest(method, url, rd)
	req.Header.Set("Authorization", "Bearer "+dashToken)
	req.Header.Set("Content-Type", "application/json")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	if out != nil {
		_ = json.NewDecoder(resp.Body).Decode(out)
	}
	return resp.StatusCode
}

// browser starts Debian's headless Chromium, or skips (fails under CI) when it is missing.
func browser(t *testing.T) context.Context {
	t.Helper()
	path := ""
	for _, name := range []string{"chromium", "chromium-browser", "google-chrome"} {
		if p, err := exec.LookPath(name); err == nil {
			path = p
			break
		}
	}
	if path == "" {
		if os.Getenv("CI") != "" {
			t.Fatal("no chromium: .ci/run installs Debian's chromium package")
		}
		t.Skip("no chromium found (apt-get install chromium)")
	}
	opts := []chromedp.ExecAllocatorOption{
		chromedp.ExecPath(path), chromedp.Headless, chromedp.NoSandbox, chromedp.DisableGPU, chromedp.NoFirstRun,
		chromedp.UserDataDir(t.TempDir()), chromedp.WindowSize(1280, 800),
		chromedp.Flag("disable-quic", true), chromedp.Flag("disable-background-networking", true),
		chromedp.Flag("disable-component-update", true), chromedp.Flag("disable-sync", true),
	}
	actx, cancelA := chromedp.NewExecAllocator(context.Background(), opts...)
	ctx, cancelB := chromedp.NewContext(actx)
	ctx, cancelT := context.WithTimeout(ctx, 2*time.Minute)
	t.Cleanup(func() { cancelT(); cancelB(); cancelA() })
	return ctx
}

// artifacts is where screenshots go: $TANDEM_ARTIFACTS or artifacts/e2e in the repository (ignored
// by git).
func artifacts(t *testing.T) string {
	dir := os.Getenv("TANDEM_ARTIFACTS")
	if dir == "" {
		dir = filepath.Join(repoDir, "artifacts", "e2e")
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	return dir
}

func shot(t *testing.T, ctx context.Context, name string) {
	t.Helper()
	png, err := chromedp.Run(ctx, chromedp.FullScreenshot(90))
	if err != nil {
		t.Fatalf("screenshot %s: %v", name, err)
	}
	path := filepath.Join(artifacts(t), name+".jpg") // FullScreenshot below quality 100 is a JPEG
	if err := os.WriteFile(path, png, 0o644); err != nil {
		t.Fatal(err)
	}
	t.Logf("screenshot: %s", path)
}

// waitJS polls a JavaScript condition in the page until it is true.
func waitJS(t *testing.T, ctx context.Context, what, expr string) {
	t.Helper()
	wctx, cancel := context.WithTimeout(ctx, 15*time.Second)
	defer cancel()
	if _, err := chromedp.Run(wctx, chromedp.Poll[bool](expr)); err != nil {
		html, _ := chromedp.Run(ctx, chromedp.OuterHTML(chromedp.CSS("body")))
		t.Fatalf("waiting for %s (%s): %v\npage: %.3000s", what, expr, err, html)
	}
}

func do(t *testing.T, ctx context.Context, steps ...chromedp.Action[chromedp.Void]) {
	t.Helper()
	if err := chromedp.Do(ctx, steps...); err != nil {
		t.Fatal(err)
	}
}

// TestDashboardEndToEnd drives the dashboard in a real headless Chromium against a real tandem:
// wrong token, right token, pool sizes, this process in the Nodes panel, a resize through the UI that the admin API agrees with, a
// validation error shown, a paused queue, a dead job opened (with the node that ran it) and retried, a phone-width view, and
// the error shown when tandem is down.
func TestDashboardEndToEnd(t *testing.T) {
	t.Parallel()
	if testing.Short() {
		t.Skip("starts Chromium")
	}
	ctx := browser(t)
	tu := startDashboard(t, dashToken, periodicConfig)

	// A dead job: an http job whose target answers 400 fails for good at once.
	bad := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { http.Error(w, "no", 400) }))
	defer bad.Close()
	var dead struct{ ID string }
	if code := tu.api(t, "POST", tu.http+"/v1/jobs", map[string]any{"kind": "http", "payload": map[string]any{"url": bad.URL}}, &dead); code != 201 {
		t.Fatalf("enqueue: %d", code)
	}
	deadline := time.Now().Add(15 * time.Second)
	for {
		var j struct{ State string }
		tu.api(t, "GET", tu.http+"/v1/jobs/"+dead.ID, nil, &j)
		if j.State == "dead" {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("job never died: %s", j.State)
		}
		time.Sleep(50 * time.Millisecond)
	}

	ui := tu.admin + "/admin/ui/"
	do(t, ctx, chromedp.Navigate(ui))
	waitJS(t, ctx, "the token prompt", `!document.querySelector('#login').hidden`)
	// Nothing was refused yet: this tandem just has a token.
	waitJS(t, ctx, "no banner", `document.querySelector('#banner').hidden`)
	do(t, ctx, chromedp.SendKeys(chromedp.CSS("#token"), "wrong"), chromedp.Click(chromedp.CSS("#login-form button")))
	waitJS(t, ctx, "the refused-token message", `document.querySelector('#banner').textContent.includes('refused')`)
	shot(t, ctx, "01-wrong-token")

	do(t, ctx, chromedp.SendKeys(chromedp.CSS("#token"), dashToken), chromedp.Click(chromedp.CSS("#login-form button")))
	waitJS(t, ctx, "pool sizes", `document.querySelector('#pool-jobs .size')?.textContent === '2' && document.querySelector('#pool-http .size')?.textContent === '5'`)
	waitJS(t, ctx, "runtime", `document.querySelector('#runtime').textContent.includes('GOMAXPROCS')`)
	waitJS(t, ctx, "the limits watch in the runtime panel", `document.querySelector('#runtime').textContent.includes('every 5s') && document.querySelector('#runtime').textContent.includes('none since start')`)
	waitJS(t, ctx, "the change-token link", `document.querySelector('#logout').offsetParent !== null`)

	// The Nodes panel lists this process (bbolt: alone, leading) by its default name, hostname:pid.
	node := fmt.Sprint(tu.Started["node"])
	host, _ := os.Hostname()
	if want := fmt.Sprintf("%s:%d", host, tu.Cmd.Process.Pid); node != want {
		t.Fatalf("start line: node %q, want %q", node, want)
	}
	row := fmt.Sprintf(`document.querySelector('#nodes tr[data-node=%q]')`, node)
	waitJS(t, ctx, "this node in the Nodes panel", row+`?.querySelector('.node-name').textContent === `+fmt.Sprintf("%q", node+"leader")+
		` && `+row+`.querySelector('.node-http').textContent.endsWith('/5') && `+row+`.querySelector('.node-jobs').textContent.endsWith('/2')`+
		` && `+row+`.querySelector('.node-heartbeat').textContent.endsWith('ago') && document.querySelector('#nodes-mode').textContent.includes('bbolt')`+
		` && document.querySelectorAll('#nodes tbody tr').length === 1`)

	// The Periodic panel lists the tick schedule (@every 1s) with its next run and, once a slot
	// fired, a link to that slot's job, which opens it.
	tick := `document.querySelector('#periodic tr[data-periodic="tick"]')`
	waitJS(t, ctx, "the tick schedule in the Periodic panel", `!document.querySelector('#periodic-card').hidden && `+tick+
		`?.querySelector('.periodic-schedule').textContent === '@every 1s' && `+tick+`.querySelector('.periodic-catch-up').textContent === 'one'`+
		` && `+tick+`.querySelector('.periodic-next').textContent !== '—' && !!`+tick+`.querySelector('.periodic-state a[href^="#/job/"]')`)
	href, err := chromedp.Run(ctx, chromedp.Evaluate[string](tick+`.querySelector('.periodic-state a').getAttribute('href')`))
	if err != nil {
		t.Fatal(err)
	}
	do(t, ctx, chromedp.Click(chromedp.CSS(`#periodic tr[data-periodic="tick"] .periodic-state a`)))
	waitJS(t, ctx, "the periodic job's page", fmt.Sprintf(`document.querySelector('#job-id')?.textContent === %q && document.querySelector('#job-periodic')?.textContent === 'tick' && !!document.querySelector('#job-slot')`, strings.TrimPrefix(href, "#/job/")))
	do(t, ctx, chromedp.Navigate(ui+"#/"))
	waitJS(t, ctx, "the overview again", `!document.querySelector('#overview').hidden && !!`+tick)

	// The jobs pool says how far it yields to HTTP (jobs.yield_to_http, on by default), and why.
	waitJS(t, ctx, "the jobs pool's yield line", `!document.querySelector('#yield-jobs')?.hidden && /every worker takes jobs|of \d+ workers take jobs/.test(document.querySelector('#yield-jobs').textContent)`+
		` && document.querySelector('#yield-jobs').title !== '' && document.querySelector('#yield-http').hidden`)

	// An invalid size shows the API's validation error.
	typeSize := func(v string) []chromedp.Action[chromedp.Void] {
		// As an operator would: click into the field, empty it, type. (chromedp.Clear empties only
		// the value attribute, which no longer reflects a field the page has set.)
		return []chromedp.Action[chromedp.Void]{chromedp.Focus(chromedp.CSS("#size-jobs")), chromedp.SetValue(chromedp.CSS("#size-jobs"), ""),
			chromedp.SendKeys(chromedp.CSS("#size-jobs"), v), chromedp.Click(chromedp.CSS("#resize-jobs"))}
	}
	do(t, ctx, typeSize("0")...)
	waitJS(t, ctx, "the validation error", `document.querySelector('#err-jobs')?.textContent.includes('between 1 and 4096')`)
	// A valid resize, confirmed by the admin API. Refreshes keep updating the card meanwhile; they
	// never replace the field or overwrite what was typed into it.
	do(t, ctx, typeSize("5")...)
	waitJS(t, ctx, "the new size", `document.querySelector('#pool-jobs .size')?.textContent === '5'`)
	var pools map[string]struct{ Size int }
	tu.api(t, "GET", tu.admin+"/admin/pools", nil, &pools)
	if pools["jobs"].Size != 5 {
		t.Fatalf("GET /admin/pools says jobs size %d after the UI resized it to 5", pools["jobs"].Size)
	}
	// Back to auto: the card offers it for a size an operator set, and then says the size follows
	// the CPU limit.
	do(t, ctx, chromedp.Click(chromedp.CSS("#auto-jobs")))
	waitJS(t, ctx, "the jobs pool back on auto", `!!document.querySelector('#follows-jobs') && !document.querySelector('#auto-jobs')`)
	var auto map[string]struct {
		Size          int
		SizeSource    string `json:"size_source"`
		FollowsLimits bool   `json:"follows_limits"`
	}
	tu.api(t, "GET", tu.admin+"/admin/pools", nil, &auto)
	if j := auto["jobs"]; !j.FollowsLimits || j.SizeSource != "auto" {
		t.Fatalf("GET /admin/pools after the UI put jobs back on auto: %+v", j)
	}
	do(t, ctx, typeSize("5")...) // the size the later steps look for
	waitJS(t, ctx, "the size set again", `document.querySelector('#pool-jobs .size')?.textContent === '5' && !!document.querySelector('#auto-jobs')`)

	// Pause the queue.
	waitJS(t, ctx, "the queue row", `!!document.querySelector('#pause-default')`)
	do(t, ctx, chromedp.Click(chromedp.CSS("#pause-default")))
	waitJS(t, ctx, "the resume button", `!!document.querySelector('#resume-default')`)
	var qs struct {
		Queues []struct {
			Name   string
			Paused bool
		}
	}
	tu.api(t, "GET", tu.http+"/v1/queues", nil, &qs)
	if len(qs.Queues) == 0 || !qs.Queues[0].Paused {
		t.Fatalf("queue not paused: %+v", qs)
	}
	shot(t, ctx, "02-overview-laptop")

	// The dead job: its page, then retry (it waits as ready: the queue is paused).
	do(t, ctx, chromedp.Navigate(ui+"#/jobs?state=dead"))
	waitJS(t, ctx, "the dead job in the list", fmt.Sprintf(`!!document.querySelector('a[href="#/job/%s"]')`, dead.ID))
	// Ids are shown by their random tail: a time-ordered id's head is the same for a whole burst.
	waitJS(t, ctx, "the id's tail", fmt.Sprintf(`document.querySelector('a[href="#/job/%s"]').textContent === '…%s'`, dead.ID, dead.ID[len(dead.ID)-12:]))
	shot(t, ctx, "03-jobs")
	do(t, ctx, chromedp.Click(chromedp.CSS(fmt.Sprintf(`a[href="#/job/%s"]`, dead.ID))))
	waitJS(t, ctx, "the job page", `document.querySelector('#job-state')?.textContent === 'dead' && document.querySelector('#job-errors tbody').textContent.includes('400')`)
	waitJS(t, ctx, "the node that ran it", fmt.Sprintf(`document.querySelector('#job-attempted_by')?.textContent === %q`, node))
	shot(t, ctx, "04-dead-job")
	do(t, ctx, chromedp.Click(chromedp.CSS("#job-retry")))
	waitJS(t, ctx, "the retried job", `document.querySelector('#job-state')?.textContent === 'ready'`)
	var j struct{ State string }
	tu.api(t, "GET", tu.http+"/v1/jobs/"+dead.ID, nil, &j)
	if j.State != "ready" {
		t.Fatalf("after retry the job is %s", j.State)
	}

	// A running job, followed live: its page shows the progress its handler reports (the sleep
	// kind, in steps) as it comes, through the event stream, then its end.
	if code := tu.api(t, "POST", tu.admin+"/admin/queues/default/resume", nil, nil); code != 200 && code != 204 {
		t.Fatalf("resume: %d", code)
	}
	var slow struct{ ID string }
	if code := tu.api(t, "POST", tu.http+"/v1/jobs", map[string]any{"kind": "sleep", "payload": map[string]any{"ms": 4000, "steps": 4}}, &slow); code != 201 {
		t.Fatalf("enqueue sleep: %d", code)
	}
	do(t, ctx, chromedp.Navigate(ui+"#/job/"+slow.ID))
	waitJS(t, ctx, "the job's progress, live", `!document.querySelector('#job-progress').hidden && document.querySelector('#job-state')?.textContent === 'running'`+
		` && /^[123] of 4$/.test(document.querySelector('#job-progress .message').textContent) && document.querySelector('#job-progress progress').value > 0`)
	shot(t, ctx, "05-job-progress")
	waitJS(t, ctx, "the followed job's end", `document.querySelector('#job-state')?.textContent === 'succeeded'`+
		` && document.querySelector('#job-progress .message').textContent === '4 of 4' && document.querySelector('#job-progress progress').value === 100`)

	// Phone width.
	do(t, ctx, chromedp.EmulateViewport(390, 844), chromedp.Navigate(ui+"#/"))
	waitJS(t, ctx, "pools on a phone", `document.querySelector('#pool-jobs .size')?.textContent === '5'`)
	shot(t, ctx, "06-overview-phone")
	do(t, ctx, chromedp.EmulateViewport(1280, 800))

	// tandem goes away: the page says so instead of going blank.
	tu.Kill9()
	waitJS(t, ctx, "the down banner", `document.querySelector('#banner').textContent.includes('not reachable') && !document.querySelector('#banner').hidden`)
	shot(t, ctx, "07-tandem-down")
}

// TestDashboardWithoutToken: with no admin.token (the default, admin on loopback) the API needs
// none, so the dashboard goes live at once instead of asking for a token nobody has.
func TestDashboardWithoutToken(t *testing.T) {
	t.Parallel()
	if testing.Short() {
		t.Skip("starts Chromium")
	}
	ctx := browser(t)
	tu := startDashboard(t, "")
	do(t, ctx, chromedp.Navigate(tu.admin+"/admin/ui/"))
	waitJS(t, ctx, "pool sizes", `document.querySelector('#pool-jobs .size')?.textContent === '2'`)
	waitJS(t, ctx, "live, no prompt", `document.querySelector('#status').textContent === 'live' && document.querySelector('#login').hidden && document.querySelector('#banner').hidden && document.querySelector('#logout').offsetParent === null`)
	shot(t, ctx, "20-no-token")
}
