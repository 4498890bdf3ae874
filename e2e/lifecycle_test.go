// Package e2e runs modelplane whole: the dev stack with real Temporal, real PostgreSQL, the
// local node agent with the process runtime, and the python echo model.
package e2e

import (
	"bytes"
	"context"
	"encoding/json"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	enumspb "go.temporal.io/api/enums/v1"
	historypb "go.temporal.io/api/history/v1"
	tclient "go.temporal.io/sdk/client"
	"google.golang.org/protobuf/encoding/protojson"

	"github.com/modelplane/modelplane"
	"github.com/modelplane/modelplane/agent/agentproto"
	"github.com/modelplane/modelplane/client"
	"github.com/modelplane/modelplane/devstack"
	"github.com/modelplane/modelplane/internal/pgtest"
	"github.com/modelplane/modelplane/modelpkg"
	"github.com/modelplane/modelplane/workflows/contract"
)

// recordDir, when MODELPLANE_RECORD_HISTORIES sets it (make histories does), is where
// record writes the workflow histories that package workflows' replay test replays.
var recordDir = os.Getenv("MODELPLANE_RECORD_HISTORIES")

type harness struct {
	t     *testing.T
	stack *devstack.Stack
	api   *client.Client
	key   string
	agent *agentproto.Client
	dir   string // the stack's data directory
	token string // its node token
	tc    tclient.Client
}

func start(t *testing.T) *harness {
	t.Helper()
	return startWith(t, devstack.Options{})
}

// startWith runs a dev stack (with a simulated H200) and returns clients of its API and its
// agent. Each stack has a database of its own, dropped when the test ends, as it has a
// Temporal server of its own: rows left by another stack would name workflows this one's
// Temporal never ran (a model found by name whose development deployment has no workflow).
func startWith(t *testing.T, opts devstack.Options) *harness {
	t.Helper()
	dir := opts.DataDir
	if dir == "" {
		dir = t.TempDir()
	}
	opts.DataDir, opts.Listen, opts.GPUProfile = dir, "127.0.0.1:0", "h200"
	dbURL, drop, err := pgtest.Create("e2e")
	require.NoError(t, err)
	t.Cleanup(drop) // after the stack's Close, registered below
	opts.Postgres = devstack.PostgresOptions{DatabaseURL: dbURL}
	ctx, cancel := context.WithTimeout(context.Background(), 90*time.Second)
	defer cancel()
	s, err := devstack.Start(ctx, opts)
	require.NoError(t, err)
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
		defer cancel()
		require.NoError(t, s.Close(ctx))
	})
	token, err := os.ReadFile(filepath.Join(dir, devstack.NodeTokenFile))
	require.NoError(t, err)
	return &harness{t: t, stack: s, api: client.New(s.APIURL, s.NewAPIKey), key: s.NewAPIKey, dir: dir,
		token: strings.TrimSpace(string(token)), agent: agentproto.NewClient(s.AgentURL, strings.TrimSpace(string(token)))}
}

// temporal returns a client of the stack's Temporal, closed when the test ends.
func (h *harness) temporal() tclient.Client {
	h.t.Helper()
	if h.tc == nil {
		tc, err := tclient.Dial(tclient.Options{HostPort: h.stack.TemporalAddress})
		require.NoError(h.t, err)
		h.t.Cleanup(tc.Close)
		h.tc = tc
	}
	return h.tc
}

// record writes, when recordDir is set, the history of the workflow's latest run to
// recordDir/name.json as the test ends (before the stack stops): the events so far of a
// workflow still running, all of them of one that has ended. A failed test records nothing.
// The file is the JSON ReplayWorkflowHistoryFromJSONFile reads: {"events": [...]} in
// protojson.
func (h *harness) record(name, workflowID string) {
	h.t.Helper()
	if recordDir == "" {
		return
	}
	tc := h.temporal()
	h.t.Cleanup(func() {
		if h.t.Failed() {
			h.t.Logf("the test failed: %s.json is not recorded", name)
			return
		}
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		hist := &historypb.History{}
		it := tc.GetWorkflowHistory(ctx, workflowID, "", false, enumspb.HISTORY_EVENT_FILTER_TYPE_ALL_EVENT)
		for it.HasNext() {
			ev, err := it.Next()
			require.NoError(h.t, err, "history of %s", workflowID)
			hist.Events = append(hist.Events, ev)
		}
		b, err := protojson.Marshal(hist)
		require.NoError(h.t, err)
		var out bytes.Buffer // protojson's spacing varies from run to run; this does not
		require.NoError(h.t, json.Indent(&out, b, "", " "))
		out.WriteByte('\n')
		require.NoError(h.t, os.MkdirAll(recordDir, 0o755))
		path := filepath.Join(recordDir, name+".json")
		require.NoError(h.t, os.WriteFile(path, out.Bytes(), 0o644))
		h.t.Logf("recorded %s: %d events of %s", path, len(hist.Events), workflowID)
	})
}

