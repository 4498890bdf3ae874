package placement

import (
	"fmt"
	"math/rand/v2"
	"slices"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/modelplane/modelplane"
	"github.com/modelplane/modelplane/nvml"
)

const gib = 1 << 30

// gpu is a healthy whole GPU with MIG off, no NVLink peer and NUMA node 0.
func gpu(uuid string, index int, name string, memGiB uint64) nvml.GPU {
	return nvml.GPU{UUID: uuid, Index: index, Name: name, MemoryTotalBytes: memGiB * gib, NUMANode: 0, NVLinkGroup: -1, Healthy: true}
}

func h100(uuid string, index int) nvml.GPU { return gpu(uuid, index, "NVIDIA H100 80GB HBM3", 80) }

func unhealthy(g nvml.GPU) nvml.GPU {
	g.Healthy, g.UnhealthyReason = false, "XID 79"
	return g
}

// migGPU is an A100 with MIG on and one 1g.10gb instance per given UUID.
func migGPU(uuid string, index int, instances ...string) nvml.GPU {
	g := gpu(uuid, index, "NVIDIA A100-SXM4-80GB", 80)
	g.MIGMode = true
	g.MIGProfiles = []nvml.MIGProfile{{Name: "1g.10gb", ID: 19, InstanceCount: 7, MemoryMiB: 9984}}
	for _, id := range instances {
		g.MIGInstances = append(g.MIGInstances, nvml.MIGInstance{UUID: id, ParentUUID: uuid, Profile: "1g.10gb", MemoryBytes: 10 * gib})
	}
	return g
}

func node(id string, state modelplane.NodeState, gpus ...nvml.GPU) Node {
	return Node{ID: id, Name: "gpu-" + id, State: state, Inventory: nvml.Inventory{GPUs: gpus}}
}

func withAssigned(n Node, assigned map[string]string) Node {
	n.Assigned = assigned
	return n
}

func withReplicas(n Node, replicas int) Node {
	n.Replicas = replicas
	return n
}

var oneH100 = modelplane.GPURequest{GPUCount: 1, GPUType: "H100"}

