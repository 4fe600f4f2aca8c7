package server

import (
	"errors"
	"net/http"
	"time"

	"github.com/tandem-run/tandem/jobs"
)

// bulkBudget bounds one POST /admin/jobs/bulk: past it the call returns after the batch in
// progress with a next_cursor, and the client calls again. 10s stays well inside the admin
// listener's write timeout (60s by default), whatever the store's size.
const bulkBudget = 10 * time.Second

// bulkFilter is the filter of a bulk action, as the job list's query takes it.
type bulkFilter struct {
	Queue         string `json:"queue"`
	Kind          string `json:"kind"`
	State         string `json:"state"`
	CreatedAfter  string `json:"created_after"`
	CreatedBefore string `json:"created_before"`
}

// bulkRequest is the JSON body of POST /admin/jobs/bulk.
type bulkRequest struct {
	Action string     `json:"action"`
	Filter bulkFilter `json:"filter"`
	DryRun bool       `json:"dry_run"`
	Cursor string     `json:"cursor"`
}

// bulkResponse is what a bulk action did, in this call.
type bulkResponse struct {
	Action     string `json:"action"`
	DryRun     bool   `json:"dry_run"`
	Matched    int    `json:"matched"`
	Changed    int    `json:"changed"`
	Skipped    int    `json:"skipped"`
	NextCursor string `json:"next_cursor"`
}

// parseCreated reads the created_after and created_before of a filter into f, naming a bad one
// in fields under prefix.
func parseCreated(after, before, prefix string, f *jobs.Filter, fields map[string]string) {
	for _, c := range []struct {
		name, v string
		to      *time.Time
	}{{"created_after", after, &f.CreatedAfter}, {"created_before", before, &f.CreatedBefore}} {
		if c.v == "" {
			continue
		}
		t, err := time.Parse(time.RFC3339Nano, c.v)
		if err != nil {
			fields[prefix+c.name] = "must be an RFC 3339 time like 2026-01-02T15:04:05Z"
			continue
		}
		*c.to = t
	}
}

// bulkJobs applies an action to the jobs of a filter (jobs.Runtime.Bulk), at most bulkBudget per
// call, and writes one audit line for each call that was not a dry run.
func (s *Server) bulkJobs(w http.ResponseWriter, r *http.Request) {
	var q bulkRequest
	if !s.readJSON(w, r, &q) {
		return
	}
	f := jobs.Filter{Queue: q.Filter.Queue, Kind: q.Filter.Kind, State: jobs.State(q.Filter.State), Cursor: q.Cursor}
	fields := map[string]string{}
	parseCreated(q.Filter.CreatedAfter, q.Filter.CreatedBefore, "filter.", &f, fields)
	if len(fields) > 0 {
		badRequest(w, (&jobs.ValidationError{Subject: "bulk action", Fields: fields}).Error(), fields)
		return
	}
	a := jobs.BulkAction{Op: jobs.BulkOp(q.Action), Filter: f, DryRun: q.DryRun, MaxDuration: bulkBudget}
	res, err := s.opts.Jobs.Bulk(r.Context(), a)
	var ve *jobs.ValidationError
	if !q.DryRun && !errors.As(err, &ve) { // a refused action did nothing; any other may have
		s.log.Info("admin bulk action", "action", q.Action, "queue", f.Queue, "kind", f.Kind, "state", f.State,
			"created_after", q.Filter.CreatedAfter, "created_before", q.Filter.CreatedBefore, "cursor", q.Cursor,
			"matched", res.Matched, "changed", res.Changed, "skipped", res.Skipped, "next_cursor", res.Cursor,
			"err", errText(err), "remote", r.RemoteAddr, "request_id", RequestID(r.Context()))
	}
	if err != nil {
		s.writeErr(w, r, err)
		return
	}
	writeJSON(w, http.StatusOK, bulkResponse{Action: q.Action, DryRun: q.DryRun, Matched: res.Matched,
		Changed: res.Changed, Skipped: res.Skipped, NextCursor: res.Cursor})
}

// errText is err's message, "" for none.
func errText(err error) string {
	if err == nil {
		return ""
	}
	return err.Error()
}
