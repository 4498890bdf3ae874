package api_test

import (
	"bytes"
	"context"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/modelplane/modelplane"
	"github.com/modelplane/modelplane/agent/agentproto"
	"github.com/modelplane/modelplane/api"
	"github.com/modelplane/modelplane/apikey"
	"github.com/modelplane/modelplane/internal/apitest"
	"github.com/modelplane/modelplane/nvml"
	"github.com/modelplane/modelplane/store"
)

const nodeToken = "node-token-0123456789abcdef"

func heartbeat(t *testing.T, f *fixture, token string, hb agentproto.Heartbeat) *httptest.ResponseRecorder {
	t.Helper()
	body, err := json.Marshal(hb)
	require.NoError(t, err)
	req := httptest.NewRequest(http.MethodPost, agentproto.HeartbeatPath, bytes.NewReader(body))
	req.Header.Set("Content-Type", "application/json")
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	rec := httptest.NewRecorder()
	f.e.ServeHTTP(rec, req)
	return rec
}

func nodeFixture(t *testing.T) *fixture {
	f := newFixture(t)
	deps := apitest.Deps(t, f.db)
	deps.NodeToken = nodeToken
	f.e = api.New(deps)
	return f
}

func sampleHeartbeat(name string) agentproto.Heartbeat {
	return agentproto.Heartbeat{
		Name: name, AgentID: "agentid00001", AgentURL: "http://10.1.2.3:7070",
		Inventory: agentproto.InventoryResponse{Node: name, GPUProfile: "h200", GPUs: []agentproto.GPUInfo{
			{GPU: nvml.GPU{UUID: "GPU-" + name + "-0", Index: 0, Name: "NVIDIA H200", MemoryTotalBytes: 150 << 30, Healthy: true}, AssignedReplicaID: "rep1"},
			{GPU: nvml.GPU{UUID: "GPU-" + name + "-1", Index: 1, Name: "NVIDIA H200", MemoryTotalBytes: 150 << 30, Healthy: false, UnhealthyReason: "XID 79"}},
		}},
		Replicas: []agentproto.Replica{{ID: "rep1", DeploymentID: "dep00001", State: modelplane.ReplicaReady, GPUUUIDs: []string{"GPU-" + name + "-0"}}},
	}
}

func TestNodeHeartbeat_RegistersAndListsGPUs(t *testing.T) {
	f := nodeFixture(t)
	name := "gpu-" + modelplane.NewID(6)
	rec := heartbeat(t, f, nodeToken, sampleHeartbeat(name))
	require.Equal(t, http.StatusOK, rec.Code, rec.Body.String())

	ctx := context.Background()
	ws, _, err := store.EnsureWorkspace(ctx, f.db, "admins-"+modelplane.NewID(4))
	require.NoError(t, err)
	_, admin, err := apikey.Create(ctx, f.db, ws.ID, "admin", true)
	require.NoError(t, err)
	r := f.do(t, http.MethodGet, "/v1/nodes", "Api-Key "+admin)
	require.Equal(t, http.StatusOK, r.Status)
	var node map[string]any
	for _, n := range r.Body["nodes"].([]any) {
		if n.(map[string]any)["name"] == name {
			node = n.(map[string]any)
		}
	}
	require.NotNil(t, node, "registered node missing from /v1/nodes")
	require.Equal(t, "READY", node["state"])
	gpus := node["gpus"].([]any)
	require.Len(t, gpus, 2)
	g0, g1 := gpus[0].(map[string]any), gpus[1].(map[string]any)
	require.Equal(t, "rep1", g0["assigned_replica_id"])
	require.Equal(t, true, g0["healthy"])
	require.Equal(t, false, g1["healthy"])
	require.Equal(t, "XID 79", g1["unhealthy_reason"])
	require.Len(t, node["replicas"].([]any), 1)

	// A later heartbeat without a GPU removes it; the node keeps its ID.
	hb := sampleHeartbeat(name)
	hb.Inventory.GPUs = hb.Inventory.GPUs[:1]
	rec2 := heartbeat(t, f, nodeToken, hb)
	require.Equal(t, http.StatusOK, rec2.Code)
	var first, second map[string]string
	require.NoError(t, json.Unmarshal(rec.Body.Bytes(), &first))
	require.NoError(t, json.Unmarshal(rec2.Body.Bytes(), &second))
	require.Equal(t, first["node_id"], second["node_id"])
	nodes, err := store.ListNodes(ctx, f.db)
	require.NoError(t, err)
	for _, n := range nodes {
		if n.Name == name {
			require.Len(t, n.GPUs, 1)
		}
	}
}

