package server

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math"
	"net/http"
	"strconv"
	"time"

	"github.com/go-chi/chi/v5"
	"github.com/tandem-run/tandem/internal/strictjson"
	"github.com/tandem-run/tandem/jobs"
)

// jobRoutes is the job API; the admin listener mounts the same routes for the dashboard.
func (s *Server) jobRoutes(r chi.Router) {
	r.With(queryParams("queue", "state", "kind", "limit", "cursor", "created_after", "created_before")).Get("/jobs", s.listJobs)
	r.With(queryParams("wait")).Get("/jobs/{id}", s.getJob)
	r.Group(func(r chi.Router) {
		r.Use(queryParams())
		r.Post("/jobs", s.enqueue)
		r.Post("/jobs/batch", s.enqueueBatch)
		r.Get("/jobs/{id}/events", s.jobEvents) // follow.go
		r.Delete("/jobs/{id}", s.deleteJob)
		r.Post("/jobs/{id}/cancel", s.cancelJob)
		r.Post("/jobs/{id}/retry", s.retryJob)
		r.Get("/queues", s.listQueues)
		r.Get("/periodic", s.listPeriodic)
	})
}

// enqueueRequest is the JSON body of POST /v1/jobs. Durations take "30s" or a number of seconds.
// A field left out takes its default; null is refused for every field but payload (strictjson).
type enqueueRequest struct {
	Kind        string          `json:"kind"`
	Queue       string          `json:"queue"`
	Payload     json.RawMessage `json:"payload"` // null is {}, as when left out
	Priority    int             `json:"priority"`
	RunAt       string          `json:"run_at"`
	Delay       json.RawMessage `json:"delay"`
	MaxAttempts *int            `json:"max_attempts"` // a pointer: 0 is refused, not taken for the default
	Timeout     json.RawMessage `json:"timeout"`
	UniqueKey   string          `json:"unique_key"`
}

// decodeStrict decodes one JSON value, refusing unknown fields and trailing data, and names the
// offending field in the error ("body" for the value as a whole).
func decodeStrict(body []byte, v any) (field string, err error) {
	field, err = strictjson.Decode(body, v)
	if err != nil && field == "" {
		field = "body"
	}
	return field, err
}

// readJSON reads the request's body into v, strictly (decodeStrict); on an error it has answered
// (413, 400 naming the field) and reports false.
func (s *Server) readJSON(w http.ResponseWriter, r *http.Request, v any) bool {
	body, ok := s.readBody(w, r)
	if !ok {
		return false
	}
	if field, err := decodeStrict(body, v); err != nil {
		badRequest(w, field+": "+err.Error(), map[string]string{field: err.Error()})
		return false
	}
	return true
}

// params turns a request into EnqueueParams, collecting field errors under prefix.
func (q enqueueRequest) params(prefix string, fields map[string]string) jobs.EnqueueParams {
	p := jobs.EnqueueParams{Kind: q.Kind, Queue: q.Queue, Payload: q.Payload, Priority: q.Priority, UniqueKey: q.UniqueKey}
	// EnqueueParams takes 0 for "the default"; a client that sends 0 means something else.
	if q.MaxAttempts != nil {
		if p.MaxAttempts = *q.MaxAttempts; p.MaxAttempts == 0 {
			fields[prefix+"max_attempts"] = fmt.Sprintf("must be from 1 to %d, got 0", jobs.MaxAttemptsLimit)
		}
	}
	if q.RunAt != "" {
		t, err := time.Parse(time.RFC3339Nano, q.RunAt)
		if err != nil {
			fields[prefix+"run_at"] = "must be an RFC 3339 time like 2026-01-02T15:04:05Z"
		}
		p.RunAt = t
	}
	var err error
	if p.Delay, err = parseDuration(q.Delay); err != nil {
		fields[prefix+"delay"] = err.Error()
	}
	if p.Timeout, err = parseDuration(q.Timeout); err != nil {
		fields[prefix+"timeout"] = err.Error()
	} else if len(q.Timeout) > 0 && p.Timeout == 0 {
		fields[prefix+"timeout"] = fmt.Sprintf("must be above 0 and at most %gh", jobs.MaxTimeout.Hours())
	}
	return p
}

// parseDuration accepts "1m30s" or a number of seconds; absent is 0.
func parseDuration(raw json.RawMessage) (time.Duration, error) {
	if len(raw) == 0 {
		return 0, nil
	}
	if string(raw) == "null" {
		return 0, errors.New("must not be null")
	}
	var s string
	if json.Unmarshal(raw, &s) == nil {
		d, err := time.ParseDuration(s)
		if err != nil {
			return 0, errors.New(`must be a duration like "30s" or a number of seconds`)
		}
		return d, nil
	}
	var f float64
	if err := json.Unmarshal(raw, &f); err != nil || math.IsNaN(f) || math.Abs(f) > 1e9 {
		return 0, errors.New(`must be a duration like "30s" or a number of seconds`)
	}
	return time.Duration(f * float64(time.Second)), nil
}

