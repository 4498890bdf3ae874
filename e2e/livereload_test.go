package e2e

import (
	"bytes"
	"context"
	"encoding/json"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/modelplane/modelplane/apiv1"
	"github.com/modelplane/modelplane/client"
	"github.com/modelplane/modelplane/internal/proctest"
	"github.com/modelplane/modelplane/modelpkg"
	"github.com/modelplane/modelplane/patch"
	"github.com/modelplane/modelplane/watch"
)

// copyEcho copies the echo example into a temporary directory the test may edit: packed and
// unpacked, so the copy holds what a push would.
func copyEcho(t *testing.T) string {
	t.Helper()
	dst := t.TempDir()
	var buf bytes.Buffer
	_, err := modelpkg.Pack("../examples/models/echo", &buf)
	require.NoError(t, err)
	_, err = modelpkg.Extract(&buf, "", dst)
	require.NoError(t, err)
	return dst
}

// edit rewrites a file of dir, replacing old with new, as an editor saving it would.
func edit(t *testing.T, dir, rel, old, new string) {
	t.Helper()
	p := filepath.Join(dir, rel)
	b, err := os.ReadFile(p)
	require.NoError(t, err)
	require.Contains(t, string(b), old, "%s holds no %q to replace", rel, old)
	require.NoError(t, os.WriteFile(p, []byte(strings.Replace(string(b), old, new, 1)), 0o644))
}

// pushDevelopment packs dir and makes it the development deployment of the model it names,
// creating the model on first push, and waits until it is ACTIVE.
func (h *harness) pushDevelopment(ctx context.Context, dir string) error {
	var buf bytes.Buffer
	if _, err := modelpkg.Pack(dir, &buf); err != nil {
		return err
	}
	cfg, err := modelpkg.ReadConfig(dir)
	if err != nil {
		return err
	}
	a, err := h.api.UploadArchive(ctx, &buf)
	if err != nil {
		return err
	}
	models, err := h.api.Models(ctx)
	if err != nil {
		return err
	}
	var modelID string
	for _, m := range models {
		if m.Name == cfg.ModelName {
			modelID = m.ID
		}
	}
	if modelID == "" {
		m, _, err := h.api.CreateModel(ctx, apiv1.CreateModelRequest{Development: true,
			Source: apiv1.ModelArchiveSource{Name: cfg.ModelName, ArchiveID: a.ID}})
		if err != nil {
			return err
		}
		modelID = m.ID
	} else if _, _, err := h.api.CreateDeployment(ctx, modelID, apiv1.CreateDeploymentRequest{Development: true,
		Source: apiv1.DeploymentArchiveSource{ArchiveID: a.ID}}); err != nil {
		return err
	}
	h.waitStatus(modelID, "development", "ACTIVE")
	return nil
}

// devAnswer predicts on the development deployment through the gateway.
func (h *harness) devAnswer(modelID string) (map[string]any, error) {
	b, err := h.api.Predict(context.Background(), modelID, client.DevelopmentTarget(), []byte(`{"text": "hi"}`))
	if err != nil {
		return nil, err
	}
	var out map[string]any
	err = json.Unmarshal(b, &out)
	return out, err
}

// waitAnswer polls the development deployment until ok accepts its answer (or its error) and
// returns how long that took.
func (h *harness) waitAnswer(modelID string, within time.Duration, ok func(map[string]any, error) bool) time.Duration {
	h.t.Helper()
	start := time.Now()
	var last any
	for time.Since(start) < within {
		out, err := h.devAnswer(modelID)
		if ok(out, err) {
			return time.Since(start)
		}
		last = out
		if err != nil {
			last = err
		}
		time.Sleep(20 * time.Millisecond)
	}
	h.t.Fatalf("the development deployment did not answer as expected within %s; last answer: %v", within, last)
	return 0
}

