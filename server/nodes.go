package server

import (
	"net/http"
	"time"

	"github.com/tandem-run/tandem/jobs"
)

// The replicas sharing the job store, as GET /admin/nodes shows them: on a Postgres store every
// tandem whose heartbeat is recent, on a bbolt file this process alone (shared false).

// nodeResponse is one node as the admin API shows it.
type nodeResponse struct {
	Name        string                      `json:"name"`
	Version     string                      `json:"version"`
	StartedAt   time.Time                   `json:"started_at"`
	HeartbeatAt time.Time                   `json:"heartbeat_at"`
	Leader      bool                        `json:"leader"`
	Running     int                         `json:"running"`
	Pools       map[string]nodePoolResponse `json:"pools"`
}

// nodePoolResponse is the size and use of one of a node's pools.
type nodePoolResponse struct {
	Size    int `json:"size"`
	Running int `json:"running"`
}

// nodesResponse is GET /admin/nodes's answer.
type nodesResponse struct {
	Nodes  []nodeResponse `json:"nodes"`
	Shared bool           `json:"shared"`
}

// newNodeResponse is the one mapping of a node to the API's answer.
func newNodeResponse(n jobs.Node) nodeResponse {
	v := nodeResponse{Name: n.Name, Version: n.Version, StartedAt: n.StartedAt.UTC(), HeartbeatAt: n.Heartbeat.UTC(),
		Leader: n.Leader, Running: n.Running, Pools: make(map[string]nodePoolResponse, len(n.Pools))}
	for name, p := range n.Pools {
		v.Pools[name] = nodePoolResponse{Size: p.Size, Running: p.Running}
	}
	return v
}

func (s *Server) listNodes(w http.ResponseWriter, r *http.Request) {
	ns, err := s.opts.Jobs.Nodes(r.Context())
	if err != nil {
		s.writeErr(w, r, err)
		return
	}
	out := nodesResponse{Nodes: make([]nodeResponse, len(ns)), Shared: s.opts.Jobs.Shared()}
	for i, n := range ns {
		out.Nodes[i] = newNodeResponse(n)
	}
	writeJSON(w, http.StatusOK, out)
}
