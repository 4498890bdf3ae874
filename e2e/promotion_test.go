package e2e

import (
	"context"
	"encoding/json"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/modelplane/modelplane/workflows/contract"
	"github.com/stretchr/testify/require"
)

// createModel pushes the echo archive as a new model and waits until it is ACTIVE.
func (h *harness) createModel(name, archive string, development bool) (modelID, deploymentID string) {
	h.t.Helper()
	code, body := h.call(http.MethodPost, "/v1/models", map[string]any{"development": development,
		"source": map[string]any{"kind": "model_archive", "name": name, "archive_id": archive}})
	require.Equal(h.t, http.StatusOK, code, "%v", body)
	modelID = body["model"].(map[string]any)["id"].(string)
	deploymentID = body["deployment"].(map[string]any)["id"].(string)
	h.waitStatus(modelID, deploymentID, "ACTIVE")
	return modelID, deploymentID
}

// waitCurrent waits until the environment serves a deployment (want, or any other than not
// when want is empty) with no promotion in flight, and returns it.
func (h *harness) waitCurrent(modelID, env, want, not string) string {
	h.t.Helper()
	var current string
	require.Eventually(h.t, func() bool {
		e, err := h.api.Environment(context.Background(), modelID, env)
		if err != nil || e.CurrentDeployment == nil || e.InProgressPromotion != nil {
			return false
		}
		current = e.CurrentDeployment.ID
		return (want != "" && current == want) || (want == "" && current != not)
	}, 90*time.Second, 200*time.Millisecond, "environment %s never settled on the promoted deployment", env)
	return current
}

func TestPromotion_ToProductionThenStaging(t *testing.T) {
	h := start(t)
	archive := echoArchive(t, h)
	modelID, first := h.createModel("echo-promo", archive, false)
	h.record("promotion-plain", contract.PromotionWorkflowID(modelID, "production"))

	code, body := h.call(http.MethodPost, "/v1/models/"+modelID+"/deployments/"+first+"/promote", map[string]any{})
	require.Equal(t, http.StatusOK, code, "%v", body)
	h.waitCurrent(modelID, "production", first, "")
	d, err := h.api.Deployment(context.Background(), modelID, "production")
	require.NoError(t, err)
	require.Equal(t, first, d.ID)
	require.True(t, d.IsProduction)

	// The deployment serving production cannot be deleted (it can be deactivated:
	// TestDeactivate_ProductionAnswers404UntilActivated).
	code, _ = h.call(http.MethodDelete, "/v1/models/"+modelID+"/deployments/"+first, nil)
	require.Equal(t, http.StatusUnprocessableEntity, code)

	// A second deployment goes to a custom environment; production stays where it was.
	code, body = h.call(http.MethodPost, "/v1/models/"+modelID+"/environments", map[string]any{"name": "staging"})
	require.Equal(t, http.StatusOK, code, "%v", body)
	code, body = h.call(http.MethodPost, "/v1/models/"+modelID+"/deployments", map[string]any{
		"source": map[string]any{"kind": "model_archive", "archive_id": archive}})
	require.Equal(t, http.StatusOK, code, "%v", body)
	second := body["deployment"].(map[string]any)["id"].(string)
	h.waitStatus(modelID, second, "ACTIVE")
	code, body = h.call(http.MethodPost, "/v1/models/"+modelID+"/environments/staging/promote", map[string]any{"deployment_id": second})
	require.Equal(t, http.StatusOK, code, "%v", body)
	h.waitCurrent(modelID, "staging", second, "")
	d, err = h.api.Deployment(context.Background(), modelID, "production")
	require.NoError(t, err)
	require.Equal(t, first, d.ID, "promoting to staging leaves production alone")
}

