package main

import (
	"cmp"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"slices"
	"sort"
	"strconv"
	"strings"
	"time"
)

func runHealthcheck(ctx context.Context, args, env []string, stdout, stderr io.Writer) error {
	fs := newFlagSet("healthcheck", "[--url URL] [--server URL] [--timeout D]", stderr)
	c := addClientFlags(fs, env)
	u := fs.String("url", "", "readiness URL (default: env TANDEM_HEALTHCHECK_URL, else the main listener's /readyz)")
	timeout := fs.Duration("timeout", 3*time.Second, "give up after this")
	if err := parseClient(fs, c, args); err != nil {
		return err
	}
	url := cmp.Or(*u, getenv(env, "TANDEM_HEALTHCHECK_URL"), strings.TrimRight(c.base, "/")+"/readyz")
	ctx, cancel := context.WithTimeout(ctx, *timeout)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		return usageError{err}
	}
	resp, err := send(http.DefaultClient, req)
	if err != nil {
		return fmt.Errorf("not healthy: %w", err)
	}
	defer resp.Body.Close()
	raw, err := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
	if err != nil {
		return fmt.Errorf("not healthy: read %s: %w", url, err)
	}
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("not ready: %s answered %d", url, resp.StatusCode)
	}
	return c.show(stdout, raw, func(w io.Writer) error {
		_, err := fmt.Fprintln(w, "ok")
		return err
	})
}

func runEnqueue(ctx context.Context, args, env []string, stdout, stderr io.Writer) error {
	fs := newFlagSet("enqueue", "KIND [--payload JSON] [--queue Q] [--delay D] [--unique KEY] [--priority N]", stderr)
	c := addClientFlags(fs, env)
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
	if err := c.resolve(); err != nil {
		return err
	}
	var job map[string]any
	return c.call(ctx, stdout, http.MethodPost, c.base, "/v1/jobs", body, &job, jobFields(&job))
}

// jobOrder is the order a job's fields are shown in; the rest follow by name.
var jobOrder = []string{"id", "kind", "queue", "state", "priority", "attempt", "max_attempts", "attempted_by", "timeout",
	"unique_key", "run_at", "created_at", "updated_at", "started_at", "finished_at", "payload", "result", "errors"}

// jobFields prints the job that the call decodes into *job; attempted_by as the node names,
// oldest first ("-" before the first attempt).
func jobFields(job *map[string]any) func(io.Writer) error {
	return func(w io.Writer) error {
		if nodes, ok := (*job)["attempted_by"].([]any); ok {
			names := make([]string, len(nodes))
			for i, n := range nodes {
				names[i] = cell(n)
			}
			(*job)["attempted_by"] = strings.Join(names, " ")
		}
		return fields(w, *job, jobOrder...)
	}
}

// checkVerb checks verb against a command's verbs ("" is the first), naming them all when it is not one.
func checkVerb(verb string, verbs []string) (string, error) {
	if verb == "" {
		return verbs[0], nil
	}
	if !slices.Contains(verbs, verb) {
		return "", usageError{fmt.Errorf("unknown verb %q; the verbs are %s", verb, strings.Join(verbs, ", "))}
	}
	return verb, nil
}

// Each client command's verbs, the first being the default; the help and the errors list them.
var (
	jobsVerbs   = []string{"list", "show", "wait", "cancel", "retry", "delete", "bulk"}
	queuesVerbs = []string{"list", "pause", "resume"}
	poolsVerbs  = []string{"show", "resize", "unpin"}
)

