package activities_test

import (
	"context"
	"encoding/json"
	"errors"
	"net/http"
	"net/http/httptest"
	"os"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/jmoiron/sqlx"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"go.temporal.io/sdk/temporal"
	"go.temporal.io/sdk/testsuite"

	"github.com/modelplane/modelplane"
	"github.com/modelplane/modelplane/activities"
	"github.com/modelplane/modelplane/agent/agentproto"
	"github.com/modelplane/modelplane/internal/pgtest"
	"github.com/modelplane/modelplane/nodeauth"
	"github.com/modelplane/modelplane/secretbox"
	"github.com/modelplane/modelplane/settings"
	"github.com/modelplane/modelplane/store"
	"github.com/modelplane/modelplane/workflows/contract"
)

var dbURL string

func TestMain(m *testing.M) { os.Exit(pgtest.Run(m, "activities", true, &dbURL)) }

func openDB(t *testing.T) *sqlx.DB {
	t.Helper()
	db, err := store.Open(context.Background(), dbURL)
	require.NoError(t, err)
	t.Cleanup(func() { db.Close() })
	return db
}

// fakeAgent answers the agent API for replicas kept in memory; a started replica is READY
// at once unless failStart names it.
type fakeAgent struct {
	mu       sync.Mutex
	replicas map[string]agentproto.Replica
	starts   []agentproto.StartRequest
	stopped  []string
	refuse   bool
	// loading keeps started replicas STARTING, as a model that takes long to load.
	loading bool
	// envs are the answers to the Python environment routes, in order; the last repeats.
	envs     []agentproto.EnvStatus
	envCalls int
	// auths are the Authorization headers of the calls, in order.
	auths []string
}

func (f *fakeAgent) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.auths = append(f.auths, r.Header.Get("Authorization"))
	id := strings.TrimPrefix(r.URL.Path, "/v1/replicas/")
	switch {
	case strings.HasPrefix(r.URL.Path, "/v1/envs"):
		st := f.envs[min(f.envCalls, len(f.envs)-1)]
		f.envCalls++
		_ = json.NewEncoder(w).Encode(st)
	case r.Method == http.MethodPost && r.URL.Path == "/v1/replicas":
		if f.refuse {
			w.WriteHeader(http.StatusConflict)
			_, _ = w.Write([]byte(`{"error":{"code":"conflict","message":"no H100 free"}}`))
			return
		}
		var req agentproto.StartRequest
		_ = json.NewDecoder(r.Body).Decode(&req)
		f.starts = append(f.starts, req)
		rep := agentproto.Replica{ID: req.ReplicaID, DeploymentID: req.DeploymentID, State: modelplane.ReplicaReady, Address: "127.0.0.1:9000", PredictPath: "/v1/models/model:predict"}
		if f.loading {
			rep.State = modelplane.ReplicaStarting
		}
		f.replicas[req.ReplicaID] = rep
		_ = json.NewEncoder(w).Encode(rep)
	case r.Method == http.MethodGet:
		rep, ok := f.replicas[id]
		if !ok {
			w.WriteHeader(http.StatusNotFound)
			return
		}
		_ = json.NewEncoder(w).Encode(rep)
	case r.Method == http.MethodDelete:
		f.stopped = append(f.stopped, id)
		rep, ok := f.replicas[id]
		if !ok {
			w.WriteHeader(http.StatusNotFound)
			return
		}
		rep.State = modelplane.ReplicaStopped
		f.replicas[id] = rep
		_ = json.NewEncoder(w).Encode(rep)
	}
}

type fixture struct {
	db    *sqlx.DB
	acts  *activities.Activities
	agent *fakeAgent
	dep   store.Deployment
	node  store.Node
	env   *testsuite.TestActivityEnvironment
}