func TestPromotion_FromDevelopmentMakesANewDeployment(t *testing.T) {
	h := start(t)
	archive := echoArchive(t, h)
	modelID, dev := h.createModel("echo-dev-promo", archive, true)
	h.record("promotion-from-development", contract.PromotionWorkflowID(modelID, "production"))

	code, body := h.call(http.MethodPost, "/v1/models/"+modelID+"/deployments/development/promote", map[string]any{})
	require.Equal(t, http.StatusOK, code, "%v", body)
	prod := h.waitCurrent(modelID, "production", "", dev)
	require.NotEqual(t, dev, prod, "promoting development creates a new deployment")
	d, err := h.api.Deployment(context.Background(), modelID, "development")
	require.NoError(t, err)
	require.Equal(t, dev, d.ID, "development keeps its ID")
	p, err := h.api.Deployment(context.Background(), modelID, prod)
	require.NoError(t, err)
	require.Equal(t, "deployment-1", p.Name)
	require.False(t, p.IsDevelopment)

	// The new deployment's model server knows it runs as production.
	r, ok := h.replica(prod)
	require.True(t, ok)
	resp, err := http.Post("http://"+r.Address+r.PredictPath, "application/json", strings.NewReader(`{}`))
	require.NoError(t, err)
	var out map[string]any
	require.NoError(t, json.NewDecoder(resp.Body).Decode(&out))
	resp.Body.Close()
	require.Equal(t, "production", out["environment"])
}

func TestPromotion_TwoAtOnceGiveOne409(t *testing.T) {
	h := start(t)
	archive := echoArchive(t, h)
	modelID, first := h.createModel("echo-race", archive, false)

	codes := make([]int, 2)
	var wg sync.WaitGroup
	for i := range codes {
		wg.Add(1)
		go func() {
			defer wg.Done()
			codes[i], _ = h.call(http.MethodPost, "/v1/models/"+modelID+"/deployments/"+first+"/promote", map[string]any{})
		}()
	}
	wg.Wait()
	require.ElementsMatch(t, []int{http.StatusOK, http.StatusConflict}, codes)
	h.waitCurrent(modelID, "production", first, "")

	code, _ := h.call(http.MethodPost, "/v1/models/"+modelID+"/environments/nope/promote", map[string]any{"deployment_id": first})
	require.Equal(t, http.StatusNotFound, code)
	code, _ = h.call(http.MethodPost, "/v1/models/"+modelID+"/environments/production/promote", map[string]any{})
	require.Equal(t, http.StatusBadRequest, code, "deployment_id is required")
}

func TestPromotion_DeployStraightToAnEnvironment(t *testing.T) {
	h := start(t)
	archive := echoArchive(t, h)
	code, body := h.call(http.MethodPost, "/v1/models", map[string]any{"environment": "production",
		"source": map[string]any{"kind": "model_archive", "name": "echo-straight", "archive_id": archive}})
	require.Equal(t, http.StatusOK, code, "%v", body)
	modelID := body["model"].(map[string]any)["id"].(string)
	first := body["deployment"].(map[string]any)["id"].(string)
	h.waitCurrent(modelID, "production", first, "")

	// A new deployment straight to production replaces the first there.
	code, body = h.call(http.MethodPost, "/v1/models/"+modelID+"/deployments", map[string]any{"environment": "production",
		"source": map[string]any{"kind": "model_archive", "archive_id": archive}})
	require.Equal(t, http.StatusOK, code, "%v", body)
	second := body["deployment"].(map[string]any)["id"].(string)
	h.waitCurrent(modelID, "production", second, "")

	for _, tt := range []struct {
		body map[string]any
		want int
	}{
		{map[string]any{"environment": "nope", "source": map[string]any{"kind": "model_archive", "archive_id": archive}}, http.StatusNotFound},
		{map[string]any{"environment": "production", "development": true, "source": map[string]any{"kind": "model_archive", "archive_id": archive}}, http.StatusBadRequest},
		{map[string]any{"environment": 3, "source": map[string]any{"kind": "model_archive", "archive_id": archive}}, http.StatusBadRequest},
	} {
		code, body := h.call(http.MethodPost, "/v1/models/"+modelID+"/deployments", tt.body)
		require.Equal(t, tt.want, code, "%v", body)
	}
	ds, err := h.api.Deployments(context.Background(), modelID)
	require.NoError(t, err)
	require.Len(t, ds, 2, "refused requests create no deployment")
}

