package nvml

import (
	"errors"
	"log/slog"
	"time"
)

// GPU is one whole GPU as the agent reports it.
type GPU struct {
	UUID  string `json:"uuid"`
	Index int    `json:"index"`
	Name  string `json:"name"`
	// Architecture is the NVML architecture name, e.g. "Hopper" or "Ampere"; empty when unknown.
	Architecture string `json:"architecture"`
	// ComputeCapability is the CUDA compute capability, e.g. "9.0".
	ComputeCapability string `json:"compute_capability"`
	MemoryTotalBytes  uint64 `json:"memory_total_bytes"`
	MemoryUsedBytes   uint64 `json:"memory_used_bytes"`
	// PCIBusID is in the kernel's form, e.g. "0000:00:06.0".
	PCIBusID string `json:"pci_bus_id"`
	// NUMANode is the NUMA node nearest the GPU; -1 when unknown.
	NUMANode int `json:"numa_node"`
	// NVLinkGroup numbers the sets of NVLink-connected GPUs: GPUs with the same group can
	// reach each other over NVLink. -1 when the GPU has no NVLink peer or it is unknown.
	NVLinkGroup int  `json:"nvlink_group"`
	MIGMode     bool `json:"mig_mode"`
	// MIGProfiles are the GPU-instance profiles the GPU offers, whether or not MIG is on.
	MIGProfiles []MIGProfile `json:"mig_profiles,omitempty"`
	// MIGInstances are the MIG devices that exist now.
	MIGInstances         []MIGInstance `json:"mig_instances,omitempty"`
	TemperatureC         int           `json:"temperature_c"`
	UtilizationPercent   int           `json:"utilization_percent"`
	PowerUsageMilliwatts uint32        `json:"power_usage_mw"`
	PowerLimitMilliwatts uint32        `json:"power_limit_mw"`
	Healthy              bool          `json:"healthy"`
	// UnhealthyReason says why the GPU is unhealthy, for a human; empty when healthy.
	UnhealthyReason string `json:"unhealthy_reason,omitempty"`
}

// MIGProfile is a GPU-instance profile that a GPU offers.
type MIGProfile struct {
	// Name is the profile's name as nvidia-smi prints it, without the "MIG " prefix,
	// e.g. "1g.18gb" or "1g.18gb+me".
	Name string `json:"name"`
	// ID is NVML's GPU-instance profile ID (what nvidia-smi mig -lgip shows as ID).
	ID int `json:"id"`
	// InstanceCount is how many instances of this profile fit on the GPU.
	InstanceCount   int    `json:"instance_count"`
	MemoryMiB       uint64 `json:"memory_mib"`
	Multiprocessors int    `json:"multiprocessors"`
}

// MIGInstance is an existing MIG device.
type MIGInstance struct {
	UUID       string `json:"uuid"`
	ParentUUID string `json:"parent_uuid"`
	// Profile is the name of the GPU-instance profile it was created from, e.g. "1g.18gb";
	// empty when NVML would not say.
	Profile     string `json:"profile"`
	MemoryBytes uint64 `json:"memory_bytes"`
}

// Inventory is a snapshot of the node's GPUs.
type Inventory struct {
	DriverVersion string `json:"driver_version"`
	// CUDADriverVersion is the CUDA version the driver supports, e.g. "13.0".
	CUDADriverVersion string `json:"cuda_driver_version"`
	GPUs              []GPU  `json:"gpus"`
}

// Options tune a Manager. The zero value gives the documented defaults.
type Options struct {
	// Probation is how long a GPU that failed a check must pass every check before it is
	// healthy again. Default 5 minutes.
	Probation time.Duration
	// PollInterval is how often the health loop polls each GPU. Default 10 seconds.
	PollInterval time.Duration
	// Logger receives health transitions and NVML trouble. Default slog.Default().
	Logger *slog.Logger
	// Now is the clock that probation is measured with. Default time.Now; tests set it so
	// they need not sleep through a probation.
	Now func() time.Time
}

// Profile names accepted by Open.
const (
	// ProfileAuto uses real NVML when the library loads and reports no GPUs otherwise.
	ProfileAuto = "auto"
	// ProfileNone reports no GPUs.
	ProfileNone = "none"
	// ProfileReal uses real NVML and fails when it cannot load.
	ProfileReal = "real"
	// ProfileH200 simulates the single H200 recorded in testdata/h200-probe.json.
	ProfileH200 = "h200"
	// ProfileDGXA100 simulates go-nvml's mock of a DGX A100 with eight A100 GPUs.
	ProfileDGXA100 = "dgxa100"
)

const (
	defaultProbation    = 5 * time.Minute
	defaultPollInterval = 10 * time.Second
)

// ErrClosed is returned by a Manager after Close.
var ErrClosed = errors.New("nvml: manager is closed")

// ErrUnavailable is returned by Open when NVML (or, in a build without cgo, any GPU
// backend) cannot be used for the profile asked for.
var ErrUnavailable = errors.New("nvml: NVML is unavailable")

// ErrNotListening is returned by Simulator.InjectXID when no event set is registered for XID
// events on the GPU, so the XID would be lost; tests retry until the health loop listens.
var ErrNotListening = errors.New("nvml: no event set listens for XID events on this GPU yet")

// ErrUnknownGPU is returned by a Simulator asked about a UUID it does not have.
var ErrUnknownGPU = errors.New("nvml: no such GPU")

func (o Options) withDefaults() Options {
	if o.Probation <= 0 {
		o.Probation = defaultProbation
	}
	if o.PollInterval <= 0 {
		o.PollInterval = defaultPollInterval
	}
	if o.Logger == nil {
		o.Logger = slog.Default()
	}
	if o.Now == nil {
		o.Now = time.Now
	}
	return o
}
