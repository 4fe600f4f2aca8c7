package store

import (
	"bytes"
	"context"
	"fmt"
	"time"

	"github.com/tandem-run/tandem/jobs"

	"github.com/google/uuid"
	bolt "go.etcd.io/bbolt"
)

// periodicPrefix starts a periodic schedule's mark in the meta bucket: "periodic:" name ->
// slot (8 bytes, timeBytes) and job id (16 bytes). The meta bucket, not a bucket of its own, so
// that files written before periodic jobs need no new bucket and older tandems ignore the keys.
const periodicPrefix = "periodic:"

// FirePeriodic inserts j and records slot as the schedule's mark in one transaction, when slot is
// after the recorded mark or there is none; otherwise it writes nothing (see jobs.Store). The
// check and both writes happen in the committer, one request after another, so two fires of a
// slot in one batch or in two create one job. j must have no unique key.
func (s *Store) FirePeriodic(ctx context.Context, name string, slot time.Time, j *jobs.Job) (created bool, prev time.Time, err error) {
	if name == "" {
		return false, time.Time{}, fmt.Errorf("store: fire periodic: empty name")
	}
	if j.State != jobs.StateReady && j.State != jobs.StateScheduled {
		return false, time.Time{}, fmt.Errorf("store: fire periodic %s: state must be ready or scheduled, got %q", name, j.State)
	}
	if j.UniqueKey != "" {
		return false, time.Time{}, fmt.Errorf("store: fire periodic %s: a periodic job has no unique key", name)
	}
	if j.ID == "" {
		u, err := uuid.NewV7()
		if err != nil {
			return false, time.Time{}, fmt.Errorf("store: new id: %w", err)
		}
		j.ID = u.String()
	}
	key, err := parseID(j.ID)
	if err != nil {
		return false, time.Time{}, fmt.Errorf("store: fire periodic %s: %w", name, err)
	}
	k := []byte(periodicPrefix + name)
	err = s.exec(ctx, func(t *txn) error {
		created, prev = false, time.Time{}
		meta := t.bucket(bucketMeta)
		v := meta.Get(k)
		if v != nil {
			m, err := decodeMark(v)
			if err != nil {
				return corrupt(s.opts.Path, "periodic mark %q: %v", name, err)
			}
			prev = m.Slot
			if !slot.After(prev) {
				return nil
			}
		}
		tb := timeBytes(slot)
		if err := meta.Put(k, append(tb[:], key[:]...)); err != nil {
			return fmt.Errorf("%w: periodic mark: %w", errWrite, err)
		}
		j.CreatedAt = t.now
		if err := t.put(nil, j); err != nil {
			return fmt.Errorf("%w: %w", errWrite, err)
		}
		created = true
		return nil
	})
	if err != nil {
		return false, time.Time{}, err
	}
	return created, prev, nil
}

// PeriodicMarks returns every schedule's mark.
func (s *Store) PeriodicMarks(ctx context.Context) (map[string]jobs.PeriodicMark, error) {
	out := map[string]jobs.PeriodicMark{}
	err := s.view(func(tx *bolt.Tx) error {
		c := tx.Bucket(bucketMeta).Cursor()
		p := []byte(periodicPrefix)
		for k, v := c.Seek(p); k != nil && bytes.HasPrefix(k, p); k, v = c.Next() {
			m, err := decodeMark(v)
			if err != nil {
				return corrupt(s.opts.Path, "periodic mark %q: %v", k[len(p):], err)
			}
			out[string(k[len(p):])] = m
		}
		return nil
	})
	if err != nil {
		return nil, err
	}
	return out, nil
}

func decodeMark(v []byte) (jobs.PeriodicMark, error) {
	if len(v) != 8+idLen {
		return jobs.PeriodicMark{}, fmt.Errorf("%d bytes, want %d", len(v), 8+idLen)
	}
	return jobs.PeriodicMark{Slot: bytesTime(v[:8]), JobID: idString(v[8:])}, nil
}