// newFixture makes a deployment of an archive needing one H100 and a node with one H100
// whose agent is fake.
func newFixture(t *testing.T, config string) *fixture {
	t.Helper()
	ctx := context.Background()
	db := openDB(t)
	fa := &fakeAgent{replicas: map[string]agentproto.Replica{}}
	srv := httptest.NewServer(fa)
	t.Cleanup(srv.Close)

	ws, _, err := store.EnsureWorkspace(ctx, db, "ws-"+modelplane.NewID(6))
	require.NoError(t, err)
	m, err := store.CreateModel(ctx, db, ws.ID, "echo")
	require.NoError(t, err)
	archID := "sha256:" + strings.Repeat("ab", 32)
	_, _, err = store.CreateArchive(ctx, db, store.Archive{WorkspaceID: ws.ID, ID: archID, SizeBytes: 1, Config: json.RawMessage(config)})
	require.NoError(t, err)
	d, err := store.CreateDeployment(ctx, db, store.NewDeployment{ModelID: m.ID, WorkspaceID: ws.ID, ArchiveID: &archID})
	require.NoError(t, err)
	name := "node-" + modelplane.NewID(6)
	n, err := store.RecordHeartbeat(ctx, db, store.NodeReport{
		Name: name, AgentID: "a-" + name, AgentURL: srv.URL, GPUProfile: "fake", TokenSHA256: nodeauth.Sum("tok"),
		GPUs: []store.GPU{{UUID: "GPU-" + name, Name: "NVIDIA H100 80GB HBM3", MemoryTotalBytes: 80 << 30, Healthy: true}},
	})
	require.NoError(t, err)
	// Other tests' nodes must not take this test's replicas.
	_, err = db.ExecContext(ctx, `UPDATE nodes SET state = 'DRAINING' WHERE id <> $1`, n.ID)
	require.NoError(t, err)

	acts := &activities.Activities{DB: db, NodeToken: "tok", ArchiveBaseURL: "http://cp:8080/"}
	var s testsuite.WorkflowTestSuite
	env := s.NewTestActivityEnvironment()
	env.RegisterActivity(acts)
	return &fixture{db: db, acts: acts, agent: fa, dep: d, node: n, env: env}
}

const h100Config = `{"model_name":"echo","resources":{"accelerator":"H100:1"}}`

func appErrType(err error) string {
	var ae *temporal.ApplicationError
	if errors.As(err, &ae) {
		return ae.Type()
	}
	return ""
}

func TestLoadDeploymentSpec_ReadsArchiveConfig(t *testing.T) {
	f := newFixture(t, h100Config)
	v, err := f.env.ExecuteActivity(f.acts.LoadDeploymentSpec, contract.LoadDeploymentSpecInput{DeploymentID: f.dep.ID, ModelID: f.dep.ModelID})
	require.NoError(t, err)
	var spec contract.DeploymentSpec
	require.NoError(t, v.Get(&spec))
	require.Equal(t, modelplane.GPURequest{GPUCount: 1, GPUType: "H100"}, spec.Resources)
	require.Equal(t, *f.dep.ArchiveID, spec.ArchiveID)
	require.Contains(t, string(spec.Config), `"model_name":"echo"`)
}

func TestLoadDeploymentSpec_TheCreateRequestsConfigAndTimeoutAreWhatRuns(t *testing.T) {
	f := newFixture(t, h100Config)
	_, err := f.db.Exec(`UPDATE deployments SET config = $2, deploy_timeout_minutes = 15 WHERE id = $1`, f.dep.ID,
		`{"model_name": "echo", "resources": {"accelerator": "H100:2"}, "environment_variables": {"GREETING": "bonjour"}, "truss_key": 1}`)
	require.NoError(t, err)
	v, err := f.env.ExecuteActivity(f.acts.LoadDeploymentSpec, contract.LoadDeploymentSpecInput{DeploymentID: f.dep.ID, ModelID: f.dep.ModelID})
	require.NoError(t, err)
	var spec contract.DeploymentSpec
	require.NoError(t, v.Get(&spec))
	require.Equal(t, modelplane.GPURequest{GPUCount: 2, GPUType: "H100"}, spec.Resources, "placement asks for the request's resources")
	var cfg map[string]any
	require.NoError(t, json.Unmarshal(spec.Config, &cfg))
	require.Equal(t, map[string]any{"GREETING": "bonjour"}, cfg["environment_variables"], "the agent runs the request's config")
	require.EqualValues(t, 1, cfg["truss_key"], "keys modelplane does not know reach the model")
	require.Equal(t, 15*time.Minute, spec.DeployTimeout)

	// A stored config that no longer parses cannot run.
	_, err = f.db.Exec(`UPDATE deployments SET config = '{"model_name": "echo", "runtime": "cobol"}' WHERE id = $1`, f.dep.ID)
	require.NoError(t, err)
	_, err = f.env.ExecuteActivity(f.acts.LoadDeploymentSpec, contract.LoadDeploymentSpecInput{DeploymentID: f.dep.ID, ModelID: f.dep.ModelID})
	require.Equal(t, contract.ErrTypeBuildFailed, appErrType(err), "got %v", err)
}

