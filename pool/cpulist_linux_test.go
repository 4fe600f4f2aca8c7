//go:build linux

package pool

import "testing"

func TestParseCPUList(t *testing.T) {
	got, err := parseCPUList("0-2,5,7-8")
	if err != nil || len(got) != 6 || got[3] != 5 || got[5] != 8 {
		t.Fatalf("%v %v", got, err)
	}
	if _, err := parseCPUList("3-1"); err == nil {
		t.Fatal("bad range accepted")
	}
}
