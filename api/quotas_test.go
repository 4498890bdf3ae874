package api_test

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"net/http"
	"net/http/httptest"
	"strconv"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/modelplane/modelplane"
	"github.com/modelplane/modelplane/api"
	"github.com/modelplane/modelplane/apikey"
	"github.com/modelplane/modelplane/blob"
	"github.com/modelplane/modelplane/internal/apitest"
	"github.com/modelplane/modelplane/store"
)

func TestQuotas_GetAnswersLimitsAndUsageAndNoKeyChangesThem(t *testing.T) {
	f := newCreateFixture(t, 0)
	ctx := context.Background()
	_, admin, err := apikey.Create(ctx, f.db, f.m.WorkspaceID, "admin", true)
	require.NoError(t, err)

	r := f.do(t, http.MethodGet, "/v1/quotas", f.auth)
	require.Equal(t, http.StatusOK, r.Status, "%v", r.Body)
	def := store.DefaultQuotas()
	require.Equal(t, map[string]any{"replicas": float64(def.Replicas), "gpus": float64(def.GPUs),
		"async_requests": float64(def.AsyncRequests), "archive_bytes": float64(def.ArchiveBytes)}, r.Body["limits"],
		"a workspace without quotas of its own has the defaults")
	archived, err := store.ArchiveBytes(ctx, f.db, f.m.WorkspaceID)
	require.NoError(t, err)
	require.Positive(t, archived)
	require.Equal(t, map[string]any{"replicas": float64(0), "gpus": float64(0), "async_requests": float64(0),
		"archive_bytes": float64(archived)}, r.Body["usage"], "the fixture's upload is stored")

	require.NoError(t, store.SetWorkspaceQuotas(ctx, f.db, f.m.WorkspaceID,
		store.Quotas{Replicas: 8, GPUs: 4, AsyncRequests: 10, ArchiveBytes: 1 << 30}))
	id := f.createDeployment(t, map[string]any{"config": configOf(t, strings.Replace(greeterConfig,
		"resources:\n", "resources:\n  accelerator: H100:2\n", 1))})
	_, _, err = store.CreateReplica(ctx, f.db, store.NewReplica{ID: modelplane.NewID(12), DeploymentID: id})
	require.NoError(t, err)
	_, err = store.InsertAsyncRequest(ctx, f.db, store.NewAsyncRequest{WorkspaceID: f.m.WorkspaceID, ModelID: f.m.ID,
		DeploymentID: id, Priority: 1, MaxTimeInQueueSeconds: 600, ModelInput: []byte(`1`)}, 100)
	require.NoError(t, err)

	r = f.do(t, http.MethodGet, "/v1/quotas", f.auth)
	require.Equal(t, http.StatusOK, r.Status, "%v", r.Body)
	require.Equal(t, map[string]any{"replicas": float64(8), "gpus": float64(4), "async_requests": float64(10),
		"archive_bytes": float64(1 << 30)}, r.Body["limits"])
	require.Equal(t, map[string]any{"replicas": float64(1), "gpus": float64(2), "async_requests": float64(1),
		"archive_bytes": float64(archived)}, r.Body["usage"], "one replica of two GPUs, one queued request")

	// The quotas are the operator's: no key, admin or not, has a route to change them.
	for _, method := range []string{http.MethodPost, http.MethodPut, http.MethodPatch} {
		for _, auth := range []string{f.auth, "Api-Key " + admin} {
			got := f.send(t, method, "/v1/quotas", auth, `{"limits": {"replicas": 1000000}}`)
			require.Contains(t, []int{http.StatusNotFound, http.StatusMethodNotAllowed}, got.Status, "%s /v1/quotas: %v", method, got.Body)
		}
	}
	q, err := store.WorkspaceQuotas(ctx, f.db, f.m.WorkspaceID)
	require.NoError(t, err)
	require.Equal(t, 8, q.Replicas)
}

