package agent_test

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/modelplane/modelplane"
	"github.com/modelplane/modelplane/agent/agentproto"
	"github.com/modelplane/modelplane/patch"
)

// modelSource is a python model that says which version of its code runs, in which process,
// and what $GREETING was when it loaded.
func modelSource(version string) []byte {
	return []byte(`import os

VERSION = "` + version + `"


class Model:
    def __init__(self, **kwargs):
        self._greeting = None

    def load(self):
        self._greeting = os.environ.get("GREETING", "")

    def predict(self, model_input):
        return {"version": VERSION, "pid": os.getpid(), "greeting": self._greeting}
`)
}

// brokenModelSource is a model whose load() fails.
var brokenModelSource = []byte(`class Model:
    def load(self):
        raise RuntimeError("the v3 weights are missing")

    def predict(self, model_input):
        return model_input
`)

const liveConfig = "model_name: live\nenvironment_variables:\n  GREETING: hello\n"

// livePackage is a python package at version v1.
func livePackage(t *testing.T) (string, string) {
	t.Helper()
	dir := t.TempDir()
	require.NoError(t, os.MkdirAll(filepath.Join(dir, "model"), 0o755))
	require.NoError(t, os.WriteFile(filepath.Join(dir, "config.yaml"), []byte(liveConfig), 0o644))
	require.NoError(t, os.WriteFile(filepath.Join(dir, "model", "model.py"), modelSource("v1"), 0o644))
	return pkg(t, dir)
}

func codePatch(source []byte) patch.FileSet {
	return patch.FileSet{Files: []patch.File{{Path: "model/model.py", Content: source}}}
}

// answer is what the live model predicts.
type answer struct {
	Version  string `json:"version"`
	PID      int    `json:"pid"`
	Greeting string `json:"greeting"`
}

func predictLive(t *testing.T, r agentproto.Replica) answer {
	t.Helper()
	resp, err := http.Post("http://"+r.Address+r.PredictPath, "application/json", strings.NewReader(`{}`))
	require.NoError(t, err)
	defer resp.Body.Close()
	require.Equal(t, http.StatusOK, resp.StatusCode, "predict on %s", r.Address)
	var a answer
	require.NoError(t, json.NewDecoder(resp.Body).Decode(&a))
	return a
}

// liveNode starts an agent on the simulated H200 with its state in a fresh directory, and
// stops its replicas when the test ends.
func liveNode(t *testing.T) (n *node, c *agentproto.Client, dir string) {
	t.Helper()
	dir = t.TempDir()
	t.Cleanup(func() { stopAll(t, dir) })
	n = startNode(t, dir, "h200")
	return n, agentproto.NewClient(n.url, token), dir
}

// liveReplica starts one replica of the live package with its GPU on a new node, its start
// request changed by adjust when not nil, and waits until it is READY.
func liveReplica(t *testing.T, adjust func(*agentproto.StartRequest)) (n *node, c *agentproto.Client, dir string, r agentproto.Replica) {
	t.Helper()
	n, c, dir = liveNode(t)
	url, sum := livePackage(t)
	req := startReq(newID(), url, sum, 1)
	if adjust != nil {
		adjust(&req)
	}
	n.mustStart(req)
	return n, c, dir, n.waitState(req.ReplicaID, modelplane.ReplicaReady)
}

func TestAgent_StartWithPatchServesPatchedCode(t *testing.T) {
	n, _, dir, r := liveReplica(t, func(req *agentproto.StartRequest) {
		files := codePatch(modelSource("v2"))
		// More than the 1 MiB other requests may carry.
		files.Dirs = []string{"weights"}
		files.Files = append(files.Files, patch.File{Path: "weights/layer0.bin", Content: bytes.Repeat([]byte{7}, 2<<20)})
		req.Patch = &agentproto.ReplicaPatch{PatchHash: "hash-v2", Files: files}
	})
	id := r.ID
	require.Equal(t, "hash-v2", r.PatchHash, "the replica records the patch it started at")
	require.NotEmpty(t, r.GPUUUIDs)
	require.Equal(t, "v2", predictLive(t, r).Version, "the model must run the patched code, not the archive's")
	weights, err := os.ReadFile(filepath.Join(dir, "replicas", id, "pkg", "weights", "layer0.bin"))
	require.NoError(t, err)
	require.Len(t, weights, 2<<20)

	// The control token reaches the server, and the state file, but no API answer.
	env, err := os.ReadFile(fmt.Sprintf("/proc/%d/environ", pidOf(t, dir, id)))
	require.NoError(t, err)
	tok := regexp.MustCompile("(?:^|\x00)MODELPLANE_CONTROL_TOKEN=([0-9a-f]*)\x00").FindSubmatch(env)
	require.NotNil(t, tok, "the server must get MODELPLANE_CONTROL_TOKEN")
	require.Len(t, string(tok[1]), 32, "the control token is 32 hex digits")
	_, body := n.call(http.MethodGet, "/v1/replicas/"+id, nil, token)
	require.NotContains(t, string(body), string(tok[1]), "the control token must not leave the host")
	state, err := os.ReadFile(filepath.Join(dir, "state.json"))
	require.NoError(t, err)
	require.Contains(t, string(state), string(tok[1]), "the state file keeps the control token across agent restarts")
	require.NotContains(t, string(state), "layer0.bin", "the state file keeps the patch's hash, not its files")
}