// call sends a JSON request to the API and decodes the answer.
func (h *harness) call(method, path string, body any) (int, map[string]any) {
	h.t.Helper()
	return h.send(http.DefaultClient, "Api-Key "+h.key, method, path, body)
}

// send sends a JSON request (no body when body is nil) to the API through c with the
// Authorization header given, and decodes the answer.
func (h *harness) send(c *http.Client, authorization, method, path string, body any) (int, map[string]any) {
	h.t.Helper()
	var rd io.Reader
	if body != nil {
		b, err := json.Marshal(body)
		require.NoError(h.t, err)
		rd = bytes.NewReader(b)
	}
	req, err := http.NewRequest(method, h.stack.APIURL+path, rd)
	require.NoError(h.t, err)
	req.Header.Set("Authorization", authorization)
	if body != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	resp, err := c.Do(req)
	require.NoError(h.t, err)
	defer resp.Body.Close()
	var out map[string]any
	_ = json.NewDecoder(resp.Body).Decode(&out)
	return resp.StatusCode, out
}

func (h *harness) waitStatus(modelID, ref string, want modelplane.DeploymentStatus) {
	h.t.Helper()
	var mu sync.Mutex
	last := "nothing yet"
	ok := assert.Eventually(h.t, func() bool {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		d, err := h.api.Deployment(ctx, modelID, ref)
		mu.Lock()
		defer mu.Unlock()
		if err != nil {
			last = "error: " + err.Error()
			return false
		}
		last = string(d.Status)
		return d.Status == want
	}, 90*time.Second, 200*time.Millisecond)
	if !ok {
		mu.Lock()
		defer mu.Unlock()
		h.t.Fatalf("deployment %s never reached %s (last %s)", ref, want, last)
	}
}

// replica returns the agent's live replica of the deployment, if any.
func (h *harness) replica(deploymentID string) (agentproto.Replica, bool) {
	rs, err := h.agent.Replicas(context.Background())
	require.NoError(h.t, err)
	for _, r := range rs {
		if r.DeploymentID == deploymentID && (r.State == modelplane.ReplicaReady || r.State == modelplane.ReplicaStarting) {
			return r, true
		}
	}
	return agentproto.Replica{}, false
}

func echoArchive(t *testing.T, h *harness) string {
	t.Helper()
	var buf bytes.Buffer
	_, err := modelpkg.Pack("../examples/models/echo", &buf)
	require.NoError(t, err)
	a, err := h.api.UploadArchive(context.Background(), &buf)
	require.NoError(t, err)
	return a.ID
}

func TestLifecycle_PushActivateDeactivateDelete(t *testing.T) {
	h := start(t)
	archive := echoArchive(t, h)

	code, body := h.call(http.MethodPost, "/v1/models", map[string]any{
		"source": map[string]any{"kind": "model_archive", "name": "echo", "archive_id": archive}})
	require.Equal(t, http.StatusOK, code, "%v", body)
	modelID := body["model"].(map[string]any)["id"].(string)
	dep := body["deployment"].(map[string]any)
	depID := dep["id"].(string)
	require.Equal(t, "deployment-1", dep["name"])
	h.record("deployment", contract.DeploymentWorkflowID(depID))

	h.waitStatus(modelID, depID, "ACTIVE")
	d, err := h.api.Deployment(context.Background(), modelID, depID)
	require.NoError(t, err)
	require.Equal(t, 1, d.ActiveReplicaCount)

	// The model answers on the node the deployment was placed on, on the H200.
	r, ok := h.replica(depID)
	require.True(t, ok, "the agent runs no replica of the deployment")
	require.Len(t, r.GPUUUIDs, 0, "echo asks for no GPU")
	resp, err := http.Post("http://"+r.Address+r.PredictPath, "application/json", strings.NewReader(`{"text": "hi"}`))
	require.NoError(t, err)
	var out map[string]any
	require.NoError(t, json.NewDecoder(resp.Body).Decode(&out))
	resp.Body.Close()
	require.Equal(t, map[string]any{"text": "hi"}, out["echo"])

	// Deactivate: replicas stopped, the deployment stays listed as INACTIVE.
	code, body = h.call(http.MethodPost, "/v1/models/"+modelID+"/deployments/"+depID+"/deactivate", nil)
	require.Equal(t, http.StatusOK, code, "%v", body)
	h.waitStatus(modelID, depID, "INACTIVE")
	_, ok = h.replica(depID)
	require.False(t, ok, "an inactive deployment keeps no replica")

	// Activate brings it back.
	code, body = h.call(http.MethodPost, "/v1/models/"+modelID+"/deployments/"+depID+"/activate", nil)
	require.Equal(t, http.StatusOK, code, "%v", body)
	h.waitStatus(modelID, depID, "ACTIVE")

	// Delete: gone from lists and lookups, replicas stopped.
	code, body = h.call(http.MethodDelete, "/v1/models/"+modelID+"/deployments/"+depID, nil)
	require.Equal(t, http.StatusOK, code, "%v", body)
	require.Equal(t, true, body["deleted"])
	_, err = h.api.Deployment(context.Background(), modelID, depID)
	require.True(t, client.IsStatus(err, http.StatusNotFound), "a deleted deployment is 404, got %v", err)
	ds, err := h.api.Deployments(context.Background(), modelID)
	require.NoError(t, err)
	require.Empty(t, ds)
	_, ok = h.replica(depID)
	require.False(t, ok)

	// The audit log says who did it.
	code, body = h.call(http.MethodGet, "/v1/models/"+modelID+"/audit_logs", nil)
	require.Equal(t, http.StatusOK, code)
	var types []string
	for _, e := range body["items"].([]any) {
		types = append(types, e.(map[string]any)["event_type"].(string))
	}
	require.Equal(t, []string{"MODEL_DEPLOYMENT_DELETED", "MODEL_DEPLOYMENT_ACTIVATED", "MODEL_DEPLOYMENT_DEACTIVATED",
		"MODEL_DEPLOYED"}, types)
	require.Equal(t, false, body["pagination"].(map[string]any)["has_more"])
}

