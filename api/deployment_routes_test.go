package api_test

import (
	"bytes"
	"context"
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/modelplane/modelplane"
	"github.com/modelplane/modelplane/agent/agentproto"
	"github.com/modelplane/modelplane/api"
	"github.com/modelplane/modelplane/internal/apitest"
	"github.com/modelplane/modelplane/settings"
	"github.com/modelplane/modelplane/store"
	"github.com/modelplane/modelplane/workflows/contract"
)

// routesFixture serves the API with a fake Temporal and a node token, for a model whose
// production serves prod.
type routesFixture struct {
	*fixture
	tc   *fakeTemporal
	m    store.Model
	auth string
	prod store.Deployment
	base string
}

func newRoutesFixture(t *testing.T) *routesFixture {
	t.Helper()
	ctx := context.Background()
	db, err := store.Open(ctx, dbURL)
	require.NoError(t, err)
	t.Cleanup(func() { db.Close() })
	tc := &fakeTemporal{}
	deps := apitest.Deps(t, db)
	deps.Temporal, deps.NodeToken = tc, nodeToken
	f := &routesFixture{fixture: &fixture{db: db, e: api.New(deps)}, tc: tc}
	var key string
	f.m, _, key = f.workspace(t)
	f.auth = "Api-Key " + key
	f.prod, err = store.CreateDeployment(ctx, db, store.NewDeployment{ModelID: f.m.ID, WorkspaceID: f.m.WorkspaceID,
		AutoscalingSettings: settings.DefaultAutoscalingSettings()})
	require.NoError(t, err)
	require.NoError(t, store.SetEnvironmentDeployment(ctx, db, f.m.ID, modelplane.ProductionEnvironment, f.prod.ID))
	f.base = "/v1/models/" + f.m.ID
	return f
}

// updates lists the Update names sent to the deployment's workflow, and forgets them all.
func (f *routesFixture) updates(deploymentID string) []string {
	var out []string
	for _, u := range f.tc.sent() {
		if u.WorkflowID == contract.DeploymentWorkflowID(deploymentID) {
			out = append(out, u.UpdateName)
		}
	}
	return out
}

func (f *routesFixture) setStatus(t *testing.T, id string, st modelplane.DeploymentStatus) {
	t.Helper()
	require.NoError(t, store.SetDeploymentStatus(context.Background(), f.db, id, st, ""))
}

func TestDeactivate_ProductionDeploymentAndEnvironmentAreAllowed(t *testing.T) {
	f := newRoutesFixture(t)
	for _, path := range []string{
		f.base + "/deployments/" + f.prod.ID + "/deactivate",
		f.base + "/deployments/production/deactivate",
		f.base + "/environments/production/deactivate",
	} {
		r := f.send(t, http.MethodPost, path, f.auth, "")
		require.Equal(t, http.StatusOK, r.Status, "%s: %v", path, r.Body)
		require.Equal(t, true, r.Body["success"])
		require.Equal(t, []string{contract.UpdateDeactivate}, f.updates(f.prod.ID), path)
	}
	// Delete keeps its guard.
	r := f.send(t, http.MethodDelete, f.base+"/deployments/"+f.prod.ID, f.auth, "")
	require.Equal(t, http.StatusUnprocessableEntity, r.Status)
	require.Contains(t, message(r), "serves production")
	require.Empty(t, f.updates(f.prod.ID))
}

