package store

import (
	"encoding/binary"
	"encoding/json"
	"fmt"
	"maps"
	"sync"
	"sync/atomic"
	"time"

	"github.com/tandem-run/tandem/jobs"
)

// recordV2 is the compact binary record: length-prefixed strings and bytes, varints, times as
// Unix nanoseconds. Every lease and acknowledgement decodes and re-encodes a record inside the
// committer's transaction, the one goroutine all writes wait on; JSON took about 3 µs each way
// per job there, this takes a tenth of that, and the commit cycle shrank with it (see the
// figures in the commit that introduced it).
const recordV2 = 2

func encodeV2(j *jobs.Job) []byte {
	b := make([]byte, 0, 160+len(j.Payload)+len(j.Result))
	b = append(b, recordV2)
	b = appendString(b, j.ID)
	b = appendString(b, j.Kind)
	b = appendString(b, j.Queue)
	b = appendString(b, string(j.Payload))
	b = binary.AppendVarint(b, int64(j.Priority))
	b = appendTime(b, j.RunAt)
	b = binary.AppendVarint(b, int64(j.Attempt))
	b = binary.AppendVarint(b, int64(j.MaxAttempts))
	b = binary.AppendVarint(b, int64(j.Timeout))
	b = appendString(b, string(j.State))
	b = binary.AppendUvarint(b, uint64(len(j.Errors)))
	for _, e := range j.Errors {
		b = binary.AppendVarint(b, int64(e.Attempt))
		b = appendTime(b, e.At)
		b = appendString(b, e.Error)
	}
	b = appendString(b, string(j.Result))
	b = appendString(b, j.UniqueKey)
	b = appendTime(b, j.CreatedAt)
	b = appendTime(b, j.UpdatedAt)
	for _, t := range []*time.Time{j.StartedAt, j.FinishedAt, j.LeaseUntil} {
		if t == nil {
			b = append(b, 0)
		} else {
			b = append(b, 1)
			b = binary.AppendVarint(b, t.UnixNano())
		}
	}
	// Added after the first release of recordV2, each section absent when it and every later one
	// is empty, so older records decode: attempted_by, then the extras (progress and periodic).
	extras := j.Progress != nil || j.Periodic != "" || !j.Slot.IsZero()
	if len(j.AttemptedBy) > 0 || extras {
		b = binary.AppendUvarint(b, uint64(len(j.AttemptedBy)))
		for _, n := range j.AttemptedBy {
			b = appendString(b, n)
		}
	}
	if extras {
		b = appendString(b, j.Periodic)
		b = appendTime(b, j.Slot)
		if p := j.Progress; p == nil {
			b = append(b, 0)
		} else {
			b = append(b, 1)
			b = binary.AppendVarint(b, int64(p.Percent))
			b = appendString(b, p.Message)
			b = appendTime(b, p.At)
		}
	}
	return b
}

func appendString(b []byte, s string) []byte {
	b = binary.AppendUvarint(b, uint64(len(s)))
	return append(b, s...)
}

// appendTime stores the zero time as a lone 0 so it decodes back to the zero time.
func appendTime(b []byte, t time.Time) []byte {
	if t.IsZero() {
		return append(b, 0)
	}
	b = append(b, 1)
	return binary.AppendVarint(b, t.UnixNano())
}

// reader decodes a record, remembering the first error so callers check once.
type reader struct {
	b   []byte
	err error
}

func (r *reader) fail(what string) {
	if r.err == nil {
		r.err = fmt.Errorf("%w: truncated or malformed %s", errBadRecord, what)
	}
}

func (r *reader) varint(what string) int64 {
	v, n := binary.Varint(r.b)
	if n <= 0 {
		r.fail(what)
		return 0
	}
	r.b = r.b[n:]
	return v
}

func (r *reader) bytes(what string) []byte {
	l, n := binary.Uvarint(r.b)
	if n <= 0 || l > uint64(len(r.b)-n) {
		r.fail(what)
		return nil
	}
	v := r.b[n : n+int(l)]
	r.b = r.b[n+int(l):]
	return v
}

func (r *reader) str(what string) string { return string(r.bytes(what)) }

