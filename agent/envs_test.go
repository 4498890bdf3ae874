package agent_test

import (
	"context"
	"encoding/json"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/modelplane/modelplane"
	"github.com/modelplane/modelplane/agent"
	"github.com/modelplane/modelplane/agent/agentproto"
	"github.com/modelplane/modelplane/internal/wheel"
	"github.com/modelplane/modelplane/patch"
)

// requirementsPackage is a python-runtime package whose model imports mpgreet, which only
// its requirements bring; wheelhouse holds mpgreet's wheel.
func requirementsPackage(t *testing.T, extra string) (url, sum, wheelhouse string) {
	t.Helper()
	wheelhouse = t.TempDir()
	_, err := wheel.Write(wheelhouse, "mpgreet", "1.0", map[string]string{
		"mpgreet.py": "def greet():\n    return 'hello from mpgreet'\n",
	})
	require.NoError(t, err)
	src := t.TempDir()
	require.NoError(t, os.MkdirAll(filepath.Join(src, "model"), 0o755))
	require.NoError(t, os.WriteFile(filepath.Join(src, "config.yaml"), []byte(
		"model_name: greeter\nrequirements:\n  - mpgreet==1.0\n"+extra), 0o644))
	require.NoError(t, os.WriteFile(filepath.Join(src, "model", "model.py"), []byte(
		"import sys\nimport mpgreet\n\nclass Model:\n    def __init__(self, **kw):\n        pass\n"+
			"    def load(self):\n        pass\n    def predict(self, x):\n        return {'greeting': mpgreet.greet(), 'prefix': sys.prefix}\n"), 0o644))
	url, sum = pkg(t, src)
	return url, sum, wheelhouse
}

// startRequirementsReplica starts a node on dir whose pip finds packages in wheelhouse, starts
// the package on it and waits until the replica is READY.
func startRequirementsReplica(t *testing.T, dir, url, sum, wheelhouse string) (*node, agentproto.Replica) {
	t.Helper()
	n := startNode(t, dir, "none", func(c *agent.Config) { c.PythonFindLinks = wheelhouse })
	id := newID()
	n.mustStart(startReq(id, url, sum, 0))
	var r agentproto.Replica
	require.Eventually(t, func() bool {
		r = n.replica(id)
		return r.State == modelplane.ReplicaReady || r.State == modelplane.ReplicaFailed
	}, 90*time.Second, 100*time.Millisecond)
	require.Equal(t, modelplane.ReplicaReady, r.State, "replica error: %s %v", r.Error, r.LogTail)
	return n, r
}

// TestAgent_PythonPackageWithRequirementsRunsInItsEnvironment runs with replica users when
// the tests run as root: the environment, built by the agent, is one its replica can run.
func TestAgent_PythonPackageWithRequirementsRunsInItsEnvironment(t *testing.T) {
	url, sum, wheelhouse := requirementsPackage(t, "")
	dir := reachableTempDir(t)
	defer stopAll(t, dir)
	n, r := startRequirementsReplica(t, dir, url, sum, wheelhouse)
	id := r.ID
	status, out := predict(t, r.Address, r.PredictPath, `{}`)
	require.Equal(t, http.StatusOK, status, "%v", out)
	assert.Equal(t, "hello from mpgreet", out["greeting"])
	assert.Contains(t, out["prefix"], filepath.Join(dir, "envs"), "the server runs on the environment's python")
	if os.Geteuid() == 0 {
		require.Equal(t, agentproto.IsolationReplicaUsers, n.inventory().Isolation.Mode)
	}
	_, _ = n.call(http.MethodDelete, "/v1/replicas/"+id, nil, token)
}

func TestAgent_BuildEnvBuildsOnceThenAnswersReused(t *testing.T) {
	url, sum, wheelhouse := requirementsPackage(t, "")
	n := startNode(t, t.TempDir(), "none", func(c *agent.Config) { c.PythonFindLinks = wheelhouse })
	req := agentproto.EnvRequest{ArchiveURL: url, ArchiveSHA256: sum}
	code, body := n.call(http.MethodPost, "/v1/envs", req, token)
	require.Equal(t, http.StatusOK, code, string(body))
	var st agentproto.EnvStatus
	require.NoError(t, json.Unmarshal(body, &st))
	require.Equal(t, agentproto.EnvBuilding, st.State)
	require.Equal(t, 1, st.Requirements)
	require.Eventually(t, func() bool {
		code, body := n.call(http.MethodGet, "/v1/envs/"+st.Key+"?tail=100", nil, token)
		require.Equal(t, http.StatusOK, code, string(body))
		require.NoError(t, json.Unmarshal(body, &st))
		return st.State != agentproto.EnvBuilding
	}, 90*time.Second, 100*time.Millisecond)
	require.Equal(t, agentproto.EnvReady, st.State, st.Error)
	assert.False(t, st.Reused)
	assert.Contains(t, st.LogTail, "Successfully installed mpgreet-1.0")

	code, body = n.call(http.MethodPost, "/v1/envs", req, token)
	require.Equal(t, http.StatusOK, code, string(body))
	var again agentproto.EnvStatus
	require.NoError(t, json.Unmarshal(body, &again))
	assert.Equal(t, agentproto.EnvReady, again.State)
	assert.True(t, again.Reused)
	assert.Equal(t, st.Key, again.Key)

	code, _ = n.call(http.MethodGet, "/v1/envs/"+st.Key, nil, "")
	assert.Equal(t, http.StatusUnauthorized, code)
	code, _ = n.call(http.MethodGet, "/v1/envs/0123456789abcdef0123456789abcdef", nil, token)
	assert.Equal(t, http.StatusNotFound, code)
}

