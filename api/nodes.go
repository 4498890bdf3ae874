package api

import (
	"crypto/sha256"
	"crypto/subtle"
	"encoding/json"
	"net/http"
	"strings"

	"github.com/labstack/echo/v4"

	"github.com/modelplane/modelplane"
	"github.com/modelplane/modelplane/agent/agentproto"
	"github.com/modelplane/modelplane/apiv1"
	"github.com/modelplane/modelplane/store"
)

// requireNodeToken guards the routes agents call with the cluster's node token.
func (s *Server) requireNodeToken(next echo.HandlerFunc) echo.HandlerFunc {
	return func(c echo.Context) error {
		if s.deps.NodeToken == "" {
			return Errorf(http.StatusServiceUnavailable, "node registration is disabled: the API has no node token")
		}
		token, ok := strings.CutPrefix(c.Request().Header.Get(echo.HeaderAuthorization), "Bearer ")
		if !ok || subtle.ConstantTimeCompare([]byte(token), []byte(s.deps.NodeToken)) != 1 {
			return Errorf(http.StatusUnauthorized, "missing or wrong node token")
		}
		return next(c)
	}
}

// nodeHeartbeat records an agent's report; the first one registers the node.
func (s *Server) nodeHeartbeat(c echo.Context) error {
	var hb agentproto.Heartbeat
	if err := c.Bind(&hb); err != nil {
		return Errorf(http.StatusBadRequest, "invalid heartbeat: %v", err)
	}
	switch {
	case hb.Name == "" || len(hb.Name) > 255:
		return Errorf(http.StatusBadRequest, "name: required, at most 255 characters")
	case !strings.HasPrefix(hb.AgentURL, "http://") && !strings.HasPrefix(hb.AgentURL, "https://"):
		return Errorf(http.StatusBadRequest, "agent_url: must be an http(s) URL")
	}
	iso := hb.Inventory.Isolation
	switch {
	case iso.Mode != "" && iso.Mode != agentproto.IsolationReplicaUsers && iso.Mode != agentproto.IsolationNone:
		return Errorf(http.StatusBadRequest, "inventory.isolation.mode: must be %s or %s", agentproto.IsolationReplicaUsers, agentproto.IsolationNone)
	case len(iso.Warning) > 4096 || len(iso.UIDs) > 64:
		return Errorf(http.StatusBadRequest, "inventory.isolation: warning at most 4096 characters, uids at most 64")
	}
	replicas, err := json.Marshal(hb.Replicas)
	if err != nil {
		return err
	}
	sum := sha256.Sum256([]byte(s.deps.NodeToken))
	rep := store.NodeReport{
		Name: hb.Name, AgentID: hb.AgentID, AgentURL: hb.AgentURL, GPUProfile: hb.Inventory.GPUProfile,
		TokenSHA256: sum[:], Replicas: replicas,
		Isolation: store.NodeIsolation{Mode: iso.Mode, UIDs: iso.UIDs, Warning: iso.Warning},
	}
	// The agent folds a MIG instance's replica onto its parent GPU; which instance a replica
	// holds comes from the replicas' own GPU lists.
	holders := map[string]string{}
	for _, r := range hb.Replicas {
		if r.State.Live() {
			for _, u := range r.GPUUUIDs {
				holders[u] = r.ID
			}
		}
	}
	for _, g := range hb.Inventory.GPUs {
		var assigned *string
		if g.AssignedReplicaID != "" {
			assigned = &g.AssignedReplicaID
		}
		sg := store.GPU{
			UUID: g.UUID, Index: g.Index, Name: g.Name, Architecture: g.Architecture,
			ComputeCapability: g.ComputeCapability, PCIBusID: g.PCIBusID,
			MemoryTotalBytes: int64(g.MemoryTotalBytes), MemoryUsedBytes: int64(g.MemoryUsedBytes),
			MIGMode: g.MIGMode, Healthy: g.Healthy, UnhealthyReason: g.UnhealthyReason,
			UtilizationPercent: g.UtilizationPercent, TemperatureC: g.TemperatureC, AssignedReplicaID: assigned,
		}
		for _, mi := range g.MIGInstances {
			var holder *string
			if id, ok := holders[mi.UUID]; ok {
				holder = &id
			}
			sg.MIGInstances = append(sg.MIGInstances, store.GPU{UUID: mi.UUID, MIGProfile: mi.Profile,
				MemoryTotalBytes: int64(mi.MemoryBytes), AssignedReplicaID: holder})
		}
		rep.GPUs = append(rep.GPUs, sg)
	}
	n, err := store.RecordHeartbeat(c.Request().Context(), s.deps.DB, rep)
	if err != nil {
		return err
	}
	return c.JSON(http.StatusOK, map[string]string{"node_id": n.ID, "state": string(n.State)})
}

func (s *Server) listNodes(c echo.Context) error {
	if !principal(c).IsAdmin {
		return Errorf(http.StatusForbidden, "listing nodes needs an admin key")
	}
	nodes, err := store.ListNodes(c.Request().Context(), s.deps.DB)
	if err != nil {
		return err
	}
	out := apiv1.NodeListV1{Nodes: make([]apiv1.NodeV1, 0, len(nodes))}
	for _, n := range nodes {
		v := apiv1.NodeV1{ID: n.ID, Name: n.Name, State: modelplane.NodeState(n.State), AgentURL: n.AgentURL,
			GPUProfile: n.GPUProfile, LastHeartbeatAt: n.LastHeartbeatAt, GPUs: []apiv1.GPUV1{}, Replicas: n.Replicas,
			Isolation: apiv1.NodeIsolationV1{Mode: n.NodeIsolation.Mode, UIDs: n.NodeIsolation.UIDs, Warning: n.NodeIsolation.Warning}}
		if v.Isolation.Mode == "" {
			v.Isolation.Mode = apiv1.IsolationUnknown
		}
		for _, g := range n.GPUs {
			v.GPUs = append(v.GPUs, apiv1.GPUV1{UUID: g.UUID, Index: g.Index, Name: g.Name,
				MemoryTotalBytes: g.MemoryTotalBytes, MemoryUsedBytes: g.MemoryUsedBytes, MIGMode: g.MIGMode,
				Healthy: g.Healthy, UnhealthyReason: g.UnhealthyReason, AssignedReplicaID: g.AssignedReplicaID})
		}
		out.Nodes = append(out.Nodes, v)
	}
	return c.JSON(http.StatusOK, out)
}
