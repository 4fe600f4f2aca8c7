//go:build linux

package pool

import (
	"fmt"
	"os"
	"runtime"
	"strconv"
	"strings"

	"golang.org/x/sys/unix"
)

// PinThread locks the calling goroutine to its OS thread for good (runtime.LockOSThread, never
// undone: when the goroutine exits Go destroys the thread, so a pinned thread never returns to the
// scheduler to run other goroutines) and restricts that thread to cpu.
func PinThread(cpu int) error {
	runtime.LockOSThread()
	var set unix.CPUSet
	set.Set(cpu)
	if err := unix.SchedSetaffinity(0, &set); err != nil {
		return fmt.Errorf("sched_setaffinity cpu %d: %w", cpu, err)
	}
	return nil
}

// setAffinity restricts the calling thread to cpus.
func setAffinity(cpus []int) error {
	var set unix.CPUSet
	for _, c := range cpus {
		set.Set(c)
	}
	if err := unix.SchedSetaffinity(0, &set); err != nil {
		return fmt.Errorf("sched_setaffinity %v: %w", cpus, err)
	}
	return nil
}

// Gettid returns the calling thread's id.
func Gettid() int { return unix.Gettid() }

// ThreadAffinity reads the CPUs a thread of this process may run on from
// /proc/self/task/<tid>/status (Cpus_allowed_list), the kernel's own account.
func ThreadAffinity(tid int) ([]int, error) {
	file := "/proc/self/task/" + strconv.Itoa(tid) + "/status"
	b, err := os.ReadFile(file)
	if err != nil {
		return nil, err
	}
	for line := range strings.Lines(string(b)) {
		if v, ok := strings.CutPrefix(line, "Cpus_allowed_list:"); ok {
			return parseCPUList(strings.TrimSpace(v))
		}
	}
	return nil, fmt.Errorf("%s: no Cpus_allowed_list", file)
}

// parseCPUList parses the kernel's list format: "0-3,5,7-8".
func parseCPUList(s string) ([]int, error) {
	var cpus []int
	for part := range strings.SplitSeq(s, ",") {
		lo, hi, isRange := strings.Cut(part, "-")
		a, err := strconv.Atoi(lo)
		if err != nil {
			return nil, fmt.Errorf("cpu list %q: %w", s, err)
		}
		b := a
		if isRange {
			if b, err = strconv.Atoi(hi); err != nil || b < a {
				return nil, fmt.Errorf("cpu list %q: bad range %q", s, part)
			}
		}
		for c := a; c <= b; c++ {
			cpus = append(cpus, c)
		}
	}
	return cpus, nil
}