func TestPlace(t *testing.T) {
	tests := []struct {
		name    string
		req     Request
		nodes   []Node
		want    []Placement
		wantErr string // the whole Error() text; empty: no error
	}{
		{
			name:  "single node single GPU",
			req:   Request{Count: 1, GPU: oneH100},
			nodes: []Node{node("a", modelplane.NodeReady, h100("GPU-a0", 0))},
			want:  []Placement{{NodeID: "a", GPUUUIDs: []string{"GPU-a0"}}},
		},
		{
			name: "two replicas spread over two nodes",
			req:  Request{Count: 2, GPU: oneH100},
			nodes: []Node{
				node("a", modelplane.NodeReady, h100("GPU-a0", 0), h100("GPU-a1", 1)),
				node("b", modelplane.NodeReady, h100("GPU-b0", 0), h100("GPU-b1", 1)),
			},
			want: []Placement{{NodeID: "a", GPUUUIDs: []string{"GPU-a0"}}, {NodeID: "b", GPUUUIDs: []string{"GPU-b0"}}},
		},
		{
			name: "fewest replicas of this deployment wins over fewest overall",
			req:  Request{Count: 1, GPU: oneH100, ExistingByNode: map[string]int{"a": 1}},
			nodes: []Node{
				withReplicas(node("a", modelplane.NodeReady, h100("GPU-a0", 0), h100("GPU-a1", 1)), 1),
				withReplicas(node("b", modelplane.NodeReady, h100("GPU-b0", 0), h100("GPU-b1", 1)), 1),
			},
			want: []Placement{{NodeID: "b", GPUUUIDs: []string{"GPU-b0"}}},
		},
		{
			name: "fewest replicas overall breaks a tie",
			req:  Request{Count: 1, GPU: oneH100},
			nodes: []Node{
				withReplicas(node("a", modelplane.NodeReady, h100("GPU-a0", 0), h100("GPU-a1", 1)), 1),
				node("b", modelplane.NodeReady, h100("GPU-b0", 0)),
			},
			want: []Placement{{NodeID: "b", GPUUUIDs: []string{"GPU-b0"}}},
		},
		{
			name: "name order breaks a full tie whatever the input order",
			req:  Request{Count: 1, GPU: oneH100},
			nodes: []Node{
				node("b", modelplane.NodeReady, h100("GPU-b0", 0)),
				node("a", modelplane.NodeReady, h100("GPU-a0", 0)),
			},
			want: []Placement{{NodeID: "a", GPUUUIDs: []string{"GPU-a0"}}},
		},
		{
			name: "more replicas than nodes stack evenly",
			req:  Request{Count: 4, GPU: oneH100},
			nodes: []Node{
				node("a", modelplane.NodeReady, h100("GPU-a0", 0), h100("GPU-a1", 1)),
				node("b", modelplane.NodeReady, h100("GPU-b0", 0), h100("GPU-b1", 1)),
			},
			want: []Placement{
				{NodeID: "a", GPUUUIDs: []string{"GPU-a0"}}, {NodeID: "b", GPUUUIDs: []string{"GPU-b0"}},
				{NodeID: "a", GPUUUIDs: []string{"GPU-a1"}}, {NodeID: "b", GPUUUIDs: []string{"GPU-b1"}},
			},
		},
		{
			name: "multi-GPU replica takes several GPUs of one node",
			req:  Request{Count: 1, GPU: modelplane.GPURequest{GPUCount: 2}},
			nodes: []Node{
				node("a", modelplane.NodeReady, h100("GPU-a0", 0)),
				node("b", modelplane.NodeReady, h100("GPU-b0", 0), h100("GPU-b1", 1)),
			},
			want: []Placement{{NodeID: "b", GPUUUIDs: []string{"GPU-b0", "GPU-b1"}}},
		},
		{
			name: "a full node is passed over for one with room",
			req:  Request{Count: 1, GPU: oneH100},
			nodes: []Node{
				withAssigned(node("a", modelplane.NodeReady, h100("GPU-a0", 0)), map[string]string{"GPU-a0": "r1"}),
				withReplicas(node("b", modelplane.NodeReady, h100("GPU-b0", 0)), 3),
			},
			want: []Placement{{NodeID: "b", GPUUUIDs: []string{"GPU-b0"}}},
		},
		{
			name:    "GPU type mismatch",
			req:     Request{Count: 1, GPU: oneH100},
			nodes:   []Node{node("a", modelplane.NodeReady, gpu("GPU-a0", 0, "NVIDIA A100-SXM4-40GB", 40))},
			wantErr: "placed 0 of 1 replica: gpu-a: needs 1 GPU of type H100; no GPU on this node matches; it has 1 × NVIDIA A100-SXM4-40GB (40 GiB)",
		},
		{
			name: "GPU memory mismatch",
			req:  Request{Count: 1, GPU: modelplane.GPURequest{GPUCount: 1, GPUMemoryGiB: 80}},
			nodes: []Node{
				node("a", modelplane.NodeReady, gpu("GPU-a0", 0, "NVIDIA A100-SXM4-40GB", 40)),
				node("b", modelplane.NodeReady, gpu("GPU-b0", 0, "NVIDIA A100-SXM4-80GB", 80)),
			},
			want: []Placement{{NodeID: "b", GPUUUIDs: []string{"GPU-b0"}}},
		},
		{
			name: "MIG profile takes a free instance",
			req:  Request{Count: 1, GPU: modelplane.GPURequest{MIGProfile: "1g.10gb"}},
			nodes: []Node{
				withAssigned(node("a", modelplane.NodeReady, migGPU("GPU-a0", 0, "MIG-a0-1", "MIG-a0-2")), map[string]string{"MIG-a0-1": "r1"}),
			},
			want: []Placement{{NodeID: "a", GPUUUIDs: []string{"MIG-a0-2"}}},
		},
		{
			name: "MIG instances run out",
			req:  Request{Count: 2, GPU: modelplane.GPURequest{MIGProfile: "1g.10gb"}},
			nodes: []Node{
				withAssigned(node("a", modelplane.NodeReady, migGPU("GPU-a0", 0, "MIG-a0-1", "MIG-a0-2")), map[string]string{"MIG-a0-1": "r1"}),
			},
			want:    []Placement{{NodeID: "a", GPUUUIDs: []string{"MIG-a0-2"}}},
			wantErr: "placed 1 of 2 replicas: gpu-a: needs a MIG instance 1g.10gb; 0 free, 2 assigned to replicas new#1, r1",
		},
		{
			name: "whole-GPU request skips a GPU in MIG mode",
			req:  Request{Count: 1, GPU: modelplane.GPURequest{GPUCount: 1}},
			nodes: []Node{
				node("a", modelplane.NodeReady, migGPU("GPU-a0", 0, "MIG-a0-1")),
				node("b", modelplane.NodeReady, h100("GPU-b0", 0)),
			},
			want: []Placement{{NodeID: "b", GPUUUIDs: []string{"GPU-b0"}}},
		},
		{
			name: "DOWN and DRAINING nodes are skipped",
			req:  Request{Count: 1, GPU: oneH100},
			nodes: []Node{
				node("a", modelplane.NodeDown, h100("GPU-a0", 0)),
				node("b", modelplane.NodeDraining, h100("GPU-b0", 0)),
				node("c", modelplane.NodeReady, h100("GPU-c0", 0)),
			},
			want: []Placement{{NodeID: "c", GPUUUIDs: []string{"GPU-c0"}}},
		},
		{
			name: "only DOWN and DRAINING nodes place nothing",
			req:  Request{Count: 1, GPU: oneH100},
			nodes: []Node{
				node("a", modelplane.NodeDown, h100("GPU-a0", 0)),
				node("b", modelplane.NodeDraining, h100("GPU-b0", 0)),
			},
			wantErr: "placed 0 of 1 replica: gpu-a: node is DOWN; check that its agent is running and reachable; " +
				"gpu-b: node is DRAINING and takes no new replicas",
		},
		{
			name:  "unhealthy GPUs are skipped",
			req:   Request{Count: 1, GPU: oneH100},
			nodes: []Node{node("a", modelplane.NodeReady, unhealthy(h100("GPU-a0", 0)), h100("GPU-a1", 1))},
			want:  []Placement{{NodeID: "a", GPUUUIDs: []string{"GPU-a1"}}},
		},
		{
			name:    "only unhealthy GPUs place nothing",
			req:     Request{Count: 1, GPU: oneH100},
			nodes:   []Node{node("a", modelplane.NodeReady, unhealthy(h100("GPU-a0", 0)))},
			wantErr: "placed 0 of 1 replica: gpu-a: needs 1 GPU of type H100; 0 free, 1 unhealthy",
		},
		{
			name: "partial placement says why each node took no more",
			req:  Request{Count: 3, GPU: oneH100},
			nodes: []Node{
				withAssigned(node("a", modelplane.NodeReady, h100("GPU-a0", 0), h100("GPU-a1", 1)), map[string]string{"GPU-a0": "r1"}),
				node("b", modelplane.NodeDown, h100("GPU-b0", 0)),
			},
			want: []Placement{{NodeID: "a", GPUUUIDs: []string{"GPU-a1"}}},
			wantErr: "placed 1 of 3 replicas: gpu-a: needs 1 GPU of type H100; 0 free, 2 assigned to replicas new#1, r1; " +
				"gpu-b: node is DOWN; check that its agent is running and reachable",
		},
		{
			name:  "CPU-only replica goes to a node without GPUs",
			req:   Request{Count: 1},
			nodes: []Node{node("a", modelplane.NodeReady)},
			want:  []Placement{{NodeID: "a"}},
		},
		{
			name: "CPU-only replicas spread and never fill a node",
			req:  Request{Count: 3},
			nodes: []Node{
				withAssigned(node("a", modelplane.NodeReady, h100("GPU-a0", 0)), map[string]string{"GPU-a0": "r1"}),
				node("b", modelplane.NodeDown),
				node("c", modelplane.NodeReady),
			},
			want: []Placement{{NodeID: "a"}, {NodeID: "c"}, {NodeID: "a"}},
		},
		{
			name:  "zero replicas places nothing",
			req:   Request{Count: 0, GPU: oneH100},
			nodes: []Node{node("a", modelplane.NodeReady, h100("GPU-a0", 0))},
		},
		{
			name:    "no nodes at all",
			req:     Request{Count: 2, GPU: oneH100},
			wantErr: "placed 0 of 2 replicas: no nodes are registered; start a node agent (modelplane agent) on a GPU host",
		},
		{
			name:    "a node without a name is reported by ID",
			req:     Request{Count: 1, GPU: oneH100},
			nodes:   []Node{{ID: "n-1", State: "BOOTING"}},
			wantErr: "placed 0 of 1 replica: n-1: node is BOOTING, not READY",
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := Place(tt.req, tt.nodes)
			assert.Equal(t, tt.want, got, "placements")
			if tt.wantErr == "" {
				require.NoError(t, err)
				return
			}
			require.Error(t, err, "expected %q", tt.wantErr)
			assert.Equal(t, tt.wantErr, err.Error())
			assert.ErrorIs(t, err, ErrUnplaceable)
			var u *Unplaceable
			require.ErrorAs(t, err, &u)
			assert.Equal(t, tt.req.Count, u.Wanted, "Wanted")
			assert.Equal(t, len(got), u.Placed, "Placed must count the placements returned")
		})
	}
}

