package nvml

import (
	"fmt"
	"math/rand/v2"
	"slices"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/modelplane/modelplane"
)

const mib = 1 << 20

// h100 is a healthy, MIG-off H100 80GB at index i with no known topology.
func h100(i int, edits ...func(*GPU)) GPU {
	g := GPU{
		UUID: fmt.Sprintf("GPU-%d", i), Index: i, Name: "NVIDIA H100 80GB HBM3",
		MemoryTotalBytes: 81559 * mib, NUMANode: -1, NVLinkGroup: -1, Healthy: true,
	}
	for _, e := range edits {
		e(&g)
	}
	return g
}

func unhealthy(g *GPU) { g.Healthy, g.UnhealthyReason = false, "XID 79 (GPU has fallen off the bus)" }

func topo(nvlink, numa int) func(*GPU) {
	return func(g *GPU) { g.NVLinkGroup, g.NUMANode = nvlink, numa }
}

// h200MIG is an H200 in MIG mode with the given instances (profile names), whose UUIDs are
// MIG-<index>-<n>.
func h200MIG(i int, profiles ...string) GPU {
	g := GPU{
		UUID: fmt.Sprintf("GPU-%d", i), Index: i, Name: "NVIDIA H200", MemoryTotalBytes: 143771 * mib,
		NUMANode: -1, NVLinkGroup: -1, Healthy: true, MIGMode: true,
		MIGProfiles: []MIGProfile{{Name: "1g.18gb", ID: 19, InstanceCount: 7, MemoryMiB: 16384},
			{Name: "1g.18gb+me", ID: 20, InstanceCount: 1, MemoryMiB: 16384},
			{Name: "2g.35gb", ID: 14, InstanceCount: 3, MemoryMiB: 33280}},
	}
	for n, p := range profiles {
		mem := uint64(16384)
		if p == "2g.35gb" {
			mem = 33280
		}
		g.MIGInstances = append(g.MIGInstances, MIGInstance{
			UUID: fmt.Sprintf("MIG-%d-%d", i, n), ParentUUID: g.UUID, Profile: p, MemoryBytes: mem * mib,
		})
	}
	return g
}

func inv(gpus ...GPU) Inventory { return Inventory{GPUs: gpus} }