func TestLifecycle_DevelopmentDeploymentIsReplaced(t *testing.T) {
	h := start(t)
	archive := echoArchive(t, h)
	code, body := h.call(http.MethodPost, "/v1/models", map[string]any{"development": true,
		"source": map[string]any{"kind": "model_archive", "name": "echo-dev", "archive_id": archive}})
	require.Equal(t, http.StatusOK, code, "%v", body)
	modelID := body["model"].(map[string]any)["id"].(string)
	first := body["deployment"].(map[string]any)
	require.Equal(t, "development", first["name"])
	require.Equal(t, true, first["is_development"])
	require.EqualValues(t, 1, first["autoscaling_settings"].(map[string]any)["max_replica"])
	h.waitStatus(modelID, "development", "ACTIVE")

	code, body = h.call(http.MethodPost, "/v1/models/"+modelID+"/deployments", map[string]any{"development": true,
		"source": map[string]any{"kind": "model_archive", "archive_id": archive}})
	require.Equal(t, http.StatusOK, code, "%v", body)
	second := body["deployment"].(map[string]any)
	require.NotEqual(t, first["id"], second["id"], "a new development deployment replaces the old one")
	h.waitStatus(modelID, "development", "ACTIVE")
	_, ok := h.replica(first["id"].(string))
	require.False(t, ok, "the replaced development deployment's replica is stopped")
	ds, err := h.api.Deployments(context.Background(), modelID)
	require.NoError(t, err)
	require.Len(t, ds, 1)
}

func TestLifecycle_BadRequests(t *testing.T) {
	h := start(t)
	archive := echoArchive(t, h)
	before, err := h.api.Models(context.Background())
	require.NoError(t, err)
	for _, tt := range []struct {
		name string
		body any
		want int
		text string
	}{
		{"no source", map[string]any{}, http.StatusBadRequest, "source: required"},
		{"bad kind", map[string]any{"source": map[string]any{"kind": "git", "name": "x", "archive_id": archive}}, http.StatusBadRequest, "source.kind"},
		{"no name", map[string]any{"source": map[string]any{"kind": "model_archive", "archive_id": archive}}, http.StatusBadRequest, "source.name"},
		{"unknown archive", map[string]any{"source": map[string]any{"kind": "model_archive", "name": "x", "archive_id": "sha256:" + strings.Repeat("0", 64)}}, http.StatusBadRequest, "source.archive_id"},
		{"unknown field", map[string]any{"source": map[string]any{"kind": "model_archive", "name": "x", "archive_id": archive}, "colour": 1}, http.StatusBadRequest, "colour"},
		{"development not bool", map[string]any{"source": map[string]any{"kind": "model_archive", "name": "x", "archive_id": archive}, "development": "yes"}, http.StatusBadRequest, "development"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			code, body := h.call(http.MethodPost, "/v1/models", tt.body)
			require.Equal(t, tt.want, code, "%v", body)
			require.Contains(t, body["error"].(map[string]any)["message"], tt.text)
		})
	}
	after, err := h.api.Models(context.Background())
	require.NoError(t, err)
	require.Equal(t, len(before), len(after), "no refused request may leave a model behind")

	code, _ := h.call(http.MethodPost, "/v1/models/zzzzzzzz/deployments/abc/activate", nil)
	require.Equal(t, http.StatusNotFound, code)
}
