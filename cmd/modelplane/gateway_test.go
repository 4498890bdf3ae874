package main

import (
	"context"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/modelplane/modelplane"
	"github.com/modelplane/modelplane/internal/apitest"
	"github.com/modelplane/modelplane/store"
	"github.com/modelplane/modelplane/testmodel"
)

// servedModel makes a workspace in the test database whose model's production is served by a
// READY replica of a testmodel server, and returns the model, the serving deployment's ID
// and the workspace's API key.
func servedModel(t *testing.T, workspace string) (store.Model, string, string) {
	t.Helper()
	ctx := context.Background()
	db, err := store.Open(ctx, dbURL)
	require.NoError(t, err)
	t.Cleanup(func() { db.Close() })
	m, _, key := apitest.Workspace(t, db, workspace)
	model := httptest.NewServer(testmodel.NewHandler(testmodel.Options{}, nil))
	t.Cleanup(model.Close)
	d, err := store.CreateDeployment(ctx, db, store.NewDeployment{ModelID: m.ID, WorkspaceID: m.WorkspaceID})
	require.NoError(t, err)
	require.NoError(t, store.SetDeploymentStatus(ctx, db, d.ID, "ACTIVE", ""))
	r, _, err := store.CreateReplica(ctx, db, store.NewReplica{ID: modelplane.NewID(12), DeploymentID: d.ID})
	require.NoError(t, err)
	require.NoError(t, store.MarkReplicaReady(ctx, db, r.ID, strings.TrimPrefix(model.URL, "http://"), "/predict", ""))
	require.NoError(t, store.SetEnvironmentDeployment(ctx, db, m.ID, modelplane.ProductionEnvironment, d.ID))
	return m, d.ID, key
}

// TestGatewayCmd_ServesPredictionsAndStopsOnSignal runs `modelplane gateway` against the test
// database and predicts through it with `modelplane predict`.
func TestGatewayCmd_ServesPredictionsAndStopsOnSignal(t *testing.T) {
	m, depID, key := servedModel(t, "gwcmd")

	addr := freeAddr(t)
	cmd := modelplaneCmd("gateway", "--listen", addr, "--database-url", dbURL, "--upstream-timeout", "30s")
	cmd.Env = append(cmd.Env, "MODELPLANE_METRICS_TOKEN=gw-metrics-token")
	cmd.Stderr = os.Stderr
	require.NoError(t, cmd.Start())
	exited := make(chan error, 1)
	go func() { exited <- cmd.Wait() }()
	t.Cleanup(func() { _ = cmd.Process.Kill() })
	require.Eventually(t, func() bool {
		res, err := http.Get("http://" + addr + "/readyz")
		if err != nil {
			return false
		}
		res.Body.Close()
		return res.StatusCode == http.StatusOK
	}, 15*time.Second, 50*time.Millisecond, "the gateway never became ready")

	out := runClient(t, "", []string{"MODELPLANE_GATEWAY_URL=http://" + addr, "MODELPLANE_API_KEY=" + key},
		"predict", m.ID, `{"text":"hi"}`)
	require.Zero(t, out.exit, out.stderr)
	assert.Contains(t, out.stdout, `"output":{"text":"hi"}`)

	// The metrics name every workspace's deployments: not without the metrics token.
	for _, auth := range []string{"", "Api-Key " + key, "Bearer not-the-token"} {
		req, err := http.NewRequest(http.MethodGet, "http://"+addr+"/metrics", nil)
		require.NoError(t, err)
		req.Header.Set("Authorization", auth)
		res, err := http.DefaultClient.Do(req)
		require.NoError(t, err)
		res.Body.Close()
		assert.Equal(t, http.StatusUnauthorized, res.StatusCode, "Authorization %q", auth)
	}
	req, err := http.NewRequest(http.MethodGet, "http://"+addr+"/metrics", nil)
	require.NoError(t, err)
	req.Header.Set("Authorization", "Bearer gw-metrics-token")
	res, err := http.DefaultClient.Do(req)
	require.NoError(t, err)
	require.Equal(t, http.StatusOK, res.StatusCode)
	metrics, err := io.ReadAll(res.Body)
	res.Body.Close()
	require.NoError(t, err)
	assert.Contains(t, string(metrics), `modelplane_inference_requests_total{deployment_id="`+depID+`"`)

	require.NoError(t, cmd.Process.Signal(os.Interrupt))
	select {
	case err := <-exited:
		require.NoError(t, err, "a gateway stopped by a signal exits 0")
	case <-time.After(15 * time.Second):
		t.Fatal("the gateway did not stop within 15s")
	}
}

func TestGatewayCmd_RefusesABadTimeout(t *testing.T) {
	r := runClient(t, "", nil, "gateway", "--listen", freeAddr(t), "--database-url", dbURL, "--upstream-timeout", "0s")
	require.NotZero(t, r.exit)
	assert.Contains(t, r.stderr, "--upstream-timeout must be positive")
}