func TestEnvironments_SettingsAreThoseOfTheServedDeployment(t *testing.T) {
	f := newRoutesFixture(t)
	ctx := context.Background()
	env := f.base + "/environments/production"

	// Through the environment: the deployment's settings change; the environment's own stay.
	r := f.send(t, http.MethodPatch, env, f.auth, `{"autoscaling_settings": {"min_replica": 2, "max_replica": 3}, "request_backpressure_settings": {"policy": "REJECT_ON_FULL"}}`)
	require.Equal(t, http.StatusOK, r.Status, "%v", r.Body)
	require.Equal(t, "ACCEPTED", r.Body["status"], "a change is ACCEPTED: %v", r.Body)
	require.NotEmpty(t, r.Body["message"])
	require.EqualValues(t, 2, r.Body["environment"].(map[string]any)["autoscaling_settings"].(map[string]any)["min_replica"],
		"the answer's environment is the environment after the update")
	d, err := store.DeploymentByID(ctx, f.db, f.m.ID, f.prod.ID)
	require.NoError(t, err)
	require.Equal(t, 2, d.AutoscalingSettings.MinReplica, "the served deployment's settings are what changed")
	require.Equal(t, 3, d.AutoscalingSettings.MaxReplica)
	require.Equal(t, settings.BackpressureRejectOnFull, d.RequestBackpressureSettings.PolicyOrNone())
	e, err := store.EnvironmentByName(ctx, f.db, f.m.ID, modelplane.ProductionEnvironment)
	require.NoError(t, err)
	require.Equal(t, settings.DefaultAutoscalingSettings(), e.AutoscalingSettings, "the environment keeps its own for when it serves none")

	// Through the deployment: the environment shows the change.
	r = f.send(t, http.MethodPatch, f.base+"/deployments/production/autoscaling_settings", f.auth, `{"concurrency_target": 5}`)
	require.Equal(t, http.StatusOK, r.Status, "%v", r.Body)
	require.Equal(t, "ACCEPTED", r.Body["status"])
	envView := f.do(t, http.MethodGet, env, f.auth).Body
	depView := f.do(t, http.MethodGet, f.base+"/deployments/"+f.prod.ID, f.auth).Body
	require.Equal(t, depView["autoscaling_settings"], envView["autoscaling_settings"], "GET on both shows the same settings")
	require.Equal(t, depView["request_backpressure_settings"], envView["request_backpressure_settings"])
	require.EqualValues(t, 5, envView["autoscaling_settings"].(map[string]any)["concurrency_target"])

	// The same values again change nothing and record nothing.
	before, err := store.ListAudit(ctx, f.db, f.m.WorkspaceID, f.m.ID, 0, 100)
	require.NoError(t, err)
	r = f.send(t, http.MethodPatch, env, f.auth, `{"autoscaling_settings": {"concurrency_target": 5}}`)
	require.Equal(t, http.StatusOK, r.Status)
	require.Equal(t, "UNCHANGED", r.Body["status"], "a no-op PATCH of an environment is UNCHANGED")
	r = f.send(t, http.MethodPatch, f.base+"/deployments/"+f.prod.ID+"/autoscaling_settings", f.auth, `{"min_replica": 2}`)
	require.Equal(t, "UNCHANGED", r.Body["status"], "a no-op is never ACCEPTED")
	after, err := store.ListAudit(ctx, f.db, f.m.WorkspaceID, f.m.ID, 0, 100)
	require.NoError(t, err)
	require.Len(t, after, len(before))

	// A refused patch changes neither.
	r = f.send(t, http.MethodPatch, env, f.auth, `{"autoscaling_settings": {"max_replica": 1}}`)
	require.Equal(t, http.StatusBadRequest, r.Status)
	require.Contains(t, message(r), "autoscaling_settings.max_replica")
	r = f.send(t, http.MethodPatch, env, f.auth, `{"request_backpressure_settings": {"policy": "DROP"}}`)
	require.Equal(t, http.StatusBadRequest, r.Status)
	require.Contains(t, message(r), "request_backpressure_settings.policy")
	d, err = store.DeploymentByID(ctx, f.db, f.m.ID, f.prod.ID)
	require.NoError(t, err)
	require.Equal(t, 3, d.AutoscalingSettings.MaxReplica)

	// An environment that serves nothing keeps the settings itself.
	r = f.send(t, http.MethodPost, f.base+"/environments", f.auth, `{"name": "staging", "request_backpressure_settings": {"policy": "QUEUE_ON_FULL"}}`)
	require.Equal(t, http.StatusOK, r.Status, "%v", r.Body)
	require.Equal(t, "QUEUE_ON_FULL", r.Body["request_backpressure_settings"].(map[string]any)["policy"])
	r = f.send(t, http.MethodPatch, f.base+"/environments/staging", f.auth, `{"autoscaling_settings": {"max_replica": 6}}`)
	require.Equal(t, http.StatusOK, r.Status, "%v", r.Body)
	e, err = store.EnvironmentByName(ctx, f.db, f.m.ID, "staging")
	require.NoError(t, err)
	require.Equal(t, 6, e.AutoscalingSettings.MaxReplica)
}