func TestAllocate(t *testing.T) {
	eightNVLink := inv(
		h100(0, topo(0, 0)), h100(1, topo(0, 0)), h100(2, topo(0, 0)), h100(3, topo(0, 0)),
		h100(4, topo(1, 1)), h100(5, topo(1, 1)), h100(6, topo(1, 1)), h100(7, topo(1, 1)),
	)
	tests := []struct {
		name     string
		req      modelplane.GPURequest
		inv      Inventory
		assigned map[string]string
		want     []string
		// wantReason is the whole AllocationError reason; wantErr an error it must match.
		wantReason string
		wantErr    error
	}{
		{
			name: "CPU-only replica gets nothing",
			req:  modelplane.GPURequest{},
			inv:  inv(h100(0)),
		},
		{
			name: "one GPU of any type",
			req:  modelplane.GPURequest{GPUCount: 1},
			inv:  inv(h100(0), h100(1)),
			want: []string{"GPU-0"},
		},
		{
			name: "two GPUs in index order",
			req:  modelplane.GPURequest{GPUCount: 2, GPUType: "H100"},
			inv:  inv(h100(2), h100(0), h100(1)),
			want: []string{"GPU-0", "GPU-1"},
		},
		{
			name: "type matches case-insensitively as a substring",
			req:  modelplane.GPURequest{GPUCount: 1, GPUType: "h100 80gb"},
			inv:  inv(h100(0)),
			want: []string{"GPU-0"},
		},
		{
			name:       "type mismatch says what the node has",
			req:        modelplane.GPURequest{GPUCount: 1, GPUType: "A100"},
			inv:        inv(h100(0), h100(1)),
			wantReason: "needs 1 GPU of type A100; no GPU on this node matches; it has 2 × NVIDIA H100 80GB HBM3 (80 GiB)",
		},
		{
			name: "memory minimum meets the advertised size although NVML reports a little less",
			req:  modelplane.GPURequest{GPUCount: 1, GPUMemoryGiB: 80},
			inv:  inv(h100(0)),
			want: []string{"GPU-0"},
		},
		{
			name:       "memory minimum above the GPU's size",
			req:        modelplane.GPURequest{GPUCount: 1, GPUMemoryGiB: 81},
			inv:        inv(h100(0)),
			wantReason: "needs 1 GPU with >= 81 GiB; no GPU on this node matches; it has 1 × NVIDIA H100 80GB HBM3 (80 GiB)",
		},
		{
			name:       "no GPUs at all",
			req:        modelplane.GPURequest{GPUCount: 2},
			inv:        inv(),
			wantReason: "needs 2 GPUs; this node has no GPUs",
		},
		{
			name:       "reason counts free, assigned and unhealthy GPUs",
			req:        modelplane.GPURequest{GPUCount: 2, GPUType: "H100", GPUMemoryGiB: 80},
			inv:        inv(h100(0), h100(1, unhealthy), h100(2, unhealthy), h100(3)),
			assigned:   map[string]string{"GPU-0": "r1"},
			wantReason: "needs 2 GPUs of type H100 with >= 80 GiB; 1 free, 1 assigned to replica r1, 2 unhealthy",
		},
		{
			name:     "unhealthy GPUs are skipped",
			req:      modelplane.GPURequest{GPUCount: 1},
			inv:      inv(h100(0, unhealthy), h100(1)),
			want:     []string{"GPU-1"},
			assigned: map[string]string{},
		},
		{
			name:       "assigned GPUs are never shared",
			req:        modelplane.GPURequest{GPUCount: 2},
			inv:        inv(h100(0), h100(1)),
			assigned:   map[string]string{"GPU-0": "r1", "GPU-1": "r2"},
			wantReason: "needs 2 GPUs; 0 free, 2 assigned to replicas r1, r2",
		},
		{
			name:       "a GPU in MIG mode is not handed out whole",
			req:        modelplane.GPURequest{GPUCount: 2},
			inv:        inv(h200MIG(0), h100(1)),
			wantReason: "needs 2 GPUs; 1 free, 1 in MIG mode (ask for a MIG profile to use them)",
		},
		{
			name: "a GPU in MIG mode is skipped for a whole-GPU request",
			req:  modelplane.GPURequest{GPUCount: 1},
			inv:  inv(h200MIG(0, "1g.18gb"), h100(1)),
			want: []string{"GPU-1"},
		},
		{
			name: "MIG profile by exact name",
			req:  modelplane.GPURequest{MIGProfile: "1g.18gb+me"},
			inv:  inv(h200MIG(0, "1g.18gb", "1g.18gb+me", "2g.35gb")),
			want: []string{"MIG-0-1"},
		},
		{
			name: "MIG profile with GPUCount 1 is the same as 0",
			req:  modelplane.GPURequest{GPUCount: 1, MIGProfile: "2g.35gb", GPUType: "H200"},
			inv:  inv(h200MIG(0, "1g.18gb", "2g.35gb")),
			want: []string{"MIG-0-1"},
		},
		{
			name: "MIG instance already assigned is skipped",
			req:  modelplane.GPURequest{MIGProfile: "1g.18gb"},
			inv:  inv(h200MIG(0, "1g.18gb", "1g.18gb")),
			assigned: map[string]string{
				"MIG-0-0": "r1",
			},
			want: []string{"MIG-0-1"},
		},
		{
			name:       "all MIG instances of the profile assigned",
			req:        modelplane.GPURequest{MIGProfile: "1g.18gb"},
			inv:        inv(h200MIG(0, "1g.18gb", "1g.18gb", "2g.35gb")),
			assigned:   map[string]string{"MIG-0-0": "r2", "MIG-0-1": "r1"},
			wantReason: "needs a MIG instance 1g.18gb; 0 free, 2 assigned to replicas r1, r2",
		},
		{
			name:       "MIG instance on an unhealthy GPU is skipped",
			req:        modelplane.GPURequest{MIGProfile: "1g.18gb"},
			inv:        inv(func() GPU { g := h200MIG(0, "1g.18gb"); unhealthy(&g); return g }()),
			wantReason: "needs a MIG instance 1g.18gb; 0 free, 1 unhealthy",
		},
		{
			name: "MIG instance on the next healthy GPU",
			req:  modelplane.GPURequest{MIGProfile: "1g.18gb"},
			inv:  inv(func() GPU { g := h200MIG(0, "1g.18gb"); unhealthy(&g); return g }(), h200MIG(1, "1g.18gb")),
			want: []string{"MIG-1-0"},
		},
		{
			name:       "MIG profile names are matched exactly",
			req:        modelplane.GPURequest{MIGProfile: "1g.18"},
			inv:        inv(h200MIG(0, "1g.18gb")),
			wantReason: "needs a MIG instance 1g.18; no GPU on this node offers that profile (offered: 1g.18gb, 1g.18gb+me, 2g.35gb)",
		},
		{
			name:       "MIG profile offered but not created",
			req:        modelplane.GPURequest{MIGProfile: "2g.35gb"},
			inv:        inv(h200MIG(0, "1g.18gb")),
			wantReason: "needs a MIG instance 2g.35gb; no 2g.35gb instance exists yet; create one, e.g. nvidia-smi mig -i 0 -cgi 2g.35gb -C",
		},
		{
			name: "MIG profile offered but MIG mode off",
			req:  modelplane.GPURequest{MIGProfile: "1g.18gb"},
			inv: inv(func() GPU {
				g := h200MIG(0)
				g.MIGMode = false
				return g
			}()),
			wantReason: "needs a MIG instance 1g.18gb; GPU 0 offers 1g.18gb but has MIG mode off; enable MIG and create the instance",
		},
		{
			name:       "MIG on a node without MIG",
			req:        modelplane.GPURequest{MIGProfile: "1g.10gb"},
			inv:        inv(h100(0)),
			wantReason: "needs a MIG instance 1g.10gb; no GPU on this node supports MIG",
		},
		{
			name:       "a GPU whole-assigned lends no MIG instance",
			req:        modelplane.GPURequest{MIGProfile: "1g.18gb"},
			inv:        inv(h200MIG(0, "1g.18gb")),
			assigned:   map[string]string{"GPU-0": "r1"},
			wantReason: "needs a MIG instance 1g.18gb; 0 free, 1 assigned to replica r1",
		},
		{
			name:    "MIG profile with two GPUs is invalid",
			req:     modelplane.GPURequest{GPUCount: 2, MIGProfile: "1g.18gb"},
			inv:     inv(h200MIG(0, "1g.18gb")),
			wantErr: ErrInvalidRequest,
		},
		{
			name:    "negative count is invalid",
			req:     modelplane.GPURequest{GPUCount: -1},
			inv:     inv(h100(0)),
			wantErr: ErrInvalidRequest,
		},
		{
			name:     "several GPUs come from one NVLink group",
			req:      modelplane.GPURequest{GPUCount: 4},
			inv:      eightNVLink,
			assigned: map[string]string{"GPU-1": "r1"},
			want:     []string{"GPU-4", "GPU-5", "GPU-6", "GPU-7"},
		},
		{
			name:     "the smallest NVLink group that fits, keeping the larger one whole",
			req:      modelplane.GPURequest{GPUCount: 2},
			inv:      eightNVLink,
			assigned: map[string]string{"GPU-1": "r1"},
			want:     []string{"GPU-0", "GPU-2"},
		},
		{
			name: "within an NVLink group, one NUMA node",
			req:  modelplane.GPURequest{GPUCount: 2},
			inv: inv(h100(0, topo(0, 0)), h100(1, topo(0, 1)), h100(2, topo(0, 0)), h100(3, topo(0, 1)),
				h100(4, topo(0, 1))),
			want: []string{"GPU-0", "GPU-2"},
		},
		{
			name: "NVLink beats NUMA",
			req:  modelplane.GPURequest{GPUCount: 2},
			inv:  inv(h100(0, topo(-1, 0)), h100(1, topo(-1, 0)), h100(2, topo(0, 0)), h100(3, topo(0, 1))),
			want: []string{"GPU-2", "GPU-3"},
		},
		{
			name:     "one NUMA node when there is no NVLink",
			req:      modelplane.GPURequest{GPUCount: 2},
			inv:      inv(h100(0, topo(-1, 0)), h100(1, topo(-1, 0)), h100(2, topo(-1, 1)), h100(3, topo(-1, 1))),
			assigned: map[string]string{"GPU-0": "r1"},
			want:     []string{"GPU-2", "GPU-3"},
		},
		{
			name:     "anywhere, by index, when no group fits",
			req:      modelplane.GPURequest{GPUCount: 3},
			inv:      inv(h100(0, topo(0, 0)), h100(1, topo(0, 0)), h100(2, topo(1, 1)), h100(3, topo(1, 1))),
			assigned: map[string]string{"GPU-0": "r1"},
			want:     []string{"GPU-1", "GPU-2", "GPU-3"},
		},
		{
			name: "a single GPU comes from outside the NVLink groups first",
			req:  modelplane.GPURequest{GPUCount: 1},
			inv:  inv(h100(0, topo(0, 0)), h100(1, topo(0, 0)), h100(2, topo(-1, 0))),
			want: []string{"GPU-2"},
		},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			got, err := Allocate(tc.req, tc.inv, tc.assigned)
			switch {
			case tc.wantErr != nil:
				require.ErrorIs(t, err, tc.wantErr)
				assert.Nil(t, got)
			case tc.wantReason != "":
				var ae *AllocationError
				require.ErrorAs(t, err, &ae, "expected an *AllocationError, got %v", err)
				assert.ErrorIs(t, err, ErrUnsatisfiable)
				assert.Equal(t, tc.wantReason, ae.Reason)
				assert.Nil(t, got)
			default:
				require.NoError(t, err)
				assert.Equal(t, tc.want, got)
			}
		})
	}
}

