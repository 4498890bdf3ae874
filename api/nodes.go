package api

import (
	"encoding/json"
	"errors"
	"net/http"
	"strings"

	"github.com/labstack/echo/v4"

	"github.com/modelplane/modelplane"
	"github.com/modelplane/modelplane/agent/agentproto"
	"github.com/modelplane/modelplane/apiv1"
	"github.com/modelplane/modelplane/nodeauth"
	"github.com/modelplane/modelplane/store"
)

// nodeIdentityKey is where requireNodeToken leaves who presented the token.
const nodeIdentityKey = "modelplane.node_identity"

// requireNodeToken guards the routes agents call: a node's own token, or the cluster's
// shared node token when the API has one. The handlers then check the node named in the
// request against it (nodeMayActAs).
func (s *Server) requireNodeToken(next echo.HandlerFunc) echo.HandlerFunc {
	return func(c echo.Context) error {
		token, _ := strings.CutPrefix(c.Request().Header.Get(echo.HeaderAuthorization), "Bearer ")
		id, err := nodeauth.Authenticate(c.Request().Context(), s.deps.DB, s.deps.NodeToken, strings.TrimSpace(token))
		if errors.Is(err, nodeauth.ErrUnauthorized) {
			return Errorf(http.StatusUnauthorized, "missing, wrong or revoked node token")
		}
		if err != nil {
			return err
		}
		c.Set(nodeIdentityKey, id)
		return next(c)
	}
}

// nodeMayActAs says whether the token of the request may speak for node name.
func (s *Server) nodeMayActAs(c echo.Context, name string) (bool, error) {
	id, _ := c.Get(nodeIdentityKey).(nodeauth.Identity)
	return nodeauth.MayActAs(c.Request().Context(), s.deps.DB, id, name)
}

// agents are the API's clients of node agents.
func (s *Server) agents() nodeauth.Agents {
	return nodeauth.Agents{DB: s.deps.DB, Shared: s.deps.NodeToken, Key: s.deps.SecretsKey, TLS: s.deps.AgentTLS}
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
	// A node's own token reports for that node alone; the shared one for nodes without one.
	if ok, err := s.nodeMayActAs(c, hb.Name); err != nil {
		return err
	} else if !ok {
		return Errorf(http.StatusUnauthorized, "this node token may not report as node %q", hb.Name)
	}
	replicas, err := json.Marshal(hb.Replicas)
	if err != nil {
		return err
	}
	id, _ := c.Get(nodeIdentityKey).(nodeauth.Identity)
	rep := store.NodeReport{
		Name: hb.Name, AgentID: hb.AgentID, AgentURL: hb.AgentURL, GPUProfile: hb.Inventory.GPUProfile,
		TokenSHA256: id.Sum, Replicas: replicas,
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
