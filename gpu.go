package modelplane

// GPURequest is what one replica asks of a node's GPUs. config.yaml's resources give it,
// placement matches it against the nodes' inventories, and the node agent allocates it; the
// zero value is a CPU-only replica.
type GPURequest struct {
	// GPUCount is how many whole GPUs; 0 with no MIGProfile means a CPU-only replica.
	GPUCount int `json:"gpu_count"`
	// GPUType matches a GPU's name as a case-insensitive substring, e.g. "H100"; empty
	// matches any GPU.
	GPUType string `json:"gpu_type,omitempty"`
	// GPUMemoryGiB is the least memory each GPU (or the MIG instance) must have; 0 means any.
	GPUMemoryGiB int `json:"gpu_memory_gib,omitempty"`
	// MIGProfile asks for one existing MIG instance of exactly this profile, e.g. "1g.18gb",
	// instead of whole GPUs; GPUCount must then be 0 or 1.
	MIGProfile string `json:"mig_profile,omitempty"`
}

// CPUOnly reports whether the request asks for no GPU at all.
func (r GPURequest) CPUOnly() bool { return r.GPUCount == 0 && r.MIGProfile == "" }