func TestPlace_NoNodesIsItsOwnError(t *testing.T) {
	_, err := Place(Request{Count: 1}, nil)
	assert.ErrorIs(t, err, ErrNoNodes)
	assert.ErrorIs(t, err, ErrUnplaceable)

	_, err = Place(Request{Count: 1}, []Node{node("a", modelplane.NodeDown)})
	assert.ErrorIs(t, err, ErrUnplaceable)
	assert.NotErrorIs(t, err, ErrNoNodes, "a DOWN node is still a node")
}

func TestPlace_InvalidRequestIsRefusedOnce(t *testing.T) {
	nodes := []Node{node("a", modelplane.NodeReady, h100("GPU-a0", 0))}
	tests := []struct {
		name string
		req  Request
	}{
		{"negative count", Request{Count: -1}},
		{"negative GPU count", Request{Count: 1, GPU: modelplane.GPURequest{GPUCount: -1}}},
		{"MIG profile with two GPUs", Request{Count: 1, GPU: modelplane.GPURequest{GPUCount: 2, MIGProfile: "1g.10gb"}}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := Place(tt.req, nodes)
			assert.Empty(t, got)
			assert.ErrorIs(t, err, ErrInvalidRequest)
			assert.NotErrorIs(t, err, ErrUnplaceable, "no cluster could take this request, so it is not a capacity problem")
		})
	}
}