// TestAllocate_NeverGivesOneUUIDToTwoReplicas allocates and frees at random and checks after
// every step that no GPU, and no MIG instance, is held twice, and that no GPU is held both
// whole and through one of its MIG instances.
func TestAllocate_NeverGivesOneUUIDToTwoReplicas(t *testing.T) {
	profiles := []string{"1g.18gb", "1g.18gb+me", "2g.35gb", "3g.71gb"}
	for seed := range uint64(200) {
		rng := rand.New(rand.NewPCG(seed, 7))
		var gpus []GPU
		for i := range 1 + rng.IntN(8) {
			var g GPU
			if rng.IntN(3) == 0 {
				var made []string
				for range rng.IntN(5) {
					made = append(made, profiles[rng.IntN(3)])
				}
				g = h200MIG(i, made...)
			} else {
				g = h100(i, topo(rng.IntN(3)-1, rng.IntN(3)-1))
			}
			g.Healthy = rng.IntN(6) != 0
			gpus = append(gpus, g)
		}
		assigned := map[string]string{}
		held := map[string][]string{} // replica -> UUIDs
		for step := range 300 {
			if len(held) > 0 && rng.IntN(3) == 0 {
				ids := make([]string, 0, len(held))
				for id := range held {
					ids = append(ids, id)
				}
				slices.Sort(ids)
				id := ids[rng.IntN(len(ids))]
				for _, u := range held[id] {
					delete(assigned, u)
				}
				delete(held, id)
				continue
			}
			if rng.IntN(10) == 0 { // health changes under running replicas
				i := rng.IntN(len(gpus))
				gpus[i].Healthy = !gpus[i].Healthy
			}
			req := modelplane.GPURequest{GPUCount: rng.IntN(4)}
			if rng.IntN(3) == 0 {
				req = modelplane.GPURequest{MIGProfile: profiles[rng.IntN(len(profiles))]}
			}
			got, err := Allocate(req, Inventory{GPUs: gpus}, assigned)
			if err != nil {
				require.ErrorIs(t, err, ErrUnsatisfiable, "seed %d step %d: only unsatisfiable errors expected", seed, step)
				continue
			}
			wantN := req.GPUCount
			if req.MIGProfile != "" {
				wantN = 1
			}
			require.Len(t, got, wantN, "seed %d step %d: request %+v", seed, step, req)
			replica := fmt.Sprintf("r%d-%d", seed, step)
			for _, u := range got {
				owner, taken := assigned[u]
				require.False(t, taken, "seed %d step %d: %s given to %s while held by %s", seed, step, u, replica, owner)
				assigned[u] = replica
			}
			if len(got) > 0 {
				held[replica] = got
			}
			for _, g := range gpus {
				holders := map[string]bool{}
				if r, ok := assigned[g.UUID]; ok {
					holders[r] = true
				}
				for _, mi := range g.MIGInstances {
					if r, ok := assigned[mi.UUID]; ok {
						_, whole := assigned[g.UUID]
						require.False(t, whole, "seed %d step %d: GPU %s held whole and MIG %s held by %s", seed, step, g.UUID, mi.UUID, r)
					}
				}
				require.LessOrEqual(t, len(holders), 1)
			}
		}
	}
}
