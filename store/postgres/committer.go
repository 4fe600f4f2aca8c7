package postgres

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"time"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5"

	"github.com/tandem-run/tandem/jobs"
)

// request is one unit of work for the committer. fn must do all of its checks before its first
// write (to the batch's cache or the database), so that an error it returns leaves the
// transaction as it found it; an error from the database is marked fatal and fails the batch.
type request struct {
	ids  []string // the records fn reads, loaded for the whole batch in one SELECT before fns run
	fn   func(t *txn) error
	done chan error
}

// fatal marks an error of the database inside a request: the transaction is aborted, and every
// request of the batch fails with it.
type fatal struct{ err error }

func (f fatal) Error() string { return f.err.Error() }
func (f fatal) Unwrap() error { return f.err }

// send queues fn for the committer and returns once it is queued. Requests commit in the order
// they were queued: one queued later lands in the same transaction or a later one.
func (s *Store) send(ctx context.Context, ids []string, fn func(t *txn) error) (<-chan error, error) {
	return s.sendOn(ctx, s.reqs, ids, fn)
}

// sendOn queues fn on one of the two committers: s.reqs for every write but inserts, s.ins for
// inserts. An insert writes new rows only, which no other request can name before its commit, so
// the two need no order between them; and with a connection each, Postgres runs both at once
// (one committer kept a single backend, one core, busy for the whole queue).
func (s *Store) sendOn(ctx context.Context, lane chan *request, ids []string, fn func(t *txn) error) (<-chan error, error) {
	r := &request{ids: ids, fn: fn, done: make(chan error, 1)}
	s.closeMu.RLock()
	defer s.closeMu.RUnlock()
	if s.closed.Load() {
		return nil, jobs.ErrStoreClosed
	}
	select {
	case lane <- r:
		return r.done, nil
	case <-ctx.Done():
		return nil, ctx.Err()
	}
}

// exec sends fn to the committer and waits for its commit. Once sent, the request commits or
// fails as a whole; waiting for it rather than for ctx means a caller never hears "failed" of a
// write that then lands.
func (s *Store) exec(ctx context.Context, ids []string, fn func(t *txn) error) error {
	return s.execOn(ctx, s.reqs, ids, fn)
}

// execOn is exec on one of the committers (sendOn).
func (s *Store) execOn(ctx context.Context, lane chan *request, ids []string, fn func(t *txn) error) error {
	done, err := s.sendOn(ctx, lane, ids, fn)
	if err != nil {
		return err
	}
	return <-done
}

// commitLoop is the committer: it takes the first waiting request, drains the others waiting, up
// to MaxBatch, runs them in one transaction and commits once.
func (s *Store) commitLoop(reqs chan *request) {
	defer s.wg.Done()
	batch := make([]*request, 0, s.opts.MaxBatch)
	for {
		batch = batch[:0]
		select {
		case r := <-reqs:
			batch = append(batch, r)
		case <-s.stop:
			for { // finish what was sent before Close
				select {
				case r := <-reqs:
					batch = append(batch, r)
					if len(batch) == s.opts.MaxBatch {
						s.commit(reqs, batch)
						batch = batch[:0]
					}
				default:
					if len(batch) > 0 {
						s.commit(reqs, batch)
					}
					return
				}
			}
		}
		s.commit(reqs, s.drain(reqs, batch))
	}
}

func (s *Store) drain(reqs chan *request, batch []*request) []*request {
	for len(batch) < s.opts.MaxBatch {
		select {
		case r := <-reqs:
			batch = append(batch, r)
		default:
			return batch
		}
	}
	return batch
}