func TestPlace_DoesNotModifyNodes(t *testing.T) {
	assigned := map[string]string{"GPU-a0": "r1"}
	nodes := []Node{withAssigned(node("a", modelplane.NodeReady, h100("GPU-a0", 0), h100("GPU-a1", 1)), assigned)}
	_, err := Place(Request{Count: 1, GPU: oneH100}, nodes)
	require.NoError(t, err)
	assert.Equal(t, map[string]string{"GPU-a0": "r1"}, nodes[0].Assigned)
}

func TestPlace_IsDeterministicWhateverTheNodeOrder(t *testing.T) {
	nodes := []Node{
		node("a", modelplane.NodeReady, h100("GPU-a0", 0), h100("GPU-a1", 1)),
		withReplicas(node("b", modelplane.NodeReady, h100("GPU-b0", 0), h100("GPU-b1", 1), h100("GPU-b2", 2)), 1),
		node("c", modelplane.NodeReady, h100("GPU-c0", 0)),
		node("d", modelplane.NodeDraining, h100("GPU-d0", 0)),
	}
	req := Request{Count: 5, GPU: oneH100, ExistingByNode: map[string]int{"c": 1}}
	want, wantErr := Place(req, nodes)
	require.NoError(t, wantErr)
	require.Len(t, want, 5)

	r := rand.New(rand.NewPCG(1, 2))
	for i := range 50 {
		shuffled := slices.Clone(nodes)
		r.Shuffle(len(shuffled), func(i, j int) { shuffled[i], shuffled[j] = shuffled[j], shuffled[i] })
		got, err := Place(req, shuffled)
		require.NoError(t, err)
		require.Equal(t, want, got, "run %d with node order %v", i, nodeIDs(shuffled))
	}
}

