package api

import (
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/modelplane/modelplane"
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
			got := servedInstanceType(tc.req, tc.held)
			require.Equal(t, tc.id, got.ID)
			require.Equal(t, tc.count, got.GPUCount)
			if tc.noGPUType {
				require.Nil(t, got.GPUType)
			} else {
				require.NotNil(t, got.GPUType)
				require.Equal(t, tc.gpuType, *got.GPUType)
			}
			if tc.memMiB == 0 {
				require.Nil(t, got.GPUMemoryLimitMiB)
			} else {
				require.NotNil(t, got.GPUMemoryLimitMiB)
				require.Equal(t, tc.memMiB, *got.GPUMemoryLimitMiB)
			}
		})
	}
}
