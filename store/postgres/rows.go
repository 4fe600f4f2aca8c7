package postgres

import (
	"encoding/json"
	"fmt"
	"slices"
	"time"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgtype"

	"github.com/tandem-run/tandem/jobs"
)

// Times are kept to the microsecond, as Postgres's timestamptz is: the store truncates every time
// of a record it writes to the microsecond, in UTC, before it writes it and before it returns the
// record, so a job returned by a write equals the one Get reads back.
func usec(t time.Time) time.Time {
	if t.IsZero() {
		return time.Time{}
	}
	return t.Truncate(time.Microsecond).UTC()
}

func usecPtr(t *time.Time) *time.Time {
	if t == nil {
		return nil
	}
	u := usec(*t)
	return &u
}

// normalize truncates the job's times (see usec).
func normalize(j *jobs.Job) {
	j.RunAt, j.CreatedAt, j.UpdatedAt = usec(j.RunAt), usec(j.CreatedAt), usec(j.UpdatedAt)
	j.StartedAt, j.FinishedAt, j.LeaseUntil = usecPtr(j.StartedAt), usecPtr(j.FinishedAt), usecPtr(j.LeaseUntil)
	for i := range j.Errors {
		j.Errors[i].At = usec(j.Errors[i].At)
	}
	j.Slot = usec(j.Slot)
	if j.Progress != nil {
		j.Progress.At = usec(j.Progress.At)
	}
}

// jobColumns are a record's columns, in the order scanJob reads them.
const jobColumns = `id::text, kind, queue, state, priority, run_at, attempt, max_attempts, timeout_ns, payload, result,
	errors, attempted_by, unique_key, created_at, updated_at, started_at, finished_at, lease_until, extras`

// attemptError is an AttemptError in the errors column.
type attemptError struct {
	Attempt int       `json:"attempt"`
	At      time.Time `json:"at"`
	Error   string    `json:"error"`
}

// jobExtras is the extras column: the fields most jobs leave empty.
type jobExtras struct {
	Progress *progressJSON `json:"progress,omitempty"`
	Periodic string        `json:"periodic,omitempty"`
	Slot     *time.Time    `json:"slot,omitempty"`
}

type progressJSON struct {
	Percent int       `json:"percent"`
	Message string    `json:"message,omitempty"`
	At      time.Time `json:"at"`
}

// encodeExtras returns the extras column of j, NULL when it has none.
func encodeExtras(j *jobs.Job) pgtype.Text {
	if j.Progress == nil && j.Periodic == "" && j.Slot.IsZero() {
		return pgtype.Text{}
	}
	e := jobExtras{Periodic: j.Periodic}
	if !j.Slot.IsZero() {
		e.Slot = &j.Slot
	}
	if p := j.Progress; p != nil {
		e.Progress = &progressJSON{Percent: p.Percent, Message: p.Message, At: p.At}
	}
	b, _ := json.Marshal(e) // strings, ints and times: cannot fail
	return text(string(b), true)
}

func decodeExtras(j *jobs.Job, b []byte) error {
	var e jobExtras
	if err := json.Unmarshal(b, &e); err != nil {
		return fmt.Errorf("postgres: job %s: extras column: %w", j.ID, err)
	}
	j.Periodic = e.Periodic
	if e.Slot != nil {
		j.Slot = e.Slot.UTC()
	}
	if p := e.Progress; p != nil {
		j.Progress = &jobs.ProgressReport{Percent: p.Percent, Message: p.Message, At: p.At.UTC()}
	}
	return nil
}

