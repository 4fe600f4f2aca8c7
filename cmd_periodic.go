package main

import (
	"context"
	"fmt"
	"io"
	"net/http"
)

// periodicVerbs are `tandem periodic`'s verbs.
var periodicVerbs = []string{"list"}

// periodicCols are the columns of a periodic schedule in `tandem periodic list`.
var periodicCols = []string{"name", "kind", "queue", "schedule", "timezone", "catch_up", "next_run", "last_slot", "last_state", "last_job_id"}

// runPeriodic is `tandem periodic list`: the schedules of a running tandem (GET /v1/periodic).
func runPeriodic(ctx context.Context, args, env []string, stdout, stderr io.Writer) error {
	fs := newFlagSet("periodic", "[list]", stderr)
	c := addClientFlags(fs, env)
	if err := parseFlags(fs, args); err != nil {
		return err
	}
	if _, err := checkVerb(fs.Arg(0), periodicVerbs); err != nil {
		return err
	}
	if fs.NArg() > 1 {
		return usageError{fmt.Errorf("list takes no argument, not %q", fs.Arg(1))}
	}
	if err := c.resolve(); err != nil {
		return err
	}
	var out struct {
		Periodic []map[string]any `json:"periodic"`
	}
	return c.call(ctx, stdout, http.MethodGet, c.base, "/v1/periodic", nil, &out, func(w io.Writer) error {
		if len(out.Periodic) == 0 {
			_, err := fmt.Fprintln(w, "no periodic jobs (set jobs.periodic in the configuration)")
			return err
		}
		return rows(w, periodicCols, out.Periodic...)
	})
}