func TestAgent_HotReloadKeepsProcessAndGPUs(t *testing.T) {
	n, c, dir, before := liveReplica(t, nil)
	id := before.ID
	ctx := context.Background()
	beforePID := pidOf(t, dir, id)
	require.NotEmpty(t, before.GPUUUIDs)
	require.Equal(t, "v1", predictLive(t, before).Version)

	res, err := c.PatchReplica(ctx, id, agentproto.PatchRequest{PatchHash: "hash-v2", Files: codePatch(modelSource("v2")), How: patch.HowHotReload})
	require.NoError(t, err)
	require.Equal(t, patch.HowHotReload, res.How)
	require.Empty(t, res.ReloadError)
	after := res.Replica
	require.Equal(t, modelplane.ReplicaReady, after.State)
	require.Equal(t, "hash-v2", after.PatchHash)
	require.Equal(t, beforePID, pidOf(t, dir, id), "a hot reload keeps the process")
	require.Equal(t, before.GPUUUIDs, after.GPUUUIDs, "a hot reload keeps the GPUs")
	got := predictLive(t, after)
	require.Equal(t, "v2", got.Version, "predict must answer with the reloaded code")
	require.Equal(t, beforePID, got.PID)

	again, err := c.PatchReplica(ctx, id, agentproto.PatchRequest{PatchHash: "hash-v2", Files: codePatch(modelSource("v2")), How: patch.HowHotReload})
	require.NoError(t, err)
	require.Equal(t, agentproto.HowUnchanged, again.How, "a retry of the same patch changes nothing")
	require.Equal(t, beforePID, pidOf(t, dir, id))

	// The control token outlives the agent: a new agent process reloads the same server.
	n.shutdown()
	n2 := startNode(t, dir, "h200")
	n2.waitState(id, modelplane.ReplicaReady)
	res, err = agentproto.NewClient(n2.url, token).PatchReplica(ctx, id, agentproto.PatchRequest{PatchHash: "hash-v3", Files: codePatch(modelSource("v3")), How: patch.HowHotReload})
	require.NoError(t, err)
	require.Empty(t, res.ReloadError, "a re-adopted replica must still take hot reloads")
	require.Equal(t, beforePID, pidOf(t, dir, id))
	require.Equal(t, "v3", predictLive(t, res.Replica).Version)
}

func TestAgent_FailedHotReloadKeepsReplicaReadyUntilAGoodPatch(t *testing.T) {
	n, c, dir, before := liveReplica(t, nil)
	id := before.ID
	ctx := context.Background()
	beforePID := pidOf(t, dir, id)

	res, err := c.PatchReplica(ctx, id, agentproto.PatchRequest{PatchHash: "hash-v3", Files: codePatch(brokenModelSource), How: patch.HowHotReload})
	require.NoError(t, err, "a model that fails to reload is an answer, not an error")
	require.Contains(t, res.ReloadError, "model reload failed")
	require.Contains(t, res.ReloadError, "the v3 weights are missing")
	require.Equal(t, modelplane.ReplicaReady, res.Replica.State)
	require.Equal(t, res.ReloadError, res.Replica.ReloadError)

	// The replica stays in rotation, so that callers see why their predictions fail.
	time.Sleep(500 * time.Millisecond)
	r := n.replica(id)
	require.Equal(t, modelplane.ReplicaReady, r.State, "a failed reload must not take the replica out of rotation")
	require.Equal(t, res.ReloadError, r.ReloadError)
	status, out := predict(t, r.Address, r.PredictPath, `{}`)
	require.Equal(t, http.StatusInternalServerError, status)
	require.Contains(t, out["error"], "the v3 weights are missing")

	retry, err := c.PatchReplica(ctx, id, agentproto.PatchRequest{PatchHash: "hash-v3", Files: codePatch(brokenModelSource), How: patch.HowHotReload})
	require.NoError(t, err)
	require.Equal(t, agentproto.HowUnchanged, retry.How)
	require.Equal(t, res.ReloadError, retry.ReloadError, "a retry answers the error the patch met")

	fixed, err := c.PatchReplica(ctx, id, agentproto.PatchRequest{PatchHash: "hash-v4", Files: codePatch(modelSource("v4")), How: patch.HowHotReload})
	require.NoError(t, err)
	require.Empty(t, fixed.ReloadError, "a good patch clears the reload error")
	require.Empty(t, fixed.Replica.ReloadError)
	require.Equal(t, beforePID, pidOf(t, dir, id), "recovering takes no restart")
	require.Equal(t, "v4", predictLive(t, fixed.Replica).Version)
}

