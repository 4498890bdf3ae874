package e2e

import (
	"context"
	"encoding/json"
	"os"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/modelplane/modelplane/agent/agentproto"
	"github.com/modelplane/modelplane/client"
	"github.com/modelplane/modelplane/devstack"
)

// preimportPackage is a Truss package whose model says whether xml.dom.minidom was already
// imported when its module was, which only a start from a fork server that imported it can
// make true: neither the model server nor the model imports it. extra is appended to its
// config.yaml.
func preimportPackage(h *harness, name, extra string) string {
	h.t.Helper()
	return h.uploadPackage(map[string]string{
		"config.yaml":       "model_name: " + name + "\n" + extra,
		"model/__init__.py": "",
		"model/model.py": `import os
import sys

PREIMPORTED = "xml.dom.minidom" in sys.modules


class Model:
    def predict(self, model_input):
        return {"preimported": PREIMPORTED, "pid": os.getpid()}
`,
	})
}

// reachableDataDir is a data directory that replica users can pass through, as a root
// agent's state directory on a host is: its replicas then run as users of their own (when
// the test runs as root, as it does here and in CI).
func reachableDataDir(t *testing.T) string {
	t.Helper()
	dir, err := os.MkdirTemp("", "mpe")
	require.NoError(t, err)
	require.NoError(t, os.Chmod(dir, 0o711))
	t.Cleanup(func() { os.RemoveAll(dir) })
	return dir
}

// With the agent's pre-warmed runtime on, a Truss model that declares
// runtime.prewarm_imports wakes from zero started from a warm interpreter that has imported
// them (its environment's warm spare, as its replicas run as users of their own; its first
// replica, which the warm interpreter is started for, may start cold), and a model that
// declares nothing starts without them; both answer predictions.
func TestPrewarm_ADeclaredImportIsDoneBeforeTheModelStarts(t *testing.T) {
	h := startWith(t, devstack.Options{PythonPrewarm: true, DataDir: reachableDataDir(t)})
	ctx := context.Background()
	if os.Geteuid() == 0 {
		inv, err := h.agent.Inventory(ctx)
		require.NoError(t, err)
		require.Equal(t, agentproto.IsolationReplicaUsers, inv.Isolation.Mode)
	}
	predict := func(modelID string) bool {
		t.Helper()
		out, err := h.api.Predict(ctx, modelID, client.ProductionTarget(), []byte(`{}`))
		require.NoError(t, err)
		var answer struct {
			Preimported *bool `json:"preimported"`
		}
		require.NoError(t, json.Unmarshal(out, &answer), "%s", out)
		require.NotNil(t, answer.Preimported, "%s", out)
		return *answer.Preimported
	}
	deploy := func(name, extra string) (modelID, dep string) {
		t.Helper()
		modelID, dep = h.createModel(name, preimportPackage(h, name, extra), false)
		h.promote(modelID, "production", dep)
		// Back to zero soon after each prediction, so that the next one starts a replica.
		h.autoscale(modelID, dep, map[string]any{"min_replica": 0, "scale_down_delay": 2, "autoscaling_window": 10})
		return modelID, dep
	}
	plain, _ := deploy("plain", "")
	require.False(t, predict(plain), "nothing declared: the module is not imported before the model")

	warm, dep := deploy("prewarmed", "runtime:\n  prewarm_imports: [xml.dom.minidom]\n")
	predict(warm)
	h.waitStatus(warm, dep, "SCALED_TO_ZERO")
	require.True(t, predict(warm), "woken from zero, the replica started from a warm interpreter that had imported the module")
}