func TestAutoscalingPatch_OfACandidateSaysThePromotionReplacesIt(t *testing.T) {
	f := newRoutesFixture(t)
	ctx := context.Background()
	cand, err := store.CreateDeployment(ctx, f.db, store.NewDeployment{ModelID: f.m.ID, WorkspaceID: f.m.WorkspaceID,
		AutoscalingSettings: settings.DefaultAutoscalingSettings()})
	require.NoError(t, err)
	_, err = f.db.Exec(`UPDATE environments SET candidate_deployment_id = $1 WHERE model_id = $2 AND name = 'production'`, cand.ID, f.m.ID)
	require.NoError(t, err)
	r := f.send(t, http.MethodPatch, f.base+"/deployments/"+cand.ID+"/autoscaling_settings", f.auth, `{"max_replica": 2}`)
	require.Equal(t, http.StatusOK, r.Status, "%v", r.Body)
	require.Equal(t, "ACCEPTED", r.Body["status"])
	require.Contains(t, r.Body["message"], "takes production's settings when the promotion switches")
}

func TestBackpressure_PatchSetsClearsAndRefuses(t *testing.T) {
	f := newRoutesFixture(t)
	path := f.base + "/deployments/" + f.prod.ID + "/request_backpressure_settings"

	r := f.send(t, http.MethodPatch, path, f.auth, `{"policy": "QUEUE_ON_FULL"}`)
	require.Equal(t, http.StatusOK, r.Status, "%v", r.Body)
	require.Equal(t, map[string]any{"policy": "QUEUE_ON_FULL"}, r.Body)
	got := f.do(t, http.MethodGet, f.base+"/deployments/"+f.prod.ID, f.auth).Body
	require.Equal(t, map[string]any{"policy": "QUEUE_ON_FULL"}, got["request_backpressure_settings"])
	got = f.do(t, http.MethodGet, f.base+"/environments/production", f.auth).Body
	require.Equal(t, map[string]any{"policy": "QUEUE_ON_FULL"}, got["request_backpressure_settings"], "production shows its deployment's")

	r = f.send(t, http.MethodPatch, f.base+"/deployments/production/request_backpressure_settings", f.auth, `{}`)
	require.Equal(t, map[string]any{"policy": "QUEUE_ON_FULL"}, r.Body, "a field left out keeps its value")
	r = f.send(t, http.MethodPatch, path, f.auth, `{"policy": null}`)
	require.Equal(t, http.StatusOK, r.Status)
	require.Equal(t, map[string]any{"policy": nil}, r.Body, "null clears the policy")

	for _, tt := range []struct {
		path, body string
		want       int
		text       string
	}{
		{path, `{"policy": "DROP_ON_FULL"}`, http.StatusBadRequest, "policy: must be one of QUEUE_ON_FULL, REJECT_ON_FULL"},
		{path, `{"max_queued": 4}`, http.StatusBadRequest, "max_queued: unknown field"},
		{path, `[1]`, http.StatusBadRequest, "JSON object"},
		{f.base + "/deployments/zzzzzzzz/request_backpressure_settings", `{}`, http.StatusNotFound, "not found"},
	} {
		r := f.send(t, http.MethodPatch, tt.path, f.auth, tt.body)
		require.Equal(t, tt.want, r.Status, "%s: %v", tt.body, r.Body)
		require.Contains(t, message(r), tt.text)
	}
	d, err := store.DeploymentByID(context.Background(), f.db, f.m.ID, f.prod.ID)
	require.NoError(t, err)
	require.Nil(t, d.RequestBackpressureSettings.Policy, "refused patches change nothing")
}