func TestWaitReplicaReady_PastTheDeployTimeoutTheReplicaFails(t *testing.T) {
	f := newFixture(t, h100Config)
	f.agent.loading = true
	spec := contract.DeploymentSpec{DeploymentID: f.dep.ID, ModelID: f.dep.ModelID, ArchiveID: *f.dep.ArchiveID}
	id := modelplane.NewID(12)
	_, err := f.env.ExecuteActivity(f.acts.PlaceReplica, contract.PlaceReplicaInput{DeploymentID: f.dep.ID, ReplicaID: id})
	require.NoError(t, err)
	_, err = f.env.ExecuteActivity(f.acts.StartReplica, contract.StartReplicaInput{ReplicaID: id, Spec: spec})
	require.NoError(t, err)
	// Placed 11 minutes ago, still loading.
	_, err = f.db.Exec(`UPDATE replicas SET created_at = now() - interval '11 minutes' WHERE id = $1`, id)
	require.NoError(t, err)

	v, err := f.env.ExecuteActivity(f.acts.WaitReplicaReady, contract.WaitReplicaReadyInput{ReplicaID: id,
		PollInterval: 10 * time.Millisecond, Timeout: 10 * time.Minute})
	require.NoError(t, err)
	var res contract.WaitReplicaReadyResult
	require.NoError(t, v.Get(&res))
	require.Equal(t, modelplane.ReplicaFailed, res.State)
	require.True(t, res.TimedOut)
	require.Contains(t, res.Reason, "deploy_timeout_minutes: 10")
	require.Equal(t, modelplane.ReplicaFailed, f.replicaState(t, id).State)

	// Within its timeout a replica is waited for until it is ready.
	id = modelplane.NewID(12)
	_, err = f.env.ExecuteActivity(f.acts.PlaceReplica, contract.PlaceReplicaInput{DeploymentID: f.dep.ID, ReplicaID: id})
	require.NoError(t, err)
	_, err = f.env.ExecuteActivity(f.acts.StartReplica, contract.StartReplicaInput{ReplicaID: id, Spec: spec})
	require.NoError(t, err)
	go func() {
		time.Sleep(100 * time.Millisecond)
		f.agent.mu.Lock()
		defer f.agent.mu.Unlock()
		r := f.agent.replicas[id]
		r.State = modelplane.ReplicaReady
		f.agent.replicas[id] = r
	}()
	v, err = f.env.ExecuteActivity(f.acts.WaitReplicaReady, contract.WaitReplicaReadyInput{ReplicaID: id,
		PollInterval: 10 * time.Millisecond, Timeout: 10 * time.Minute})
	require.NoError(t, err)
	require.NoError(t, v.Get(&res))
	require.Equal(t, modelplane.ReplicaReady, res.State)
	require.False(t, res.TimedOut)
}

func TestLoadDeploymentSpec_InvalidConfigIsBuildFailed(t *testing.T) {
	f := newFixture(t, `{"model_name":"echo","runtime":"cobol"}`)
	_, err := f.env.ExecuteActivity(f.acts.LoadDeploymentSpec, contract.LoadDeploymentSpecInput{DeploymentID: f.dep.ID, ModelID: f.dep.ModelID})
	require.Error(t, err)
	require.Equal(t, contract.ErrTypeBuildFailed, appErrType(err), "got %v", err)
	require.Contains(t, err.Error(), "runtime")
}

func TestPlaceReplica_IdempotentThenUnplaceableWhenGPUTaken(t *testing.T) {
	f := newFixture(t, h100Config)
	gpu := contract.DeploymentSpec{Resources: modelplane.GPURequest{GPUCount: 1, GPUType: "H100"}}.GPURequest()
	in := contract.PlaceReplicaInput{DeploymentID: f.dep.ID, ReplicaID: modelplane.NewID(12), GPU: gpu}

	for range 2 {
		v, err := f.env.ExecuteActivity(f.acts.PlaceReplica, in)
		require.NoError(t, err)
		var got contract.PlaceReplicaResult
		require.NoError(t, v.Get(&got))
		require.Equal(t, f.node.ID, got.NodeID)
	}
	live, err := store.ListLiveReplicas(context.Background(), f.db, f.dep.ID)
	require.NoError(t, err)
	require.Len(t, live, 1, "placing the same replica twice records it once")

	in.ReplicaID = modelplane.NewID(12)
	_, err = f.env.ExecuteActivity(f.acts.PlaceReplica, in)
	require.Error(t, err)
	require.Equal(t, contract.ErrTypeUnplaceable, appErrType(err), "got %v", err)
}

