package tandemtest

import (
	"testing"
	"time"
)

// WaitFor polls cond every millisecond until it holds, and fails the test if 5 s pass first.
func WaitFor(t testing.TB, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(time.Millisecond)
	}
}