func TestEnvironments_ActivateDeactivateAndDelete(t *testing.T) {
	h := start(t)
	archive := echoArchive(t, h)
	modelID, first := h.createModel("echo-envs", archive, false)
	code, body := h.call(http.MethodPost, "/v1/models/"+modelID+"/environments", map[string]any{"name": "staging"})
	require.Equal(t, http.StatusOK, code, "%v", body)
	base := "/v1/models/" + modelID + "/environments/"

	code, _ = h.call(http.MethodPost, base+"staging/activate", nil)
	require.Equal(t, http.StatusUnprocessableEntity, code, "an environment without a deployment has nothing to activate")

	code, body = h.call(http.MethodPost, base+"staging/promote", map[string]any{"deployment_id": first})
	require.Equal(t, http.StatusOK, code, "%v", body)
	h.waitCurrent(modelID, "staging", first, "")

	code, body = h.call(http.MethodPost, base+"staging/deactivate", nil)
	require.Equal(t, http.StatusOK, code, "%v", body)
	h.waitStatus(modelID, first, "INACTIVE")
	code, body = h.call(http.MethodPost, base+"staging/activate", nil)
	require.Equal(t, http.StatusOK, code, "%v", body)
	h.waitStatus(modelID, first, "ACTIVE")

	code, _ = h.call(http.MethodDelete, base+"production", nil)
	require.Equal(t, http.StatusUnprocessableEntity, code)
	code, body = h.call(http.MethodPost, base+"production/deactivate", nil)
	require.Equal(t, http.StatusUnprocessableEntity, code, "production serves no deployment yet: %v", body)

	// Deleting staging scales its deployment to zero; the deployment stays listed.
	code, body = h.call(http.MethodDelete, base+"staging", nil)
	require.Equal(t, http.StatusOK, code, "%v", body)
	require.Equal(t, true, body["deleted"])
	h.waitStatus(modelID, first, "SCALED_TO_ZERO")
	code, _ = h.call(http.MethodGet, base+"staging", nil)
	require.Equal(t, http.StatusNotFound, code)
	code, _ = h.call(http.MethodDelete, base+"staging", nil)
	require.Equal(t, http.StatusNotFound, code)
}

func TestPromotion_AfterACancelTheNextStartsAtOnce(t *testing.T) {
	h := start(t)
	modelID, first, second := canaryModel(t, h, map[string]any{"ramp_up_while_promoting": true, "ramp_up_duration_seconds": 600})
	promote := func() (int, map[string]any) {
		return h.call(http.MethodPost, "/v1/models/"+modelID+"/environments/production/promote", map[string]any{"deployment_id": second})
	}
	code, body := promote()
	require.Equal(t, http.StatusOK, code, "%v", body)
	require.Eventually(t, func() bool {
		e, err := h.api.Environment(context.Background(), modelID, "production")
		return err == nil && e.InProgressPromotion != nil && e.InProgressPromotion.PercentTrafficToNewVersion > 0
	}, 60*time.Second, 50*time.Millisecond)
	code, body = h.call(http.MethodPost, "/v1/models/"+modelID+"/environments/production/cancel_promotion", nil)
	require.Equal(t, http.StatusOK, code, "%v", body)
	e, err := h.api.Environment(context.Background(), modelID, "production")
	require.NoError(t, err)
	require.Nil(t, e.InProgressPromotion, "the cancelled promotion is no longer shown")

	// The cancelled promotion's workflow may still be scaling its candidate down; a new
	// promotion, which the environment shows as possible, is not refused for it.
	code, body = promote()
	require.Equal(t, http.StatusOK, code, "a promotion right after a cancel: %v", body)
	require.Eventually(t, func() bool {
		e, err := h.api.Environment(context.Background(), modelID, "production")
		return err == nil && e.InProgressPromotion != nil
	}, 30*time.Second, 50*time.Millisecond)
	code, body = promote()
	require.Equal(t, http.StatusConflict, code, "while that one runs, another is refused: %v", body)
	require.Contains(t, body["error"].(map[string]any)["message"], "already running")
	_ = first
}