func TestPlaceReplica_MIGProfileGetsAFreeInstanceOfIt(t *testing.T) {
	f := newFixture(t, h100Config)
	ctx := context.Background()
	// The node's GPU runs MIG with two 1g.10gb instances; the agent reports a replica on the
	// first, on the instance and (as agents do) on the parent GPU.
	held := "rep-" + modelplane.NewID(8)
	parent := "GPU-" + f.node.Name
	_, err := store.RecordHeartbeat(ctx, f.db, store.NodeReport{
		Name: f.node.Name, AgentID: "a-" + f.node.Name, AgentURL: f.node.AgentURL, GPUProfile: "fake", TokenSHA256: nodeauth.Sum("tok"),
		GPUs: []store.GPU{{UUID: parent, Name: "NVIDIA H100 80GB HBM3", MemoryTotalBytes: 80 << 30, Healthy: true,
			MIGMode: true, AssignedReplicaID: &held, MIGInstances: []store.GPU{
				{UUID: "MIG-" + f.node.Name + "-1", MIGProfile: "1g.10gb", MemoryTotalBytes: 10 << 30, AssignedReplicaID: &held},
				{UUID: "MIG-" + f.node.Name + "-2", MIGProfile: "1g.10gb", MemoryTotalBytes: 10 << 30},
			}}},
	})
	require.NoError(t, err)
	in := contract.PlaceReplicaInput{DeploymentID: f.dep.ID, ReplicaID: modelplane.NewID(12),
		GPU: modelplane.GPURequest{GPUCount: 1, GPUType: "H100", MIGProfile: "1g.10gb"}}
	v, err := f.env.ExecuteActivity(f.acts.PlaceReplica, in)
	require.NoError(t, err)
	var got contract.PlaceReplicaResult
	require.NoError(t, v.Get(&got))
	require.Equal(t, f.node.ID, got.NodeID)
	require.Equal(t, []string{"MIG-" + f.node.Name + "-2"}, got.GPUUUIDs, "the free instance, not the held one")

	// A whole GPU is not to be had from a GPU in MIG mode.
	in = contract.PlaceReplicaInput{DeploymentID: f.dep.ID, ReplicaID: modelplane.NewID(12),
		GPU: modelplane.GPURequest{GPUCount: 1, GPUType: "H100"}}
	_, err = f.env.ExecuteActivity(f.acts.PlaceReplica, in)
	require.Equal(t, contract.ErrTypeUnplaceable, appErrType(err), "got %v", err)
}

func TestReplicaLifecycle_StartWaitStop(t *testing.T) {
	f := newFixture(t, h100Config)
	spec := contract.DeploymentSpec{DeploymentID: f.dep.ID, ModelID: f.dep.ModelID, ArchiveID: *f.dep.ArchiveID,
		Resources: modelplane.GPURequest{GPUCount: 1, GPUType: "H100"}}
	id := modelplane.NewID(12)
	_, err := f.env.ExecuteActivity(f.acts.PlaceReplica, contract.PlaceReplicaInput{DeploymentID: f.dep.ID, ReplicaID: id, GPU: spec.GPURequest()})
	require.NoError(t, err)

	_, err = f.env.ExecuteActivity(f.acts.StartReplica, contract.StartReplicaInput{ReplicaID: id, Spec: spec})
	require.NoError(t, err)
	require.Len(t, f.agent.starts, 1)
	require.Equal(t, "http://cp:8080/internal/v1/archives/"+*f.dep.ArchiveID, f.agent.starts[0].ArchiveURL)
	require.Equal(t, strings.Repeat("ab", 32), f.agent.starts[0].ArchiveSHA256)

	v, err := f.env.ExecuteActivity(f.acts.WaitReplicaReady, contract.WaitReplicaReadyInput{ReplicaID: id, PollInterval: 10 * time.Millisecond})
	require.NoError(t, err)
	var res contract.WaitReplicaReadyResult
	require.NoError(t, v.Get(&res))
	require.Equal(t, modelplane.ReplicaReady, res.State)
	r, err := store.ReplicaByID(context.Background(), f.db, id)
	require.NoError(t, err)
	require.Equal(t, modelplane.ReplicaReady, r.State)
	require.Equal(t, "127.0.0.1:9000", r.Address)
	require.Equal(t, "/v1/models/model:predict", r.PredictPath, "gateways learn where to send predictions")

	for range 2 {
		_, err = f.env.ExecuteActivity(f.acts.StopReplica, contract.StopReplicaInput{ReplicaID: id, Grace: time.Second})
		require.NoError(t, err, "stopping is idempotent")
	}
	r, err = store.ReplicaByID(context.Background(), f.db, id)
	require.NoError(t, err)
	require.Equal(t, modelplane.ReplicaStopped, r.State)
	require.Equal(t, []string{id}, f.agent.stopped, "a stopped replica is not stopped on the agent again")
}

func TestStartReplica_AgentRefusalIsNonRetryable(t *testing.T) {
	f := newFixture(t, h100Config)
	f.agent.refuse = true
	id := modelplane.NewID(12)
	_, err := f.env.ExecuteActivity(f.acts.PlaceReplica, contract.PlaceReplicaInput{DeploymentID: f.dep.ID, ReplicaID: id})
	require.NoError(t, err)
	_, err = f.env.ExecuteActivity(f.acts.StartReplica, contract.StartReplicaInput{ReplicaID: id,
		Spec: contract.DeploymentSpec{DeploymentID: f.dep.ID, ArchiveID: *f.dep.ArchiveID}})
	require.Error(t, err)
	require.Equal(t, contract.ErrTypeAgentRefused, appErrType(err), "got %v", err)
}

