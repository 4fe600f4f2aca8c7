package sizing

import (
	"bufio"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path"
	"path/filepath"
	"strconv"
	"strings"
)

// cgroups is where the process's cgroup directories are: one per v1 controller, and the v2 one.
type cgroups struct {
	v1 map[string]cgroupDir // controller -> directory
	v2 *cgroupDir
}

// cgroupDir is the process's cgroup directory and the mount point above which limits are not ours.
type cgroupDir struct {
	dir, mountPoint string
}

func readCgroups(root string) (cgroups, error) {
	cg := cgroups{v1: map[string]cgroupDir{}}
	membership, err := readLines(filepath.Join(root, "proc/self/cgroup"))
	if errors.Is(err, fs.ErrNotExist) {
		return cg, nil // not Linux, or no /proc: no limits known
	}
	if err != nil {
		return cg, err
	}
	mounts, err := readMounts(filepath.Join(root, "proc/self/mountinfo"))
	if err != nil {
		return cg, err
	}
	for _, line := range membership {
		// hierarchy-ID:controller-list:cgroup-path
		parts := strings.SplitN(line, ":", 3)
		if len(parts) != 3 {
			continue
		}
		controllers, cgPath := parts[1], parts[2]
		if parts[0] == "0" && controllers == "" {
			for _, m := range mounts {
				if m.fsType == "cgroup2" {
					if d, ok := m.locate(root, cgPath); ok {
						cg.v2 = &d
						break
					}
				}
			}
			continue
		}
		for _, ctl := range strings.Split(controllers, ",") {
			for _, m := range mounts {
				if m.fsType == "cgroup" && m.hasOption(ctl) {
					if d, ok := m.locate(root, cgPath); ok {
						cg.v1[ctl] = d
					}
					break
				}
			}
		}
	}
	return cg, nil
}

// mount is one line of mountinfo.
type mount struct {
	root, mountPoint, fsType string
	superOptions             []string
}

func (m mount) hasOption(o string) bool {
	for _, s := range m.superOptions {
		if s == o {
			return true
		}
	}
	return false
}

// locate maps a cgroup path from /proc/self/cgroup to a directory on this mount. In a container
// the mount's root is the container's own cgroup ("/kubepods/pod1/c1") and the process's path is
// relative to the host, so the mount root is cut from its front.
func (m mount) locate(root, cgPath string) (cgroupDir, bool) {
	rel := cgPath
	if m.root != "/" {
		if rel != m.root && !strings.HasPrefix(rel, m.root+"/") {
			// The process's cgroup lies outside what is mounted (a cgroup namespace shows "/").
			if cgPath != "/" {
				return cgroupDir{}, false
			}
			rel = m.root
		}
		rel = strings.TrimPrefix(rel, m.root)
	}
	mp := filepath.Join(root, m.mountPoint)
	return cgroupDir{dir: filepath.Join(mp, path.Clean("/"+rel)), mountPoint: mp}, true
}

func readMounts(file string) ([]mount, error) {
	lines, err := readLines(file)
	if err != nil {
		return nil, err
	}
	var out []mount
	for _, line := range lines {
		// id parent major:minor root mount-point options [optional...] - fstype source super-options
		fields := strings.Fields(line)
		sep := -1
		for i, f := range fields {
			if f == "-" {
				sep = i
				break
			}
		}
		if sep < 5 || len(fields) < sep+4 {
			continue
		}
		out = append(out, mount{
			root: unescapeMount(fields[3]), mountPoint: unescapeMount(fields[4]),
			fsType: fields[sep+1], superOptions: strings.Split(fields[sep+3], ","),
		})
	}
	return out, nil
}

