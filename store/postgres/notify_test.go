package postgres

import "testing"

func TestNotifyPayload(t *testing.T) {
	for _, c := range []struct {
		queue string
		n     int
		want  string
	}{
		{"default", 3, "3:default"},
		{"a:b", 12, "12:a:b"},
		{"default", 0, "default"}, // a resume
	} {
		p := notifyPayload(c.queue, c.n)
		if p != c.want {
			t.Errorf("notifyPayload(%q, %d) = %q, want %q", c.queue, c.n, p, c.want)
		}
		if q, n := parseNotify(p); q != c.queue || n != c.n {
			t.Errorf("parseNotify(%q) = %q, %d, want %q, %d", p, q, n, c.queue, c.n)
		}
	}
	// An older tandem's payload is the queue's name alone, colons and all.
	for _, p := range []string{"default", "a:b", ":x", "0:x", "-2:x"} {
		if q, n := parseNotify(p); q != p || n != 0 {
			t.Errorf("parseNotify(%q) = %q, %d, want the name and 0", p, q, n)
		}
	}
}