func TestStopReplica_UnknownReplicaIsAlreadyStopped(t *testing.T) {
	f := newFixture(t, h100Config)
	_, err := f.env.ExecuteActivity(f.acts.StopReplica, contract.StopReplicaInput{ReplicaID: modelplane.NewID(12)})
	require.NoError(t, err)
}

// downNode makes the fixture's node stop answering and miss its heartbeats.
func (f *fixture) downNode(t *testing.T) {
	t.Helper()
	_, err := f.db.Exec(`UPDATE nodes SET agent_url = 'http://127.0.0.1:1', last_heartbeat_at = now() - interval '1 minute' WHERE id = $1`, f.node.ID)
	require.NoError(t, err)
}

func TestStartReplica_OnADownNodeFailsAtOnceSoItIsPlacedElsewhere(t *testing.T) {
	f := newFixture(t, h100Config)
	id := modelplane.NewID(12)
	_, err := f.env.ExecuteActivity(f.acts.PlaceReplica, contract.PlaceReplicaInput{DeploymentID: f.dep.ID, ReplicaID: id})
	require.NoError(t, err)
	f.downNode(t)
	_, err = f.env.ExecuteActivity(f.acts.StartReplica, contract.StartReplicaInput{ReplicaID: id,
		Spec: contract.DeploymentSpec{DeploymentID: f.dep.ID, ArchiveID: *f.dep.ArchiveID}})
	require.Error(t, err)
	require.Equal(t, contract.ErrTypeAgentRefused, appErrType(err), "a dead agent must not be retried: %v", err)
	require.Contains(t, err.Error(), "down")
}

func TestStopReplica_OnADownNodeIsRecordedStopped(t *testing.T) {
	f := newFixture(t, h100Config)
	id := modelplane.NewID(12)
	_, err := f.env.ExecuteActivity(f.acts.PlaceReplica, contract.PlaceReplicaInput{DeploymentID: f.dep.ID, ReplicaID: id})
	require.NoError(t, err)
	f.downNode(t)
	_, err = f.env.ExecuteActivity(f.acts.StopReplica, contract.StopReplicaInput{ReplicaID: id, Grace: time.Second})
	require.NoError(t, err)
	r, err := store.ReplicaByID(context.Background(), f.db, id)
	require.NoError(t, err)
	require.Equal(t, modelplane.ReplicaStopped, r.State)
	require.Contains(t, r.Error, "node was down")

	// With the node up but its agent failing, the stop is retried instead.
	id2 := modelplane.NewID(12)
	_, err = f.db.Exec(`UPDATE nodes SET last_heartbeat_at = now() WHERE id = $1`, f.node.ID)
	require.NoError(t, err)
	_, _, err = store.CreateReplica(context.Background(), f.db, store.NewReplica{ID: id2, DeploymentID: f.dep.ID, NodeID: f.node.ID})
	require.NoError(t, err)
	_, err = f.env.ExecuteActivity(f.acts.StopReplica, contract.StopReplicaInput{ReplicaID: id2, Grace: time.Second})
	require.Error(t, err, "an agent that should be up but does not answer is retried")
}

// readyReplica places, starts and waits for a replica until it is READY.
func (f *fixture) readyReplica(t *testing.T) string {
	t.Helper()
	spec := contract.DeploymentSpec{DeploymentID: f.dep.ID, ModelID: f.dep.ModelID, ArchiveID: *f.dep.ArchiveID,
		Resources: modelplane.GPURequest{GPUCount: 1, GPUType: "H100"}}
	id := modelplane.NewID(12)
	_, err := f.env.ExecuteActivity(f.acts.PlaceReplica, contract.PlaceReplicaInput{DeploymentID: f.dep.ID, ReplicaID: id, GPU: spec.GPURequest()})
	require.NoError(t, err)
	_, err = f.env.ExecuteActivity(f.acts.StartReplica, contract.StartReplicaInput{ReplicaID: id, Spec: spec})
	require.NoError(t, err)
	_, err = f.env.ExecuteActivity(f.acts.WaitReplicaReady, contract.WaitReplicaReadyInput{ReplicaID: id, PollInterval: 10 * time.Millisecond})
	require.NoError(t, err)
	return id
}

func (f *fixture) watch(t *testing.T, id string) contract.WatchReplicaResult {
	t.Helper()
	v, err := f.env.ExecuteActivity(f.acts.WatchReplica, contract.WatchReplicaInput{ReplicaID: id, PollInterval: 10 * time.Millisecond})
	require.NoError(t, err)
	var res contract.WatchReplicaResult
	require.NoError(t, v.Get(&res))
	return res
}