func TestAgent_RestartInPlaceKeepsIDGPUsAndAddress(t *testing.T) {
	n, c, dir, before := liveReplica(t, func(req *agentproto.StartRequest) {
		req.Config = json.RawMessage(`{"model_name": "live", "environment_variables": {"GREETING": "hello"}}`)
	})
	id := before.ID
	ctx := context.Background()
	beforePID := pidOf(t, dir, id)
	require.NotEmpty(t, before.GPUUUIDs)
	require.Equal(t, answer{Version: "v1", PID: beforePID, Greeting: "hello"}, predictLive(t, before))

	res, err := c.PatchReplica(ctx, id, agentproto.PatchRequest{
		PatchHash: "hash-v2", Files: codePatch(modelSource("v2")), How: patch.HowRestart,
		Config: json.RawMessage(`{"model_name": "live", "environment_variables": {"GREETING": "bye"}}`),
	})
	require.NoError(t, err)
	require.Equal(t, patch.HowRestart, res.How)
	after := res.Replica
	require.Equal(t, modelplane.ReplicaReady, after.State, "the restart answers once the new server is ready: %s", after.Error)
	require.Equal(t, id, after.ID)
	require.Equal(t, before.GPUUUIDs, after.GPUUUIDs, "a restart in place keeps the GPUs")
	require.Equal(t, before.Address, after.Address, "a restart in place keeps the address")
	afterPID := pidOf(t, dir, id)
	require.NotEqual(t, beforePID, afterPID, "a restart runs a new process")
	require.Equal(t, "hash-v2", after.PatchHash)
	require.Equal(t, answer{Version: "v2", PID: afterPID, Greeting: "bye"}, predictLive(t, after),
		"the new process runs the patched code with the new config's variables")
	require.Len(t, replicaProcesses(id), 1, "the old server must be gone")
	require.Equal(t, id, n.inventory().GPUs[0].AssignedReplicaID, "the GPU stays assigned through the restart")

	stopped, err := c.StopReplica(ctx, id, 5*time.Second)
	require.NoError(t, err)
	require.Equal(t, modelplane.ReplicaStopped, stopped.State)
	require.Empty(t, replicaProcesses(id), "stopping a restarted replica stops its new server")
}

func TestAgent_RestartThatCannotLoadFailsTheReplica(t *testing.T) {
	n, c, _, r := liveReplica(t, nil)
	id := r.ID

	res, err := c.PatchReplica(context.Background(), id,
		agentproto.PatchRequest{PatchHash: "hash-v3", Files: codePatch(brokenModelSource), How: patch.HowRestart})
	require.NoError(t, err)
	require.Equal(t, modelplane.ReplicaFailed, res.Replica.State, "a restart whose model cannot load fails the replica, as a failed start does")
	require.Contains(t, res.Replica.Error, "the v3 weights are missing")
	require.Empty(t, replicaProcesses(id), "the server that could not load is stopped")
	require.Empty(t, n.inventory().GPUs[0].AssignedReplicaID, "the failed replica frees its GPU")
}

