package apiv1

import (
	"encoding/json"
	"time"

	"github.com/modelplane/modelplane"
)

// NodeV1 is API.md's node object.
type NodeV1 struct {
	ID              string               `json:"id"`
	Name            string               `json:"name"`
	State           modelplane.NodeState `json:"state"`
	AgentURL        string               `json:"agent_url"`
	GPUProfile      string               `json:"gpu_profile"`
	LastHeartbeatAt *time.Time           `json:"last_heartbeat_at"`
	GPUs            []GPUV1              `json:"gpus"`
	// Replicas are the node's replicas as its agent last reported them.
	Replicas json.RawMessage `json:"replicas"`
	// Isolation is how the node keeps model servers away from its agent and each other.
	Isolation NodeIsolationV1 `json:"isolation"`
}

// IsolationUnknown is the isolation mode of a node whose agent does not report one.
const IsolationUnknown = "unknown"

// NodeIsolationV1 is how a node keeps model servers away from its agent and from each other:
// mode "replica-users" (each process replica runs as a user of its own, drawn from uids),
// "none" (they run as the agent's user; warning says why and what they can reach), or
// "unknown".
type NodeIsolationV1 struct {
	Mode    string `json:"mode"`
	UIDs    string `json:"uids,omitempty"`
	Warning string `json:"warning,omitempty"`
}

// GPUV1 is one GPU of a node.
type GPUV1 struct {
	UUID              string  `json:"uuid"`
	Index             int     `json:"index"`
	Name              string  `json:"name"`
	MemoryTotalBytes  int64   `json:"memory_total_bytes"`
	MemoryUsedBytes   int64   `json:"memory_used_bytes"`
	MIGMode           bool    `json:"mig_mode"`
	Healthy           bool    `json:"healthy"`
	UnhealthyReason   string  `json:"unhealthy_reason"`
	AssignedReplicaID *string `json:"assigned_replica_id"`
}

// NodeListV1 answers GET /v1/nodes.
type NodeListV1 struct {
	Nodes []NodeV1 `json:"nodes"`
}