func TestWatchReplica_ReplicaReportedFailedIsMarkedFailed(t *testing.T) {
	f := newFixture(t, h100Config)
	id := f.readyReplica(t)
	// The replica crashes a little after the watch began.
	time.AfterFunc(50*time.Millisecond, func() {
		f.agent.mu.Lock()
		defer f.agent.mu.Unlock()
		rep := f.agent.replicas[id]
		rep.State, rep.Error = modelplane.ReplicaFailed, "CUDA error: an illegal memory access"
		f.agent.replicas[id] = rep
	})

	res := f.watch(t, id)
	require.Equal(t, modelplane.ReplicaFailed, res.State)
	require.Contains(t, res.Reason, "CUDA error")
	r, err := store.ReplicaByID(context.Background(), f.db, id)
	require.NoError(t, err)
	require.Equal(t, modelplane.ReplicaFailed, r.State)
	require.Equal(t, res.Reason, r.Error)
}

func TestWatchReplica_NodeDownIsADeath(t *testing.T) {
	f := newFixture(t, h100Config)
	id := f.readyReplica(t)
	f.downNode(t)

	res := f.watch(t, id)
	require.Equal(t, modelplane.ReplicaFailed, res.State)
	require.Contains(t, res.Reason, "node is down")
	r, err := store.ReplicaByID(context.Background(), f.db, id)
	require.NoError(t, err)
	require.Equal(t, modelplane.ReplicaFailed, r.State)
	require.Equal(t, res.Reason, r.Error)
}

func TestWatchReplica_StoppedReplicaIsNotMarkedFailed(t *testing.T) {
	f := newFixture(t, h100Config)
	id := f.readyReplica(t)
	_, err := f.env.ExecuteActivity(f.acts.StopReplica, contract.StopReplicaInput{ReplicaID: id, Grace: time.Second})
	require.NoError(t, err)

	res := f.watch(t, id)
	require.Equal(t, modelplane.ReplicaStopped, res.State, "a deliberate stop does not read as a failure")
	r, err := store.ReplicaByID(context.Background(), f.db, id)
	require.NoError(t, err)
	require.Equal(t, modelplane.ReplicaStopped, r.State)
}

func TestWatchReplica_ReplicaBeingStoppedIsNotMarkedFailed(t *testing.T) {
	f := newFixture(t, h100Config)
	ctx := context.Background()
	id := f.readyReplica(t)
	// A replica terminated through the API: its row goes STOPPING, then its agent stops it.
	require.NoError(t, store.SetReplicaState(ctx, f.db, id, modelplane.ReplicaStopping, "", "terminated through the API"))
	f.agent.mu.Lock()
	rep := f.agent.replicas[id]
	rep.State = modelplane.ReplicaStopped
	f.agent.replicas[id] = rep
	f.agent.mu.Unlock()

	res := f.watch(t, id)
	require.Equal(t, modelplane.ReplicaStopping, res.State, "the watch ends: the slot is replaced")
	r, err := store.ReplicaByID(ctx, f.db, id)
	require.NoError(t, err)
	require.Equal(t, modelplane.ReplicaStopping, r.State, "a replica stopped on purpose is not marked FAILED")
}

func TestLoadDeploymentSpec_EnvironmentIsTheOneServedOrPromotedInto(t *testing.T) {
	f := newFixture(t, h100Config)
	ctx := context.Background()
	spec := func() contract.DeploymentSpec {
		val, err := f.env.ExecuteActivity(f.acts.LoadDeploymentSpec, contract.LoadDeploymentSpecInput{DeploymentID: f.dep.ID, ModelID: f.dep.ModelID})
		require.NoError(t, err)
		var s contract.DeploymentSpec
		require.NoError(t, val.Get(&s))
		return s
	}
	require.Equal(t, "", spec().Environment, "a deployment nothing points at has no environment")

	_, err := store.CreateEnvironment(ctx, f.db, store.Environment{ModelID: f.dep.ModelID, Name: "staging",
		AutoscalingSettings: settings.DefaultAutoscalingSettings(), PromotionSettings: settings.DefaultPromotionSettings()})
	require.NoError(t, err)
	_, err = f.db.Exec(`UPDATE environments SET candidate_deployment_id = $1 WHERE model_id = $2 AND name = 'staging'`, f.dep.ID, f.dep.ModelID)
	require.NoError(t, err)
	require.Equal(t, "staging", spec().Environment, "a promotion's candidate runs as its environment")

	require.NoError(t, store.SetEnvironmentDeployment(ctx, f.db, f.dep.ModelID, "production", f.dep.ID))
	require.Equal(t, "production", spec().Environment, "the environment it serves wins over one it is a candidate for")
}

// reportGateway writes a gateway's report; the report is removed when the test ends, since
// every live report takes part in every drain of the package's tests. It counts for
// store.GatewayDownAfter: tests that wait on it check their times well within that.
func (f *fixture) reportGateway(t *testing.T, gatewayID string, routesAt time.Time, inFlight map[string]int) {
	t.Helper()
	require.NoError(t, store.ReportGateway(context.Background(), f.db, store.GatewayReport{
		GatewayID: gatewayID, RoutesAt: routesAt, InFlight: inFlight}))
	t.Cleanup(func() { _ = store.DeleteGatewayReport(context.Background(), f.db, gatewayID) })
}