// readBody reads a JSON request body (the body limit applies).
func (s *Server) readBody(w http.ResponseWriter, r *http.Request) ([]byte, bool) {
	if bb, ok := r.Body.(*bufferedBody); ok && bb.Len() == len(bb.b) { // read before admission, unread since
		return bb.b, true
	}
	body, err := io.ReadAll(r.Body)
	if err != nil {
		s.writeErr(w, r, fmt.Errorf("%w: %w", errReadBody, err))
		return nil, false
	}
	return body, true
}

func (s *Server) enqueue(w http.ResponseWriter, r *http.Request) {
	var q enqueueRequest
	if !s.readJSON(w, r, &q) {
		return
	}
	fields := map[string]string{}
	p := q.params("", fields)
	if len(fields) > 0 {
		badRequest(w, (&jobs.ValidationError{Fields: fields}).Error(), fields)
		return
	}
	j, created, err := s.opts.Jobs.Enqueue(r.Context(), p)
	if err != nil {
		s.writeErr(w, r, err)
		return
	}
	status := http.StatusOK // a live job held the unique key
	if created {
		status = http.StatusCreated
		w.Header().Set("Location", "/v1/jobs/"+j.ID)
	}
	writeJSON(w, status, newJobResponse(j))
}

func (s *Server) enqueueBatch(w http.ResponseWriter, r *http.Request) {
	var b struct {
		Jobs []enqueueRequest `json:"jobs"`
	}
	if !s.readJSON(w, r, &b) {
		return
	}
	fields := map[string]string{}
	ps := make([]jobs.EnqueueParams, len(b.Jobs))
	for i, q := range b.Jobs {
		ps[i] = q.params(fmt.Sprintf("jobs[%d].", i), fields)
	}
	if len(fields) > 0 {
		badRequest(w, (&jobs.ValidationError{Fields: fields}).Error(), fields)
		return
	}
	out, created, err := s.opts.Jobs.EnqueueBatch(r.Context(), ps)
	if err != nil {
		s.writeErr(w, r, err)
		return
	}
	writeJSON(w, http.StatusCreated, map[string]any{"jobs": newJobResponses(out), "created": created})
}

// getJob answers GET /v1/jobs/{id}; with ?wait it waits for the job to finish (waitJob).
func (s *Server) getJob(w http.ResponseWriter, r *http.Request) {
	if v, ok := r.URL.Query()["wait"]; ok {
		d, err := parseWait(v[0])
		if err != nil {
			badRequest(w, "wait "+err.Error(), map[string]string{"wait": err.Error()})
			return
		}
		if d > 0 {
			s.waitJob(w, r, d)
			return
		}
	}
	j, err := s.opts.Jobs.Get(r.Context(), chi.URLParam(r, "id"))
	if err != nil {
		s.writeErr(w, r, err)
		return
	}
	writeJSON(w, http.StatusOK, newJobResponse(j))
}

func (s *Server) listJobs(w http.ResponseWriter, r *http.Request) {
	q := r.URL.Query()
	f := jobs.Filter{Queue: q.Get("queue"), Kind: q.Get("kind"), State: jobs.State(q.Get("state")), Cursor: q.Get("cursor")}
	fields := map[string]string{}
	if f.State != "" && !f.State.Valid() {
		fields["state"] = fmt.Sprintf("must be one of %v", jobs.States)
	}
	parseCreated(q.Get("created_after"), q.Get("created_before"), "", &f, fields)
	if v := q.Get("limit"); v != "" {
		n, err := strconv.Atoi(v)
		if err != nil || n < 1 || n > 1000 {
			fields["limit"] = "must be an integer from 1 to 1000"
		}
		f.Limit = n
	}
	if len(fields) > 0 {
		badRequest(w, (&jobs.ValidationError{Subject: "query", Fields: fields}).Error(), fields)
		return
	}
	list, next, err := s.opts.Jobs.List(r.Context(), f)
	if err != nil {
		s.writeErr(w, r, err)
		return
	}
	writeJSON(w, http.StatusOK, map[string]any{"jobs": newJobResponses(list), "next_cursor": next})
}

func (s *Server) cancelJob(w http.ResponseWriter, r *http.Request) {
	s.jobAction(w, r, s.opts.Jobs.Cancel)
}

func (s *Server) retryJob(w http.ResponseWriter, r *http.Request) {
	s.jobAction(w, r, s.opts.Jobs.Retry)
}

func (s *Server) jobAction(w http.ResponseWriter, r *http.Request, act func(ctx context.Context, id string) (*jobs.Job, error)) {
	j, err := act(r.Context(), chi.URLParam(r, "id"))
	if err != nil {
		s.writeErr(w, r, err)
		return
	}
	writeJSON(w, http.StatusOK, newJobResponse(j))
}

func (s *Server) deleteJob(w http.ResponseWriter, r *http.Request) {
	if err := s.opts.Jobs.Delete(r.Context(), chi.URLParam(r, "id")); err != nil {
		s.writeErr(w, r, err)
		return
	}
	w.WriteHeader(http.StatusNoContent)
}

func (s *Server) listQueues(w http.ResponseWriter, r *http.Request) {
	qs, err := s.opts.Jobs.Queues(r.Context())
	if err != nil {
		s.writeErr(w, r, err)
		return
	}
	now := time.Now()
	views := make([]queueResponse, len(qs))
	for i, q := range qs {
		views[i] = newQueueResponse(q, now)
	}
	writeJSON(w, http.StatusOK, map[string]any{"queues": views})
}
