package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"os"
	"strconv"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/spf13/pflag"
)

// client talks to a running tandem: the main listener for /v1 and the admin listener for /admin.
type client struct {
	base  string // --server / TANDEM_SERVER_URL
	admin string // --admin / TANDEM_ADMIN_URL
	token string // TANDEM_ADMIN_TOKEN
	json  bool   // --json: print the raw answer
	http  *http.Client
}

func addClientFlags(fs *pflag.FlagSet) *client {
	c := &client{http: &http.Client{Timeout: 30 * time.Second}}
	fs.StringVar(&c.base, "server", envOr("TANDEM_SERVER_URL", "http://127.0.0.1:8080"), "tandem's main listener (env TANDEM_SERVER_URL)")
	fs.StringVar(&c.admin, "admin", envOr("TANDEM_ADMIN_URL", "http://127.0.0.1:9090"), "tandem's admin listener (env TANDEM_ADMIN_URL; token from TANDEM_ADMIN_TOKEN)")
	fs.BoolVar(&c.json, "json", false, "print the server's JSON answer as is")
	c.token = os.Getenv("TANDEM_ADMIN_TOKEN")
	return c
}

func envOr(name, def string) string {
	if v := os.Getenv(name); v != "" {
		return v
	}
	return def
}

// apiError is a non-2xx answer, carrying the server's {"error": ...} message.
type apiError struct {
	status int
	msg    string
	fields map[string]string
}

func (e *apiError) Error() string {
	s := fmt.Sprintf("%d %s: %s", e.status, http.StatusText(e.status), e.msg)
	for k, v := range e.fields {
		s += fmt.Sprintf("\n  %s: %s", k, v)
	}
	return s
}

// do sends a request and decodes a JSON answer into out (when non-nil). It returns the raw body.
func (c *client) do(ctx context.Context, method, base, path string, body any, out any) ([]byte, error) {
	var rd io.Reader
	if body != nil {
		b, err := json.Marshal(body)
		if err != nil {
			return nil, err
		}
		rd = bytes.NewReader(b)
	}
	req, err := http.NewRequestWithContext(ctx, method, strings.TrimRight(base, "/")+path, rd)
	if err != nil {
		return nil, usageError{fmt.Errorf("bad URL: %w", err)}
	}
	if body != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	if c.token != "" && base == c.admin {
		req.Header.Set("Authorization", "Bearer "+c.token)
	}
	resp, err := c.http.Do(req)
	if err != nil {
		return nil, fmt.Errorf("%s %s: %w", method, req.URL, err)
	}
	defer resp.Body.Close()
	raw, err := io.ReadAll(io.LimitReader(resp.Body, 64<<20))
	if err != nil {
		return nil, fmt.Errorf("%s %s: read answer: %w", method, req.URL, err)
	}
	if resp.StatusCode >= 300 {
		var e struct {
			Error  string            `json:"error"`
			Fields map[string]string `json:"fields"`
		}
		if json.Unmarshal(raw, &e) != nil || e.Error == "" {
			e.Error = strings.TrimSpace(string(raw))
		}
		return raw, &apiError{status: resp.StatusCode, msg: e.Error, fields: e.Fields}
	}
	if out != nil {
		if err := json.Unmarshal(raw, out); err != nil {
			return raw, fmt.Errorf("%s %s: decode answer: %w", method, req.URL, err)
		}
	}
	return raw, nil
}

func (c *client) print(stdout io.Writer, raw []byte) {
	var buf bytes.Buffer
	if json.Indent(&buf, raw, "", "  ") != nil {
		buf.Reset()
		buf.Write(raw)
	}
	buf.WriteByte('\n')
	_, _ = stdout.Write(buf.Bytes())
}

// getOrPrint GETs path from the main listener into out; with --json it prints the answer as is
// and reports done, so the caller prints a table only otherwise.
func (c *client) getOrPrint(ctx context.Context, path string, out any, stdout io.Writer) (done bool, err error) {
	raw, err := c.do(ctx, http.MethodGet, c.base, path, nil, out)
	if err != nil {
		return true, err
	}
	if c.json {
		c.print(stdout, raw)
		return true, nil
	}
	return false, nil
}