// readyRow records a READY replica on the fixture's node that its agent does not know, which
// a stop takes as stopped already.
func (f *fixture) readyRow(t *testing.T) string {
	t.Helper()
	id := modelplane.NewID(12)
	_, _, err := store.CreateReplica(context.Background(), f.db, store.NewReplica{ID: id, DeploymentID: f.dep.ID, NodeID: f.node.ID})
	require.NoError(t, err)
	require.NoError(t, store.SetReplicaState(context.Background(), f.db, id, modelplane.ReplicaReady, "127.0.0.1:9001", ""))
	return id
}

func (f *fixture) replicaState(t *testing.T, id string) store.Replica {
	t.Helper()
	r, err := store.ReplicaByID(context.Background(), f.db, id)
	require.NoError(t, err)
	return r
}

func (f *fixture) agentStopped() []string {
	f.agent.mu.Lock()
	defer f.agent.mu.Unlock()
	return append([]string(nil), f.agent.stopped...)
}

func TestStopReplica_WaitsUntilGatewaysHaveDrainedTheReplica(t *testing.T) {
	f := newFixture(t, h100Config)
	id := f.readyReplica(t)
	f.reportGateway(t, "gw-drain", time.Now().Add(-time.Minute), map[string]int{id: 1})

	done := make(chan error, 1)
	go func() {
		_, err := f.env.ExecuteActivity(f.acts.StopReplica, contract.StopReplicaInput{ReplicaID: id, Grace: time.Second,
			DrainTimeout: time.Minute})
		done <- err
	}()
	require.Eventually(t, func() bool { return f.replicaState(t, id).State == modelplane.ReplicaDraining }, 5*time.Second, 10*time.Millisecond,
		"the stop must first take the replica out of the routes")
	select {
	case err := <-done:
		t.Fatalf("the stop ended (err %v) while a gateway still had old routes and a request in flight on the replica", err)
	case <-time.After(500 * time.Millisecond):
	}
	require.Empty(t, f.agentStopped(), "the agent must not be asked to stop a replica still serving requests")

	// The gateway re-reads its routes after the drain began; its request is still running.
	drainingAt := *f.replicaState(t, id).DrainingAt
	f.reportGateway(t, "gw-drain", drainingAt.Add(time.Millisecond), map[string]int{id: 1})
	select {
	case err := <-done:
		t.Fatalf("the stop ended (err %v) while a request was in flight on the replica", err)
	case <-time.After(300 * time.Millisecond):
	}

	// The request finished.
	f.reportGateway(t, "gw-drain", drainingAt.Add(time.Millisecond), nil)
	select {
	case err := <-done:
		require.NoError(t, err)
	case <-time.After(10 * time.Second):
		t.Fatal("the stop did not end within 10s of the gateway reporting the replica drained")
	}
	require.Equal(t, modelplane.ReplicaStopped, f.replicaState(t, id).State)
	require.Equal(t, []string{id}, f.agentStopped())
}

func TestStopReplica_DrainTimeoutStopsTheReplicaAnyway(t *testing.T) {
	f := newFixture(t, h100Config)
	id := f.readyReplica(t)
	f.reportGateway(t, "gw-stuck", time.Now().Add(-time.Minute), map[string]int{id: 3})

	start := time.Now()
	_, err := f.env.ExecuteActivity(f.acts.StopReplica, contract.StopReplicaInput{ReplicaID: id, Grace: time.Second,
		DrainTimeout: 300 * time.Millisecond})
	require.NoError(t, err)
	require.GreaterOrEqual(t, time.Since(start), 300*time.Millisecond, "the stop must wait out the drain timeout")
	require.Less(t, time.Since(start), 3*time.Second, "the stop must not wait much past the drain timeout")
	require.Equal(t, modelplane.ReplicaStopped, f.replicaState(t, id).State)
	require.Equal(t, []string{id}, f.agentStopped())
}