func TestQuotas_AutoscalingAboveTheQuotasIs422NamingTheField(t *testing.T) {
	f := newCreateFixture(t, 0)
	ctx := context.Background()
	require.NoError(t, store.SetWorkspaceQuotas(ctx, f.db, f.m.WorkspaceID,
		store.Quotas{Replicas: 4, GPUs: 6, AsyncRequests: 10, ArchiveBytes: 1 << 30}))
	cpu := f.createDeployment(t, nil)
	gpu := f.createDeployment(t, map[string]any{"config": configOf(t, strings.Replace(greeterConfig,
		"resources:\n", "resources:\n  accelerator: H100:2\n", 1))})
	require.Equal(t, 2, f.deployment(t, f.m.ID, gpu).GPUsPerReplica, "the deployment records its GPUs per replica")
	path := func(id string) string { return "/v1/models/" + f.m.ID + "/deployments/" + id + "/autoscaling_settings" }

	r := f.send(t, http.MethodPatch, path(cpu), f.auth, `{"max_replica": 1000000}`)
	require.Equal(t, http.StatusUnprocessableEntity, r.Status, "%v", r.Body)
	require.Equal(t, "max_replica: 1000000 is above the workspace's replicas quota of 4", message(r))
	require.Equal(t, 1, f.deployment(t, f.m.ID, cpu).AutoscalingSettings.MaxReplica, "nothing changed")
	r = f.send(t, http.MethodPatch, path(cpu), f.auth, `{"max_replica": 4}`)
	require.Equal(t, http.StatusOK, r.Status, "the quota itself is allowed: %v", r.Body)

	r = f.send(t, http.MethodPatch, path(gpu), f.auth, `{"max_replica": 4}`)
	require.Equal(t, http.StatusUnprocessableEntity, r.Status, "%v", r.Body)
	require.Equal(t, "max_replica: 4 replicas of 2 GPUs each are 8 GPUs, above the workspace's gpus quota of 6", message(r))
	r = f.send(t, http.MethodPatch, path(gpu), f.auth, `{"max_replica": 3}`)
	require.Equal(t, http.StatusOK, r.Status, "%v", r.Body)

	// min_replica must fit beside what the workspace's other deployments run.
	for range 3 {
		_, _, err := store.CreateReplica(ctx, f.db, store.NewReplica{ID: modelplane.NewID(12), DeploymentID: cpu})
		require.NoError(t, err)
	}
	r = f.send(t, http.MethodPatch, path(gpu), f.auth, `{"min_replica": 2}`)
	require.Equal(t, http.StatusUnprocessableEntity, r.Status, "%v", r.Body)
	require.Equal(t, "min_replica: 2 does not fit the workspace's replicas quota of 4: its other deployments run 3", message(r))

	// An environment's settings are checked the same way, named by their path.
	r = f.send(t, http.MethodPost, "/v1/models/"+f.m.ID+"/environments", f.auth,
		`{"name": "staging", "autoscaling_settings": {"max_replica": 5}}`)
	require.Equal(t, http.StatusUnprocessableEntity, r.Status, "%v", r.Body)
	require.Equal(t, "autoscaling_settings.max_replica: 5 is above the workspace's replicas quota of 4", message(r))
}

// quotaFixture serves the API for a workspace with a member key, keeping the blob store at
// hand.
func quotaFixture(t *testing.T) (*fixture, api.Deps, store.Model, string) {
	t.Helper()
	db, err := store.Open(context.Background(), dbURL)
	require.NoError(t, err)
	t.Cleanup(func() { db.Close() })
	deps := apitest.Deps(t, db)
	f := &fixture{db: db, e: api.New(deps)}
	m, _, key := f.workspace(t)
	return f, deps, m, key
}

