package jobs

import (
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/robfig/cron/v3"
)

// ErrBadSchedule means a periodic job's schedule does not parse: not a 5-field cron expression, a
// descriptor (@hourly, @daily ...) or @every <duration>. ParseSchedule's errors wrap it.
var ErrBadSchedule = errors.New("bad schedule")

// Schedule is a parsed periodic schedule: the instants (slots) at which it is due. Slots depend
// on the expression and the time zone alone, never on when a process started, so every replica
// and every restart sees the same ones.
type Schedule struct {
	expr  string
	loc   *time.Location
	every time.Duration // @every d: slots are the multiples of d since the Unix epoch
	spec  cron.Schedule // the rest: robfig/cron's 5-field schedule (minute resolution)
}

// maxSlotSearch bounds the search for the latest slot before an instant: robfig/cron gives up on a
// schedule with no slot in five years (Feb 30), and so does Prev.
const maxSlotSearch = 5 * 366 * 24 * time.Hour

// ParseSchedule parses a schedule in loc (nil: UTC): a 5-field cron expression ("*/5 * * * *"),
// optionally prefixed by CRON_TZ=<zone>, which then wins over loc; a descriptor (@yearly,
// @monthly, @weekly, @daily, @hourly); or "@every <duration>" of at least 1s. The parsing is
// robfig/cron's. @every is not robfig's delay from process start: its slots are aligned to the
// Unix epoch (slot k is at k*d), so processes agree on them; @every 24h is then 00:00 UTC, and
// loc does not move it.
func ParseSchedule(expr string, loc *time.Location) (_ Schedule, err error) {
	if loc == nil {
		loc = time.UTC
	}
	expr = strings.TrimSpace(expr)
	s := Schedule{expr: expr, loc: loc}
	defer func() {
		// robfig/cron v3.0.1 slices out of range on "CRON_TZ=Europe/Paris" with no fields after it.
		if v := recover(); v != nil {
			err = fmt.Errorf("%w: %q: %v", ErrBadSchedule, expr, v)
		}
	}()
	parsed, err := cron.ParseStandard(expr)
	if err != nil {
		return Schedule{}, fmt.Errorf("%w: %q: %w", ErrBadSchedule, expr, err)
	}
	switch p := parsed.(type) {
	case cron.ConstantDelaySchedule:
		if d, _ := time.ParseDuration(strings.TrimSpace(strings.TrimPrefix(expr, "@every"))); d < time.Second {
			return Schedule{}, fmt.Errorf("%w: %q: @every needs at least 1s", ErrBadSchedule, expr)
		}
		s.every = p.Delay
	case *cron.SpecSchedule:
		if p.Location == time.Local { // no CRON_TZ: the schedule's zone
			p.Location = loc
		}
		s.loc = p.Location
		s.spec = p
	default:
		return Schedule{}, fmt.Errorf("%w: %q: unsupported schedule type %T", ErrBadSchedule, expr, parsed)
	}
	return s, nil
}

// String returns the expression as given.
func (s Schedule) String() string { return s.expr }

// Location is the zone the schedule's fields are read in.
func (s Schedule) Location() *time.Location { return s.loc }

// Next returns the first slot strictly after t, in UTC; zero when there is none within five years.
func (s Schedule) Next(t time.Time) time.Time {
	if s.every > 0 {
		n := t.UnixNano()
		d := int64(s.every)
		k := n / d
		if n < 0 && n%d != 0 {
			k-- // floor, for instants before 1970
		}
		return time.Unix(0, (k+1)*d).UTC()
	}
	n := s.spec.Next(t)
	if n.IsZero() {
		return n
	}
	return n.UTC()
}

// Prev returns the latest slot at or before t, in UTC; zero when there is none within five years.
func (s Schedule) Prev(t time.Time) time.Time {
	if s.every > 0 {
		return s.Next(t.Add(-s.every))
	}
	// robfig/cron only goes forward: look back over a window that widens until it holds a slot,
	// then walk forward to the last one. Each window is 32 times the last, so the walk takes at
	// most about 32 steps per window of the schedule's own spacing.
	for w := time.Minute; w <= maxSlotSearch*32; w *= 32 {
		from := t.Add(-min(w, maxSlotSearch))
		n := s.Next(from)
		if n.IsZero() || n.After(t) {
			if w >= maxSlotSearch {
				return time.Time{}
			}
			continue
		}
		for {
			after := s.Next(n)
			if after.IsZero() || after.After(t) {
				return n
			}
			n = after
		}
	}
	return time.Time{}
}

// maxCounted bounds Between's count of a cron schedule's slots (a walk): past it, it reports the bound.
const maxCounted = 100_000

// Between counts the slots strictly between a and b (at most maxCounted for a cron expression).
func (s Schedule) Between(a, b time.Time) int {
	if !a.Before(b) {
		return 0
	}
	if s.every > 0 {
		first := s.Next(a)
		if !first.Before(b) {
			return 0
		}
		return int((b.Sub(first)-1)/s.every) + 1
	}
	n := 0
	for t := s.Next(a); !t.IsZero() && t.Before(b) && n < maxCounted; t = s.Next(t) {
		n++
	}
	return n
}