func TestStopReplica_RetriedStopGoesOnDrainingWithinTheFirstDeadline(t *testing.T) {
	f := newFixture(t, h100Config)
	ctx := context.Background()
	f.reportGateway(t, "gw-stuck", time.Now().Add(-time.Minute), nil)

	// A stop that died while draining left the replica DRAINING: its retry waits again.
	id := f.readyRow(t)
	ok, err := store.MarkReplicaDraining(ctx, f.db, id)
	require.NoError(t, err)
	require.True(t, ok)
	start := time.Now()
	_, err = f.env.ExecuteActivity(f.acts.StopReplica, contract.StopReplicaInput{ReplicaID: id, DrainTimeout: 300 * time.Millisecond})
	require.NoError(t, err)
	require.GreaterOrEqual(t, time.Since(start), 300*time.Millisecond, "a DRAINING replica must still be drained")
	require.Equal(t, modelplane.ReplicaStopped, f.replicaState(t, id).State)

	// A retry whose first try's deadline has passed stops at once, whatever its own timeout.
	id = f.readyRow(t)
	ok, err = store.MarkReplicaDraining(ctx, f.db, id)
	require.NoError(t, err)
	require.True(t, ok)
	f.env.SetHeartbeatDetails(struct {
		ReplicaID string
		Until     time.Time
	}{id, time.Now().Add(-time.Second)})
	start = time.Now()
	_, err = f.env.ExecuteActivity(f.acts.StopReplica, contract.StopReplicaInput{ReplicaID: id, DrainTimeout: time.Minute})
	require.NoError(t, err)
	require.Less(t, time.Since(start), 2*time.Second, "a retried stop must keep its first try's drain deadline")
	require.Equal(t, modelplane.ReplicaStopped, f.replicaState(t, id).State)
}

func TestStopReplica_NotReadyReplicaIsNotDrained(t *testing.T) {
	f := newFixture(t, h100Config)
	id := modelplane.NewID(12)
	_, err := f.env.ExecuteActivity(f.acts.PlaceReplica, contract.PlaceReplicaInput{DeploymentID: f.dep.ID, ReplicaID: id})
	require.NoError(t, err)
	f.reportGateway(t, "gw-stuck", time.Now().Add(-time.Minute), map[string]int{id: 1})

	start := time.Now()
	_, err = f.env.ExecuteActivity(f.acts.StopReplica, contract.StopReplicaInput{ReplicaID: id, DrainTimeout: time.Minute})
	require.NoError(t, err)
	require.Less(t, time.Since(start), 2*time.Second, "a replica that never served is stopped without a drain")
	r := f.replicaState(t, id)
	require.Equal(t, modelplane.ReplicaStopped, r.State)
	require.Nil(t, r.DrainingAt)
}

func TestWaitReplicaReady_DoesNotPutADrainingReplicaBackIntoRoutes(t *testing.T) {
	f := newFixture(t, h100Config)
	id := f.readyReplica(t)
	ok, err := store.MarkReplicaDraining(context.Background(), f.db, id)
	require.NoError(t, err)
	require.True(t, ok)

	// A wait still running when the stop began sees the agent's READY late.
	_, err = f.env.ExecuteActivity(f.acts.WaitReplicaReady, contract.WaitReplicaReadyInput{ReplicaID: id, PollInterval: 10 * time.Millisecond})
	require.NoError(t, err)
	require.Equal(t, modelplane.ReplicaDraining, f.replicaState(t, id).State, "a DRAINING replica must not become READY again")
}

// A node that reports with a token of its own is called with that token, made again from
// the secrets key, never with the shared one; once the token is revoked it is not called.
func TestStartReplica_CallsTheAgentWithItsNodesOwnToken(t *testing.T) {
	f := newFixture(t, h100Config)
	ctx := context.Background()
	text, err := secretbox.Generate()
	require.NoError(t, err)
	key, err := secretbox.ParseKey(text)
	require.NoError(t, err)
	f.acts.SecretsKey = key
	tok, token, err := nodeauth.Issue(ctx, f.db, key, f.node.Name)
	require.NoError(t, err)
	_, err = f.db.ExecContext(ctx, `UPDATE nodes SET token_sha256 = $2 WHERE id = $1`, f.node.ID, nodeauth.Sum(token))
	require.NoError(t, err)

	start := func() error {
		id := modelplane.NewID(12)
		_, err := f.env.ExecuteActivity(f.acts.PlaceReplica, contract.PlaceReplicaInput{DeploymentID: f.dep.ID, ReplicaID: id})
		require.NoError(t, err)
		_, err = f.env.ExecuteActivity(f.acts.StartReplica, contract.StartReplicaInput{ReplicaID: id,
			Spec: contract.DeploymentSpec{DeploymentID: f.dep.ID, ArchiveID: *f.dep.ArchiveID}})
		return err
	}
	require.NoError(t, start())
	require.Equal(t, []string{"Bearer " + token}, f.agent.auths)

	require.NoError(t, store.RevokeNodeToken(ctx, f.db, tok.ID))
	_, err = f.db.ExecContext(ctx, `DELETE FROM replicas WHERE node_id = $1`, f.node.ID)
	require.NoError(t, err)
	err = start()
	require.Error(t, err)
	assert.NotContains(t, err.Error(), token)
	assert.Len(t, f.agent.auths, 1, "an agent whose token was revoked is not called, with the shared token or any other")
}