// commit runs a batch, and the requests that join it while it runs, in one transaction.
func (s *Store) commit(reqs chan *request, batch []*request) {
	start := time.Now()
	ctx, cancel := context.WithTimeout(context.Background(), s.opts.CommitTimeout)
	defer cancel()
	_, results, batch, err := s.run(ctx, reqs, batch)
	if err != nil {
		s.opts.Logger.Error("postgres: commit failed; the batch was rolled back", "requests", len(batch), "err", err)
		for _, r := range batch {
			r.done <- err
		}
		return
	}
	// The estimate was updated (run), so that a caller who saw its write commit sees it counted;
	// OnCommit too.
	if s.opts.OnCommit != nil {
		s.opts.OnCommit(time.Since(start), len(batch))
	}
	for i, r := range batch {
		r.done <- results[i]
	}
}

func (s *Store) run(ctx context.Context, reqs chan *request, batch []*request) (t *txn, results []error, out []*request, err error) {
	out = batch
	tx, err := s.pool.Begin(ctx)
	if err != nil {
		return nil, nil, out, fmt.Errorf("postgres: begin: %w", err)
	}
	defer func() {
		if err != nil {
			_ = tx.Rollback(context.WithoutCancel(ctx))
		}
	}()
	t = s.newTxn(ctx, tx)
	results = make([]error, 0, len(out))
	for i := 0; i < len(out); {
		var ids []string
		for _, r := range out[i:] {
			ids = append(ids, r.ids...)
		}
		if err := t.load(ids); err != nil {
			return nil, nil, out, err
		}
		for ; i < len(out); i++ {
			err := out[i].fn(t)
			if f := (fatal{}); errors.As(err, &f) {
				return nil, nil, out, f.err
			}
			results = append(results, err)
		}
		// Requests sent while this batch ran join it: above all the acknowledgements of jobs it
		// leased, whose records are then written once.
		out = s.drain(reqs, out)
	}
	if err := t.finish(); err != nil {
		return nil, nil, out, err
	}
	// The commit and the estimate's update are one step for a recount, which takes its snapshot
	// between two such steps (recount).
	s.commitMu.Lock()
	defer s.commitMu.Unlock()
	if err := tx.Commit(ctx); err != nil {
		return nil, nil, out, fmt.Errorf("postgres: commit: %w", err)
	}
	s.est.apply(t)
	s.churn.Add(int64(len(t.changed)))
	return t, results, out, nil
}

// entry is one record the transaction read or wrote.
type entry struct {
	written  *jobs.Job // the row as the transaction has it in the database; nil when absent
	cur      *jobs.Job // the row as the batch left it; nil when deleted or absent
	leasedBy string    // leased_by as written
}

// txn is a transaction of the committer (or of a caller, InsertTx) with the records it read and
// changed: changes are kept here and written at flush, many rows per statement.
type txn struct {
	s   *Store
	ctx context.Context
	tx  pgx.Tx
	now time.Time

	cache   map[string]*entry
	dirty   []string        // ids whose cur is not written yet
	changed map[string]bool // ids written in this transaction, which a lease must not take

	deltas     map[string]map[jobs.State]int // per-queue count changes, for the estimate
	notify     map[string]int                // queues that got ready jobs (how many), or were resumed (0)
	paused     map[string]bool               // SetPaused changes
	newQueues  map[string]bool               // queues to register in tandem_queues
	emptied    map[string]bool               // queues a lease found without ready jobs
	emptiedAt  uint64                        // the estimate's epoch when the first of those leases ran
	ownCommits bool                          // false for a caller's transaction (InsertTx)
}

func (s *Store) newTxn(ctx context.Context, tx pgx.Tx) *txn {
	return &txn{s: s, ctx: ctx, tx: tx, now: usec(s.opts.Now()), cache: map[string]*entry{}, changed: map[string]bool{},
		deltas: map[string]map[jobs.State]int{}, notify: map[string]int{}, ownCommits: true}
}

func dbErr(what string, err error) error {
	return fatal{fmt.Errorf("postgres: %s: %w", what, err)}
}