func TestRetry_AFailedDeploymentIsActivatedAgain(t *testing.T) {
	f := newRoutesFixture(t)
	path := f.base + "/deployments/" + f.prod.ID + "/retry"

	for _, st := range []modelplane.DeploymentStatus{modelplane.DeploymentDeployFailed, modelplane.DeploymentBuildFailed, modelplane.DeploymentUnhealthy} {
		f.setStatus(t, f.prod.ID, st)
		r := f.send(t, http.MethodPost, path, f.auth, "")
		require.Equal(t, http.StatusOK, r.Status, "%v", r.Body)
		require.Equal(t, true, r.Body["retried"], "%s", st)
		require.Nil(t, r.Body["reason"])
		require.Equal(t, f.prod.ID, r.Body["deployment"].(map[string]any)["id"])
		require.Equal(t, []string{contract.UpdateActivate}, f.updates(f.prod.ID), "a %s deployment is activated again", st)
	}

	// The aliases the spec lists reach the same deployment.
	r := f.send(t, http.MethodPost, f.base+"/deployments/production/retry", f.auth, "")
	require.Equal(t, true, r.Body["retried"])
	f.updates(f.prod.ID)

	for _, st := range []modelplane.DeploymentStatus{modelplane.DeploymentActive, modelplane.DeploymentScaledToZero, modelplane.DeploymentInactive} {
		f.setStatus(t, f.prod.ID, st)
		r := f.send(t, http.MethodPost, path, f.auth, "")
		require.Equal(t, http.StatusOK, r.Status, "%v", r.Body)
		require.Equal(t, false, r.Body["retried"], "a %s deployment has not failed", st)
		require.Contains(t, r.Body["reason"], "has not failed")
		require.Equal(t, string(st), r.Body["deployment"].(map[string]any)["status"])
		require.Empty(t, f.updates(f.prod.ID), "nothing is sent to a deployment that has not failed")
	}
	r = f.send(t, http.MethodPost, path, f.auth, "")
	require.Contains(t, r.Body["reason"], "activate it instead")

	require.Equal(t, http.StatusNotFound, f.send(t, http.MethodPost, f.base+"/deployments/zzzzzzzz/retry", f.auth, "").Status)
	require.Equal(t, http.StatusNotFound, f.send(t, http.MethodPost, f.base+"/deployments/development/retry", f.auth, "").Status,
		"the model has no development deployment")
}

func TestRetry_WithoutTemporalIs503(t *testing.T) {
	f := newFixture(t)
	m, _, key := f.workspace(t)
	d, err := store.CreateDeployment(context.Background(), f.db, store.NewDeployment{ModelID: m.ID, WorkspaceID: m.WorkspaceID})
	require.NoError(t, err)
	require.NoError(t, store.SetDeploymentStatus(context.Background(), f.db, d.ID, modelplane.DeploymentDeployFailed, "no GPU"))
	r := f.send(t, http.MethodPost, "/v1/models/"+m.ID+"/deployments/"+d.ID+"/retry", "Api-Key "+key, "")
	require.Equal(t, http.StatusServiceUnavailable, r.Status, "%v", r.Body)
}

// fakeAgent answers the agent's stop route, recording the replicas it was asked to stop.
type fakeAgent struct {
	mu      sync.Mutex
	stopped []string
	status  int // answer to a stop; 0 is 200
}

func (a *fakeAgent) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	id, ok := strings.CutPrefix(r.URL.Path, "/v1/replicas/")
	if r.Method != http.MethodDelete || !ok || r.Header.Get("Authorization") != "Bearer "+nodeToken {
		http.Error(w, "unexpected", http.StatusTeapot)
		return
	}
	a.mu.Lock()
	defer a.mu.Unlock()
	if a.status != 0 {
		w.WriteHeader(a.status)
		_, _ = w.Write([]byte(`{"error": {"code": "unavailable", "message": "busy"}}`))
		return
	}
	a.stopped = append(a.stopped, id)
	_ = json.NewEncoder(w).Encode(agentproto.Replica{ID: id, State: modelplane.ReplicaStopped})
}

