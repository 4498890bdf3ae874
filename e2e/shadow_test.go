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
// model, the shadow deployment and how many copies the wait made (all of them equal).
func shadowedModel(t *testing.T, h *harness, name string) (modelID, shadow string, copied int) {
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

	env := "/v1/models/" + modelID + "/environments/production"
	code, body := h.call(http.MethodPatch, env, map[string]any{
		"shadow_settings": map[string]any{"deployment_id": shadow, "percent": 100}})
	require.Equal(t, http.StatusOK, code, "%v", body)
	// The gateway takes the settings when it reloads its routes: predict until a copy shows,
	// then until every copy made so far has been compared.
	require.Eventually(t, func() bool {
		shadowPredictions(t, h, modelID, 1)
		_, figures := h.call(http.MethodGet, env+"/shadow", nil)
		return figures["copied"].(float64) > 0
	}, 10*time.Second, 50*time.Millisecond, "no prediction was ever copied")
	// Gateways write their figures once a second: they are complete once two reads more than
	// a second apart agree.
	require.Eventually(t, func() bool {
		_, first := h.call(http.MethodGet, env+"/shadow", nil)
		time.Sleep(1500 * time.Millisecond)
		_, figures := h.call(http.MethodGet, env+"/shadow", nil)
		copied = int(figures["copied"].(float64))
		return figures["copied"] == first["copied"] && figures["equal"] == figures["copied"] && figures["dropped"] == 0.0
	}, 15*time.Second, 50*time.Millisecond, "the first copies never all compared equal")
	return modelID, shadow, copied
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
	modelID, shadow, before := shadowedModel(t, h, "input-echo")
	env := "/v1/models/" + modelID + "/environments/production"
	const n = 20
	shadowPredictions(t, h, modelID, n)
	want := float64(before + n)
	var figures map[string]any
	for deadline := time.Now().Add(15 * time.Second); time.Now().Before(deadline); time.Sleep(100 * time.Millisecond) {
		code, body := h.call(http.MethodGet, env+"/shadow", nil)
		require.Equal(t, http.StatusOK, code, "%v", body)
		if figures = body; figures["copied"] == want && figures["equal"] == want {
			break
		}
	}
	require.Equal(t, want, figures["copied"], "%d predictions after %d copies: %v", n, before, figures)
	require.Equal(t, want, figures["equal"], "%v", figures)
	require.Equal(t, shadow, figures["deployment_id"])
	require.Equal(t, 0.0, figures["different"])
	require.Equal(t, 0.0, figures["errors"])
	require.Equal(t, 0.0, figures["dropped"])
	require.Positive(t, figures["primary_p99_ms"])
	require.Positive(t, figures["shadow_p99_ms"])
}
