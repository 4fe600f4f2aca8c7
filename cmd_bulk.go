package main

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"strings"
	"time"

	"github.com/spf13/pflag"
)

// bulkActions are the actions of 'tandem jobs bulk', as POST /admin/jobs/bulk takes them, with
// what each does in the past tense, for the messages.
var bulkActions = map[string]string{"retry": "retried", "cancel": "canceled", "delete": "deleted", "purge": "purged"}

// bulkFlags are the flags of 'tandem jobs bulk' beyond the list filter's.
type bulkFlags struct {
	yes, dryRun                 bool
	createdAfter, createdBefore string
}

func addBulkFlags(fs *pflag.FlagSet) *bulkFlags {
	b := &bulkFlags{}
	fs.StringVar(&b.createdAfter, "created-after", "", "list, bulk: only jobs created at or after this RFC 3339 time, or this long ago (24h)")
	fs.StringVar(&b.createdBefore, "created-before", "", "list, bulk: only jobs created before this RFC 3339 time, or this long ago (24h)")
	fs.BoolVar(&b.dryRun, "dry-run", false, "bulk: count the jobs the action would take, change nothing")
	fs.BoolVarP(&b.yes, "yes", "y", false, "bulk: do not ask for confirmation (needed when stdin is not a terminal)")
	return b
}

// createdTime reads a --created-* flag: an RFC 3339 time, or a duration meaning that long before now.
func createdTime(flag, v string, now time.Time) (string, error) {
	if v == "" {
		return "", nil
	}
	if _, err := time.Parse(time.RFC3339Nano, v); err == nil {
		return v, nil
	}
	if d, err := time.ParseDuration(v); err == nil && d >= 0 {
		return now.Add(-d).UTC().Format(time.RFC3339Nano), nil
	}
	return "", usageError{fmt.Errorf("--%s %q: give an RFC 3339 time like 2026-01-02T15:04:05Z or a duration like 24h (that long ago)", flag, v)}
}

// stdinTerminal is where 'jobs bulk' asks for confirmation: stdin, and whether it is a terminal
// (a character device that is not /dev/null). A variable, so a test can answer.
var stdinTerminal = func() (io.Reader, bool) {
	fi, err := os.Stdin.Stat()
	if err != nil || fi.Mode()&os.ModeCharDevice == 0 {
		return os.Stdin, false
	}
	if null, err := os.Stat(os.DevNull); err == nil && os.SameFile(fi, null) {
		return os.Stdin, false
	}
	return os.Stdin, true
}

// confirm asks question on w and reads a yes (y or yes, any case) from r.
func confirm(r io.Reader, w io.Writer, question string) (bool, error) {
	fmt.Fprintf(w, "%s [y/N] ", question)
	line, err := bufio.NewReader(r).ReadString('\n')
	if err != nil && !errors.Is(err, io.EOF) {
		return false, fmt.Errorf("read the answer: %w", err)
	}
	answer := strings.ToLower(strings.TrimSpace(line))
	return answer == "y" || answer == "yes", nil
}

// bulkTotals adds up the answers of the calls of one bulk action.
type bulkTotals struct {
	Action  string `json:"action"`
	DryRun  bool   `json:"dry_run"`
	Matched int    `json:"matched"`
	Changed int    `json:"changed"`
	Skipped int    `json:"skipped"`
}

// runBulk calls POST /admin/jobs/bulk until it has gone through every match (each call works for
// at most a few seconds and hands back a cursor), and returns the totals.
func runBulk(ctx context.Context, c *client, action string, filter map[string]string, dryRun bool) (bulkTotals, error) {
	tot := bulkTotals{Action: action, DryRun: dryRun}
	cursor := ""
	for {
		var page struct {
			Matched, Changed, Skipped int
			NextCursor                string `json:"next_cursor"`
		}
		body := map[string]any{"action": action, "filter": filter, "dry_run": dryRun, "cursor": cursor}
		raw, err := c.do(ctx, http.MethodPost, c.admin, "/admin/jobs/bulk", body, nil)
		if err == nil {
			err = json.Unmarshal(raw, &page)
		}
		tot.Matched, tot.Changed, tot.Skipped = tot.Matched+page.Matched, tot.Changed+page.Changed, tot.Skipped+page.Skipped
		if err != nil {
			return tot, err
		}
		if cursor = page.NextCursor; cursor == "" {
			return tot, nil
		}
	}
}

// describe says which jobs a filter selects, for the messages ("queue=q state=dead", or "all").
func describe(filter map[string]string) string {
	var parts []string
	for _, k := range []string{"queue", "kind", "state", "created_after", "created_before"} {
		if v := filter[k]; v != "" {
			parts = append(parts, k+"="+v)
		}
	}
	if len(parts) == 0 {
		return "any queue, kind or time"
	}
	return strings.Join(parts, " ")
}

// runJobsBulk is 'tandem jobs bulk ACTION': it counts the jobs the action takes (a dry run),
// asks to confirm unless --yes, then runs it and says what it did.
func runJobsBulk(ctx context.Context, c *client, args []string, filter map[string]string, bf *bulkFlags, stdout, stderr io.Writer) error {
	if len(args) != 1 || bulkActions[args[0]] == "" {
		return usageError{errors.New("bulk needs one action: retry, cancel, delete or purge, like: tandem jobs bulk retry --state dead --queue emails")}
	}
	action := args[0]
	now := time.Now()
	var err error
	if filter["created_after"], err = createdTime("created-after", bf.createdAfter, now); err != nil {
		return err
	}
	if filter["created_before"], err = createdTime("created-before", bf.createdBefore, now); err != nil {
		return err
	}
	for k, v := range filter {
		if v == "" {
			delete(filter, k)
		}
	}
	count, err := runBulk(ctx, c, action, filter, true)
	if err != nil {
		return err
	}
	past := bulkActions[action]
	print := func(t bulkTotals, text string) error {
		raw, _ := json.Marshal(t)
		return c.show(stdout, raw, func(w io.Writer) error { _, err := fmt.Fprintln(w, text); return err })
	}
	if bf.dryRun || count.Matched == 0 {
		return print(count, fmt.Sprintf("%d jobs would be %s (%s)", count.Matched, past, describe(filter)))
	}
	if !bf.yes {
		in, terminal := stdinTerminal()
		if !terminal {
			return usageError{fmt.Errorf("%d jobs would be %s (%s); stdin is not a terminal to confirm on: pass --yes", count.Matched, past, describe(filter))}
		}
		ok, err := confirm(in, stderr, fmt.Sprintf("%s %d jobs (%s)?", action, count.Matched, describe(filter)))
		if err != nil {
			return err
		}
		if !ok {
			return fmt.Errorf("not confirmed: no job was %s", past)
		}
	}
	done, err := runBulk(ctx, c, action, filter, false)
	if err != nil {
		return fmt.Errorf("%s %d jobs before: %w", past, done.Changed, err)
	}
	text := fmt.Sprintf("%s %d jobs of %d matched", past, done.Changed, done.Matched)
	if done.Skipped > 0 {
		text += fmt.Sprintf(" (%d skipped: their state changed meanwhile)", done.Skipped)
	}
	return print(done, text)
}