// serverPID is the process ID of a replica's model server, from the dev stack agent's state
// file: the agent's API does not tell it.
func (h *harness) serverPID(replicaID string) int {
	h.t.Helper()
	var pid int
	require.Eventually(h.t, func() bool {
		b, err := os.ReadFile(filepath.Join(h.dir, "agent", "state.json"))
		if err != nil {
			return false
		}
		var st struct {
			Replicas []struct {
				ID     string `json:"id"`
				Handle *struct {
					PID int `json:"pid"`
				} `json:"handle"`
			} `json:"replicas"`
		}
		if json.Unmarshal(b, &st) != nil {
			return false
		}
		for _, r := range st.Replicas {
			if r.ID == replicaID && r.Handle != nil && r.Handle.PID > 0 {
				pid = r.Handle.PID
				return true
			}
		}
		return false
	}, 10*time.Second, 20*time.Millisecond, "replica %s has no process in the agent's state file", replicaID)
	return pid
}

func TestWatch_EditsReachTheRunningReplicaInPlace(t *testing.T) {
	h := start(t)
	dir := copyEcho(t)
	edit(t, dir, "config.yaml", "model_name: echo", "model_name: echo-watch")
	out := &proctest.Buffer{}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() {
		done <- watch.Run(ctx, watch.Options{Dir: dir, Client: h.api, Out: out, Debounce: 50 * time.Millisecond,
			Push: func(ctx context.Context) error { return h.pushDevelopment(ctx, dir) }})
	}()
	t.Cleanup(func() {
		cancel()
		select {
		case err := <-done:
			assert.NoError(t, err, "watch ended with an error")
		case <-time.After(10 * time.Second):
			t.Error("watch did not stop when its context ended")
		}
		t.Logf("watch printed:\n%s", out.String())
	})
	require.Eventually(t, func() bool { return strings.Contains(out.String(), "watching ") }, 120*time.Second, 50*time.Millisecond,
		"watch never started watching; it printed:\n%s", out.String())
	require.Contains(t, out.String(), "pushing", "a model without a development deployment is pushed first")

	models, err := h.api.Models(context.Background())
	require.NoError(t, err)
	var modelID, depID string
	for _, m := range models {
		if m.Name == "echo-watch" && m.DevelopmentDeploymentID != nil {
			modelID, depID = m.ID, *m.DevelopmentDeploymentID
		}
	}
	require.NotEmpty(t, depID, "the push made no development deployment")
	first, ok := h.replica(depID)
	require.True(t, ok, "the development deployment runs no replica")
	firstPID := h.serverPID(first.ID)

	// Edit predict: the answer changes within 2 s of the save, in the same process.
	edit(t, dir, "model/model.py", `"echo": model_input,`, `"echo": model_input, "edited": "first",`)
	took := h.waitAnswer(modelID, 10*time.Second, func(out map[string]any, err error) bool { return err == nil && out["edited"] == "first" })
	assert.Less(t, took, 2*time.Second, "an edit must be served within 2 s of the save")
	t.Logf("the edit was served %s after the save", took)
	// same checks that the first replica still serves, on its GPUs, and returns its server's PID.
	same := func(what string) int {
		r, ok := h.replica(depID)
		require.True(t, ok, "%s: the development deployment lost its replica", what)
		require.Equal(t, first.ID, r.ID, "%s: the replica was replaced", what)
		require.Equal(t, first.GPUUUIDs, r.GPUUUIDs, "%s: the replica's GPUs changed", what)
		return h.serverPID(r.ID)
	}
	require.Equal(t, firstPID, same("hot reload"), "a hot reload keeps the model server's process")
	d, err := h.api.Deployment(context.Background(), modelID, "development")
	require.NoError(t, err)
	require.Equal(t, depID, d.ID, "live reload keeps the deployment")

	// A syntax error: the replica keeps running and answers the error; the next good save
	// recovers it in the same process.
	edit(t, dir, "model/model.py", `"edited": "first",`, `"edited": "first" "broken" :,`)
	h.waitAnswer(modelID, 10*time.Second, func(out map[string]any, err error) bool {
		return err != nil && strings.Contains(err.Error(), "SyntaxError")
	})
	require.Eventually(t, func() bool { return strings.Contains(out.String(), "SyntaxError") }, 5*time.Second, 50*time.Millisecond,
		"watch does not report the failed reload")
	require.Equal(t, firstPID, same("failed reload"), "a failed reload keeps the process")
	edit(t, dir, "model/model.py", `"edited": "first" "broken" :,`, `"edited": "fixed",`)
	h.waitAnswer(modelID, 10*time.Second, func(out map[string]any, err error) bool { return err == nil && out["edited"] == "fixed" })
	require.Equal(t, firstPID, same("recovery"), "the fix is taken without a restart")

	// An environment variable changes in config.yaml: the replica restarts in place, and the
	// requests sent meanwhile wait for it rather than fail.
	stopLoad := make(chan struct{})
	loadDone := make(chan []error)
	go func() {
		var failed []error
		for {
			select {
			case <-stopLoad:
				loadDone <- failed
				return
			default:
			}
			if _, err := h.devAnswer(modelID); err != nil {
				failed = append(failed, err)
			}
			time.Sleep(10 * time.Millisecond)
		}
	}()
	edit(t, dir, "config.yaml", "ECHO_GREETING: hello", "ECHO_GREETING: bonjour")
	h.waitAnswer(modelID, 30*time.Second, func(out map[string]any, err error) bool { return err == nil && out["greeting"] == "bonjour" })
	time.Sleep(300 * time.Millisecond)
	close(stopLoad)
	require.Empty(t, <-loadDone, "requests sent while the replica restarted in place failed")
	require.NotEqual(t, firstPID, same("restart in place"), "a config change restarts the model server")
	require.Eventually(t, func() bool { return strings.Contains(out.String(), "config.yaml (ECHO_GREETING) by restart") },
		10*time.Second, 50*time.Millisecond, "watch does not report the restart")

	// A new accelerator cannot be patched in: watch pushes a new development deployment.
	edit(t, dir, "config.yaml", "resources:\n", "resources:\n  accelerator: H200:1\n")
	require.Eventually(t, func() bool {
		m, err := h.api.Model(context.Background(), modelID)
		return err == nil && m.DevelopmentDeploymentID != nil && *m.DevelopmentDeploymentID != depID
	}, 90*time.Second, 100*time.Millisecond, "watch did not push a new development deployment for an accelerator change")
	require.Contains(t, out.String(), "resources changed (accelerator none → H200:1)")
	h.waitStatus(modelID, "development", "ACTIVE")
	m, err := h.api.Model(context.Background(), modelID)
	require.NoError(t, err)
	gpu, ok := h.replica(*m.DevelopmentDeploymentID)
	require.True(t, ok)
	require.Len(t, gpu.GPUUUIDs, 1, "the new development deployment runs on the H200 it asks for")
	h.waitAnswer(modelID, 10*time.Second, func(out map[string]any, err error) bool { return err == nil && out["edited"] == "fixed" })
}

