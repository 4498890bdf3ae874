package e2e

import (
	"context"
	"net/http"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/modelplane/modelplane"
	"github.com/modelplane/modelplane/agent/agentproto"
	"github.com/modelplane/modelplane/client"
)

// TestDeactivate_ProductionAnswers404UntilActivated: the deployment that serves production
// can be deactivated; production's endpoint then answers 404 until the deployment is
// activated again, or another deployment is promoted.
func TestDeactivate_ProductionAnswers404UntilActivated(t *testing.T) {
	h := start(t)
	archive := echoArchive(t, h)
	modelID, first := h.createModel("echo-prod-off", archive, false)
	h.promote(modelID, "production", first)
	served := func() bool {
		got, err := h.predictEcho(modelID, client.ProductionTarget(), `{"text":"hi"}`)
		return err == nil && assert.ObjectsAreEqual(map[string]any{"text": "hi"}, got)
	}
	require.Eventually(t, served, 10*time.Second, 20*time.Millisecond, "production never answered")

	code, body := h.call(http.MethodPost, "/v1/models/"+modelID+"/deployments/production/deactivate", nil)
	require.Equal(t, http.StatusOK, code, "%v", body)
	var err error
	require.Eventually(t, func() bool {
		_, err = h.predictEcho(modelID, client.ProductionTarget(), `{}`)
		return client.IsStatus(err, http.StatusNotFound)
	}, 2*time.Second, 5*time.Millisecond, "production kept answering after its deployment was deactivated")
	assert.Contains(t, err.Error(), "deactivated")
	h.waitStatus(modelID, first, "INACTIVE")
	_, running := h.replica(first)
	require.False(t, running, "a deactivated deployment keeps no replica")
	d, err := h.api.Deployment(context.Background(), modelID, "production")
	require.NoError(t, err)
	require.Equal(t, first, d.ID, "production still points at its deployment")

	code, body = h.call(http.MethodPost, "/v1/models/"+modelID+"/deployments/"+first+"/activate", nil)
	require.Equal(t, http.StatusOK, code, "%v", body)
	h.waitStatus(modelID, first, "ACTIVE")
	require.Eventually(t, served, 10*time.Second, 20*time.Millisecond, "production did not answer once activated")

	// Through the environment, and back by promoting another deployment.
	code, body = h.call(http.MethodPost, "/v1/models/"+modelID+"/environments/production/deactivate", nil)
	require.Equal(t, http.StatusOK, code, "%v", body)
	require.Eventually(t, func() bool {
		_, err = h.predictEcho(modelID, client.ProductionTarget(), `{}`)
		return client.IsStatus(err, http.StatusNotFound)
	}, 2*time.Second, 5*time.Millisecond)
	second := h.newDeployment(modelID, archive)
	h.promote(modelID, "production", second)
	require.Eventually(t, served, 10*time.Second, 20*time.Millisecond, "production did not answer once another deployment was promoted")

	code, _ = h.call(http.MethodDelete, "/v1/models/"+modelID+"/deployments/production", nil)
	require.Equal(t, http.StatusUnprocessableEntity, code, "deleting the deployment that serves production is still refused")
}

// TestAutoscaling_ProductionDeploymentsSettingsAreActedOn: a patch of the settings of the
// deployment that serves production is what the autoscaler uses, and what production shows;
// a patch through the environment changes the same settings; a promotion carries them over.
func TestAutoscaling_ProductionDeploymentsSettingsAreActedOn(t *testing.T) {
	h := start(t)
	archive := testmodelArchive(t, h)
	modelID, first := h.createModel("prod-settings", archive, false)
	h.promote(modelID, "production", first)

	code, body := h.call(http.MethodPatch, "/v1/models/"+modelID+"/deployments/"+first+"/autoscaling_settings",
		map[string]any{"min_replica": 2, "max_replica": 3})
	require.Equal(t, http.StatusOK, code, "%v", body)
	require.Equal(t, "ACCEPTED", body["status"], "%v", body)
	require.Eventually(t, func() bool { return h.replicas(first) == 2 }, 60*time.Second, 100*time.Millisecond,
		"the autoscaler never brought production's deployment to min_replica 2 (has %d)", h.replicas(first))
	h.waitStatus(modelID, first, "ACTIVE")
	env, err := h.api.Environment(context.Background(), modelID, "production")
	require.NoError(t, err)
	require.Equal(t, 2, env.AutoscalingSettings.MinReplica, "production shows its deployment's settings")
	require.Equal(t, "CPU", env.InstanceType.ID, "a CPU-only deployment's environment runs on the CPU instance type")
	require.Equal(t, 3, env.AutoscalingSettings.MaxReplica)

	// Through the environment: max_replica 1 cuts the deployment to one replica.
	code, body = h.call(http.MethodPatch, "/v1/models/"+modelID+"/environments/production",
		map[string]any{"autoscaling_settings": map[string]any{"min_replica": 1, "max_replica": 1}})
	require.Equal(t, http.StatusOK, code, "%v", body)
	require.Equal(t, "ACCEPTED", body["status"], "the answer is the spec's UpdateEnvironmentResponseV1: %v", body)
	answered := body["environment"].(map[string]any)
	require.EqualValues(t, 1, answered["autoscaling_settings"].(map[string]any)["max_replica"],
		"the answer's environment shows the new settings")
	require.Equal(t, first, answered["current_deployment"].(map[string]any)["id"])
	d, err := h.api.Deployment(context.Background(), modelID, first)
	require.NoError(t, err)
	require.Equal(t, 1, d.AutoscalingSettings.MaxReplica, "the environment's patch is the deployment's")
	require.Eventually(t, func() bool { return h.replicas(first) == 1 }, 60*time.Second, 100*time.Millisecond,
		"the autoscaler never cut production's deployment to max_replica 1 (has %d)", h.replicas(first))

	// A promotion gives the new deployment the previous one's settings.
	second := h.newDeployment(modelID, archive)
	h.promote(modelID, "production", second)
	d, err = h.api.Deployment(context.Background(), modelID, second)
	require.NoError(t, err)
	require.Equal(t, 1, d.AutoscalingSettings.MinReplica)
	require.Equal(t, 1, d.AutoscalingSettings.MaxReplica)
	env, err = h.api.Environment(context.Background(), modelID, "production")
	require.NoError(t, err)
	require.Equal(t, d.AutoscalingSettings, env.AutoscalingSettings)
}