func runHealthcheck(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := newFlagSet("healthcheck", "[--url URL]", stderr)
	u := fs.String("url", envOr("TANDEM_HEALTHCHECK_URL", "http://127.0.0.1:8080/readyz"), "readiness URL (env TANDEM_HEALTHCHECK_URL)")
	timeout := fs.Duration("timeout", 3*time.Second, "give up after this")
	if err := parseFlags(fs, args); err != nil {
		return err
	}
	ctx, cancel := context.WithTimeout(ctx, *timeout)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, *u, nil)
	if err != nil {
		return usageError{err}
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return fmt.Errorf("not healthy: %w", err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("not ready: %s answered %d", *u, resp.StatusCode)
	}
	fmt.Fprintln(stdout, "ok")
	return nil
}

func runEnqueue(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := newFlagSet("enqueue", "KIND [--payload JSON] [--queue Q] [--delay D] [--unique KEY] [--priority N]", stderr)
	c := addClientFlags(fs)
	payload := fs.String("payload", "", "job payload, JSON (default {})")
	queue := fs.String("queue", "", "queue name (default: default)")
	delay := fs.Duration("delay", 0, "run after this delay, like 30s or 5m")
	unique := fs.String("unique", "", "unique key: while a live job holds it, enqueue returns that job")
	priority := fs.Int("priority", 0, "0..9, higher runs first")
	attempts := fs.Int("max-attempts", 0, "attempts before dead (default: the server's)")
	timeout := fs.Duration("timeout", 0, "per-attempt timeout (default: the server's)")
	if err := parseFlags(fs, args); err != nil {
		return err
	}
	if fs.NArg() != 1 {
		return usageError{errors.New("need exactly one KIND, like: tandem enqueue sleep --payload '{\"ms\":100}'")}
	}
	body := map[string]any{"kind": fs.Arg(0), "priority": *priority}
	if *payload != "" {
		if !json.Valid([]byte(*payload)) {
			return usageError{fmt.Errorf("--payload is not valid JSON: %s", *payload)}
		}
		body["payload"] = json.RawMessage(*payload)
	}
	if *queue != "" {
		body["queue"] = *queue
	}
	if *delay != 0 {
		body["delay"] = delay.String()
	}
	if *unique != "" {
		body["unique_key"] = *unique
	}
	if *attempts != 0 {
		body["max_attempts"] = *attempts
	}
	if *timeout != 0 {
		body["timeout"] = timeout.String()
	}
	raw, err := c.do(ctx, http.MethodPost, c.base, "/v1/jobs", body, nil)
	if err != nil {
		return err
	}
	c.print(stdout, raw)
	return nil
}

// jobView is the part of a job the CLI shows in lists.
type jobView struct {
	ID        string    `json:"id"`
	Kind      string    `json:"kind"`
	Queue     string    `json:"queue"`
	State     string    `json:"state"`
	Attempt   int       `json:"attempt"`
	CreatedAt time.Time `json:"created_at"`
}

func runJobs(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := newFlagSet("jobs", "list [--queue Q] [--state S] [--kind K] [--limit N] [--cursor C] | show ID | cancel ID | retry ID | delete ID", stderr)
	c := addClientFlags(fs)
	queue := fs.String("queue", "", "list: only this queue")
	state := fs.String("state", "", "list: only this state")
	kind := fs.String("kind", "", "list: only this kind")
	limit := fs.Int("limit", 50, "list: page size")
	cursor := fs.String("cursor", "", "list: the next page's cursor from a previous list")
	if err := parseFlags(fs, args); err != nil {
		return err
	}
	verb := fs.Arg(0)
	switch {
	case verb == "list" || verb == "":
		q := url.Values{}
		for k, v := range map[string]string{"queue": *queue, "state": *state, "kind": *kind, "cursor": *cursor} {
			if v != "" {
				q.Set(k, v)
			}
		}
		q.Set("limit", strconv.Itoa(*limit))
		var page struct {
			Jobs       []jobView `json:"jobs"`
			NextCursor string    `json:"next_cursor"`
		}
		if done, err := c.getOrPrint(ctx, "/v1/jobs?"+q.Encode(), &page, stdout); done || err != nil {
			return err
		}
		tw := tabwriter.NewWriter(stdout, 0, 4, 2, ' ', 0)
		fmt.Fprintln(tw, "ID\tKIND\tQUEUE\tSTATE\tATTEMPT\tCREATED")
		for _, j := range page.Jobs {
			fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%d\t%s\n", j.ID, j.Kind, j.Queue, j.State, j.Attempt, j.CreatedAt.Format(time.RFC3339))
		}
		_ = tw.Flush()
		if page.NextCursor != "" {
			fmt.Fprintf(stdout, "next page: tandem jobs list --cursor %s\n", page.NextCursor)
		}
		return nil
	case fs.NArg() != 2:
		return usageError{fmt.Errorf("%s needs a job ID", verb)}
	}
	id := url.PathEscape(fs.Arg(1))
	var method, path string
	switch verb {
	case "show":
		method, path = http.MethodGet, "/v1/jobs/"+id
	case "cancel", "retry":
		method, path = http.MethodPost, "/v1/jobs/"+id+"/"+verb
	case "delete":
		method, path = http.MethodDelete, "/v1/jobs/"+id
	default:
		return usageError{fmt.Errorf("unknown verb %q (list, show, cancel, retry, delete)", verb)}
	}
	raw, err := c.do(ctx, method, c.base, path, nil, nil)
	if err != nil {
		return err
	}
	c.print(stdout, raw)
	return nil
}

