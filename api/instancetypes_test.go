package api_test

import (
	"context"
	"net/http"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/modelplane/modelplane"
	"github.com/modelplane/modelplane/agent/agentproto"
	"github.com/modelplane/modelplane/nvml"
	"github.com/modelplane/modelplane/placement"
	"github.com/modelplane/modelplane/store"
)

// instanceTypesOf returns the listed instance types of one GPU type, in the order listed.
func instanceTypesOf(t *testing.T, r response, gpuType string) []map[string]any {
	t.Helper()
	require.Equal(t, http.StatusOK, r.Status, "%v", r.Body)
	var out []map[string]any
	for _, it := range r.Body["instance_types"].([]any) {
		if v := it.(map[string]any); v["gpu_type"] == gpuType {
			out = append(out, v)
		}
	}
	return out
}

func TestInstanceTypes_ListsWholeGPUsAndMIGProfilesWithFreeCapacity(t *testing.T) {
	f := nodeFixture(t)
	_, _, key := f.workspace(t) // any key of a workspace may ask
	gpuName := "NVIDIA Q7" + modelplane.NewID(6)
	gpuType := placement.GPUType(gpuName)
	ready, down := "gpu-"+modelplane.NewID(6), "gpu-"+modelplane.NewID(6)

	whole := func(uuid string, index int, healthy bool) nvml.GPU {
		return nvml.GPU{UUID: uuid, Index: index, Name: gpuName, MemoryTotalBytes: 141 << 30, Healthy: healthy}
	}
	migGPU := whole(ready+"-3", 3, true)
	migGPU.MIGMode = true
	migGPU.MIGInstances = []nvml.MIGInstance{
		{UUID: ready + "-3-a", ParentUUID: migGPU.UUID, Profile: "1g.18gb", MemoryBytes: 18 << 30},
		{UUID: ready + "-3-b", ParentUUID: migGPU.UUID, Profile: "1g.18gb", MemoryBytes: 18 << 30},
		{UUID: ready + "-3-c", ParentUUID: migGPU.UUID, Profile: "3g.71gb", MemoryBytes: 71 << 30},
	}
	hb := agentproto.Heartbeat{Name: ready, AgentID: "agent0000001", AgentURL: "http://10.1.2.3:7070",
		Inventory: agentproto.InventoryResponse{Node: ready, GPUs: []agentproto.GPUInfo{
			{GPU: whole(ready+"-0", 0, true), AssignedReplicaID: "rep-whole"},
			{GPU: whole(ready+"-1", 1, true)},
			{GPU: whole(ready+"-2", 2, false)},
			// The agent reports the replica on a MIG instance on its parent too.
			{GPU: migGPU, AssignedReplicaID: "rep-mig"},
		}},
		Replicas: []agentproto.Replica{
			{ID: "rep-whole", DeploymentID: "dep00001", State: modelplane.ReplicaReady, GPUUUIDs: []string{ready + "-0"}},
			{ID: "rep-mig", DeploymentID: "dep00002", State: modelplane.ReplicaReady, GPUUUIDs: []string{ready + "-3-a"}},
			{ID: "rep-gone", DeploymentID: "dep00003", State: modelplane.ReplicaStopped, GPUUUIDs: []string{ready + "-3-b"}},
		},
	}
	require.Equal(t, http.StatusOK, heartbeat(t, f, nodeToken, hb).Code)
	hbDown := agentproto.Heartbeat{Name: down, AgentID: "agent0000002", AgentURL: "http://10.1.2.4:7070",
		Inventory: agentproto.InventoryResponse{Node: down, GPUs: []agentproto.GPUInfo{
			{GPU: whole(down+"-0", 0, true)}, {GPU: whole(down+"-1", 1, true)},
		}}}
	require.Equal(t, http.StatusOK, heartbeat(t, f, nodeToken, hbDown).Code)
	_, err := f.db.Exec(`UPDATE nodes SET last_heartbeat_at = now() - interval '1 minute' WHERE name = $1`, down)
	require.NoError(t, err)

	got := instanceTypesOf(t, f.do(t, http.MethodGet, "/v1/instance_types", "Api-Key "+key), gpuType)
	type row struct {
		ID, Name                   string
		Count, GPUMemMiB           int
		Available, Total           int
		MemoryLimit, MillicpuLimit int
	}
	var rows []row
	for _, v := range got {
		rows = append(rows, row{v["id"].(string), v["name"].(string), int(v["gpu_count"].(float64)),
			int(v["gpu_memory_limit_mib"].(float64)), int(v["available"].(float64)), int(v["total"].(float64)),
			int(v["memory_limit_mib"].(float64)), int(v["millicpu_limit"].(float64))})
	}
	// Whole GPUs: one free on the READY node (one held, one unhealthy, one in MIG mode); the
	// DOWN node's two count in the total only.
	require.Equal(t, []row{
		{gpuType + ":1", "1x " + gpuType, 1, 141 << 10, 1, 5, 0, 0},
		{gpuType + ":2", "2x " + gpuType, 2, 141 << 10, 0, 2, 0, 0},
		{gpuType + ":3", "3x " + gpuType, 3, 141 << 10, 0, 1, 0, 0},
		// One 1g.18gb instance is held; the stopped replica holds nothing.
		{gpuType + ":1g.18gb", gpuType + " MIG 1g.18gb", 1, 18 << 10, 1, 2, 0, 0},
		{gpuType + ":3g.71gb", gpuType + " MIG 3g.71gb", 1, 71 << 10, 1, 1, 0, 0},
	}, rows)

	// The node list still shows the four GPUs, with the instances under their parent.
	nodes, err := store.ListNodes(context.Background(), f.db)
	require.NoError(t, err)
	for _, n := range nodes {
		if n.Name != ready {
			continue
		}
		require.Len(t, n.GPUs, 4)
		require.Len(t, n.GPUs[3].MIGInstances, 3)
		inst := n.GPUs[3].MIGInstances[0]
		require.Equal(t, "1g.18gb", inst.MIGProfile)
		require.NotNil(t, inst.AssignedReplicaID)
		require.Equal(t, "rep-mig", *inst.AssignedReplicaID)
		require.Nil(t, n.GPUs[3].MIGInstances[1].AssignedReplicaID, "a stopped replica holds no instance")
	}
}

func TestInstanceTypes_NeedsAKey(t *testing.T) {
	f := newFixture(t)
	r := f.do(t, http.MethodGet, "/v1/instance_types", "")
	require.Equal(t, http.StatusUnauthorized, r.Status)
	code, _ := errorCode(t, r)
	require.Equal(t, "unauthenticated", code)
}