// agentNode registers a node whose agent is a fakeAgent, and returns both.
func (f *routesFixture) agentNode(t *testing.T) (*fakeAgent, string) {
	t.Helper()
	agent := &fakeAgent{}
	srv := httptest.NewServer(agent)
	t.Cleanup(srv.Close)
	hb := sampleHeartbeat("node-" + modelplane.NewID(6))
	hb.AgentURL, hb.Replicas = srv.URL, nil
	require.Equal(t, http.StatusOK, heartbeat(t, f.fixture, nodeToken, hb).Code)
	nodes, err := store.ListNodes(context.Background(), f.db)
	require.NoError(t, err)
	for _, n := range nodes {
		if n.Name == hb.Name {
			return agent, n.ID
		}
	}
	t.Fatalf("node %s is not registered", hb.Name)
	return nil, ""
}

// newReplica records a replica of the deployment on the node ("" for none) in state.
func (f *routesFixture) newReplica(t *testing.T, deploymentID, node string, state modelplane.ReplicaState) string {
	t.Helper()
	ctx := context.Background()
	r, _, err := store.CreateReplica(ctx, f.db, store.NewReplica{ID: modelplane.NewID(12), DeploymentID: deploymentID, NodeID: node})
	require.NoError(t, err)
	require.NoError(t, store.SetReplicaState(ctx, f.db, r.ID, state, "127.0.0.1:1", ""))
	return r.ID
}

func TestTerminateReplica_StopsItThroughItsAgent(t *testing.T) {
	f := newRoutesFixture(t)
	ctx := context.Background()
	agent, nodeID := f.agentNode(t)
	newReplica := func(deploymentID, node string, state modelplane.ReplicaState) string {
		return f.newReplica(t, deploymentID, node, state)
	}
	ready := newReplica(f.prod.ID, nodeID, modelplane.ReplicaReady)
	path := func(replicaID string) string { return f.base + "/deployments/" + f.prod.ID + "/replicas/" + replicaID }

	r := f.send(t, http.MethodDelete, path(ready), f.auth, "")
	require.Equal(t, http.StatusOK, r.Status, "%v", r.Body)
	require.Equal(t, map[string]any{"success": true}, r.Body)
	require.Equal(t, []string{ready}, agent.stopped)
	got, err := store.ReplicaByID(ctx, f.db, ready)
	require.NoError(t, err)
	require.Equal(t, modelplane.ReplicaStopped, got.State, "a terminated replica is recorded STOPPED, not FAILED")
	require.Contains(t, got.Error, "terminated")

	other, err := store.CreateDeployment(ctx, f.db, store.NewDeployment{ModelID: f.m.ID, WorkspaceID: f.m.WorkspaceID})
	require.NoError(t, err)
	elsewhere := newReplica(other.ID, nodeID, modelplane.ReplicaReady)
	unplaced := newReplica(f.prod.ID, "", modelplane.ReplicaPending)
	for _, tt := range []struct {
		replica string
		want    int
		text    string
	}{
		{"nosuchreplica", http.StatusNotFound, "not found"},
		{elsewhere, http.StatusNotFound, "not found"},
		{ready, http.StatusNotFound, "already ended"},
		{unplaced, http.StatusConflict, "being placed"},
	} {
		r := f.send(t, http.MethodDelete, path(tt.replica), f.auth, "")
		require.Equal(t, tt.want, r.Status, "%s: %v", tt.replica, r.Body)
		require.Contains(t, message(r), tt.text)
	}
	require.Len(t, agent.stopped, 1, "refused requests stop nothing")

	// An agent that cannot stop it: 503, and the replica stays out of the routes.
	agent.status = http.StatusServiceUnavailable
	busy := newReplica(f.prod.ID, nodeID, modelplane.ReplicaReady)
	r = f.send(t, http.MethodDelete, path(busy), f.auth, "")
	require.Equal(t, http.StatusServiceUnavailable, r.Status, "%v", r.Body)
	got, err = store.ReplicaByID(ctx, f.db, busy)
	require.NoError(t, err)
	require.Equal(t, modelplane.ReplicaStopping, got.State)
}

