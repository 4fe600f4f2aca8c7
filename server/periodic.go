package server

import (
	"net/http"
	"time"

	"github.com/tandem-run/tandem/jobs"
)

// periodicResponse is one schedule as GET /v1/periodic shows it.
type periodicResponse struct {
	Name      string     `json:"name"`
	Kind      string     `json:"kind"`
	Queue     string     `json:"queue"`
	Priority  int        `json:"priority"`
	Schedule  string     `json:"schedule"`
	Timezone  string     `json:"timezone"`
	CatchUp   string     `json:"catch_up"`
	NextRun   *time.Time `json:"next_run"`    // null: no slot within five years
	LastSlot  *time.Time `json:"last_slot"`   // null: never fired
	LastJobID string     `json:"last_job_id"` // "" when never fired
	LastState string     `json:"last_state"`  // "" when never fired, or the job was deleted
}

// newPeriodicResponse is the one mapping of a schedule's status to the API's answer.
func newPeriodicResponse(p jobs.PeriodicStatus) periodicResponse {
	v := periodicResponse{Name: p.Name, Kind: p.Kind, Queue: p.Queue, Priority: p.Priority, Schedule: p.Schedule,
		Timezone: p.Timezone.String(), CatchUp: string(p.CatchUp), LastJobID: p.LastJobID, LastState: string(p.LastState)}
	if !p.Next.IsZero() {
		t := p.Next.UTC()
		v.NextRun = &t
	}
	if !p.LastSlot.IsZero() {
		t := p.LastSlot.UTC()
		v.LastSlot = &t
	}
	return v
}

func (s *Server) listPeriodic(w http.ResponseWriter, r *http.Request) {
	ps, err := s.opts.Jobs.Periodic(r.Context())
	if err != nil {
		s.writeErr(w, r, err)
		return
	}
	out := make([]periodicResponse, len(ps))
	for i, p := range ps {
		out[i] = newPeriodicResponse(p)
	}
	writeJSON(w, http.StatusOK, map[string]any{"periodic": out})
}
