package agentproto

import "github.com/modelplane/modelplane/nvml"

// InventoryResponse is GET /v1/inventory.
type InventoryResponse struct {
	Node              string    `json:"node"`
	AgentID           string    `json:"agent_id"`
	GPUProfile        string    `json:"gpu_profile"`
	DriverVersion     string    `json:"driver_version"`
	CUDADriverVersion string    `json:"cuda_driver_version"`
	GPUs              []GPUInfo `json:"gpus"`
	Isolation         Isolation `json:"isolation"`
}

// GPUInfo is a GPU with the replica it is assigned to.
type GPUInfo struct {
	nvml.GPU
	AssignedReplicaID string `json:"assigned_replica_id"`
}

// Isolation modes.
const (
	// IsolationReplicaUsers: each process replica runs as a user of its own, which can reach
	// its own directory and nothing of the agent's or of other replicas.
	IsolationReplicaUsers = "replica-users"
	// IsolationNone: process replicas run as the agent's own user.
	IsolationNone = "none"
)

// Isolation says how a node keeps model servers away from the agent and from each other.
type Isolation struct {
	// Mode is IsolationReplicaUsers or IsolationNone.
	Mode string `json:"mode"`
	// UIDs is the range of user IDs process replicas run as, with IsolationReplicaUsers.
	UIDs string `json:"uids,omitempty"`
	// Warning says, with IsolationNone, why the node cannot isolate and what model code on it
	// can reach.
	Warning string `json:"warning,omitempty"`
}
