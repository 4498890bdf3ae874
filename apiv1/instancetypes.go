package apiv1

// InstanceTypeV1 is a GPU shape (Baseten's InstanceTypeV1): a whole GPU type with a count,
// or one MIG profile. docs/API.md says how modelplane's shapes map onto the fields.
type InstanceTypeV1 struct {
	// ID is what config.yaml's resources ask for: "H200:2" for two whole H200s, "H200:1g.18gb"
	// for one MIG instance of that profile on an H200.
	ID   string `json:"id"`
	Name string `json:"name"`
	// MemoryLimitMiB and MillicpuLimit are the memory and CPU a deployment's config.yaml
	// resources ask for (0 where they ask for none); 0 in GET /v1/instance_types, as a
	// modelplane node does not cut its CPUs and memory into instance types.
	MemoryLimitMiB int `json:"memory_limit_mib"`
	MillicpuLimit  int `json:"millicpu_limit"`
	// GPUCount is the number of whole GPUs, 1 for a MIG profile.
	GPUCount int     `json:"gpu_count"`
	GPUType  *string `json:"gpu_type"`
	// GPUMemoryLimitMiB is the memory of each GPU, or of the MIG instance.
	GPUMemoryLimitMiB *int `json:"gpu_memory_limit_mib"`
}

// InstanceTypeCapacityV1 is one shape the registered nodes can place, an item of GET
// /v1/instance_types: the spec's InstanceTypeV1 and how many replicas of it fit.
type InstanceTypeCapacityV1 struct {
	InstanceTypeV1
	// Available is modelplane's own: how many replicas of this shape the nodes can place
	// now, on READY nodes and healthy GPUs that no replica holds.
	Available int `json:"available"`
	// Total is modelplane's own: how many the registered nodes would hold with every node up,
	// every GPU healthy and none in use.
	Total int `json:"total"`
}

// InstanceTypesV1 answers GET /v1/instance_types.
type InstanceTypesV1 struct {
	InstanceTypes []InstanceTypeCapacityV1 `json:"instance_types"`
}