func runQueues(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := newFlagSet("queues", "[list] | pause NAME | resume NAME", stderr)
	c := addClientFlags(fs)
	if err := parseFlags(fs, args); err != nil {
		return err
	}
	switch verb := fs.Arg(0); verb {
	case "", "list":
		var out struct {
			Queues []map[string]any `json:"queues"`
		}
		if done, err := c.getOrPrint(ctx, "/v1/queues", &out, stdout); done || err != nil {
			return err
		}
		tw := tabwriter.NewWriter(stdout, 0, 4, 2, ' ', 0)
		cols := []string{"name", "paused", "scheduled", "ready", "running", "retrying", "succeeded", "dead", "canceled", "oldest_ready_age_seconds"}
		fmt.Fprintln(tw, strings.ToUpper(strings.Join(cols, "\t")))
		for _, q := range out.Queues {
			vals := make([]string, len(cols))
			for i, col := range cols {
				vals[i] = fmt.Sprint(q[col])
			}
			fmt.Fprintln(tw, strings.Join(vals, "\t"))
		}
		return tw.Flush()
	case "pause", "resume":
		if fs.NArg() != 2 {
			return usageError{fmt.Errorf("%s needs a queue NAME", verb)}
		}
		raw, err := c.do(ctx, http.MethodPost, c.admin, "/admin/queues/"+url.PathEscape(fs.Arg(1))+"/"+verb, map[string]any{}, nil)
		if err != nil {
			return err
		}
		c.print(stdout, raw)
		return nil
	default:
		return usageError{fmt.Errorf("unknown verb %q (list, pause, resume)", verb)}
	}
}

func runPools(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := newFlagSet("pools", "[show] | resize http|jobs N | unpin http|jobs", stderr)
	c := addClientFlags(fs)
	backlog := fs.Int("backlog", -1, "resize: also set the backlog (http pool)")
	if err := parseFlags(fs, args); err != nil {
		return err
	}
	switch verb := fs.Arg(0); verb {
	case "", "show":
		raw, err := c.do(ctx, http.MethodGet, c.admin, "/admin/pools", nil, nil)
		if err != nil {
			return err
		}
		c.print(stdout, raw)
		return nil
	case "resize":
		if fs.NArg() != 3 {
			return usageError{errors.New("usage: tandem pools resize http|jobs N")}
		}
		n, err := strconv.Atoi(fs.Arg(2))
		if err != nil {
			return usageError{fmt.Errorf("size %q is not a whole number", fs.Arg(2))}
		}
		body := map[string]any{"size": n}
		if *backlog >= 0 {
			body["backlog"] = *backlog
		}
		raw, err := c.do(ctx, http.MethodPut, c.admin, "/admin/pools/"+url.PathEscape(fs.Arg(1)), body, nil)
		if err != nil {
			return err
		}
		c.print(stdout, raw)
		return nil
	case "unpin":
		if fs.NArg() != 2 {
			return usageError{errors.New("usage: tandem pools unpin http|jobs")}
		}
		raw, err := c.do(ctx, http.MethodDelete, c.admin, "/admin/pools/"+url.PathEscape(fs.Arg(1))+"/pin", map[string]any{}, nil)
		if err != nil {
			return err
		}
		c.print(stdout, raw)
		return nil
	default:
		return usageError{fmt.Errorf("unknown verb %q (show, resize, unpin)", verb)}
	}
}
