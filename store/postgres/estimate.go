package postgres

import (
	"context"
	"sync"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/tandem-run/tandem/jobs"
)

// estimate is the store's in-memory view of the waiting jobs (scheduled, ready, retrying) per
// queue and of the paused queues, behind Ready, Paused and the max_pending fast path. Three things
// keep it current: this process's own commits (exact), notifications of the others' (a queue got
// ready jobs: at least one, and a recount soon), and a recount every PollInterval that replaces it
// with the database's figures, so an estimate wrong for any reason is right again within one.
type estimate struct {
	mu     sync.RWMutex
	counts map[string]map[jobs.State]int
	paused map[string]bool
	queues map[string]bool // queues registered in tandem_queues

	recounting  bool                            // a recount is under way: commits are logged
	since       []map[string]map[jobs.State]int // deltas committed since it began
	sincePaused map[string]bool                 // pauses and resumes committed since it began, the last of each queue
	sinceQueues map[string]bool                 // queues registered since it began
	// epoch counts the commits that added ready jobs. A lease that found a queue empty says so
	// only if none landed since it looked: inserts commit on a committer of their own, and one
	// that landed meanwhile would otherwise be zeroed, leaving its jobs unleased until a recount.
	epoch uint64
}

func (e *estimate) epochNow() uint64 {
	e.mu.RLock()
	defer e.mu.RUnlock()
	return e.epoch
}

func (e *estimate) init() {
	e.counts, e.paused, e.queues = map[string]map[jobs.State]int{}, map[string]bool{}, map[string]bool{}
}

func (e *estimate) countsFor(q string) map[jobs.State]int {
	m := e.counts[q]
	if m == nil {
		m = map[jobs.State]int{}
		e.counts[q] = m
	}
	return m
}

// apply adds a committed transaction's changes.
func (e *estimate) apply(t *txn) {
	e.mu.Lock()
	defer e.mu.Unlock()
	for q, m := range t.deltas {
		c := e.countsFor(q)
		for st, d := range m {
			if st.Waiting() {
				c[st] += d
			}
		}
	}
	if e.recounting && len(t.deltas) > 0 {
		e.since = append(e.since, t.deltas)
	}
	if t.emptied != nil && t.emptiedAt == e.epoch {
		for q := range t.emptied {
			e.countsFor(q)[jobs.StateReady] = 0
		}
	}
	for _, m := range t.deltas {
		if m[jobs.StateReady] > 0 {
			e.epoch++
			break
		}
	}
	for q, p := range t.paused {
		if p {
			e.paused[q] = true
		} else {
			delete(e.paused, q)
		}
		if e.recounting {
			e.sincePaused[q] = p
		}
	}
	for q := range t.newQueues {
		e.queues[q] = true
		if e.recounting {
			e.sinceQueues[q] = true
		}
	}
}

func (e *estimate) known(q string) bool {
	e.mu.RLock()
	defer e.mu.RUnlock()
	return e.queues[q]
}

func (e *estimate) ready(q string) int {
	e.mu.RLock()
	defer e.mu.RUnlock()
	return max(0, e.counts[q][jobs.StateReady])
}

func (e *estimate) waiting(q string) int {
	e.mu.RLock()
	defer e.mu.RUnlock()
	c := e.counts[q]
	return max(0, c[jobs.StateScheduled]+c[jobs.StateReady]+c[jobs.StateRetrying])
}

func (e *estimate) isPaused(q string) bool {
	e.mu.RLock()
	defer e.mu.RUnlock()
	return e.paused[q]
}

// notified records that another process made n jobs of q ready (0: at least one, how many
// unknown). The count can only overstate the ready jobs (others lease too): a lease that finds
// fewer says the queue is empty, and the next recount puts it right.
func (e *estimate) notified(q string, n int) {
	e.mu.Lock()
	c := e.countsFor(q)
	if n > 0 {
		c[jobs.StateReady] += n
	} else {
		c[jobs.StateReady] = max(c[jobs.StateReady], 1)
	}
	e.epoch++
	e.mu.Unlock()
}

// Ready returns the estimate of the queue's ready jobs: cheap, never blocking.
func (s *Store) Ready(queue string) int { return s.est.ready(queue) }

// Paused reports whether the queue is paused, from the estimate: cheap, never blocking.
func (s *Store) Paused(queue string) bool { return s.est.isPaused(queue) }