func TestPatches_StagedAgainstTheCurrentPointAndSyncedOnWake(t *testing.T) {
	h := start(t)
	dir := copyEcho(t)
	edit(t, dir, "config.yaml", "model_name: echo", "model_name: echo-patches")
	ctx := context.Background()
	require.NoError(t, h.pushDevelopment(ctx, dir))
	models, err := h.api.Models(ctx)
	require.NoError(t, err)
	var modelID string
	for _, m := range models {
		if m.Name == "echo-patches" {
			modelID = m.ID
		}
	}
	base := "/v1/models/" + modelID + "/deployments/development/patches"

	st, err := h.api.Patches(ctx, modelID)
	require.NoError(t, err)
	local, err := patch.FromDir(dir)
	require.NoError(t, err)
	require.Equal(t, local.Hash(), st.PatchHash, "the deployment's point is its archive's, which is the directory's")

	stage := func(prev string, next patch.Point, ops []patch.Op) (int, map[string]any) {
		return h.call(http.MethodPost, base, map[string]any{"prev_patch_hash": prev, "next_patch_point": next, "patch_ops": ops})
	}
	// A patch that changes nothing, and one against a stale point, are refused.
	noop := []patch.Op{{Type: patch.TypeModelCode, Action: patch.ActionAdd, Path: "model/x.py", Content: ptr("x = 1\n")},
		{Type: patch.TypeModelCode, Action: patch.ActionRemove, Path: "model/x.py"}}
	code, body := stage(st.PatchHash, local, noop)
	require.Equal(t, http.StatusBadRequest, code, "%v", body)
	require.Contains(t, body["error"].(map[string]any)["message"], "changes nothing")

	// Scale to zero, then patch: a sync wakes the deployment with the patched code.
	h.autoscale(modelID, "development", map[string]any{"min_replica": 0, "scale_down_delay": 0, "autoscaling_window": 10})
	h.waitStatus(modelID, "development", "SCALED_TO_ZERO")
	edit(t, dir, "model/model.py", `"echo": model_input,`, `"echo": model_input, "patched": True,`)
	next, err := patch.FromDir(dir)
	require.NoError(t, err)
	ops, err := patch.Diff(local, next, dir, true)
	require.NoError(t, err)
	code, body = stage(st.PatchHash, next, ops)
	require.Equal(t, http.StatusOK, code, "%v", body)
	require.Equal(t, next.Hash(), body["patch_hash"])
	code, body = stage(st.PatchHash, next, ops)
	require.Equal(t, http.StatusConflict, code, "a patch against a point that is no longer current: %v", body)
	require.Contains(t, body["error"].(map[string]any)["message"], "prev_patch_hash")

	res, err := h.api.SyncPatches(ctx, modelID)
	require.NoError(t, err)
	require.Nil(t, res.NeedsFullDeployReason)
	require.Equal(t, "woken", res.How)
	h.waitAnswer(modelID, 60*time.Second, func(out map[string]any, err error) bool { return err == nil && out["patched"] == true })

	// A config that asks for a GPU cannot be synced in place: the sync says so and applies
	// nothing.
	gpuConfig := strings.Replace(next.Config, "resources:\n", "resources:\n  accelerator: H200:1\n", 1)
	after := next
	after.Config = gpuConfig
	code, body = stage(next.Hash(), after, []patch.Op{{Type: patch.TypeConfig, Action: patch.ActionUpdate, Content: &gpuConfig}})
	require.Equal(t, http.StatusOK, code, "%v", body)
	res, err = h.api.SyncPatches(ctx, modelID)
	require.NoError(t, err)
	require.NotNil(t, res.NeedsFullDeployReason, "an accelerator change needs a full deploy")
	require.Contains(t, *res.NeedsFullDeployReason, "accelerator")
	h.waitAnswer(modelID, 5*time.Second, func(out map[string]any, err error) bool { return err == nil && out["patched"] == true })

	// Promoting the development deployment ships what it runs: the synced patch, not the
	// staged one it could not take.
	dev, err := h.api.Deployment(ctx, modelID, "development")
	require.NoError(t, err)
	code, body = h.call(http.MethodPost, "/v1/models/"+modelID+"/deployments/"+dev.ID+"/promote", map[string]any{})
	require.Equal(t, http.StatusOK, code, "%v", body)
	prod := h.waitCurrent(modelID, "production", "", dev.ID)
	out, err := h.api.Predict(ctx, modelID, client.ProductionTarget(), []byte(`{"text": "hi"}`))
	require.NoError(t, err)
	require.Contains(t, string(out), `"patched": true`, "production %s runs the development deployment's synced patch", prod)

	// Only the development deployment takes patches.
	archive := echoArchive(t, h)
	published := h.newDeployment(modelID, archive)
	code, body = h.call(http.MethodPost, "/v1/models/"+modelID+"/deployments/"+published+"/patches/sync", nil)
	require.Equal(t, http.StatusUnprocessableEntity, code, "%v", body)
}

func ptr[T any](v T) *T { return &v }
