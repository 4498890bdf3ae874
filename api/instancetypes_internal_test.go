package api

import (
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/modelplane/modelplane"
	"github.com/modelplane/modelplane/modelpkg"
	"github.com/modelplane/modelplane/store"
)

func TestServedInstanceType_NamesWhatTheDeploymentRunsOn(t *testing.T) {
	h200 := func(uuid string, gib int64) store.GPU {
		return store.GPU{UUID: uuid, Name: "NVIDIA H200", MemoryTotalBytes: gib << 30}
	}
	mig := store.GPU{UUID: "mig-a", Name: "NVIDIA H200", MemoryTotalBytes: 18 << 30, MIGProfile: "1g.18gb", ParentUUID: "g0"}
	for _, tc := range []struct {
		name          string
		req           modelplane.GPURequest
		held          []store.GPU
		id, gpuType   string
		count, memMiB int // memMiB 0: null
		noGPUType     bool
	}{
		{name: "CPU only", id: "CPU", count: 0, noGPUType: true},
		{name: "requested, not placed", req: modelplane.GPURequest{GPUCount: 2, GPUType: "H200"}, id: "H200:2", gpuType: "H200", count: 2},
		{name: "requested in lower case", req: modelplane.GPURequest{GPUCount: 1, GPUType: "a10g"}, id: "A10G:1", gpuType: "A10G", count: 1},
		{name: "any GPU, not placed", req: modelplane.GPURequest{GPUCount: 1}, id: "GPU:1", gpuType: "GPU", count: 1},
		{name: "a memory minimum shows until placed", req: modelplane.GPURequest{GPUCount: 1, GPUType: "H200", GPUMemoryGiB: 80},
			id: "H200:1", gpuType: "H200", count: 1, memMiB: 80 << 10},
		{name: "MIG requested, not placed", req: modelplane.GPURequest{GPUCount: 1, GPUType: "H200", MIGProfile: "1g.18gb"},
			id: "H200:1g.18gb", gpuType: "H200", count: 1},
		{name: "placed on whole GPUs: the least memory", req: modelplane.GPURequest{GPUCount: 2},
			held: []store.GPU{h200("g0", 141), h200("g1", 140)}, id: "H200:2", gpuType: "H200", count: 2, memMiB: 140 << 10},
		{name: "placed on a MIG instance, its parent listed first", req: modelplane.GPURequest{GPUCount: 1, MIGProfile: "1g.18gb"},
			held: []store.GPU{h200("g0", 141), mig}, id: "H200:1g.18gb", gpuType: "H200", count: 1, memMiB: 18 << 10},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got := servedInstanceType(modelpkg.Resources{GPURequest: tc.req}, tc.held)
			require.Equal(t, tc.id, got.ID)
			require.Equal(t, tc.count, got.GPUCount)
			if tc.noGPUType {
				require.Nil(t, got.GPUType)
			} else {
				require.NotNil(t, got.GPUType)
				require.Equal(t, tc.gpuType, *got.GPUType)
			}
			require.Zero(t, got.MillicpuLimit, "no cpu asked for")
			require.Zero(t, got.MemoryLimitMiB, "no memory asked for")
			if tc.memMiB == 0 {
				require.Nil(t, got.GPUMemoryLimitMiB)
			} else {
				require.NotNil(t, got.GPUMemoryLimitMiB)
				require.Equal(t, tc.memMiB, *got.GPUMemoryLimitMiB)
			}
		})
	}
}

func TestServedInstanceType_LimitsAreTheConfigsCPUAndMemory(t *testing.T) {
	h200 := store.GPU{UUID: "g0", Name: "NVIDIA H200", MemoryTotalBytes: 141 << 30}
	for _, tc := range []struct {
		name             string
		res              modelpkg.Resources
		held             []store.GPU
		id               string
		millicpu, memMiB int
	}{
		{name: "CPU only, half a CPU", res: modelpkg.Resources{CPU: "0.5", Memory: "256Mi"}, id: "CPU", millicpu: 500, memMiB: 256},
		{name: "thousandths", res: modelpkg.Resources{CPU: "250m", Memory: "1Gi"}, id: "CPU", millicpu: 250, memMiB: 1024},
		{name: "whole CPUs, decimal memory rounded up to MiB", res: modelpkg.Resources{CPU: "4", Memory: "1G"}, id: "CPU",
			millicpu: 4000, memMiB: 954},
		{name: "plain bytes", res: modelpkg.Resources{Memory: "1048577"}, id: "CPU", memMiB: 2},
		{name: "the most memory a config may set", res: modelpkg.Resources{Memory: "7Ei"}, id: "CPU", memMiB: 7 << 40},
		{name: "only memory", res: modelpkg.Resources{Memory: "2Gi"}, id: "CPU", memMiB: 2048},
		{name: "only cpu", res: modelpkg.Resources{CPU: "1.5"}, id: "CPU", millicpu: 1500},
		{name: "GPU, not placed", res: modelpkg.Resources{GPURequest: modelplane.GPURequest{GPUCount: 1, GPUType: "H200"},
			CPU: "8", Memory: "64Gi"}, id: "H200:1", millicpu: 8000, memMiB: 64 << 10},
		{name: "GPU, placed", res: modelpkg.Resources{GPURequest: modelplane.GPURequest{GPUCount: 1}, CPU: "2", Memory: "16Gi"},
			held: []store.GPU{h200}, id: "H200:1", millicpu: 2000, memMiB: 16 << 10},
		{name: "not parsable: none", res: modelpkg.Resources{CPU: "lots", Memory: "big"}, id: "CPU"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got := servedInstanceType(tc.res, tc.held)
			require.Equal(t, tc.id, got.ID)
			require.Equal(t, tc.millicpu, got.MillicpuLimit)
			require.Equal(t, tc.memMiB, got.MemoryLimitMiB)
		})
	}
}
