package e2e

import (
	"bytes"
	"context"
	"encoding/json"
	"net/http"
	"os"
	"path/filepath"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/modelplane/modelplane/client"
	"github.com/modelplane/modelplane/modelpkg"
)

// trussPackage is shaped like the packages in Truss's documentation: a display name with
// spaces, a runtime block, the model class in its own module directory under its own name,
// data and bundled packages in directories of their own, and keys modelplane keeps without
// acting on them.
var trussPackage = map[string]string{
	"config.yaml": `model_name: basic truss
description: Says hello with a greeting from its data directory
python_version: py311
model_module_dir: src
model_class_filename: hello_model.py
model_class_name: HelloModel
data_dir: assets
bundled_packages_dir: vendored
external_package_dirs: []
requirements: []
system_packages: []
resources:
  accelerator: null
  cpu: "500m"
  memory: 512Mi
  use_gpu: false
runtime:
  predict_concurrency: 2
  streaming_read_timeout: 60
  enable_tracing_data: false
  transport:
    kind: http
  health_checks:
    restart_check_delay_seconds: 0
secrets: {}
environment_variables: {}
model_metadata:
  example_model_input: {"name": "truss"}
spec_version: "2.0"
examples_filename: examples.yaml
`,
	"src/hello_model.py": `import greeting


class HelloModel:
    def __init__(self, **kwargs):
        self._data_dir = kwargs["data_dir"]
        self._config = kwargs["config"]

    def load(self):
        self._word = (self._data_dir / "word.txt").read_text().strip()

    def predict(self, model_input):
        return {
            "text": greeting.greet(self._word, model_input["name"]),
            "predict_concurrency": self._config["runtime"]["predict_concurrency"],
        }
`,
	"assets/word.txt":         "hello\n",
	"vendored/greeting.py":    "def greet(word, name):\n    return '%s, %s' % (word, name)\n",
	"vendored/__init__.py":    "",
	"examples.yaml":           "- {name: truss}\n",
	"src/__init__.py":         "",
	"assets/README.md":        "data for the model\n",
	"vendored/README.md":      "bundled packages\n",
	"src/unused_sibling.py":   "X = 1\n",
	"assets/nested/empty.txt": "",
}

// uploadPackage writes files (path: contents) into a package directory, packs it and uploads
// it, and returns the archive's ID.
func (h *harness) uploadPackage(files map[string]string) string {
	h.t.Helper()
	dir := h.t.TempDir()
	for name, text := range files {
		require.NoError(h.t, os.MkdirAll(filepath.Dir(filepath.Join(dir, name)), 0o755))
		require.NoError(h.t, os.WriteFile(filepath.Join(dir, name), []byte(text), 0o644))
	}
	var buf bytes.Buffer
	_, err := modelpkg.Pack(dir, &buf)
	require.NoError(h.t, err)
	archive, err := h.api.UploadArchive(context.Background(), &buf)
	require.NoError(h.t, err)
	return archive.ID
}

// TestTruss_APackageShapedLikeTrussRunsAsItIs pushes a Truss-shaped package under a name with
// spaces and a runtime block, promotes it, and predicts through production: the model class is
// found where model_module_dir, model_class_filename and model_class_name say, reads its
// data_dir, imports from bundled_packages_dir and sees its runtime settings in config.
func TestTruss_APackageShapedLikeTrussRunsAsItIs(t *testing.T) {
	h := start(t)
	ctx := context.Background()
	archiveID := h.uploadPackage(trussPackage)

	modelID, depID := h.createModel("basic truss", archiveID, false)
	code, body := h.call(http.MethodGet, "/v1/models/"+modelID, nil)
	require.Equal(t, http.StatusOK, code, "%v", body)
	require.Equal(t, "basic truss", body["name"], "the display name is kept as written")

	h.promote(modelID, "production", depID)
	out, err := h.api.Predict(ctx, modelID, client.ProductionTarget(), []byte(`{"name": "truss"}`))
	require.NoError(t, err)
	var answer map[string]any
	require.NoError(t, json.Unmarshal(out, &answer), "%s", out)
	require.Equal(t, map[string]any{"text": "hello, truss", "predict_concurrency": 2.0}, answer)

	// A Truss key that cannot run the way it asks is refused with what to do instead.
	code, body = h.call(http.MethodPost, "/v1/models/"+modelID+"/deployments", map[string]any{
		"source": map[string]any{"kind": "model_archive", "archive_id": archiveID, "deployment": map[string]any{
			"config": map[string]any{"model_name": "basic truss", "system_packages": []string{"ffmpeg"}}}}})
	require.Equal(t, http.StatusUnprocessableEntity, code, "%v", body)
	require.Contains(t, body["error"].(map[string]any)["message"], "system_packages")
}