// unescapeMount undoes mountinfo's octal escapes (\040 is a space).
func unescapeMount(s string) string {
	if !strings.Contains(s, `\`) {
		return s
	}
	var b strings.Builder
	for i := 0; i < len(s); i++ {
		if s[i] == '\\' && i+3 < len(s) {
			if n, err := strconv.ParseUint(s[i+1:i+4], 8, 8); err == nil {
				b.WriteByte(byte(n))
				i += 3
				continue
			}
		}
		b.WriteByte(s[i])
	}
	return b.String()
}

// walkUp calls fn for dir and each parent up to the mount point, stopping at the first error.
func (d cgroupDir) walkUp(fn func(dir string) error) error {
	dir := d.dir
	for {
		if err := fn(dir); err != nil {
			return err
		}
		if dir == d.mountPoint || !strings.HasPrefix(dir, d.mountPoint) {
			return nil
		}
		dir = filepath.Dir(dir)
	}
}

// cpuQuota returns the smallest CPU quota on the path from the process's cgroup to the root, in
// cores (0 = none), preferring v2 when the process is in a v2 cgroup with the cpu controller.
func (cg cgroups) cpuQuota() (float64, int, error) {
	best := 0.0
	take := func(q float64) {
		if q > 0 && (best == 0 || q < best) {
			best = q
		}
	}
	if d, ok := cg.v1["cpu"]; ok {
		err := d.walkUp(func(dir string) error {
			quota, err := readInt(filepath.Join(dir, "cpu.cfs_quota_us"))
			if err != nil || quota <= 0 {
				return ignoreMissing(err)
			}
			period, err := readInt(filepath.Join(dir, "cpu.cfs_period_us"))
			if err != nil || period <= 0 {
				return ignoreMissing(err)
			}
			take(float64(quota) / float64(period))
			return nil
		})
		// A controller belongs to one hierarchy: when cpu is bound to v1, v2 holds no CPU limit.
		return best, 1, err
	}
	if cg.v2 != nil {
		err := cg.v2.walkUp(func(dir string) error {
			file := filepath.Join(dir, "cpu.max")
			b, err := os.ReadFile(file)
			if err != nil {
				return ignoreMissing(err)
			}
			f := strings.Fields(string(b))
			if len(f) == 0 || len(f) > 2 {
				return fmt.Errorf("%s: unexpected content %q", file, b)
			}
			if f[0] == "max" {
				return nil
			}
			quota, err1 := strconv.ParseInt(f[0], 10, 64)
			period := int64(100000)
			var err2 error
			if len(f) == 2 {
				period, err2 = strconv.ParseInt(f[1], 10, 64)
			}
			if err1 != nil || err2 != nil || quota <= 0 || period <= 0 {
				return fmt.Errorf("%s: unexpected content %q", file, b)
			}
			take(float64(quota) / float64(period))
			return nil
		})
		if err != nil {
			return 0, 2, err
		}
		return best, 2, nil
	}
	return 0, 0, nil
}

// v1NoLimit is above any real memory limit: v1 reports "no limit" as a page-aligned 2^63-1.
const v1NoLimit = 1 << 62

func (cg cgroups) memoryLimit() (int64, error) {
	var best int64
	take := func(n int64) {
		if n > 0 && n < v1NoLimit && (best == 0 || n < best) {
			best = n
		}
	}
	if d, ok := cg.v1["memory"]; ok {
		err := d.walkUp(func(dir string) error {
			n, err := readInt(filepath.Join(dir, "memory.limit_in_bytes"))
			if err != nil {
				return ignoreMissing(err)
			}
			take(n)
			return nil
		})
		if err != nil {
			return 0, err
		}
	}
	if cg.v2 != nil {
		err := cg.v2.walkUp(func(dir string) error {
			file := filepath.Join(dir, "memory.max")
			b, err := os.ReadFile(file)
			if err != nil {
				return ignoreMissing(err)
			}
			s := strings.TrimSpace(string(b))
			if s == "max" {
				return nil
			}
			n, err := strconv.ParseInt(s, 10, 64)
			if err != nil {
				return fmt.Errorf("%s: unexpected content %q", file, s)
			}
			take(n)
			return nil
		})
		if err != nil {
			return 0, err
		}
	}
	return best, nil
}

func readInt(file string) (int64, error) {
	b, err := os.ReadFile(file)
	if err != nil {
		return 0, err
	}
	n, err := strconv.ParseInt(strings.TrimSpace(string(b)), 10, 64)
	if err != nil {
		return 0, fmt.Errorf("%s: unexpected content %q", file, strings.TrimSpace(string(b)))
	}
	return n, nil
}

func ignoreMissing(err error) error {
	if errors.Is(err, fs.ErrNotExist) {
		return nil
	}
	return err
}

func readLines(file string) ([]string, error) {
	f, err := os.Open(file)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	var lines []string
	sc := bufio.NewScanner(f)
	sc.Buffer(make([]byte, 64<<10), 1<<20)
	for sc.Scan() {
		if line := strings.TrimSpace(sc.Text()); line != "" {
			lines = append(lines, line)
		}
	}
	if err := sc.Err(); err != nil {
		return nil, fmt.Errorf("%s: %w", file, err)
	}
	return lines, nil
}