// scanJob reads a row of jobColumns, and extra columns after them into extra.
func scanJob(row pgx.Row, extra ...any) (*jobs.Job, error) {
	var (
		j                           jobs.Job
		state                       string
		timeout                     int64
		errs, by, extras            []byte
		uniq                        *string
		runAt, created, updated     time.Time
		started, finished, leaseEnd *time.Time
	)
	dst := append([]any{&j.ID, &j.Kind, &j.Queue, &state, &j.Priority, &runAt, &j.Attempt, &j.MaxAttempts, &timeout,
		&j.Payload, &j.Result, &errs, &by, &uniq, &created, &updated, &started, &finished, &leaseEnd, &extras}, extra...)
	if err := row.Scan(dst...); err != nil {
		return nil, err
	}
	j.State, j.Timeout = jobs.State(state), time.Duration(timeout)
	j.RunAt, j.CreatedAt, j.UpdatedAt = runAt.UTC(), created.UTC(), updated.UTC()
	for _, p := range []struct {
		dst **time.Time
		src *time.Time
	}{{&j.StartedAt, started}, {&j.FinishedAt, finished}, {&j.LeaseUntil, leaseEnd}} {
		if p.src != nil {
			t := p.src.UTC()
			*p.dst = &t
		}
	}
	if uniq != nil {
		j.UniqueKey = *uniq
	}
	if len(j.Payload) == 0 {
		j.Payload = nil
	}
	if len(j.Result) == 0 {
		j.Result = nil
	}
	if len(errs) > 0 {
		var es []attemptError
		if err := json.Unmarshal(errs, &es); err != nil {
			return nil, fmt.Errorf("postgres: job %s: errors column: %w", j.ID, err)
		}
		for _, e := range es {
			j.Errors = append(j.Errors, jobs.AttemptError{Attempt: e.Attempt, At: e.At.UTC(), Error: e.Error})
		}
	}
	if len(by) > 0 {
		if err := json.Unmarshal(by, &j.AttemptedBy); err != nil {
			return nil, fmt.Errorf("postgres: job %s: attempted_by column: %w", j.ID, err)
		}
		if len(j.AttemptedBy) == 0 {
			j.AttemptedBy = nil
		}
	}
	if len(extras) > 0 {
		if err := decodeExtras(&j, extras); err != nil {
			return nil, err
		}
	}
	return &j, nil
}

func scanJobs(rows pgx.Rows) ([]*jobs.Job, error) {
	defer rows.Close()
	var out []*jobs.Job
	for rows.Next() {
		j, err := scanJob(rows)
		if err != nil {
			return nil, err
		}
		out = append(out, j)
	}
	return out, rows.Err()
}

// columnSet holds records column by column, the arguments of one multi-row statement (unnest), so
// that a commit writes any number of jobs in one statement.
type columnSet struct {
	id, kind, queue, state         []string
	priority, attempt, maxAttempts []int32
	runAt, created, updated        []time.Time
	timeout                        []int64
	payload, result                [][]byte
	errs, by, uniq, leasedBy, ext  []pgtype.Text
	started, finished, leaseUntil  []pgtype.Timestamptz
}

func (c *columnSet) len() int { return len(c.id) }

// grow makes room for n more records, so that a commit's columns are allocated once rather than
// doubled row by row (a sixth of a J1 run's allocations were those doublings).
func (c *columnSet) grow(n int) {
	for _, s := range []*[]string{&c.id, &c.kind, &c.queue, &c.state} {
		*s = slices.Grow(*s, n)
	}
	for _, s := range []*[]int32{&c.priority, &c.attempt, &c.maxAttempts} {
		*s = slices.Grow(*s, n)
	}
	for _, s := range []*[]time.Time{&c.runAt, &c.created, &c.updated} {
		*s = slices.Grow(*s, n)
	}
	c.timeout = slices.Grow(c.timeout, n)
	c.payload, c.result = slices.Grow(c.payload, n), slices.Grow(c.result, n)
	for _, s := range []*[]pgtype.Text{&c.errs, &c.by, &c.uniq, &c.leasedBy, &c.ext} {
		*s = slices.Grow(*s, n)
	}
	for _, s := range []*[]pgtype.Timestamptz{&c.started, &c.finished, &c.leaseUntil} {
		*s = slices.Grow(*s, n)
	}
}

func text(s string, ok bool) pgtype.Text { return pgtype.Text{String: s, Valid: ok} }

func tstz(t *time.Time) pgtype.Timestamptz {
	if t == nil {
		return pgtype.Timestamptz{}
	}
	return pgtype.Timestamptz{Time: *t, Valid: true}
}

