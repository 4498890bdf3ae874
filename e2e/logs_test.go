package e2e

import (
	"bytes"
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/modelplane/modelplane/apiv1"
	"github.com/modelplane/modelplane/client"
	"github.com/modelplane/modelplane/modelpkg"
)

func TestLogs_APrintInPredictIsALineOfTheDeploymentsLogs(t *testing.T) {
	h := start(t)
	dir := filepath.Join(t.TempDir(), "echo")
	require.NoError(t, os.CopyFS(dir, os.DirFS("../examples/models/echo")))
	modelPy := filepath.Join(dir, "model", "model.py")
	src, err := os.ReadFile(modelPy)
	require.NoError(t, err)
	src = bytes.Replace(src, []byte("    def predict(self, model_input):\n"),
		[]byte("    def predict(self, model_input):\n        print(\"predicting\", model_input, flush=True)\n"), 1)
	require.NoError(t, os.WriteFile(modelPy, src, 0o644))
	var buf bytes.Buffer
	_, err = modelpkg.Pack(dir, &buf)
	require.NoError(t, err)
	a, err := h.api.UploadArchive(context.Background(), &buf)
	require.NoError(t, err)
	modelID, deploymentID := h.createModel("echo-logs", a.ID, false)
	h.promote(modelID, "production", deploymentID)

	_, err = h.predictEcho(modelID, client.ProductionTarget(), `{"text": "logged"}`)
	require.NoError(t, err)
	var found *apiv1.LogV1
	require.Eventually(t, func() bool {
		out, err := h.api.Logs(context.Background(), modelID, client.LogsQuery{Deployment: deploymentID})
		if err != nil {
			return false
		}
		for _, l := range out.Logs {
			if strings.Contains(l.Message, "predicting") && strings.Contains(l.Message, "logged") {
				found = &l
				return true
			}
		}
		return false
	}, 20*time.Second, 250*time.Millisecond, "the model's print never showed in GET .../logs")
	require.NotNil(t, found.Replica)
	require.Equal(t, "model", found.Component)
	r, ok := h.replica(deploymentID)
	require.True(t, ok)
	require.Equal(t, r.ID, *found.Replica)

	out, err := h.api.Logs(context.Background(), modelID, client.LogsQuery{Environment: "production", Replica: r.ID[:5]})
	require.NoError(t, err)
	require.NotEmpty(t, out.Logs, "the environment's logs hold the replica's lines")
	require.Empty(t, out.Unavailable)
}