func TestNodeHeartbeat_WrongTokenIs401AndBadBodyIs400(t *testing.T) {
	f := nodeFixture(t)
	require.Equal(t, http.StatusUnauthorized, heartbeat(t, f, "", sampleHeartbeat("n1")).Code)
	require.Equal(t, http.StatusUnauthorized, heartbeat(t, f, "wrong-token-wrong-token", sampleHeartbeat("n1")).Code)
	hb := sampleHeartbeat("n1")
	hb.AgentURL = "not a url"
	rec := heartbeat(t, f, nodeToken, hb)
	require.Equal(t, http.StatusBadRequest, rec.Code)
	require.Contains(t, rec.Body.String(), "agent_url")
	hb = sampleHeartbeat("")
	require.Equal(t, http.StatusBadRequest, heartbeat(t, f, nodeToken, hb).Code)
}

func TestNodeHeartbeat_WithoutASharedTokenATokenOfNoNodeIs401(t *testing.T) {
	f := newFixture(t)
	require.Equal(t, http.StatusUnauthorized, heartbeat(t, f, nodeToken, sampleHeartbeat("n1")).Code)
}

func TestListNodes_NeedsAdminKey(t *testing.T) {
	f := nodeFixture(t)
	_, _, key := f.workspace(t)
	r := f.do(t, http.MethodGet, "/v1/nodes", "Api-Key "+key)
	require.Equal(t, http.StatusForbidden, r.Status)
}

func TestListNodes_SilentNodeIsDown(t *testing.T) {
	f := nodeFixture(t)
	name := "gpu-" + modelplane.NewID(6)
	require.Equal(t, http.StatusOK, heartbeat(t, f, nodeToken, sampleHeartbeat(name)).Code)
	_, err := f.db.Exec(`UPDATE nodes SET last_heartbeat_at = now() - interval '1 minute' WHERE name = $1`, name)
	require.NoError(t, err)
	nodes, err := store.ListNodes(context.Background(), f.db)
	require.NoError(t, err)
	for _, n := range nodes {
		if n.Name == name {
			require.Equal(t, modelplane.NodeDown, n.State)
			require.WithinDuration(t, time.Now().Add(-time.Minute), *n.LastHeartbeatAt, 10*time.Second)
		}
	}
}