func TestQuotas_ArchiveOverTheQuotaIs422AndLeavesNoBlobOrRow(t *testing.T) {
	f, deps, m, key := quotaFixture(t)
	ctx := context.Background()
	// Bytes of its own, so that no other test's archive shares the blob.
	pkg := packDir(t, map[string]string{"config.yaml": greeterConfig, "model/model.py": "class Model:\n    pass\n",
		"model/id.txt": m.WorkspaceID})
	sum := sha256.Sum256(pkg)
	digest := "sha256:" + hex.EncodeToString(sum[:])
	require.NoError(t, store.SetWorkspaceQuotas(ctx, f.db, m.WorkspaceID,
		store.Quotas{Replicas: 4, GPUs: 4, AsyncRequests: 10, ArchiveBytes: int64(len(pkg)) - 1}))

	requireRefused := func(rec *httptest.ResponseRecorder) {
		t.Helper()
		require.Equal(t, http.StatusUnprocessableEntity, rec.Code, rec.Body.String())
		require.Contains(t, rec.Body.String(), "archive not stored")
		require.Contains(t, rec.Body.String(), "archive_bytes quota of "+strconv.Itoa(len(pkg)-1)+" (0 bytes stored)")
		_, _, err := deps.Blobs.Open(ctx, digest)
		require.ErrorIs(t, err, blob.ErrNotFound, "no blob is left")
		stored, err := store.ArchiveBytes(ctx, f.db, m.WorkspaceID)
		require.NoError(t, err)
		require.Zero(t, stored, "no archive row is left")
	}
	// With its length declared, refused before a byte is read.
	requireRefused(upload(t, f.e, key, "application/gzip", pkg))
	// Streamed without a length, refused where reading passes the quota.
	req := httptest.NewRequest(http.MethodPost, "/v1/archives", bytes.NewReader(pkg))
	req.ContentLength = -1
	req.Header.Set("Content-Type", "application/gzip")
	req.Header.Set("Authorization", "Api-Key "+key)
	rec := httptest.NewRecorder()
	f.e.ServeHTTP(rec, req)
	requireRefused(rec)

	// With the room, the same upload is stored; then the workspace is full and
	// prepare_model_upload answers no upload URL.
	require.NoError(t, store.SetWorkspaceQuotas(ctx, f.db, m.WorkspaceID,
		store.Quotas{Replicas: 4, GPUs: 4, AsyncRequests: 10, ArchiveBytes: int64(len(pkg))}))
	rec = upload(t, f.e, key, "application/gzip", pkg)
	require.Equal(t, http.StatusCreated, rec.Code, rec.Body.String())
	r := f.send(t, http.MethodPost, "/v1/prepare_model_upload", "Api-Key "+key, jsonBody(t, map[string]any{
		"name": "another", "deployment": map[string]any{"config": configOf(t, greeterConfig)}}))
	require.Equal(t, http.StatusUnprocessableEntity, r.Status, "%v", r.Body)
	require.Contains(t, message(r), "archive_bytes quota of "+strconv.Itoa(len(pkg)))
}