func TestAgent_BuildEnvOfAMissingInterpreterFailsNamingPythonVersion(t *testing.T) {
	url, sum, wheelhouse := requirementsPackage(t, "python_version: py37\n")
	n := startNode(t, t.TempDir(), "none", func(c *agent.Config) { c.PythonFindLinks = wheelhouse })
	code, body := n.call(http.MethodPost, "/v1/envs", agentproto.EnvRequest{ArchiveURL: url, ArchiveSHA256: sum}, token)
	require.Equal(t, http.StatusOK, code, string(body))
	var st agentproto.EnvStatus
	require.NoError(t, json.Unmarshal(body, &st))
	assert.Equal(t, agentproto.EnvFailed, st.State)
	assert.Contains(t, st.Error, "python_version py37: python3.7 is not installed on node node-test")

	code, body = n.call(http.MethodPost, "/v1/envs", agentproto.EnvRequest{ArchiveURL: url}, token)
	assert.Equal(t, http.StatusBadRequest, code)
	assert.Contains(t, string(body), "archive_sha256")
}

// TestAgent_RequirementsExampleRunsFromTheWheelhouseItsScriptBuilds runs
// examples/models/requirements as its README says: build-wheelhouse.sh, then an agent whose
// find-links is that wheelhouse. It works on a copy, so the checkout stays as it is.
func TestAgent_RequirementsExampleRunsFromTheWheelhouseItsScriptBuilds(t *testing.T) {
	src := filepath.Join(t.TempDir(), "requirements")
	require.NoError(t, os.CopyFS(src, os.DirFS("../examples/models/requirements")))
	require.NoError(t, os.RemoveAll(filepath.Join(src, "wheelhouse")))
	out, err := exec.Command(filepath.Join(src, "build-wheelhouse.sh")).CombinedOutput()
	require.NoError(t, err, "build-wheelhouse.sh: %s", out)
	wheelhouse := filepath.Join(t.TempDir(), "wheelhouse")
	require.NoError(t, os.Rename(filepath.Join(src, "wheelhouse"), wheelhouse))
	url, sum := pkg(t, src)

	dir := t.TempDir()
	defer stopAll(t, dir)
	n, r := startRequirementsReplica(t, dir, url, sum, wheelhouse)
	id := r.ID
	status, got := predict(t, r.Address, r.PredictPath, `{"text": "hello"}`)
	require.Equal(t, http.StatusOK, status, "%v", got)
	assert.Equal(t, "HELLO!", got["shout"])
	assert.Equal(t, "1.0", got["mpshout_version"])
	_, _ = n.call(http.MethodDelete, "/v1/replicas/"+id, nil, token)
}

// TestAgent_RestartAfterARequirementsPatchRunsOnAnEnvironmentOfTheNewSet patches a running
// replica's requirements (as live reload sends a changed config.yaml) and restarts it in
// place: the new server runs on an environment of the new set, not the one it started with.
func TestAgent_RestartAfterARequirementsPatchRunsOnAnEnvironmentOfTheNewSet(t *testing.T) {
	url, sum, wheelhouse := requirementsPackage(t, "")
	_, err := wheel.Write(wheelhouse, "mpgreet", "2.0", map[string]string{
		"mpgreet.py": "def greet():\n    return 'hello from mpgreet 2'\n",
	})
	require.NoError(t, err)
	dir := t.TempDir()
	defer stopAll(t, dir)
	n, r := startRequirementsReplica(t, dir, url, sum, wheelhouse)
	id := r.ID
	_, before := predict(t, r.Address, r.PredictPath, `{}`)
	require.Equal(t, "hello from mpgreet", before["greeting"])

	config := "model_name: greeter\nrequirements:\n  - mpgreet==2.0\n"
	c := agentproto.NewClient(n.url, token)
	res, err := c.PatchReplica(context.Background(), id, agentproto.PatchRequest{
		PatchHash: "hash-requirements-2", How: patch.HowRestart,
		Files:  patch.FileSet{Files: []patch.File{{Path: "config.yaml", Content: []byte(config)}}},
		Config: json.RawMessage(`{"model_name": "greeter", "requirements": ["mpgreet==2.0"]}`),
	})
	require.NoError(t, err)
	require.Equal(t, modelplane.ReplicaReady, res.Replica.State, "the restart answers once the new server is ready: %s", res.Replica.Error)
	status, after := predict(t, res.Replica.Address, res.Replica.PredictPath, `{}`)
	require.Equal(t, http.StatusOK, status, "%v", after)
	require.Equal(t, "hello from mpgreet 2", after["greeting"], "the restarted server imports the new set's package")
	require.NotEqual(t, before["prefix"], after["prefix"], "the new set has an environment of its own")
}
