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
}

// GPUInfo is a GPU with the replica it is assigned to.
type GPUInfo struct {
	nvml.GPU
	AssignedReplicaID string `json:"assigned_replica_id"`
}