// TestQuotas_RequestsWhoseWorkflowsStartReplicasBeyondTheQuotasAre422: a new deployment, an
// activation, a retry and a promotion each start replicas in their workflow; with the
// workspace at its quota they are refused before anything changes, naming the quota, while a
// development deployment replacing the one there is makes room for itself.
func TestQuotas_RequestsWhoseWorkflowsStartReplicasBeyondTheQuotasAre422(t *testing.T) {
	f := newCreateFixture(t, 0)
	ctx := context.Background()
	setQuotas := func(replicas, gpus int) {
		require.NoError(t, store.SetWorkspaceQuotas(ctx, f.db, f.m.WorkspaceID,
			store.Quotas{Replicas: replicas, GPUs: gpus, AsyncRequests: 10, ArchiveBytes: 1 << 30}))
	}
	live := func(deploymentID string, n int) {
		for range n {
			_, _, err := store.CreateReplica(ctx, f.db, store.NewReplica{ID: modelplane.NewID(12), DeploymentID: deploymentID})
			require.NoError(t, err)
		}
	}
	setQuotas(3, 4)
	serving := f.createDeployment(t, nil)
	require.NoError(t, store.SetEnvironmentDeployment(ctx, f.db, f.m.ID, "production", serving))
	live(serving, 2)
	idle := f.createDeployment(t, nil)
	started := len(f.tc.started)

	// Promoting idle into production brings it to production's two replicas: one too many.
	r := f.send(t, http.MethodPost, "/v1/models/"+f.m.ID+"/deployments/"+idle+"/promote", f.auth, `{}`)
	require.Equal(t, http.StatusUnprocessableEntity, r.Status, "%v", r.Body)
	require.Equal(t, "promoting deployment "+idle+" to production starts 2 replica(s), and the workspace runs 2 of its replicas quota of 3: "+
		"scale down or deactivate another deployment, or ask the operator to raise the quota (modelplane quotas set)", message(r))

	// With the third replica taken, nothing that starts one passes.
	live(idle, 1)
	src := map[string]any{"kind": "model_archive", "s3_key": f.archive}
	r = f.send(t, http.MethodPost, "/v1/models/"+f.m.ID+"/deployments", f.auth, jsonBody(t, map[string]any{"source": src}))
	require.Equal(t, http.StatusUnprocessableEntity, r.Status, "%v", r.Body)
	require.Contains(t, message(r), "a new deployment starts 1 replica(s), and the workspace runs 3 of its replicas quota of 3")
	r = f.send(t, http.MethodPost, "/v1/models", f.auth, jsonBody(t, map[string]any{"source": map[string]any{
		"kind": "model_archive", "name": "another", "s3_key": f.archive}}))
	require.Equal(t, http.StatusUnprocessableEntity, r.Status, "%v", r.Body)
	require.Contains(t, message(r), "replicas quota of 3")

	stopped := f.createDeploymentWithRoom(t, setQuotas)
	r = f.send(t, http.MethodPost, "/v1/models/"+f.m.ID+"/deployments/"+stopped+"/activate", f.auth, `{}`)
	require.Equal(t, http.StatusUnprocessableEntity, r.Status, "%v", r.Body)
	require.Contains(t, message(r), "activating deployment "+stopped+" starts 1 replica(s)")
	_, err := f.db.ExecContext(ctx, `UPDATE deployments SET status = 'DEPLOY_FAILED' WHERE id = $1`, stopped)
	require.NoError(t, err)
	r = f.send(t, http.MethodPost, "/v1/models/"+f.m.ID+"/deployments/"+stopped+"/retry", f.auth, `{}`)
	require.Equal(t, http.StatusUnprocessableEntity, r.Status, "%v", r.Body)
	require.Contains(t, message(r), "retrying deployment "+stopped+" starts 1 replica(s)")
	// Activating a deployment that runs already starts nothing.
	r = f.send(t, http.MethodPost, "/v1/models/"+f.m.ID+"/deployments/"+idle+"/activate", f.auth, `{}`)
	require.Equal(t, http.StatusOK, r.Status, "%v", r.Body)

	// A development deployment replacing the one there is frees its replica for the new one.
	setQuotas(4, 4)
	dev := f.send(t, http.MethodPost, "/v1/models/"+f.m.ID+"/deployments", f.auth,
		jsonBody(t, map[string]any{"source": src, "development": true}))
	require.Equal(t, http.StatusOK, dev.Status, "%v", dev.Body)
	_, devID := ids(t, dev)
	live(devID, 1)
	dev = f.send(t, http.MethodPost, "/v1/models/"+f.m.ID+"/deployments", f.auth,
		jsonBody(t, map[string]any{"source": src, "development": true}))
	// (This API's Temporal is a fake that does not carry out the replaced deployment's
	// delete, so the new one's name is still taken once the quotas let it through.)
	require.Equal(t, http.StatusConflict, dev.Status, "the replaced development deployment's replica makes room: %v", dev.Body)
	require.Contains(t, message(dev), "already has a deployment named")

	// GPUs count too: two GPUs each, with none left.
	setQuotas(10, 1)
	r = f.send(t, http.MethodPost, "/v1/models/"+f.m.ID+"/deployments", f.auth, jsonBody(t, map[string]any{"source": map[string]any{
		"kind": "model_archive", "s3_key": f.archive, "deployment": map[string]any{"config": configOf(t, strings.Replace(greeterConfig,
			"resources:\n", "resources:\n  accelerator: H100:2\n", 1))}}}))
	require.Equal(t, http.StatusUnprocessableEntity, r.Status, "%v", r.Body)
	require.Contains(t, message(r), "a new deployment starts 1 replica(s) of 2 GPUs each, and the workspace's replicas hold 0 of its gpus quota of 1")
	require.Len(t, f.tc.started, started+2, "no workflow started for a refused request (two development deployments were made)")
}

// createDeploymentWithRoom makes a deployment with the replicas quota raised for it, then
// sets it back: the deployment has no replica and the workspace none to spare.
func (f *createFixture) createDeploymentWithRoom(t *testing.T, setQuotas func(replicas, gpus int)) string {
	t.Helper()
	setQuotas(4, 4)
	id := f.createDeployment(t, nil)
	setQuotas(3, 4)
	return id
}