func TestAgent_PatchPathsOutsideThePackageAreRefused(t *testing.T) {
	n, c, dir := liveNode(t)
	ctx := context.Background()
	url, sum := livePackage(t)

	bad := startReq(newID(), url, sum, 1)
	bad.Patch = &agentproto.ReplicaPatch{PatchHash: "h", Files: patch.FileSet{Files: []patch.File{{Path: "../x", Content: []byte("x")}}}}
	code, body := n.call(http.MethodPost, "/v1/replicas", bad, token)
	require.Equal(t, http.StatusBadRequest, code, "a start whose patch leaves the package: %s", body)

	id := newID()
	n.mustStart(startReq(id, url, sum, 1))
	n.waitState(id, modelplane.ReplicaReady)
	pkgDir := filepath.Join(dir, "replicas", id, "pkg")
	outside := t.TempDir()
	require.NoError(t, os.WriteFile(filepath.Join(outside, "victim"), []byte("keep me"), 0o644))
	require.NoError(t, os.Symlink(outside, filepath.Join(pkgDir, "out")))

	tests := []struct {
		name  string
		files patch.FileSet
	}{
		{"dot-dot file", patch.FileSet{Files: []patch.File{{Path: "../x", Content: []byte("x")}}}},
		{"dot-dot removal", patch.FileSet{Remove: []string{"../" + filepath.Base(pkgDir)}}},
		{"file through a symlink", patch.FileSet{Files: []patch.File{{Path: "out/x", Content: []byte("x")}}}},
		{"directory through a symlink", patch.FileSet{Dirs: []string{"out/sub"}}},
		{"removal through a symlink", patch.FileSet{Remove: []string{"out/victim"}}},
		{"good file with a bad one", patch.FileSet{Files: []patch.File{
			{Path: "model/model.py", Content: modelSource("v2")}, {Path: "out/x", Content: []byte("x")}}}},
	}
	for _, how := range []string{patch.HowHotReload, patch.HowRestart} {
		for _, tt := range tests {
			t.Run(how+"/"+tt.name, func(t *testing.T) {
				_, err := c.PatchReplica(ctx, id, agentproto.PatchRequest{PatchHash: "hash-bad", Files: tt.files, How: how})
				var apiErr *agentproto.APIError
				require.ErrorAs(t, err, &apiErr)
				require.Equal(t, http.StatusBadRequest, apiErr.Status, apiErr.Message)
				require.Contains(t, apiErr.Message, "files")
			})
		}
	}
	entries, err := os.ReadDir(outside)
	require.NoError(t, err)
	require.Len(t, entries, 1, "nothing may be written outside the package")
	victim, err := os.ReadFile(filepath.Join(outside, "victim"))
	require.NoError(t, err, "nothing outside the package may be removed")
	require.Equal(t, "keep me", string(victim))
	source, err := os.ReadFile(filepath.Join(pkgDir, "model", "model.py"))
	require.NoError(t, err)
	require.Equal(t, string(modelSource("v1")), string(source), "a refused patch writes none of its files")
	r := n.replica(id)
	require.Equal(t, modelplane.ReplicaReady, r.State)
	require.Empty(t, r.PatchHash, "a refused patch is not recorded")
}

func TestAgent_PatchRequestsThatCannotBeDone(t *testing.T) {
	n, c, dir := liveNode(t)
	ctx := context.Background()
	good := agentproto.PatchRequest{PatchHash: "hash-1", How: patch.HowRestart,
		Files: patch.FileSet{Files: []patch.File{{Path: "notes.txt", Content: []byte("1")}}}}

	_, err := c.PatchReplica(ctx, "nosuch", good)
	require.ErrorIs(t, err, agentproto.ErrUnknownReplica, "patching an unknown replica is a 404")

	// The test model is a process-runtime package: it restarts, but cannot hot reload.
	url, sum := testmodelPackage(t)
	id := newID()
	n.mustStart(startReq(id, url, sum, 1))
	n.waitState(id, modelplane.ReplicaReady)
	beforePID := pidOf(t, dir, id)

	status := func(req agentproto.PatchRequest) (int, string) {
		t.Helper()
		_, err := c.PatchReplica(ctx, id, req)
		var apiErr *agentproto.APIError
		require.ErrorAs(t, err, &apiErr)
		return apiErr.Status, apiErr.Message
	}
	with := func(f func(*agentproto.PatchRequest)) agentproto.PatchRequest {
		r := good
		f(&r)
		return r
	}
	tests := []struct {
		name     string
		req      agentproto.PatchRequest
		want     int
		wantText string
	}{
		{"unknown how", with(func(r *agentproto.PatchRequest) { r.How = "reboot" }), http.StatusBadRequest, "how"},
		{"no patch hash", with(func(r *agentproto.PatchRequest) { r.PatchHash = "" }), http.StatusBadRequest, "patch_hash"},
		{"bad config", with(func(r *agentproto.PatchRequest) { r.Config = json.RawMessage(`{"runtime": "fortran"}`) }), http.StatusBadRequest, "config"},
		{"hot reload of a process runtime", with(func(r *agentproto.PatchRequest) { r.How = patch.HowHotReload }), http.StatusConflict, "python"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			code, msg := status(tt.req)
			require.Equal(t, tt.want, code, msg)
			require.Contains(t, msg, tt.wantText)
		})
	}

	res, err := c.PatchReplica(ctx, id, good)
	require.NoError(t, err)
	require.Equal(t, modelplane.ReplicaReady, res.Replica.State)
	require.NotEqual(t, beforePID, pidOf(t, dir, id), "a restart runs a new process")
	notes, err := os.ReadFile(filepath.Join(dir, "replicas", id, "pkg", "notes.txt"))
	require.NoError(t, err)
	require.Equal(t, "1", string(notes))

	_, err = c.StopReplica(ctx, id, time.Second)
	require.NoError(t, err)
	code, msg := status(good)
	require.Equal(t, http.StatusConflict, code, "a stopped replica takes no patch: %s", msg)
}
