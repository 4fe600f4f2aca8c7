package postgres

import (
	"context"
	"fmt"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5"

	"github.com/tandem-run/tandem/jobs"
)

// prepareInsert checks the jobs and assigns ids (canonical UUID spelling) and normalizes times.
func prepareInsert(js []*jobs.Job) error {
	for _, j := range js {
		if j.State != jobs.StateReady && j.State != jobs.StateScheduled {
			return fmt.Errorf("postgres: insert: state must be ready or scheduled, got %q", j.State)
		}
		if j.ID == "" {
			u, err := uuid.NewV7()
			if err != nil {
				return fmt.Errorf("postgres: new id: %w", err)
			}
			j.ID = u.String()
		} else if u, err := uuid.Parse(j.ID); err != nil {
			return fmt.Errorf("postgres: insert: bad id %q: %w", j.ID, err)
		} else {
			j.ID = u.String()
		}
	}
	return nil
}

// Insert writes new jobs in one commit, all or nothing (see jobs.Store). Unique keys hold across
// every process sharing the database (a partial unique index). max_pending does too: when this
// limit is at most 10,000 (exactPending), or this process's estimate puts the queue at half its
// limit or more, the count is exact, taken under an advisory lock of the queue that serializes
// such inserts across processes; otherwise the estimate decides (it can be short by what other
// processes inserted in the last PollInterval).
func (s *Store) Insert(ctx context.Context, js []*jobs.Job, maxPending func(queue string) int) (out []*jobs.Job, created []bool, err error) {
	if err := prepareInsert(js); err != nil {
		return nil, nil, err
	}
	out, created = make([]*jobs.Job, len(js)), make([]bool, len(js))
	err = s.execOn(ctx, s.ins, nil, func(t *txn) error { return t.insert(js, maxPending, out, created) })
	if err != nil {
		return nil, nil, err
	}
	return out, created, nil
}

// InsertTx is Insert inside the caller's transaction: the jobs exist, and other processes are
// woken for them, if and only if tx commits. Unique keys and max_pending are checked as Insert
// checks them; a unique key that a job of an uncommitted transaction holds waits for it.
func (s *Store) InsertTx(ctx context.Context, tx pgx.Tx, js []*jobs.Job, maxPending func(queue string) int) (out []*jobs.Job, created []bool, err error) {
	if s.closed.Load() {
		return nil, nil, jobs.ErrStoreClosed
	}
	if err := prepareInsert(js); err != nil {
		return nil, nil, err
	}
	out, created = make([]*jobs.Job, len(js)), make([]bool, len(js))
	t := s.newTxn(ctx, tx)
	t.ownCommits = false
	if err := t.insert(js, maxPending, out, created); err != nil {
		return nil, nil, unfatal(err)
	}
	if err := t.finish(); err != nil {
		return nil, nil, unfatal(err)
	}
	return out, created, nil
}

func unfatal(err error) error {
	if f, ok := err.(fatal); ok {
		return f.err
	}
	return err
}

const liveStates = `('scheduled', 'ready', 'prefetched', 'running', 'retrying')`