func TestConfigAndDownload_ServeTheDeploymentsPackage(t *testing.T) {
	f := newRoutesFixture(t)
	ctx := context.Background()
	pkg := packDir(t, map[string]string{
		"config.yaml":    "# the echo model\nmodel_name: echo\nresources:\n  cpu: \"1\"\n",
		"model/model.py": "class Model:\n    def predict(self, x):\n        return x\n",
	})
	rec := upload(t, f.e, strings.TrimPrefix(f.auth, "Api-Key "), "application/gzip", pkg)
	require.Equal(t, http.StatusCreated, rec.Code, rec.Body.String())
	var a struct{ ID string }
	require.NoError(t, json.Unmarshal(rec.Body.Bytes(), &a))
	d, err := store.CreateDeployment(ctx, f.db, store.NewDeployment{ModelID: f.m.ID, WorkspaceID: f.m.WorkspaceID, ArchiveID: &a.ID})
	require.NoError(t, err)
	base := f.base + "/deployments/" + d.ID

	r := f.do(t, http.MethodGet, base+"/config", f.auth)
	require.Equal(t, http.StatusOK, r.Status, "%v", r.Body)
	require.Equal(t, "# the echo model\nmodel_name: echo\nresources:\n  cpu: \"1\"\n", r.Body["raw_config"], "config.yaml as written, comments included")
	cfg := r.Body["config"].(map[string]any)
	require.Equal(t, "echo", cfg["model_name"])
	require.Equal(t, 1.0, cfg["runtime"].(map[string]any)["predict_concurrency"], "the parsed config has Truss's defaults applied")
	r = f.do(t, http.MethodGet, base+"/config?output_format=raw", f.auth)
	require.Nil(t, r.Body["config"])
	require.NotNil(t, r.Body["raw_config"])
	r = f.do(t, http.MethodGet, base+"/config?output_format=parsed", f.auth)
	require.NotNil(t, r.Body["config"])
	require.Nil(t, r.Body["raw_config"])
	r = f.do(t, http.MethodGet, base+"/config?output_format=yaml", f.auth)
	require.Equal(t, http.StatusBadRequest, r.Status)
	require.Contains(t, message(r), "output_format")

	r = f.do(t, http.MethodGet, base+"/download", f.auth)
	require.Equal(t, http.StatusOK, r.Status, "%v", r.Body)
	u, ok := r.Body["download_url"].(string)
	require.True(t, ok, "%v", r.Body)
	path, ok := strings.CutPrefix(u, "http://example.com")
	require.True(t, ok, "the URL is served by modelplane at the address it was asked on: %s", u)
	require.True(t, strings.HasPrefix(path, api.DownloadPath))

	// No API key: the URL itself is the credential.
	req := httptest.NewRequest(http.MethodGet, path, nil)
	got := httptest.NewRecorder()
	f.e.ServeHTTP(got, req)
	require.Equal(t, http.StatusOK, got.Code, got.Body.String())
	require.Equal(t, "application/gzip", got.Header().Get("Content-Type"))
	require.Contains(t, got.Header().Get("Content-Disposition"), `filename=echo-`+d.Name+`.tar.gz`)
	body, err := io.ReadAll(got.Body)
	require.NoError(t, err)
	require.True(t, bytes.Equal(pkg, body), "the download is the package as uploaded")

	req = httptest.NewRequest(http.MethodGet, api.DownloadPath+"notatoken", nil)
	got = httptest.NewRecorder()
	f.e.ServeHTTP(got, req)
	require.Equal(t, http.StatusNotFound, got.Code)
	require.Contains(t, got.Body.String(), "unknown or expired")
	_, err = f.db.Exec(`UPDATE download_tokens SET expires_at = now() - interval '1 second'`)
	require.NoError(t, err)
	req = httptest.NewRequest(http.MethodGet, path, nil)
	got = httptest.NewRecorder()
	f.e.ServeHTTP(got, req)
	require.Equal(t, http.StatusNotFound, got.Code, "an expired link serves nothing")

	// A deployment without a package has neither.
	for _, route := range []string{"/config", "/download"} {
		r := f.do(t, http.MethodGet, f.base+"/deployments/"+f.prod.ID+route, f.auth)
		require.Equal(t, http.StatusNotFound, r.Status, route)
		require.Contains(t, message(r), "no model package")
	}
	_, _, otherKey := f.workspace(t)
	require.Equal(t, http.StatusNotFound, f.do(t, http.MethodGet, base+"/download", "Api-Key "+otherKey).Status)
}