// TestListNodes_ShowsOnlyTheReplicasWireView sends a heartbeat whose replicas carry what an
// agent keeps to itself (its state-file record: control token, runtime handle, the start
// request with secrets and environment values), as an agent that leaked them would, and
// reads GET /v1/nodes: the API keeps and shows agentproto.Replica's fields only.
func TestListNodes_ShowsOnlyTheReplicasWireView(t *testing.T) {
	f := nodeFixture(t)
	name := "gpu-" + modelplane.NewID(6)
	hb, err := json.Marshal(sampleHeartbeat(name))
	require.NoError(t, err)
	var body map[string]any
	require.NoError(t, json.Unmarshal(hb, &body))
	const (
		secretValue  = "secret-value-7f3a9c"
		envValue     = "env-value-51be02"
		controlToken = "0123456789abcdef0123456789abcdef"
		logDir       = "/var/lib/modelplane/agent/replicas/rep1/logs"
	)
	replica := body["replicas"].([]any)[0].(map[string]any)
	replica["control_token"] = controlToken
	replica["handle"] = map[string]any{"replica_id": "rep1", "runtime": "process", "pid": 4242, "start_time": 987654, "log_dir": logDir}
	replica["request"] = map[string]any{"replica_id": "rep1", "secrets": map[string]string{"hf_token": secretValue},
		"env": map[string]string{"MODEL_API_KEY": envValue}}
	hb, err = json.Marshal(body)
	require.NoError(t, err)
	req := httptest.NewRequest(http.MethodPost, agentproto.HeartbeatPath, bytes.NewReader(hb))
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("Authorization", "Bearer "+nodeToken)
	rec := httptest.NewRecorder()
	f.e.ServeHTTP(rec, req)
	require.Equal(t, http.StatusOK, rec.Code, rec.Body.String())

	ctx := context.Background()
	ws, _, err := store.EnsureWorkspace(ctx, f.db, "admins-"+modelplane.NewID(4))
	require.NoError(t, err)
	_, admin, err := apikey.Create(ctx, f.db, ws.ID, "admin", true)
	require.NoError(t, err)
	req = httptest.NewRequest(http.MethodGet, "/v1/nodes", nil)
	req.Header.Set("Authorization", "Api-Key "+admin)
	rec = httptest.NewRecorder()
	f.e.ServeHTTP(rec, req)
	require.Equal(t, http.StatusOK, rec.Code, rec.Body.String())
	nodes := rec.Body.String()
	require.Contains(t, nodes, name)
	require.Contains(t, nodes, `"deployment_id":"dep00001"`, "the replica's wire fields are shown")
	for what, value := range map[string]string{
		"secret value": secretValue, "env value": envValue, "control token": controlToken,
		"handle's log directory": logDir, "handle": `"handle"`, "start request": `"request"`,
	} {
		require.NotContains(t, nodes, value, "GET /v1/nodes shows the %s", what)
	}
}

// TestListNodes_SaysWhichNodesCannotIsolateTheirModels: a node whose agent cannot run model
// servers as users of their own is listed with its warning; one that can, with its user IDs;
// one whose agent does not say, as unknown. A mode the API does not know is refused.
func TestListNodes_SaysWhichNodesCannotIsolateTheirModels(t *testing.T) {
	f := nodeFixture(t)
	ctx := context.Background()
	ws, _, err := store.EnsureWorkspace(ctx, f.db, "admins-"+modelplane.NewID(4))
	require.NoError(t, err)
	_, admin, err := apikey.Create(ctx, f.db, ws.ID, "admin", true)
	require.NoError(t, err)

	open, isolated, silent := "open-"+modelplane.NewID(6), "iso-"+modelplane.NewID(6), "old-"+modelplane.NewID(6)
	warning := "the agent runs as user 1000, not root, so it cannot run model servers as users of their own: ..."
	hb := sampleHeartbeat(open)
	hb.Inventory.Isolation = agentproto.Isolation{Mode: agentproto.IsolationNone, Warning: warning}
	require.Equal(t, http.StatusOK, heartbeat(t, f, nodeToken, hb).Code)
	hb = sampleHeartbeat(isolated)
	hb.Inventory.Isolation = agentproto.Isolation{Mode: agentproto.IsolationReplicaUsers, UIDs: "70000-79999"}
	require.Equal(t, http.StatusOK, heartbeat(t, f, nodeToken, hb).Code)
	require.Equal(t, http.StatusOK, heartbeat(t, f, nodeToken, sampleHeartbeat(silent)).Code)

	r := f.do(t, http.MethodGet, "/v1/nodes", "Api-Key "+admin)
	require.Equal(t, http.StatusOK, r.Status)
	got := map[string]any{}
	for _, n := range r.Body["nodes"].([]any) {
		node := n.(map[string]any)
		got[node["name"].(string)] = node["isolation"]
	}
	require.Equal(t, map[string]any{"mode": "none", "warning": warning}, got[open])
	require.Equal(t, map[string]any{"mode": "replica-users", "uids": "70000-79999"}, got[isolated])
	require.Equal(t, map[string]any{"mode": "unknown"}, got[silent])

	hb = sampleHeartbeat(open)
	hb.Inventory.Isolation.Mode = "sandbox"
	rec := heartbeat(t, f, nodeToken, hb)
	require.Equal(t, http.StatusBadRequest, rec.Code)
	require.Contains(t, rec.Body.String(), "inventory.isolation.mode")
}