// load reads the records of ids not read yet, locking them (FOR UPDATE) until the commit, in one
// statement. Ids that are not UUIDs or have no record are remembered as absent.
func (t *txn) load(ids []string) error {
	var want []string
	for _, id := range ids {
		if _, ok := t.cache[id]; ok {
			continue
		}
		t.cache[id] = &entry{} // absent unless found
		if _, err := uuid.Parse(id); err == nil {
			want = append(want, id)
		}
	}
	if len(want) == 0 {
		return nil
	}
	// In id order, so that two replicas' commits lock shared rows in the same order.
	rows, err := t.tx.Query(t.ctx, `SELECT `+jobColumns+`, leased_by FROM tandem_jobs WHERE id = ANY($1::uuid[]) ORDER BY tandem_jobs.id FOR UPDATE`, want)
	if err != nil {
		return dbErr("load jobs", err)
	}
	defer rows.Close()
	for rows.Next() {
		var by *string
		j, err := scanJob(rows, &by)
		if err != nil {
			return dbErr("load jobs", err)
		}
		e := t.cache[j.ID]
		if e == nil { // the id was spelled differently (upper case): canonical from here on
			e = &entry{}
			t.cache[j.ID] = e
		}
		e.written, e.cur = j, j
		if by != nil {
			e.leasedBy = *by
		}
	}
	if err := rows.Err(); err != nil {
		return dbErr("load jobs", err)
	}
	return nil
}

// get returns a record as the batch has it: shared with the transaction, clone it to change it.
func (t *txn) get(id string) (*jobs.Job, error) {
	e := t.cache[id]
	if e == nil {
		if err := t.load([]string{id}); err != nil {
			return nil, err
		}
		e = t.cache[id]
	}
	if e.cur == nil {
		return nil, fmt.Errorf("%w: job %s", jobs.ErrNotFound, id)
	}
	return e.cur, nil
}

// modify is the one read-modify-write of a record: fn changes a copy, which is written at flush.
// An error from fn aborts before anything changes.
func (t *txn) modify(id string, fn func(j *jobs.Job) error) (*jobs.Job, error) {
	old, err := t.get(id)
	if err != nil {
		return nil, err
	}
	j := old.Clone()
	if err := fn(j); err != nil {
		return nil, err
	}
	j.ID = old.ID
	t.put(j)
	return j, nil
}

// put records the job's new version, to be written at flush; UpdatedAt is the clock read now (fn
// may have read it later than t.now, and an update must not be before what it records).
func (t *txn) put(j *jobs.Job) {
	normalize(j)
	j.UpdatedAt = usec(t.s.opts.Now())
	e := t.cache[j.ID]
	if e == nil {
		e = &entry{}
		t.cache[j.ID] = e
	}
	if e.cur == e.written {
		t.dirty = append(t.dirty, j.ID)
	}
	e.cur = j
	t.changed[j.ID] = true
}

// remove deletes a record at flush.
func (t *txn) remove(id string) {
	e := t.cache[id]
	if e == nil || e.cur == nil {
		return
	}
	if e.cur == e.written {
		t.dirty = append(t.dirty, id)
	}
	e.cur = nil
	t.changed[id] = true
}

// transition counts a record's change from old to new (either nil) for the estimate and the
// notifications.
func (t *txn) transition(old, new *jobs.Job) {
	if old != nil {
		t.addCount(old.Queue, old.State, -1)
	}
	if new != nil {
		t.addCount(new.Queue, new.State, 1)
		if new.State == jobs.StateReady && (old == nil || old.State != jobs.StateReady || old.Queue != new.Queue) {
			t.notify[new.Queue]++
		}
	}
}

func (t *txn) addCount(q string, st jobs.State, d int) {
	m := t.deltas[q]
	if m == nil {
		m = map[jobs.State]int{}
		t.deltas[q] = m
	}
	m[st] += d
}

// flush writes the changed records: one INSERT, one UPDATE and one DELETE for all of them, sent
// in one round trip.
func (t *txn) flush() error { return t.write(false) }

