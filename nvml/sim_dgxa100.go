//go:build cgo

package nvml

import (
	gonvml "github.com/NVIDIA/go-nvml/pkg/nvml"
	"github.com/NVIDIA/go-nvml/pkg/nvml/mock/dgxa100"
)

// newDGXA100Simulator simulates go-nvml's DGX A100 mock server: its eight A100s keep the
// mock's UUIDs, names, PCI bus IDs, memory, compute capability and MIG profile table, and
// calls the simulation does not cover go to the mock. What the mock leaves out is filled in
// the way a DGX A100 is built: all eight GPUs on one NVSwitch fabric (12 NVLinks each), four
// per CPU socket, ECC on, and idle readings.
func newDGXA100Simulator() *Simulator {
	srv := dgxa100.New()
	s := newSimulator(srv)
	s.driverVersion = srv.DriverVersion
	s.nvmlVersion = srv.NvmlVersion
	s.cudaVersion = srv.CudaDriverVersion
	for i, dev := range srv.Devices {
		md := dev.(*dgxa100.Device)
		s.devices = append(s.devices, &simDevice{
			Device:          md,
			sim:             s,
			index:           i,
			uuid:            md.UUID,
			name:            md.Config.Name,
			busID:           md.PciBusID,
			arch:            md.Config.Architecture,
			ccMajor:         md.Config.CudaMajor,
			ccMinor:         md.Config.CudaMinor,
			memory:          gonvml.Memory{Total: md.MemoryInfo.Total, Free: md.MemoryInfo.Total},
			numa:            i / 4,
			nvlinkGroup:     0,
			nvlinks:         12,
			profiles:        simProfilesFrom(md.Config.MIGProfiles.GpuInstanceProfiles),
			temperature:     32,
			power:           62000,
			powerCap:        400000,
			supportedEvents: gonvml.EventTypeAll,
			rets:            map[string]gonvml.Return{},
			migMode:         md.MigMode,
		})
	}
	return s
}