func nodeIDs(nodes []Node) []string {
	ids := make([]string, len(nodes))
	for i, n := range nodes {
		ids[i] = n.ID
	}
	return ids
}

// TestPlace_NeverHandsOutAGPUTwice checks, over random clusters and requests, that no GPU or
// MIG instance is placed twice, none already in use is placed (counting a whole GPU and its
// MIG instances as one), and every placement lands on a READY node's healthy GPUs.
func TestPlace_NeverHandsOutAGPUTwice(t *testing.T) {
	r := rand.New(rand.NewPCG(7, 11))
	var withGPUs, partial int
	for iter := range 3000 {
		nodes := randomNodes(r)
		req := randomRequest(r, nodes)
		got, err := Place(req, nodes)
		if err != nil && len(got) > 0 {
			partial++
		}
		if len(got) > 0 && len(got[0].GPUUUIDs) > 0 {
			withGPUs++
		}
		if err != nil {
			require.ErrorIs(t, err, ErrUnplaceable, "iteration %d", iter)
			var u *Unplaceable
			require.ErrorAs(t, err, &u)
			require.Equal(t, len(got), u.Placed, "iteration %d: Placed", iter)
			require.Less(t, len(got), req.Count, "iteration %d: error although all were placed", iter)
		} else {
			require.Len(t, got, req.Count, "iteration %d: no error but not all placed", iter)
		}

		byID := map[string]Node{}
		for _, n := range nodes {
			byID[n.ID] = n
		}
		// placed holds every UUID handed out in this call; a whole GPU and its MIG
		// instances are one physical GPU, so each is checked against the other.
		placed := map[string]bool{}
		for _, p := range got {
			n, ok := byID[p.NodeID]
			require.True(t, ok, "iteration %d: placement on unknown node %q", iter, p.NodeID)
			require.Equal(t, modelplane.NodeReady, n.State, "iteration %d: placement on %s node %s", iter, n.State, n.ID)
			wantLen := req.GPU.GPUCount
			if req.GPU.MIGProfile != "" {
				wantLen = 1
			}
			require.Len(t, p.GPUUUIDs, wantLen, "iteration %d: placement %v", iter, p)
			for _, u := range p.GPUUUIDs {
				require.False(t, placed[u], "iteration %d: %s placed twice in %v", iter, u, got)
				placed[u] = true
				g, isWhole := findGPU(n, u)
				require.True(t, g.Healthy, "iteration %d: unhealthy GPU %s placed", iter, g.UUID)
				_, taken := n.Assigned[u]
				require.False(t, taken, "iteration %d: %s is already assigned", iter, u)
				_, parentTaken := n.Assigned[g.UUID]
				require.False(t, parentTaken, "iteration %d: %s is on GPU %s, which is already assigned", iter, u, g.UUID)
				if isWhole {
					// A whole GPU must not overlap any of its MIG instances, in use or placed now.
					for _, mi := range g.MIGInstances {
						_, miTaken := n.Assigned[mi.UUID]
						require.False(t, miTaken || placed[mi.UUID], "iteration %d: GPU %s placed whole over MIG instance %s", iter, u, mi.UUID)
					}
				} else {
					require.False(t, placed[g.UUID], "iteration %d: MIG instance %s placed under a GPU placed whole", iter, u)
				}
			}
		}
	}
	// Guard against a generator that stops producing the cases this test is for.
	assert.Greater(t, withGPUs, 300, "iterations that placed GPUs")
	assert.Greater(t, partial, 100, "iterations with a partial placement")
}

// findGPU returns the GPU that uuid is, or that holds the MIG instance uuid, and whether uuid
// is the whole GPU.
func findGPU(n Node, uuid string) (nvml.GPU, bool) {
	for _, g := range n.Inventory.GPUs {
		if g.UUID == uuid {
			return g, true
		}
		for _, mi := range g.MIGInstances {
			if mi.UUID == uuid {
				return g, false
			}
		}
	}
	panic(fmt.Sprintf("UUID %s is not on node %s", uuid, n.ID))
}

