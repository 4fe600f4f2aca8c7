package main

import (
	"encoding/json"
	"errors"
	"fmt"
	"regexp"
	"time"

	"github.com/tandem-run/tandem/jobs"
)

// PeriodicConfig is one entry of jobs.periodic: a schedule that enqueues a job at each slot
// (jobs.Periodic, which main builds from it).
type PeriodicConfig struct {
	Name     string `yaml:"name"`
	Kind     string `yaml:"kind"`
	Schedule string `yaml:"schedule"`
	Queue    string `yaml:"queue,omitempty"`
	Payload  any    `yaml:"payload,omitempty"` // as the file gave it; PayloadJSON is its JSON
	Priority int    `yaml:"priority,omitempty"`
	Timezone string `yaml:"timezone,omitempty"`
	CatchUp  string `yaml:"catch_up,omitempty"`

	PayloadJSON json.RawMessage `yaml:"-"`
	Location    *time.Location  `yaml:"-"`
}

// fieldError is a parser's error about one field inside a structured value: loadConfig reports
// it under the key and Sub (jobs.periodic[1].schedule), with the field's own value.
type fieldError struct {
	Sub   string // appended to the option's key: "[1].schedule"
	Value any    // the field's value; nil when it is missing
	Msg   string
}

func (e *fieldError) Error() string { return e.Sub + ": " + e.Msg }

var periodicName = regexp.MustCompile(`^[a-zA-Z0-9_.:-]{1,128}$`)

// periodicValue parses jobs.periodic: a list of {name, kind, schedule, queue, payload, priority,
// timezone, catch_up}. The schedule and the time zone are checked here (jobs.ParseSchedule), so
// a bad cron expression stops check-config and serve alike; the kind and the queue are checked
// when serve registers the schedule, against what it registered.
func periodicValue(v any) (any, error) {
	var items []any
	switch x := v.(type) {
	case []any:
		items = x
	case nil:
	default:
		return nil, fmt.Errorf("must be a list of {name, kind, schedule, ...}")
	}
	out := make([]PeriodicConfig, 0, len(items))
	seen := map[string]int{}
	for i, item := range items {
		at := func(field string, value any, format string, args ...any) error {
			return &fieldError{Sub: fmt.Sprintf("[%d].%s", i, field), Value: value, Msg: fmt.Sprintf(format, args...)}
		}
		m, ok := item.(map[string]any)
		if !ok {
			return nil, &fieldError{Sub: fmt.Sprintf("[%d]", i), Msg: "must be a map with name, kind and schedule"}
		}
		var p PeriodicConfig
		strs := map[string]*string{"name": &p.Name, "kind": &p.Kind, "schedule": &p.Schedule, "queue": &p.Queue,
			"timezone": &p.Timezone, "catch_up": &p.CatchUp}
		for f, fv := range m {
			if dst, ok := strs[f]; ok {
				s, isString := fv.(string)
				if !isString {
					return nil, at(f, fv, "must be a string")
				}
				*dst = s
				continue
			}
			switch f {
			case "priority":
				n, err := toInt(fv)
				if err != nil || n < 0 || n > 9 {
					return nil, at(f, fv, "must be an integer from 0 to 9")
				}
				p.Priority = n
			case "payload":
				b, err := json.Marshal(fv)
				if err != nil {
					return nil, at(f, nil, "must be JSON-like YAML: %v", err)
				}
				p.Payload, p.PayloadJSON = fv, b
			default:
				return nil, at(f, nil, "unknown key (name, kind, schedule, queue, payload, priority, timezone, catch_up)")
			}
		}
		switch {
		case !periodicName.MatchString(p.Name):
			return nil, at("name", nilIfEmpty(p.Name), "required: 1 to 128 letters, digits, '_', '.', ':' or '-'")
		case p.Kind == "":
			return nil, at("kind", nil, "required: the kind of job to enqueue")
		case p.Schedule == "":
			return nil, at("schedule", nil, `required: a 5-field cron expression ("*/5 * * * *"), @hourly, @daily ... or @every 30s`)
		case p.CatchUp != "" && p.CatchUp != string(jobs.CatchUpOne) && p.CatchUp != string(jobs.CatchUpNone):
			return nil, at("catch_up", p.CatchUp, "must be one (fire the latest slot missed while down) or none")
		}
		if first, dup := seen[p.Name]; dup {
			return nil, at("name", p.Name, "already names jobs.periodic[%d]", first)
		}
		seen[p.Name] = i
		p.Location = time.UTC
		if p.Timezone != "" {
			loc, err := time.LoadLocation(p.Timezone)
			if err != nil {
				return nil, at("timezone", p.Timezone, "not a time zone (an IANA name like Europe/Paris): %v", err)
			}
			p.Location = loc
		}
		if _, err := jobs.ParseSchedule(p.Schedule, p.Location); err != nil {
			return nil, at("schedule", p.Schedule, "%v", err)
		}
		out = append(out, p)
	}
	return out, nil
}

func nilIfEmpty(s string) any {
	if s == "" {
		return nil
	}
	return s
}

// registerPeriodic registers the configured schedules on the runtime, after its kinds. An
// unknown kind or queue is a *ConfigError naming the entry.
func registerPeriodic(rt *jobs.Runtime, ps []PeriodicConfig) error {
	for i, p := range ps {
		err := rt.RegisterPeriodic(jobs.Periodic{Name: p.Name, Kind: p.Kind, Schedule: p.Schedule, Queue: p.Queue,
			Payload: p.PayloadJSON, Priority: p.Priority, Timezone: p.Location, CatchUp: jobs.CatchUp(p.CatchUp)})
		if err == nil {
			continue
		}
		key := fmt.Sprintf("jobs.periodic[%d]", i)
		var verr *jobs.ValidationError
		switch {
		case errors.Is(err, jobs.ErrUnknownKind):
			return &ConfigError{Key: key + ".kind", Value: p.Kind, Allowed: fmt.Sprintf("no such kind (registered: %v)", rt.Kinds())}
		case errors.As(err, &verr) && len(verr.Fields) == 1:
			for f, msg := range verr.Fields {
				return &ConfigError{Key: key + "." + f, Allowed: msg}
			}
		}
		return &ConfigError{Key: key, Value: p.Name, Allowed: err.Error()}
	}
	return nil
}
