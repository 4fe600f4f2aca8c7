package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strconv"
	"time"
)

// exitUnfinished is the exit status of 'tandem jobs wait' when the job has not finished by
// --timeout (0 is succeeded, 1 dead or canceled, 2 a bad command line).
const exitUnfinished = 3

// exitError is an error that asks for an exit status of its own.
type exitError struct {
	code int
	err  error
}

func (e exitError) Error() string { return e.err.Error() }
func (e exitError) Unwrap() error { return e.err }

// serverMaxWait is the longest wait the server takes in one request (GET /v1/jobs/{id}?wait=).
const serverMaxWait = 60 * time.Second

// waitJob follows job id to its end, as 'tandem jobs wait' does: it asks with ?wait= again and
// again (each at most serverMaxWait) until the job has finished or timeout has passed, prints the
// job as it is then, and returns nil when it succeeded, an error (exit 1) when it is dead or
// canceled, and an exitError with exitUnfinished when it had not finished in time. A server that
// is busy or restarting (503) is asked again after a second, within the timeout.
func (c *client) waitJob(ctx context.Context, stdout io.Writer, id string, timeout time.Duration) error {
	deadline := time.Now().Add(timeout)
	c.http = &http.Client{Timeout: serverMaxWait + 30*time.Second} // the wait is the server's, not a hung connection
	path := "/v1/jobs/" + url.PathEscape(id)
	var job map[string]any
	var raw []byte
	for {
		left := min(time.Until(deadline), serverMaxWait)
		ms := max(left.Milliseconds(), 0)
		var err error
		job = nil
		raw, err = c.do(ctx, http.MethodGet, c.base, path+"?wait="+strconv.FormatInt(ms, 10)+"ms", nil, &job)
		var ae *apiError
		switch {
		case errors.As(err, &ae) && ae.status == http.StatusNotFound:
			return fmt.Errorf("no job %s: %w", id, err)
		case errors.As(err, &ae) && ae.status == http.StatusServiceUnavailable && time.Until(deadline) > time.Second:
			t := time.NewTimer(time.Second)
			select {
			case <-ctx.Done():
				t.Stop()
				return ctx.Err()
			case <-t.C:
			}
			continue
		case err != nil:
			return err
		}
		state, _ := job["state"].(string)
		if finished(state) || time.Until(deadline) <= 0 {
			break
		}
	}
	if err := c.show(stdout, raw, jobFields(&job)); err != nil {
		return err
	}
	switch state, _ := job["state"].(string); state {
	case "succeeded":
		return nil
	case "dead", "canceled":
		return fmt.Errorf("job %s is %s", id, state)
	default:
		return exitError{exitUnfinished, fmt.Errorf("job %s is still %s after %s", id, state, timeout)}
	}
}

// finished reports whether a job's state is one it does not leave by itself.
func finished(state string) bool {
	return state == "succeeded" || state == "dead" || state == "canceled"
}
