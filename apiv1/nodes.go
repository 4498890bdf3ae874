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