// TestRetry_AFailedDeploymentRunsOnceItCan: a deployment that could not be placed (its GPU
// is taken) is DEPLOY_FAILED; once the GPU is free, retry brings it up.
func TestRetry_AFailedDeploymentRunsOnceItCan(t *testing.T) {
	h := start(t)
	archive := testmodelArchiveWith(t, h, "resources:\n  accelerator: H200:1\n")
	modelID, holder := h.createModel("gpu-retry", archive, false)
	waiting := h.newDeploymentStatus(modelID, archive, "DEPLOY_FAILED")

	code, body := h.call(http.MethodPost, "/v1/models/"+modelID+"/deployments/"+holder+"/retry", nil)
	require.Equal(t, http.StatusOK, code, "%v", body)
	require.Equal(t, false, body["retried"], "an ACTIVE deployment has not failed: %v", body)
	require.Contains(t, body["reason"], "has not failed")

	code, body = h.call(http.MethodPost, "/v1/models/"+modelID+"/deployments/"+holder+"/deactivate", nil)
	require.Equal(t, http.StatusOK, code, "%v", body)
	h.waitStatus(modelID, holder, "INACTIVE")
	code, body = h.call(http.MethodPost, "/v1/models/"+modelID+"/deployments/"+waiting+"/retry", nil)
	require.Equal(t, http.StatusOK, code, "%v", body)
	require.Equal(t, true, body["retried"], "%v", body)
	h.waitStatus(modelID, waiting, "ACTIVE")
	r, ok := h.replica(waiting)
	require.True(t, ok)
	require.Len(t, r.GPUUUIDs, 1, "it runs on the GPU the other deployment gave up")
}

// newDeploymentStatus pushes the archive as another deployment of the model and waits until
// it has the status.
func (h *harness) newDeploymentStatus(modelID, archive string, want modelplane.DeploymentStatus) string {
	h.t.Helper()
	code, body := h.call(http.MethodPost, "/v1/models/"+modelID+"/deployments", map[string]any{
		"source": map[string]any{"kind": "model_archive", "archive_id": archive}})
	require.Equal(h.t, http.StatusOK, code, "%v", body)
	id := body["deployment"].(map[string]any)["id"].(string)
	h.waitStatus(modelID, id, want)
	return id
}

// TestTerminateReplica_IsReplaced: a replica terminated through the API is stopped on its
// node and the deployment starts another in its place.
func TestTerminateReplica_IsReplaced(t *testing.T) {
	h := start(t)
	archive := testmodelArchive(t, h)
	modelID, dep := h.createModel("terminate", archive, false)
	old, ok := h.replica(dep)
	require.True(t, ok)

	code, body := h.call(http.MethodDelete, "/v1/models/"+modelID+"/deployments/"+dep+"/replicas/"+old.ID, nil)
	require.Equal(t, http.StatusOK, code, "%v", body)
	require.Equal(t, true, body["success"])
	got, err := h.agent.Replica(context.Background(), old.ID)
	require.NoError(t, err)
	require.Equal(t, modelplane.ReplicaStopped, got.State, "the agent stopped it")

	var next agentproto.Replica
	require.Eventually(t, func() bool {
		next, ok = h.replica(dep)
		return ok && next.ID != old.ID && next.State == modelplane.ReplicaReady
	}, 60*time.Second, 100*time.Millisecond, "no replica replaced the terminated one")
	h.waitStatus(modelID, dep, "ACTIVE")
	out, err := h.api.Predict(context.Background(), modelID, client.DeploymentTarget(dep), []byte(`{"again":1}`))
	require.NoError(t, err)
	assert.Contains(t, string(out), `"again":1`)

	code, body = h.call(http.MethodDelete, "/v1/models/"+modelID+"/deployments/"+dep+"/replicas/"+old.ID, nil)
	require.Equal(t, http.StatusNotFound, code, "a replica that ended is gone: %v", body)
}