var (
	randomStates = []modelplane.NodeState{modelplane.NodeReady, modelplane.NodeReady, modelplane.NodeReady, modelplane.NodeDraining, modelplane.NodeDown}
	randomNames  = []string{"NVIDIA H100 80GB HBM3", "NVIDIA A100-SXM4-40GB", "NVIDIA L4"}
	randomMems   = []uint64{80, 40, 24}
)

func randomNodes(r *rand.Rand) []Node {
	nodes := make([]Node, r.IntN(5))
	for i := range nodes {
		id := fmt.Sprintf("n%d", i)
		n := Node{ID: id, Name: "node-" + id, State: randomStates[r.IntN(len(randomStates))],
			Replicas: r.IntN(3), Assigned: map[string]string{}}
		for j := range r.IntN(5) {
			kind := r.IntN(len(randomNames))
			g := gpu(fmt.Sprintf("GPU-%s-%d", id, j), j, randomNames[kind], randomMems[kind])
			g.NVLinkGroup = r.IntN(3) - 1
			g.NUMANode = r.IntN(2)
			g.Healthy = r.IntN(6) > 0
			if r.IntN(3) == 0 {
				g.MIGMode = true
				for k := range r.IntN(4) {
					profile := "1g.10gb"
					if r.IntN(2) == 0 {
						profile = "2g.20gb"
					}
					g.MIGInstances = append(g.MIGInstances, nvml.MIGInstance{
						UUID: fmt.Sprintf("MIG-%s-%d-%d", id, j, k), ParentUUID: g.UUID, Profile: profile, MemoryBytes: 10 * gib,
					})
				}
			}
			switch {
			case r.IntN(4) == 0:
				n.Assigned[g.UUID] = fmt.Sprintf("r-%s-%d", id, j)
			case len(g.MIGInstances) > 0 && r.IntN(3) == 0:
				mi := g.MIGInstances[r.IntN(len(g.MIGInstances))]
				n.Assigned[mi.UUID] = "r-" + mi.UUID
			}
			n.Inventory.GPUs = append(n.Inventory.GPUs, g)
		}
		nodes[i] = n
	}
	return nodes
}

func randomRequest(r *rand.Rand, nodes []Node) Request {
	req := Request{Count: 1 + r.IntN(6), ExistingByNode: map[string]int{}}
	for _, n := range nodes {
		if r.IntN(2) == 0 {
			req.ExistingByNode[n.ID] = r.IntN(3)
		}
	}
	switch r.IntN(4) {
	case 0: // CPU only
	case 1:
		req.GPU = modelplane.GPURequest{MIGProfile: []string{"1g.10gb", "2g.20gb"}[r.IntN(2)]}
	default:
		req.GPU = modelplane.GPURequest{GPUCount: 1 + r.IntN(3)}
		if r.IntN(2) == 0 {
			req.GPU.GPUType = []string{"H100", "A100", "L4"}[r.IntN(3)]
		}
		if r.IntN(3) == 0 {
			req.GPU.GPUMemoryGiB = []int{24, 40, 80}[r.IntN(3)]
		}
	}
	return req
}

func TestHosts_AreReadyNodesWhoseGPUsCouldFitTheRequestEvenWhenTaken(t *testing.T) {
	busy := withAssigned(node("b", modelplane.NodeReady, h100("GPU-b0", 0)), map[string]string{"GPU-b0": "r1"})
	nodes := []Node{
		node("d", modelplane.NodeReady, gpu("GPU-d0", 0, "NVIDIA A100-SXM4-80GB", 80)),
		busy,
		node("a", modelplane.NodeReady, h100("GPU-a0", 0)),
		node("c", modelplane.NodeDown, h100("GPU-c0", 0)),
		node("e", modelplane.NodeDraining, h100("GPU-e0", 0)),
	}
	tests := []struct {
		name string
		req  modelplane.GPURequest
		want []string
	}{
		{"an H100 request", oneH100, []string{"a", "b"}},
		{"a CPU-only request", modelplane.GPURequest{}, []string{"a", "b", "d"}},
		{"more GPUs than any node has", modelplane.GPURequest{GPUCount: 2}, nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var got []string
			for _, n := range Hosts(tt.req, nodes) {
				got = append(got, n.ID)
			}
			require.Equal(t, tt.want, got)
		})
	}
}