// insert is Insert's request. Jobs with a unique key are written at once (INSERT ... ON CONFLICT
// DO NOTHING), since only the database can tell whether another process holds the key; the others
// wait in the cache for the batch's one INSERT.
func (t *txn) insert(js []*jobs.Job, maxPending func(string) int, out []*jobs.Job, created []bool) error {
	var keys []string
	for _, j := range js {
		if j.UniqueKey != "" {
			keys = append(keys, j.UniqueKey)
		}
	}
	existing := map[string]*jobs.Job{}
	if len(keys) > 0 {
		// The batch's own changes first, so the database says what the batch made of the keys.
		if err := t.flush(); err != nil {
			return err
		}
		if err := t.findUnique(keys, existing); err != nil {
			return err
		}
	}
	adds := map[string]int{}
	first := map[string]int{}
	for i, j := range js {
		out[i], created[i] = nil, false
		if j.UniqueKey != "" {
			if e := existing[j.UniqueKey]; e != nil {
				out[i] = e.Clone()
				continue
			}
			if f, dup := first[j.UniqueKey]; dup {
				out[i] = js[f].Clone()
				continue
			}
			first[j.UniqueKey] = i
		}
		adds[j.Queue]++
	}
	if maxPending != nil {
		for q, n := range adds {
			limit := maxPending(q)
			if limit <= 0 {
				continue
			}
			w, err := t.waiting(q, n, limit)
			if err != nil {
				return err
			}
			if w+n > limit {
				return fmt.Errorf("%w: %s holds %d waiting jobs (max_pending %d)", jobs.ErrQueueFull, q, w, limit)
			}
		}
	}
	// Checks done: from here on, only the database can fail.
	if t.newQueues == nil {
		t.newQueues = map[string]bool{}
	}
	var uniq columnSet
	var uniqIdx []int
	for i, j := range js {
		if out[i] != nil {
			continue
		}
		normalize(j)
		j.CreatedAt, j.UpdatedAt = t.now, t.now
		t.newQueues[j.Queue] = true
		out[i], created[i] = j, true
		if j.UniqueKey != "" {
			uniq.add(j, "")
			uniqIdx = append(uniqIdx, i)
			continue
		}
		t.put(j)
		j.UpdatedAt = t.now
	}
	if uniq.len() == 0 {
		return nil
	}
	rows, err := t.tx.Query(t.ctx, insertSQL, uniq.args()...)
	if err != nil {
		return dbErr("insert jobs", err)
	}
	written := map[string]bool{}
	var id string
	_, err = pgx.ForEachRow(rows, []any{&id}, func() error { written[id] = true; return nil })
	if err != nil {
		return dbErr("insert jobs", err)
	}
	var lost []string // keys another transaction took since findUnique
	for _, i := range uniqIdx {
		j := js[i]
		if written[j.ID] {
			t.cache[j.ID] = &entry{written: j, cur: j}
			t.changed[j.ID] = true
			t.transition(nil, j)
		} else {
			lost = append(lost, j.UniqueKey)
		}
	}
	if len(lost) > 0 {
		clear(existing)
		if err := t.findUnique(lost, existing); err != nil {
			return err
		}
		for _, i := range uniqIdx {
			if j := js[i]; !written[j.ID] {
				e := existing[j.UniqueKey]
				if e == nil {
					return dbErr("insert jobs", fmt.Errorf("job %s: unique key %q conflicts, yet no live job holds it", j.ID, j.UniqueKey))
				}
				out[i], created[i] = e.Clone(), false
			}
		}
	}
	return nil
}

// findUnique reads the live jobs holding keys.
func (t *txn) findUnique(keys []string, into map[string]*jobs.Job) error {
	rows, err := t.tx.Query(t.ctx, `SELECT `+jobColumns+` FROM tandem_jobs WHERE unique_key = ANY($1::text[]) AND state IN `+liveStates, keys)
	if err != nil {
		return dbErr("find unique keys", err)
	}
	js, err := scanJobs(rows)
	if err != nil {
		return dbErr("find unique keys", err)
	}
	for _, j := range js {
		into[j.UniqueKey] = j
	}
	return nil
}

// exactPending is the max_pending up to which every check counts exactly: a count of that many
// index entries costs about a millisecond, once per commit and queue, while the estimate can miss
// what other processes inserted in the last PollInterval.
const exactPending = 10_000

// waiting returns the queue's waiting jobs for a max_pending check of n more against limit: the
// estimate when it is well below a large limit, else an exact count under the queue's advisory
// lock, which serializes such checks across processes until the commit.
func (t *txn) waiting(q string, n, limit int) (int, error) {
	est := t.s.est.waiting(q)
	for _, st := range []jobs.State{jobs.StateScheduled, jobs.StateReady, jobs.StateRetrying} {
		est += t.deltas[q][st]
	}
	if limit > exactPending && 2*(est+n) < limit {
		// Jobs put in this batch and not flushed yet are not in deltas: count them too.
		pending := 0
		for _, id := range t.dirty {
			if e := t.cache[id]; e.cur != nil && e.cur.Queue == q && e.cur.State.Waiting() && e.written == nil {
				pending++
			}
		}
		if 2*(est+pending+n) < limit {
			return est + pending, nil
		}
	}
	if err := t.flush(); err != nil {
		return 0, err
	}
	if _, err := t.tx.Exec(t.ctx, `SELECT pg_advisory_xact_lock(hashtext('tandem.pending'), hashtext($1))`, q); err != nil {
		return 0, dbErr("lock queue", err)
	}
	var w int
	err := t.tx.QueryRow(t.ctx, `SELECT count(*) FROM tandem_jobs WHERE queue = $1 AND state IN ('scheduled', 'ready', 'retrying')`, q).Scan(&w)
	if err != nil {
		return 0, dbErr("count waiting jobs", err)
	}
	return w, nil
}
