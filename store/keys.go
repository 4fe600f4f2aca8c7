package store

import (
	"bytes"
	"encoding/binary"
	"fmt"
	"time"

	"github.com/tandem-run/tandem/jobs"

	"github.com/google/uuid"
)

// Keys are big-endian so bbolt's byte order is the order dispatch wants.

const idLen = 16

// idArray is a record key as a value: a map key, and no allocation on the hot paths.
type idArray [idLen]byte

func toIDArray(id []byte) (a idArray) { copy(a[:], id); return a }

// parseID turns a UUID string into its 16 bytes.
func parseID(id string) (idArray, error) {
	u, err := uuid.Parse(id)
	if err != nil {
		return idArray{}, fmt.Errorf("%w: bad id %q", jobs.ErrNotFound, id)
	}
	return idArray(u), nil
}

// idKey is parseID as a slice.
func idKey(id string) ([]byte, error) {
	a, err := parseID(id)
	if err != nil {
		return nil, err
	}
	return a[:], nil
}

func idString(k []byte) string {
	var u uuid.UUID
	copy(u[:], k)
	return u.String()
}

// timeBytes encodes a time as 8 bytes that sort like the times: unix nanoseconds with the sign bit
// flipped, so times before 1970 (and the zero time) sort first instead of last.
func timeBytes(t time.Time) [8]byte {
	var b [8]byte
	binary.BigEndian.PutUint64(b[:], uint64(t.UnixNano())^(1<<63))
	return b
}

func bytesTime(b []byte) time.Time {
	return time.Unix(0, int64(binary.BigEndian.Uint64(b)^(1<<63))).UTC()
}

// timeIDKey is run_at|id (sched), lease_until|id (lease) or finished_at|id (done).
func timeIDKey(t time.Time, id []byte) []byte {
	tb := timeBytes(t)
	return append(tb[:], id...)
}

// readyKey is queue 0x00 (9-priority) run_at id: within a queue, higher priority first, then the
// earliest run_at, then the oldest id. Queue names cannot hold 0x00, so prefixes never overlap.
func readyKey(queue string, priority int, runAt time.Time, id []byte) []byte {
	k := make([]byte, 0, len(queue)+1+1+8+idLen)
	k = append(k, queue...)
	k = append(k, 0, byte(9-clampPriority(priority)))
	tb := timeBytes(runAt)
	k = append(k, tb[:]...)
	return append(k, id...)
}

// parsedReadyKey is a decoded ready key.
type parsedReadyKey struct {
	queue    string
	priority int
	runAt    time.Time
	id       []byte
}

func parseReadyKey(k []byte) (parsedReadyKey, error) {
	i := bytes.IndexByte(k, 0)
	if i < 0 || len(k) != i+1+1+8+idLen || k[i+1] > 9 {
		return parsedReadyKey{}, fmt.Errorf("store: bad ready key %x", k)
	}
	return parsedReadyKey{
		queue:    string(k[:i]),
		priority: 9 - int(k[i+1]),
		runAt:    bytesTime(k[i+2 : i+10]),
		id:       k[i+10:],
	}, nil
}

func queuePrefix(queue string) []byte { return append([]byte(queue), 0) }

func clampPriority(p int) int { return min(max(p, 0), 9) }

// countKey is queue 0x00 state.
func countKey(queue string, s jobs.State) []byte {
	return append(queuePrefix(queue), s...)
}

func parseCountKey(k []byte) (string, jobs.State, bool) {
	i := bytes.IndexByte(k, 0)
	if i < 0 {
		return "", "", false
	}
	return string(k[:i]), jobs.State(k[i+1:]), true
}