func (c *columnSet) add(j *jobs.Job, leasedBy string) {
	c.id = append(c.id, j.ID)
	c.kind = append(c.kind, j.Kind)
	c.queue = append(c.queue, j.Queue)
	c.state = append(c.state, string(j.State))
	c.priority = append(c.priority, int32(j.Priority))
	c.attempt = append(c.attempt, int32(j.Attempt))
	c.maxAttempts = append(c.maxAttempts, int32(j.MaxAttempts))
	c.runAt = append(c.runAt, j.RunAt)
	c.created = append(c.created, j.CreatedAt)
	c.updated = append(c.updated, j.UpdatedAt)
	c.timeout = append(c.timeout, int64(j.Timeout))
	c.payload = append(c.payload, nilIfEmpty(j.Payload))
	c.result = append(c.result, nilIfEmpty(j.Result))
	if len(j.Errors) > 0 {
		es := make([]attemptError, len(j.Errors))
		for i, e := range j.Errors {
			es[i] = attemptError(e)
		}
		b, _ := json.Marshal(es) // strings and times: cannot fail
		c.errs = append(c.errs, text(string(b), true))
	} else {
		c.errs = append(c.errs, pgtype.Text{})
	}
	if len(j.AttemptedBy) > 0 {
		b, _ := json.Marshal(j.AttemptedBy)
		c.by = append(c.by, text(string(b), true))
	} else {
		c.by = append(c.by, pgtype.Text{})
	}
	c.uniq = append(c.uniq, text(j.UniqueKey, j.UniqueKey != ""))
	c.leasedBy = append(c.leasedBy, text(leasedBy, leasedBy != ""))
	c.started = append(c.started, tstz(j.StartedAt))
	c.finished = append(c.finished, tstz(j.FinishedAt))
	c.leaseUntil = append(c.leaseUntil, tstz(j.LeaseUntil))
	c.ext = append(c.ext, encodeExtras(j))
}

func nilIfEmpty(b []byte) []byte {
	if len(b) == 0 {
		return nil
	}
	return b
}

// unnestSQL turns the columnSet's arguments ($1..$21, in args' order) back into rows.
const unnestSQL = `SELECT u.id::uuid, u.kind, u.queue, u.state, u.priority, u.run_at, u.attempt, u.max_attempts, u.timeout_ns,
	u.payload, u.result, u.errors::jsonb, u.attempted_by::jsonb, u.unique_key, u.created_at, u.updated_at,
	u.started_at, u.finished_at, u.lease_until, u.leased_by, u.extras::jsonb
	FROM unnest($1::text[], $2::text[], $3::text[], $4::text[], $5::int2[], $6::timestamptz[], $7::int4[], $8::int4[],
		$9::int8[], $10::bytea[], $11::bytea[], $12::text[], $13::text[], $14::text[], $15::timestamptz[],
		$16::timestamptz[], $17::timestamptz[], $18::timestamptz[], $19::timestamptz[], $20::text[], $21::text[])
	AS u(id, kind, queue, state, priority, run_at, attempt, max_attempts, timeout_ns, payload, result, errors,
		attempted_by, unique_key, created_at, updated_at, started_at, finished_at, lease_until, leased_by, extras)`

const writeColumns = `id, kind, queue, state, priority, run_at, attempt, max_attempts, timeout_ns, payload, result, errors,
	attempted_by, unique_key, created_at, updated_at, started_at, finished_at, lease_until, leased_by, extras`

func (c *columnSet) args() []any {
	return []any{c.id, c.kind, c.queue, c.state, c.priority, c.runAt, c.attempt, c.maxAttempts, c.timeout,
		c.payload, c.result, c.errs, c.by, c.uniq, c.created, c.updated, c.started, c.finished, c.leaseUntil, c.leasedBy, c.ext}
}

// insertSQL inserts the rows; a job whose unique key a live job holds is skipped (RETURNING
// names those written).
const insertSQL = `INSERT INTO tandem_jobs (` + writeColumns + `) ` + unnestSQL + ` ON CONFLICT DO NOTHING RETURNING id::text`

// updateSQL overwrites the rows (every column but id).
const updateSQL = `UPDATE tandem_jobs AS j SET kind = u.kind, queue = u.queue, state = u.state, priority = u.priority,
	run_at = u.run_at, attempt = u.attempt, max_attempts = u.max_attempts, timeout_ns = u.timeout_ns,
	payload = u.payload, result = u.result, errors = u.errors, attempted_by = u.attempted_by,
	unique_key = u.unique_key, created_at = u.created_at, updated_at = u.updated_at, started_at = u.started_at,
	finished_at = u.finished_at, lease_until = u.lease_until, leased_by = u.leased_by, extras = u.extras
	FROM (` + unnestSQL + `) AS u WHERE j.id = u.id`

func isUUID(s string) bool {
	_, err := uuid.Parse(s)
	return err == nil
}