// stateOf returns one of the State constants without allocating, or a copy of an unknown one.
func stateOf(b []byte) jobs.State {
	for _, st := range jobs.States {
		if string(st) == string(b) {
			return st
		}
	}
	return jobs.State(b)
}

// interned holds the kind and queue names decoded so far (a handful in practice), so that decoding
// a record does not allocate them again. Copy on write: decoders on any goroutine read it without
// a lock; past maxInterned names, new ones are simply allocated.
var (
	interned atomic.Pointer[map[string]string]
	internMu sync.Mutex
)

const maxInterned = 1024

func intern(b []byte) string {
	if m := interned.Load(); m != nil {
		if s, ok := (*m)[string(b)]; ok {
			return s
		}
	}
	s := string(b)
	internMu.Lock()
	defer internMu.Unlock()
	old := interned.Load()
	if old != nil && len(*old) >= maxInterned {
		return s
	}
	m := map[string]string{s: s}
	if old != nil {
		maps.Copy(m, *old)
	}
	interned.Store(&m)
	return s
}

func (r *reader) flag(what string) bool {
	if len(r.b) == 0 || r.b[0] > 1 {
		r.fail(what)
		return false
	}
	v := r.b[0] == 1
	r.b = r.b[1:]
	return v
}

func (r *reader) time(what string) time.Time {
	if !r.flag(what) {
		return time.Time{}
	}
	return time.Unix(0, r.varint(what)).UTC()
}

func decodeV2(b []byte) (*jobs.Job, error) {
	r := &reader{b: b}
	j := &jobs.Job{}
	j.ID = r.str("id")
	j.Kind = intern(r.bytes("kind"))
	j.Queue = intern(r.bytes("queue"))
	if p := r.bytes("payload"); len(p) > 0 {
		j.Payload = json.RawMessage(append([]byte(nil), p...))
	}
	j.Priority = int(r.varint("priority"))
	j.RunAt = r.time("run_at")
	j.Attempt = int(r.varint("attempt"))
	j.MaxAttempts = int(r.varint("max_attempts"))
	j.Timeout = time.Duration(r.varint("timeout"))
	j.State = stateOf(r.bytes("state"))
	n, k := binary.Uvarint(r.b)
	if k <= 0 || n > uint64(len(r.b)) { // each error takes at least one byte
		r.fail("errors")
	} else {
		r.b = r.b[k:]
		for range n {
			e := jobs.AttemptError{Attempt: int(r.varint("error attempt"))}
			e.At = r.time("error time")
			e.Error = r.str("error")
			j.Errors = append(j.Errors, e)
		}
	}
	if res := r.bytes("result"); len(res) > 0 {
		j.Result = json.RawMessage(append([]byte(nil), res...))
	}
	j.UniqueKey = r.str("unique_key")
	j.CreatedAt = r.time("created_at")
	j.UpdatedAt = r.time("updated_at")
	for _, p := range []**time.Time{&j.StartedAt, &j.FinishedAt, &j.LeaseUntil} {
		if r.flag("optional time") {
			t := time.Unix(0, r.varint("optional time")).UTC()
			*p = &t
		}
	}
	if r.err == nil && len(r.b) != 0 {
		n, k := binary.Uvarint(r.b)
		// An empty attempted_by is written only when the extras follow it.
		if k <= 0 || n > uint64(len(r.b)) || (n == 0 && len(r.b) == k) {
			r.fail("attempted_by")
		} else if r.b = r.b[k:]; n > 0 {
			j.AttemptedBy = make([]string, 0, n)
			for range n {
				j.AttemptedBy = append(j.AttemptedBy, intern(r.bytes("attempted_by")))
			}
		}
	}
	if r.err == nil && len(r.b) != 0 {
		j.Periodic = intern(r.bytes("periodic"))
		j.Slot = r.time("slot")
		if r.flag("progress") {
			p := &jobs.ProgressReport{Percent: int(r.varint("progress percent"))}
			p.Message = r.str("progress message")
			p.At = r.time("progress time")
			j.Progress = p
		}
		if j.Periodic == "" && j.Slot.IsZero() && j.Progress == nil {
			r.fail("extras") // written only when one is set: one encoding per record
		}
	}
	if r.err == nil && len(r.b) != 0 {
		r.fail("record end")
	}
	if r.err != nil {
		return nil, r.err
	}
	return j, nil
}