// recount replaces the estimate with the database's figures (plus what this process committed
// while it counted), and signals Changes when a queue got ready jobs or was resumed.
func (s *Store) recount(ctx context.Context) error {
	// The counts are read in a REPEATABLE READ transaction whose snapshot is taken under commitMu,
	// so each of this process's commits is either in the snapshot or in since, never both.
	tx, err := s.pool.BeginTx(ctx, pgx.TxOptions{IsoLevel: pgx.RepeatableRead, AccessMode: pgx.ReadOnly})
	if err != nil {
		return err
	}
	defer func() { _ = tx.Rollback(context.WithoutCancel(ctx)) }()
	s.commitMu.Lock()
	_, err = tx.Exec(ctx, `SELECT 1`)
	if err == nil {
		s.est.mu.Lock()
		s.est.recounting, s.est.since = true, nil
		s.est.sincePaused, s.est.sinceQueues = map[string]bool{}, map[string]bool{}
		s.est.mu.Unlock()
	}
	s.commitMu.Unlock()
	if err != nil {
		return err
	}
	defer func() {
		s.est.mu.Lock()
		s.est.recounting, s.est.since = false, nil
		s.est.mu.Unlock()
	}()
	counts := map[string]map[jobs.State]int{}
	paused, queues := map[string]bool{}, map[string]bool{}
	b := &pgx.Batch{}
	b.Queue(`SELECT queue, state, count(*) FROM tandem_jobs WHERE state IN ('scheduled', 'ready', 'retrying') GROUP BY 1, 2`).
		Query(func(rows pgx.Rows) error {
			var q, st string
			var n int
			_, err := pgx.ForEachRow(rows, []any{&q, &st, &n}, func() error {
				m := counts[q]
				if m == nil {
					m = map[jobs.State]int{}
					counts[q] = m
				}
				m[jobs.State(st)] = n
				return nil
			})
			return err
		})
	b.Queue(`SELECT name, paused FROM tandem_queues`).Query(func(rows pgx.Rows) error {
		var q string
		var p bool
		_, err := pgx.ForEachRow(rows, []any{&q, &p}, func() error {
			queues[q] = true
			if p {
				paused[q] = true
			}
			return nil
		})
		return err
	})
	if err := tx.SendBatch(ctx, b).Close(); err != nil {
		return err
	}
	s.est.mu.Lock()
	for _, d := range s.est.since {
		for q, m := range d {
			for st, n := range m {
				if st.Waiting() {
					c := counts[q]
					if c == nil {
						c = map[jobs.State]int{}
						counts[q] = c
					}
					c[st] += n
				}
			}
		}
	}
	// A pause or resume committed after the snapshot is newer than what it read.
	for q, p := range s.est.sincePaused {
		if p {
			paused[q] = true
		} else {
			delete(paused, q)
		}
	}
	for q := range s.est.sinceQueues {
		queues[q] = true
	}
	more := false
	for q, m := range counts {
		if m[jobs.StateReady] > 0 && s.est.counts[q][jobs.StateReady] <= 0 {
			more = true
		}
	}
	for q := range s.est.paused {
		if !paused[q] {
			more = true
		}
	}
	s.est.counts, s.est.paused, s.est.queues = counts, paused, queues
	s.est.mu.Unlock()
	if more {
		s.signal()
	}
	return nil
}

// askRecount asks the poller to recount soon.
func (s *Store) askRecount() {
	select {
	case s.refresh <- struct{}{}:
	default:
	}
}

// poll recounts every PollInterval, and when asked (a notification, a reconnection), at most
// every PollInterval/10 so a stream of notifications costs a bounded number of counts.
func (s *Store) poll(ctx context.Context) {
	defer s.wg.Done()
	tick := time.NewTicker(s.opts.PollInterval)
	defer tick.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-tick.C:
		case <-s.refresh:
		}
		if err := s.recount(ctx); err != nil && ctx.Err() == nil {
			s.opts.Logger.Debug("postgres: recount", "err", err)
		}
		s.vacuum(ctx)
		select {
		case <-ctx.Done():
			return
		case <-time.After(s.opts.PollInterval / 10):
		}
	}
}

// vacuum runs VACUUM on the jobs table once this process wrote VacuumEvery rows since the last
// (Options.VacuumEvery says why). It cannot run inside a transaction: a plain Exec without
// arguments, which pgx sends as a simple query.
func (s *Store) vacuum(ctx context.Context) {
	if s.opts.VacuumEvery < 0 || s.churn.Load() < int64(s.opts.VacuumEvery) {
		return
	}
	s.churn.Store(0)
	ctx, cancel := context.WithTimeout(ctx, time.Minute)
	defer cancel()
	if _, err := s.pool.Exec(ctx, `VACUUM (SKIP_LOCKED) tandem_jobs`); err != nil && ctx.Err() == nil {
		s.opts.Logger.Warn("postgres: vacuum tandem_jobs", "err", err)
	}
}

// listen holds the LISTEN connection: it wakes this process when another commits ready jobs or
// resumes a queue, and reconnects after losing the connection, then asks for a recount, which
// covers the notifications sent while it was down.
func (s *Store) listen(ctx context.Context) {
	defer s.wg.Done()
	backoff := 100 * time.Millisecond
	up := true // warn once per outage, not at every retry
	for ctx.Err() == nil {
		err := s.listenOnce(ctx, func() { backoff, up = 100*time.Millisecond, true })
		if ctx.Err() != nil {
			return
		}
		if up {
			s.opts.Logger.Warn("postgres: LISTEN connection lost; reconnecting", "err", err)
		}
		up = false
		select {
		case <-ctx.Done():
			return
		case <-time.After(backoff):
		}
		backoff = min(2*backoff, s.opts.PollInterval, 5*time.Second)
	}
}

func (s *Store) listenOnce(ctx context.Context, connected func()) error {
	conn, err := pgx.ConnectConfig(ctx, s.cfg.ConnConfig.Copy())
	if err != nil {
		return err
	}
	defer conn.Close(context.WithoutCancel(ctx))
	if _, err := conn.Exec(ctx, `LISTEN `+notifyChannel); err != nil {
		return err
	}
	connected()
	s.askRecount()
	for {
		n, err := conn.WaitForNotification(ctx)
		if err != nil {
			return err
		}
		s.pidMu.Lock()
		own := s.pids[n.PID]
		s.pidMu.Unlock()
		if own {
			continue // our own commit: the estimate has it already
		}
		q, count := parseNotify(n.Payload)
		s.est.notified(q, count)
		if count == 0 {
			// A resume, or an older tandem's notification: recount to learn how many wait. A
			// numbered one needs none; every replica's insert would otherwise cost each of the
			// others a count of the waiting jobs (7 ms at a backlog of thousands).
			s.askRecount()
		}
		s.signal()
	}
}
