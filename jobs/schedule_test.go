package jobs_test

import (
	"errors"
	"testing"
	"time"
	_ "time/tzdata" // the zones below, whatever the machine has installed

	"github.com/tandem-run/tandem/jobs"
)

func utc(s string) time.Time {
	t, err := time.Parse(time.RFC3339Nano, s)
	if err != nil {
		panic(err)
	}
	return t.UTC()
}

// TestScheduleSlots: Next is the first slot after an instant, Prev the latest at or before it,
// Between counts the slots strictly between two: for cron fields, descriptors, time zones (the
// schedule's, or CRON_TZ's), and @every, whose slots are multiples of its period since the epoch.
func TestScheduleSlots(t *testing.T) {
	paris, _ := time.LoadLocation("Europe/Paris")
	cases := []struct {
		expr       string
		loc        *time.Location
		at         string
		next, prev string
	}{
		{"*/15 * * * *", nil, "2026-03-04T10:07:30Z", "2026-03-04T10:15:00Z", "2026-03-04T10:00:00Z"},
		{"*/15 * * * *", nil, "2026-03-04T10:15:00Z", "2026-03-04T10:30:00Z", "2026-03-04T10:15:00Z"}, // at a slot: Prev is it
		{"@hourly", nil, "2026-03-04T10:07:30Z", "2026-03-04T11:00:00Z", "2026-03-04T10:00:00Z"},
		{"@daily", nil, "2026-03-04T10:07:30Z", "2026-03-05T00:00:00Z", "2026-03-04T00:00:00Z"},
		{"0 9 * * 1", nil, "2026-03-04T10:00:00Z", "2026-03-09T09:00:00Z", "2026-03-02T09:00:00Z"}, // Mondays
		{"0 0 1 1 *", nil, "2026-03-04T10:00:00Z", "2027-01-01T00:00:00Z", "2026-01-01T00:00:00Z"}, // yearly: a long look back
		// 09:00 in Paris is 08:00Z in winter and 07:00Z in summer.
		{"0 9 * * *", paris, "2026-01-10T12:00:00Z", "2026-01-11T08:00:00Z", "2026-01-10T08:00:00Z"},
		{"0 9 * * *", paris, "2026-07-10T12:00:00Z", "2026-07-11T07:00:00Z", "2026-07-10T07:00:00Z"},
		{"CRON_TZ=America/New_York 0 9 * * *", paris, "2026-01-10T12:00:00Z", "2026-01-10T14:00:00Z", "2026-01-09T14:00:00Z"},
		{"@every 30s", nil, "2026-03-04T10:07:45.5Z", "2026-03-04T10:08:00Z", "2026-03-04T10:07:30Z"},
		{"@every 1s", nil, "2026-03-04T10:07:45Z", "2026-03-04T10:07:46Z", "2026-03-04T10:07:45Z"},
		// 7 s does not divide a minute: the slots are still the multiples of 7 s since 1970.
		{"@every 7s", nil, "2026-03-04T10:07:45Z", "2026-03-04T10:07:49Z", "2026-03-04T10:07:42Z"},    // unix 1772618865 = 7k+3
		{"@every 24h", paris, "2026-03-04T10:07:45Z", "2026-03-05T00:00:00Z", "2026-03-04T00:00:00Z"}, // UTC days
	}
	for _, c := range cases {
		s, err := jobs.ParseSchedule(c.expr, c.loc)
		if err != nil {
			t.Fatalf("%q: %v", c.expr, err)
		}
		at := utc(c.at)
		if got := s.Next(at); !got.Equal(utc(c.next)) {
			t.Errorf("%q Next(%s) = %s, want %s", c.expr, c.at, got, c.next)
		}
		if got := s.Prev(at); !got.Equal(utc(c.prev)) {
			t.Errorf("%q Prev(%s) = %s, want %s", c.expr, c.at, got, c.prev)
		}
	}
	every7, _ := jobs.ParseSchedule("@every 7s", nil)
	if u := every7.Next(utc("2030-06-01T00:00:00Z")).Unix(); u%7 != 0 {
		t.Errorf("@every 7s slot at unix %d: not a multiple of 7", u)
	}
	for _, c := range []struct {
		expr     string
		from, to string
		want     int
	}{
		{"@every 1s", "2026-01-01T00:00:00Z", "2026-01-01T00:00:05Z", 4},
		{"@every 1s", "2026-01-01T00:00:00Z", "2026-01-01T00:00:01Z", 0},
		{"@every 1s", "2026-01-01T00:00:00.5Z", "2026-01-01T00:00:03.5Z", 3},
		{"@every 1s", "2026-01-01T00:00:05Z", "2026-01-01T00:00:00Z", 0},
		{"*/15 * * * *", "2026-01-01T00:00:00Z", "2026-01-01T01:00:00Z", 3},
	} {
		s, _ := jobs.ParseSchedule(c.expr, nil)
		if got := s.Between(utc(c.from), utc(c.to)); got != c.want {
			t.Errorf("%q Between(%s, %s) = %d, want %d", c.expr, c.from, c.to, got, c.want)
		}
	}
}

// TestScheduleRefused: what is not a schedule is an error wrapping ErrBadSchedule, never a panic.
func TestScheduleRefused(t *testing.T) {
	for _, expr := range []string{"", "* * * *", "* * * * * *", "61 * * * *", "@sometimes", "@every", "@every 10ms",
		"@every -1s", "CRON_TZ=Nowhere/Land * * * * *", "CRON_TZ=Europe/Paris", "every minute"} {
		if _, err := jobs.ParseSchedule(expr, nil); !errors.Is(err, jobs.ErrBadSchedule) {
			t.Errorf("ParseSchedule(%q) = %v, want ErrBadSchedule", expr, err)
		}
	}
}
