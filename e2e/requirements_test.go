package e2e

import (
	"bytes"
	"context"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/modelplane/modelplane"
	"github.com/modelplane/modelplane/devstack"
	"github.com/modelplane/modelplane/internal/wheel"
	"github.com/modelplane/modelplane/modelpkg"
	"github.com/modelplane/modelplane/workflows/contract"
)

// requirementsArchive uploads a python-runtime package that needs the requirement and whose
// model greets with mpgreet, which only the requirement brings.
func requirementsArchive(t *testing.T, h *harness, requirement string) string {
	t.Helper()
	src := t.TempDir()
	require.NoError(t, os.MkdirAll(filepath.Join(src, "model"), 0o755))
	require.NoError(t, os.WriteFile(filepath.Join(src, "config.yaml"), []byte(
		"model_name: greeter\nrequirements:\n  - "+requirement+"\n"), 0o644))
	require.NoError(t, os.WriteFile(filepath.Join(src, "model", "model.py"), []byte(
		"class Model:\n    def __init__(self, **kw):\n        pass\n    def load(self):\n        import mpgreet\n        self.greet = mpgreet.greet\n"+
			"    def predict(self, x):\n        return {'greeting': self.greet()}\n"), 0o644))
	var buf bytes.Buffer
	_, err := modelpkg.Pack(src, &buf)
	require.NoError(t, err)
	a, err := h.api.UploadArchive(context.Background(), &buf)
	require.NoError(t, err)
	return a.ID
}

// statusTrail polls the deployment until it has one of the statuses and answers the status
// and reason of every answer that changed them.
func (h *harness) statusTrail(modelID, depID string, until ...modelplane.DeploymentStatus) []string {
	h.t.Helper()
	var mu sync.Mutex
	var trail []string
	ok := assert.Eventually(h.t, func() bool {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		d, err := h.api.Deployment(ctx, modelID, depID)
		if err != nil {
			return false
		}
		line := string(d.Status)
		if d.StatusReason != nil && *d.StatusReason != "" {
			line += ": " + *d.StatusReason
		}
		mu.Lock()
		defer mu.Unlock()
		if len(trail) == 0 || trail[len(trail)-1] != line {
			trail = append(trail, line)
		}
		for _, s := range until {
			if d.Status == s {
				return true
			}
		}
		return false
	}, 3*time.Minute, 100*time.Millisecond)
	mu.Lock()
	defer mu.Unlock()
	require.True(h.t, ok, "deployment %s never reached %v: %v", depID, until, trail)
	return trail
}

func (h *harness) buildLog(modelID, depID string) string {
	h.t.Helper()
	l, err := h.api.BuildLogs(context.Background(), modelID, depID)
	require.NoError(h.t, err)
	require.Equal(h.t, depID, l.DeploymentID)
	return strings.Join(l.Lines, "\n")
}

// TestRequirements_InstalledWhileBuildingReusedAndFailuresAreBuildFailed: a package's
// requirements are installed on the node while the deployment is BUILDING, from the
// wheelhouse the agent is given; a second deployment of the same set reuses the environment;
// a requirement pip cannot find is BUILD_FAILED with pip's words, and a retry builds again.
func TestRequirements_InstalledWhileBuildingReusedAndFailuresAreBuildFailed(t *testing.T) {
	wheelhouse := t.TempDir()
	_, err := wheel.Write(wheelhouse, "mpgreet", "1.0", map[string]string{
		"mpgreet.py": "def greet():\n    return 'hello from mpgreet'\n",
	})
	require.NoError(t, err)
	h := startWith(t, devstack.Options{PythonFindLinks: wheelhouse})

	archive := requirementsArchive(t, h, "mpgreet==1.0")
	code, body := h.call(http.MethodPost, "/v1/models", map[string]any{
		"source": map[string]any{"kind": "model_archive", "name": "greeter-" + modelplane.NewID(6), "archive_id": archive}})
	require.Equal(t, http.StatusOK, code, "%v", body)
	modelID := body["model"].(map[string]any)["id"].(string)
	first := body["deployment"].(map[string]any)["id"].(string)
	trail := h.statusTrail(modelID, first, modelplane.DeploymentActive, modelplane.DeploymentBuildFailed)
	require.Equal(t, "ACTIVE", trail[len(trail)-1], "%v", trail)
	assert.Contains(t, trail, "BUILDING: installing 1 requirement on node dev", "the status says what the build does")
	log := h.buildLog(modelID, first)
	assert.Contains(t, log, "installing 1 requirement on node dev")
	assert.Contains(t, log, "Successfully installed mpgreet-1.0")
	assert.Contains(t, log, "requirements installed on node dev (environment ")
	assert.NotContains(t, log, "reused")
	assert.Equal(t, "hello from mpgreet", h.predictReplica(first)["greeting"])
	h.record("deployment-requirements", contract.DeploymentWorkflowID(first))

	code, body = h.call(http.MethodPost, "/v1/models/"+modelID+"/deployments", map[string]any{
		"source": map[string]any{"kind": "model_archive", "archive_id": archive}})
	require.Equal(t, http.StatusOK, code, "%v", body)
	second := body["deployment"].(map[string]any)["id"].(string)
	trail = h.statusTrail(modelID, second, modelplane.DeploymentActive, modelplane.DeploymentBuildFailed)
	require.Equal(t, "ACTIVE", trail[len(trail)-1], "%v", trail)
	assert.Equal(t, "BUILDING", trail[0], "%v", trail)
	log = h.buildLog(modelID, second)
	assert.Contains(t, log, "requirements already installed on node dev (environment ")
	assert.Contains(t, log, "reused")
	assert.NotContains(t, log, "Successfully installed", "nothing is installed again")
	assert.Equal(t, "hello from mpgreet", h.predictReplica(second)["greeting"])

	bad := requirementsArchive(t, h, "nosuchpkg==1.0")
	code, body = h.call(http.MethodPost, "/v1/models", map[string]any{
		"source": map[string]any{"kind": "model_archive", "name": "broken-" + modelplane.NewID(6), "archive_id": bad}})
	require.Equal(t, http.StatusOK, code, "%v", body)
	badModel := body["model"].(map[string]any)["id"].(string)
	badDep := body["deployment"].(map[string]any)["id"].(string)
	trail = h.statusTrail(badModel, badDep, modelplane.DeploymentActive, modelplane.DeploymentBuildFailed)
	last := trail[len(trail)-1]
	require.True(t, strings.HasPrefix(last, "BUILD_FAILED: "), "%v", trail)
	assert.Contains(t, last, "No matching distribution found for nosuchpkg==1.0")
	assert.Contains(t, h.buildLog(badModel, badDep), "No matching distribution found for nosuchpkg==1.0")
	_, ok := h.replica(badDep)
	assert.False(t, ok, "a deployment that failed to build runs no replica")

	// A retry builds again, and fails again the same way.
	code, body = h.call(http.MethodPost, "/v1/models/"+badModel+"/deployments/"+badDep+"/retry", nil)
	require.Equal(t, http.StatusOK, code, "%v", body)
	require.Equal(t, true, body["retried"], "%v", body)
	require.Eventually(t, func() bool {
		return strings.Count(h.buildLog(badModel, badDep), "could not prepare the Python environment") == 2
	}, 2*time.Minute, 200*time.Millisecond, "the retry builds again")
	h.waitStatus(badModel, badDep, modelplane.DeploymentBuildFailed)
}