func runJobs(ctx context.Context, args, env []string, stdout, stderr io.Writer) error {
	fs := newFlagSet("jobs", "list [--queue Q] [--state S] [--kind K] [--limit N] [--cursor C] | show ID | wait ID [--timeout D] | cancel ID | retry ID | delete ID"+
		" | bulk retry|cancel|delete|purge [--queue Q] [--state S] [--kind K] [--created-after T] [--created-before T] [--dry-run] [--yes]", stderr)
	c := addClientFlags(fs, env)
	queue := fs.String("queue", "", "list: only this queue")
	state := fs.String("state", "", "list: only this state")
	kind := fs.String("kind", "", "list: only this kind")
	limit := fs.Int("limit", 50, "list: page size")
	cursor := fs.String("cursor", "", "list: the next page's cursor from a previous list")
	bf := addBulkFlags(fs)
	timeout := fs.Duration("timeout", time.Minute, "wait: how long to wait for the job to finish (exit 0 succeeded, 1 dead or canceled, 3 still unfinished)")
	if err := parseFlags(fs, args); err != nil {
		return err
	}
	verb, err := checkVerb(fs.Arg(0), jobsVerbs)
	if err != nil {
		return err
	}
	if verb == "bulk" {
		if err := c.resolve(); err != nil {
			return err
		}
		filter := map[string]string{"queue": *queue, "state": *state, "kind": *kind}
		return runJobsBulk(ctx, c, fs.Args()[1:], filter, bf, stdout, stderr)
	}
	switch {
	case verb == "list" && fs.NArg() > 1:
		return usageError{fmt.Errorf("list takes flags, not %q", fs.Arg(1))}
	case verb != "list" && fs.NArg() != 2:
		return usageError{fmt.Errorf("%s needs one job ID", verb)}
	}
	if err := c.resolve(); err != nil {
		return err
	}
	if verb == "list" {
		q := url.Values{}
		after, err := createdTime("created-after", bf.createdAfter, time.Now())
		if err != nil {
			return err
		}
		before, err := createdTime("created-before", bf.createdBefore, time.Now())
		if err != nil {
			return err
		}
		for k, v := range map[string]string{"queue": *queue, "state": *state, "kind": *kind, "cursor": *cursor, "created_after": after, "created_before": before} {
			if v != "" {
				q.Set(k, v)
			}
		}
		q.Set("limit", strconv.Itoa(*limit))
		var page struct {
			Jobs       []map[string]any `json:"jobs"`
			NextCursor string           `json:"next_cursor"`
		}
		return c.call(ctx, stdout, http.MethodGet, c.base, "/v1/jobs?"+q.Encode(), nil, &page, func(w io.Writer) error {
			if err := rows(w, []string{"id", "kind", "queue", "state", "attempt", "created_at"}, page.Jobs...); err != nil {
				return err
			}
			if page.NextCursor != "" {
				fmt.Fprintf(w, "next page: tandem jobs list --cursor %s\n", page.NextCursor)
			}
			return nil
		})
	}
	id := url.PathEscape(fs.Arg(1))
	var job map[string]any
	switch verb {
	case "show":
		return c.call(ctx, stdout, http.MethodGet, c.base, "/v1/jobs/"+id, nil, &job, jobFields(&job))
	case "wait":
		if *timeout <= 0 {
			return usageError{fmt.Errorf("--timeout must be above 0, got %s", *timeout)}
		}
		return c.waitJob(ctx, stdout, fs.Arg(1), *timeout)
	case "cancel", "retry":
		return c.call(ctx, stdout, http.MethodPost, c.base, "/v1/jobs/"+id+"/"+verb, nil, &job, jobFields(&job))
	default: // delete: 204, no body
		if _, err := c.do(ctx, http.MethodDelete, c.base, "/v1/jobs/"+id, nil, nil); err != nil {
			return err
		}
		raw, _ := json.Marshal(map[string]any{"id": fs.Arg(1), "deleted": true})
		return c.show(stdout, raw, func(w io.Writer) error {
			_, err := fmt.Fprintf(w, "deleted %s\n", fs.Arg(1))
			return err
		})
	}
}

// queueCols are the columns of a queue, in the API's order.
var queueCols = []string{"name", "paused", "scheduled", "ready", "prefetched", "running", "retrying", "succeeded", "dead", "canceled", "oldest_ready_age_seconds"}

func runQueues(ctx context.Context, args, env []string, stdout, stderr io.Writer) error {
	fs := newFlagSet("queues", "[list] | pause NAME | resume NAME", stderr)
	c := addClientFlags(fs, env)
	if err := parseFlags(fs, args); err != nil {
		return err
	}
	verb, err := checkVerb(fs.Arg(0), queuesVerbs)
	if err != nil {
		return err
	}
	switch {
	case verb == "list" && fs.NArg() > 1:
		return usageError{fmt.Errorf("list takes no argument, not %q", fs.Arg(1))}
	case verb != "list" && fs.NArg() != 2:
		return usageError{fmt.Errorf("%s needs one queue NAME", verb)}
	}
	if err := c.resolve(); err != nil {
		return err
	}
	if verb == "list" {
		var out struct {
			Queues []map[string]any `json:"queues"`
		}
		return c.call(ctx, stdout, http.MethodGet, c.base, "/v1/queues", nil, &out, func(w io.Writer) error {
			return rows(w, queueCols, out.Queues...)
		})
	}
	var q map[string]any
	return c.call(ctx, stdout, http.MethodPost, c.admin, "/admin/queues/"+url.PathEscape(fs.Arg(1))+"/"+verb, map[string]any{}, &q, func(w io.Writer) error {
		return rows(w, queueCols, q)
	})
}