func (t *txn) write(last bool) error {
	if len(t.dirty) == 0 && len(t.newQueues) == 0 && (!last || len(t.notify) == 0) {
		return nil
	}
	var ins, upd columnSet
	var del []string
	nIns := 0
	for _, id := range t.dirty {
		if e := t.cache[id]; e.cur != nil && e.written == nil {
			nIns++
		}
	}
	ins.grow(nIns)
	upd.grow(len(t.dirty) - nIns)
	for _, id := range t.dirty {
		e := t.cache[id]
		switch {
		case e.cur == e.written:
			continue // removed after it was put, or put twice
		case e.cur == nil:
			if e.written != nil {
				del = append(del, id)
			}
		default:
			by := ""
			if e.cur.State.Leased() {
				by = e.leasedBy
				if e.written == nil || !e.written.State.Leased() || by == "" {
					by = t.s.self
				}
			}
			if e.written == nil {
				ins.add(e.cur, by)
			} else {
				upd.add(e.cur, by)
			}
			e.leasedBy = by
		}
	}
	b := &pgx.Batch{}
	if ins.len() > 0 {
		b.Queue(`INSERT INTO tandem_jobs (`+writeColumns+`) `+unnestSQL, ins.args()...)
	}
	if upd.len() > 0 {
		b.Queue(updateSQL, upd.args()...)
	}
	if len(del) > 0 {
		b.Queue(`DELETE FROM tandem_jobs WHERE id = ANY($1::uuid[])`, del)
	}
	var queues []string
	for q := range t.newQueues {
		if !t.s.est.known(q) {
			queues = append(queues, q)
		}
	}
	if len(queues) > 0 {
		b.Queue(`INSERT INTO tandem_queues (name) SELECT unnest($1::text[]) ON CONFLICT DO NOTHING`, queues)
	}
	for _, id := range t.dirty {
		e := t.cache[id]
		if e.cur != e.written {
			t.transition(e.written, e.cur)
			e.written = e.cur
		}
	}
	t.dirty = t.dirty[:0]
	if last {
		// The notifications, which Postgres delivers at the commit, in the same round trip.
		qs := make([]string, 0, len(t.notify))
		for q, n := range t.notify {
			qs = append(qs, notifyPayload(q, n))
		}
		if len(qs) > 0 {
			b.Queue(`SELECT pg_notify('`+notifyChannel+`', q) FROM unnest($1::text[]) AS q`, qs)
		}
	}
	if b.Len() > 0 {
		if err := t.tx.SendBatch(t.ctx, b).Close(); err != nil {
			return dbErr("write jobs", err)
		}
	}
	return nil
}

// finish flushes and sends the notifications: the transaction's last statements.
func (t *txn) finish() error { return t.write(true) }

// notifyChannel is the LISTEN/NOTIFY channel; the payload is notifyPayload's.
const notifyChannel = "tandem_jobs"

// notifyPayload is a notification's payload: "N:queue" when a commit made N jobs of the queue
// ready, so that a listener adds them to its estimate and leases as many as it has room for (a
// bare "at least one" had each listener lease one job, then wait for a recount); the bare queue
// name when the number is unknown (a resume), which asks the listener to recount.
func notifyPayload(queue string, n int) string {
	if n <= 0 {
		return queue
	}
	return strconv.Itoa(n) + ":" + queue
}

// parseNotify reads a notifyPayload: n is 0 when the payload names no number (a resume, or a
// tandem from before the numbers, whose payload was the queue's name alone).
func parseNotify(payload string) (queue string, n int) {
	if i := strings.IndexByte(payload, ':'); i > 0 {
		if v, err := strconv.Atoi(payload[:i]); err == nil && v > 0 {
			return payload[i+1:], v
		}
	}
	return payload, 0
}

// changedIDs lists the ids this transaction wrote, which a lease leaves to a later commit.
func (t *txn) changedIDs() []string {
	ids := make([]string, 0, len(t.changed))
	for id := range t.changed {
		ids = append(ids, id)
	}
	return ids
}
