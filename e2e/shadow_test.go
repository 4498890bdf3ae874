package e2e

import (
	"bytes"
	"context"
	"fmt"
	"net/http"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/modelplane/modelplane/client"
	"github.com/modelplane/modelplane/modelpkg"
)

// shadowedModel makes a model of testdata/input-echo whose production serves one deployment
// and copies every request to another, and waits until the gateway copies; it returns the
// model and the shadow deployment.
func shadowedModel(t *testing.T, h *harness, name string) (modelID, shadow string) {
	t.Helper()
	var buf bytes.Buffer
	_, err := modelpkg.Pack("testdata/input-echo", &buf)
	require.NoError(t, err)
	a, err := h.api.UploadArchive(context.Background(), &buf)
	require.NoError(t, err)
	modelID, _ = h.createModel(name, a.ID, false)
	prod := h.newDeployment(modelID, a.ID)
	shadow = h.newDeployment(modelID, a.ID)
	h.promote(modelID, "production", prod)

	code, body := h.call(http.MethodPatch, "/v1/models/"+modelID+"/environments/production", map[string]any{
		"shadow_settings": map[string]any{"deployment_id": shadow, "percent": 100}})
	require.Equal(t, http.StatusOK, code, "%v", body)
	require.Eventually(t, func() bool {
		m := series(t, "modelplane_environment_shadow_percent", map[string]string{"model_id": modelID, "deployment_id": shadow})
		return m != nil && m.GetGauge().GetValue() == 100
	}, 5*time.Second, 10*time.Millisecond, "the gateway never took the shadow settings")
	return modelID, shadow
}

// shadowPredictions sends n predictions to production and checks each answer.
func shadowPredictions(t *testing.T, h *harness, modelID string, n int) {
	t.Helper()
	for i := range n {
		got, err := h.predictEcho(modelID, client.ProductionTarget(), fmt.Sprintf(`{"i": %d}`, i))
		require.NoError(t, err)
		require.Equal(t, map[string]any{"i": float64(i)}, got)
	}
}

// TestShadow_EveryPredictionIsCopiedAndAgrees shadows production with a second deployment of
// the same model (one that answers its input alone) at 100 percent: every prediction is copied, and every copy's answer is
// the same as production's.
func TestShadow_EveryPredictionIsCopiedAndAgrees(t *testing.T) {
	h := start(t)
	modelID, shadow := shadowedModel(t, h, "input-echo")
	env := "/v1/models/" + modelID + "/environments/production"
	const n = 20
	shadowPredictions(t, h, modelID, n)
	var figures map[string]any
	require.Eventually(t, func() bool {
		var code int
		code, figures = h.call(http.MethodGet, env+"/shadow", nil)
		return code == http.StatusOK && figures["copied"] == float64(n) && figures["equal"] == float64(n)
	}, 15*time.Second, 100*time.Millisecond, "the shadow figures never showed %d equal copies", n)
	require.Equal(t, shadow, figures["deployment_id"])
	require.Equal(t, 0.0, figures["different"])
	require.Equal(t, 0.0, figures["errors"])
	require.Equal(t, 0.0, figures["dropped"])
	require.Positive(t, figures["primary_p99_ms"])
	require.Positive(t, figures["shadow_p99_ms"])
}