// poolCols are the columns of a pool; the first is its name, the key of the admin API's map.
var poolCols = []string{"pool", "size", "running", "waiting", "backlog", "rejected", "pinned"}

func runPools(ctx context.Context, args, env []string, stdout, stderr io.Writer) error {
	fs := newFlagSet("pools", "[show] | resize http|jobs N|auto | unpin http|jobs", stderr)
	c := addClientFlags(fs, env)
	backlog := fs.Int("backlog", -1, "resize: also set the backlog (http pool)")
	if err := parseFlags(fs, args); err != nil {
		return err
	}
	verb, err := checkVerb(fs.Arg(0), poolsVerbs)
	if err != nil {
		return err
	}
	want := map[string]int{"show": 1, "resize": 3, "unpin": 2}[verb]
	if fs.NArg() > want || (verb != "show" && fs.NArg() != want) {
		return usageError{errors.New("usage: tandem pools [show] | resize http|jobs N|auto | unpin http|jobs")}
	}
	if err := c.resolve(); err != nil {
		return err
	}
	one := func(name string, p *map[string]any) func(io.Writer) error {
		return func(w io.Writer) error {
			(*p)["pool"] = name
			return rows(w, poolCols, *p)
		}
	}
	switch verb {
	case "show":
		var all map[string]map[string]any
		return c.call(ctx, stdout, http.MethodGet, c.admin, "/admin/pools", nil, &all, func(w io.Writer) error {
			names := make([]string, 0, len(all))
			for n := range all {
				names = append(names, n)
			}
			sort.Strings(names)
			objs := make([]map[string]any, len(names))
			for i, n := range names {
				objs[i] = all[n]
				objs[i]["pool"] = n
			}
			return rows(w, poolCols, objs...)
		})
	case "resize":
		var size any = "auto" // derived from the CPU limit again, and following it
		if fs.Arg(2) != "auto" {
			n, err := strconv.Atoi(fs.Arg(2))
			if err != nil {
				return usageError{fmt.Errorf(`size %q is not a whole number or "auto"`, fs.Arg(2))}
			}
			size = n
		}
		body := map[string]any{"size": size}
		if *backlog >= 0 {
			body["backlog"] = *backlog
		}
		var p map[string]any
		return c.call(ctx, stdout, http.MethodPut, c.admin, "/admin/pools/"+url.PathEscape(fs.Arg(1)), body, &p, one(fs.Arg(1), &p))
	default: // unpin
		var p map[string]any
		return c.call(ctx, stdout, http.MethodDelete, c.admin, "/admin/pools/"+url.PathEscape(fs.Arg(1))+"/pin", map[string]any{}, &p, one(fs.Arg(1), &p))
	}
}

// nodeCols are the columns of tandem nodes; http and jobs are each pool's running/size.
var nodeCols = []string{"name", "version", "leader", "running", "http", "jobs", "heartbeat", "started_at"}

func runNodes(ctx context.Context, args, env []string, stdout, stderr io.Writer) error {
	fs := newFlagSet("nodes", "[--json]", stderr)
	c := addClientFlags(fs, env)
	if err := parseClient(fs, c, args); err != nil {
		return err
	}
	if fs.NArg() > 0 {
		return usageError{fmt.Errorf("nodes takes no argument, not %q", fs.Arg(0))}
	}
	var out struct {
		Nodes  []map[string]any `json:"nodes"`
		Shared bool             `json:"shared"`
	}
	return c.call(ctx, stdout, http.MethodGet, c.admin, "/admin/nodes", nil, &out, func(w io.Writer) error {
		now := time.Now()
		for _, n := range out.Nodes {
			pools, _ := n["pools"].(map[string]any)
			for _, name := range []string{"http", "jobs"} {
				if p, ok := pools[name].(map[string]any); ok {
					n[name] = cell(p["running"]) + "/" + cell(p["size"])
				}
			}
			if at, err := time.Parse(time.RFC3339Nano, cell(n["heartbeat_at"])); err == nil {
				n["heartbeat"] = max(now.Sub(at), 0).Round(100*time.Millisecond).String() + " ago"
			}
		}
		if err := rows(w, nodeCols, out.Nodes...); err != nil {
			return err
		}
		if !out.Shared {
			_, err := fmt.Fprintln(w, "store.backend is bbolt: this process is the only node")
			return err
		}
		return nil
	})
}
