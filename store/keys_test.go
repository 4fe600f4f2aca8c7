package store

import (
	"bytes"
	"testing"
	"time"
)

// FuzzReadyKey: a ready key decodes to what was encoded, and byte order is dispatch order
// (priority descending, then run_at, then id) within a queue.
func FuzzReadyKey(f *testing.F) {
	f.Add("default", 0, int64(0), []byte("0123456789abcdef"), 9, int64(-1), []byte("fedcba9876543210"))
	f.Add("q", 5, int64(1<<62), []byte("aaaaaaaaaaaaaaaa"), 5, int64(1<<62), []byte("aaaaaaaaaaaaaaab"))
	f.Add("mail.high", 9, int64(-5e18), []byte("zzzzzzzzzzzzzzzz"), 0, int64(5e18), []byte("0000000000000000"))
	f.Fuzz(func(t *testing.T, queue string, p1 int, n1 int64, id1 []byte, p2 int, n2 int64, id2 []byte) {
		if bytes.IndexByte([]byte(queue), 0) >= 0 || len(id1) != idLen || len(id2) != idLen {
			return
		}
		t1, t2 := time.Unix(0, n1).UTC(), time.Unix(0, n2).UTC()
		k1, k2 := readyKey(queue, p1, t1, id1), readyKey(queue, p2, t2, id2)
		r, err := parseReadyKey(k1)
		if err != nil || r.queue != queue || r.priority != clampPriority(p1) || !r.runAt.Equal(t1) || !bytes.Equal(r.id, id1) {
			t.Fatalf("round trip: %+v, %v", r, err)
		}
		cp1, cp2 := clampPriority(p1), clampPriority(p2)
		var want int
		switch {
		case cp1 != cp2:
			want = map[bool]int{true: -1, false: 1}[cp1 > cp2]
		case n1 != n2:
			want = map[bool]int{true: -1, false: 1}[n1 < n2]
		default:
			want = bytes.Compare(id1, id2)
		}
		if got := bytes.Compare(k1, k2); got != want {
			t.Fatalf("order of %x and %x = %d, want %d", k1, k2, got, want)
		}
	})
}

// FuzzTimeKey: time keys round-trip and sort like the times.
func FuzzTimeKey(f *testing.F) {
	f.Add(int64(0), int64(1))
	f.Add(int64(-1), int64(1))
	f.Add(int64(-9e18), int64(9e18))
	f.Fuzz(func(t *testing.T, a, b int64) {
		ta, tb := time.Unix(0, a), time.Unix(0, b)
		ka, kb := timeBytes(ta), timeBytes(tb)
		if !bytesTime(ka[:]).Equal(ta) {
			t.Fatalf("round trip of %d", a)
		}
		want := map[bool]int{true: -1, false: 1}[a < b]
		if a == b {
			want = 0
		}
		if got := bytes.Compare(ka[:], kb[:]); got != want {
			t.Fatalf("order %d vs %d: %d", a, b, got)
		}
	})
}

func FuzzParseReadyKey(f *testing.F) {
	f.Add([]byte("default\x00\x09\x80\x00\x00\x00\x00\x00\x00\x000123456789abcdef"))
	f.Add([]byte{})
	f.Fuzz(func(t *testing.T, k []byte) {
		r, err := parseReadyKey(k)
		if err != nil {
			return
		}
		if again := readyKey(r.queue, r.priority, r.runAt, r.id); !bytes.Equal(again, k) {
			t.Fatalf("re-encoding %x gave %x", k, again)
		}
	})
}
