//go:build cgo

package nvml

import (
	_ "embed"
	"encoding/json"
	"fmt"

	gonvml "github.com/NVIDIA/go-nvml/pkg/nvml"
	"github.com/NVIDIA/go-nvml/pkg/nvml/mock"
)

// h200Probe is what NVML answered on a real H200 (see testdata/, next to nvidia-smi -q and
// nvidia-smi mig -lgip from the same machine). The "h200" profile replays it.
//
//go:embed testdata/h200-probe.json
var h200Probe []byte

// probed is one recorded NVML call: its value and its return code as NVML spells it.
type probed[T any] struct {
	Value T      `json:"value"`
	Ret   string `json:"ret"`
}

type probeFile struct {
	DriverVersion     probed[string] `json:"driver_version"`
	NVMLVersion       probed[string] `json:"nvml_version"`
	CUDADriverVersion probed[int]    `json:"cuda_driver_version"`
	Devices           []probeDevice  `json:"devices"`
}

type probeDevice struct {
	Index             int                   `json:"index"`
	UUID              probed[string]        `json:"uuid"`
	Name              probed[string]        `json:"name"`
	PCI               probed[string]        `json:"pci"`
	Architecture      probed[int]           `json:"architecture"`
	ComputeCapability probed[[2]int]        `json:"compute_capability"`
	Memory            probed[gonvml.Memory] `json:"memory"`
	NUMANode          probed[int]           `json:"numa_node"`
	NVLinkStates      []string              `json:"nvlink_states"`
	MIGMode           probed[[2]int]        `json:"mig_mode"`
	Profiles          []probeProfile        `json:"gpu_instance_profiles"`
	Temperature       probed[uint32]        `json:"temperature"`
	Utilization       probed[struct {
		GPU uint32 `json:"Gpu"`
	}] `json:"utilization"`
	PowerUsage      probed[uint32] `json:"power_usage_mw"`
	PowerLimit      probed[uint32] `json:"power_limit_mw"`
	ECCUncorrected  probed[uint64] `json:"ecc_uncorrected_volatile"`
	SupportedEvents probed[uint64] `json:"supported_event_types"`
	EventSet        struct {
		Create   string `json:"create"`
		Register string `json:"register"`
	} `json:"event_set"`
}

type probeProfile struct {
	Profile         int    `json:"profile"`
	Ret             string `json:"ret"` // absent when the call succeeded
	ID              uint32 `json:"id"`
	InstanceCount   uint32 `json:"instance_count"`
	MemoryMiB       uint64 `json:"memory_mib"`
	Multiprocessors uint32 `json:"multiprocessors"`
	SliceCount      uint32 `json:"slice_count"`
}

// probeReturn maps NVML's spelling of a return code, as the probe wrote it, back to the code.
func probeReturn(s string) gonvml.Return {
	switch s {
	case "", "Success":
		return gonvml.SUCCESS
	case "Not Supported":
		return gonvml.ERROR_NOT_SUPPORTED
	case "Invalid Argument":
		return gonvml.ERROR_INVALID_ARGUMENT
	case "Timeout":
		return gonvml.ERROR_TIMEOUT
	case "Not Found":
		return gonvml.ERROR_NOT_FOUND
	case "Insufficient Permissions":
		return gonvml.ERROR_NO_PERMISSION
	case "GPU is lost":
		return gonvml.ERROR_GPU_IS_LOST
	case "Function Not Found":
		return gonvml.ERROR_FUNCTION_NOT_FOUND
	default:
		return gonvml.ERROR_UNKNOWN
	}
}

func newH200Simulator() (*Simulator, error) {
	var p probeFile
	if err := json.Unmarshal(h200Probe, &p); err != nil {
		return nil, fmt.Errorf("nvml: reading the embedded H200 probe: %w", err)
	}
	s := newSimulator(&mock.Interface{})
	s.driverVersion = p.DriverVersion.Value
	s.nvmlVersion = p.NVMLVersion.Value
	s.cudaVersion = p.CUDADriverVersion.Value
	for _, pd := range p.Devices {
		d := &simDevice{
			Device:          &mock.Device{},
			sim:             s,
			index:           pd.Index,
			uuid:            pd.UUID.Value,
			name:            pd.Name.Value,
			busID:           pd.PCI.Value,
			arch:            gonvml.DeviceArchitecture(pd.Architecture.Value),
			ccMajor:         pd.ComputeCapability.Value[0],
			ccMinor:         pd.ComputeCapability.Value[1],
			memory:          pd.Memory.Value,
			numa:            pd.NUMANode.Value,
			nvlinkGroup:     -1,
			temperature:     pd.Temperature.Value,
			utilization:     pd.Utilization.Value.GPU,
			power:           pd.PowerUsage.Value,
			powerCap:        pd.PowerLimit.Value,
			supportedEvents: pd.SupportedEvents.Value,
			ecc:             pd.ECCUncorrected.Value,
			migMode:         pd.MIGMode.Value[0],
			rets: map[string]gonvml.Return{
				callMemory:    probeReturn(pd.Memory.Ret),
				callNUMANode:  probeReturn(pd.NUMANode.Ret),
				callMIGMode:   probeReturn(pd.MIGMode.Ret),
				callECC:       probeReturn(pd.ECCUncorrected.Ret),
				callRegister:  probeReturn(pd.EventSet.Register),
				callSupported: probeReturn(pd.SupportedEvents.Ret),
				callPower:     probeReturn(pd.PowerUsage.Ret),
				callPowerCap:  probeReturn(pd.PowerLimit.Ret),
				callTemp:      probeReturn(pd.Temperature.Ret),
				callUtil:      probeReturn(pd.Utilization.Ret),
			},
		}
		// The probe stops at the first link that does not answer; with the very first one
		// failing, the GPU has no NVLink to simulate.
		if len(pd.NVLinkStates) > 0 {
			d.rets[callNVLink] = probeReturn(pd.NVLinkStates[0])
		}
		d.profiles = make([]simProfile, len(pd.Profiles))
		for _, pp := range pd.Profiles {
			if pp.Profile < 0 || pp.Profile >= len(d.profiles) {
				continue
			}
			d.profiles[pp.Profile] = simProfile{
				ret: probeReturn(pp.Ret),
				info: gonvml.GpuInstanceProfileInfo{
					Id:                  pp.ID,
					SliceCount:          pp.SliceCount,
					InstanceCount:       pp.InstanceCount,
					MultiprocessorCount: pp.Multiprocessors,
					MemorySizeMB:        pp.MemoryMiB,
				},
			}
		}
		s.devices = append(s.devices, d)
		if pd.EventSet.Create != "" {
			s.eventSetCreate = probeReturn(pd.EventSet.Create)
		}
	}
	return s, nil
}
