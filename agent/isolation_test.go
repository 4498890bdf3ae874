package agent_test

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/modelplane/modelplane"
	"github.com/modelplane/modelplane/agent"
	"github.com/modelplane/modelplane/agent/agentproto"
	"github.com/modelplane/modelplane/patch"
)

// proberSource is a python model that reports who it runs as, and what happens when it reads
// each path it is given (a directory is listed, a file read).
func proberSource(version string) []byte {
	return []byte(`import os

VERSION = "` + version + `"


class Model:
    def __init__(self, **kwargs):
        self._secrets = kwargs.get("secrets") or {}

    def predict(self, model_input):
        results = {}
        for path in model_input.get("read") or []:
            try:
                if os.path.isdir(path):
                    os.listdir(path)
                else:
                    with open(path, "rb") as f:
                        f.read(1)
                results[path] = "read"
            except OSError as e:
                results[path] = type(e).__name__
        wrote = {}
        for var in ("HOME", "TMPDIR"):
            try:
                with open(os.path.join(os.environ[var], "scratch"), "w") as f:
                    f.write("x")
                wrote[var] = "wrote"
            except (OSError, KeyError) as e:
                wrote[var] = type(e).__name__
        return {"version": VERSION, "uid": os.getuid(), "gid": os.getgid(), "groups": os.getgroups(),
                "pid": os.getpid(), "results": results, "wrote": wrote,
                "secret_seen": self._secrets.get("hf_token") is not None}
`)
}

type probe struct {
	Version    string            `json:"version"`
	UID        int               `json:"uid"`
	GID        int               `json:"gid"`
	Groups     []int             `json:"groups"`
	PID        int               `json:"pid"`
	Results    map[string]string `json:"results"`
	Wrote      map[string]string `json:"wrote"`
	SecretSeen bool              `json:"secret_seen"`
}

func runProbe(t *testing.T, r agentproto.Replica, paths ...string) probe {
	t.Helper()
	body, err := json.Marshal(map[string]any{"read": paths})
	require.NoError(t, err)
	resp, err := http.Post("http://"+r.Address+r.PredictPath, "application/json", bytes.NewReader(body))
	require.NoError(t, err)
	defer resp.Body.Close()
	out, err := io.ReadAll(resp.Body)
	require.NoError(t, err)
	require.Equal(t, http.StatusOK, resp.StatusCode, string(out))
	var p probe
	require.NoError(t, json.Unmarshal(out, &p))
	return p
}

// reachableTempDir is a fresh directory that other users may pass through, as a node's
// state directory must be for replica users to reach their own directories.
func reachableTempDir(t *testing.T) string {
	t.Helper()
	dir := t.TempDir()
	for _, d := range []string{filepath.Dir(dir), dir} {
		require.NoError(t, os.Chmod(d, 0o711))
	}
	return dir
}

// TestAgent_ProcessModelCannotReadTheAgentsStateTokensOrAnotherReplica runs two python
// replicas on a root agent: each runs as a user of its own, and one that tries to read the
// agent's state file, a token file beside the state directory, the other replica's package,
// secrets, home and process environment, and the agent's environment, is refused every
// time, while its own package, secret and scratch space serve it. A hot reload and a
// restart in place keep it working.
func TestAgent_ProcessModelCannotReadTheAgentsStateTokensOrAnotherReplica(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Fatal("this test checks replica users, which need the agent to run as root; run the tests as root (CI does)")
	}
	base := reachableTempDir(t)
	tokenFile := filepath.Join(base, "node-token")
	require.NoError(t, os.WriteFile(tokenFile, []byte(token+"\n"), 0o600))
	dir := filepath.Join(base, "agent")
	defer stopAll(t, dir)
	n := startNode(t, dir, "none")
	inv := n.inventory()
	require.Equal(t, agentproto.Isolation{Mode: agentproto.IsolationReplicaUsers, UIDs: agent.DefaultReplicaUIDs}, inv.Isolation)

	src := t.TempDir()
	require.NoError(t, os.MkdirAll(filepath.Join(src, "model"), 0o755))
	require.NoError(t, os.WriteFile(filepath.Join(src, "config.yaml"), []byte("model_name: prober\nsecrets:\n  hf_token: null\n"), 0o644))
	require.NoError(t, os.WriteFile(filepath.Join(src, "model", "model.py"), proberSource("v1"), 0o644))
	url, sum := pkg(t, src)
	start := func() agentproto.Replica {
		req := startReq(newID(), url, sum, 0)
		req.Secrets = map[string]string{"hf_token": "hf-secret-" + req.ReplicaID}
		n.mustStart(req)
		require.Eventually(t, func() bool { return n.replica(req.ReplicaID).State != modelplane.ReplicaStarting }, 30*time.Second, 50*time.Millisecond)
		r := n.replica(req.ReplicaID)
		code, logs := n.call(http.MethodGet, "/v1/replicas/"+r.ID+"/logs?stream=stderr&tail=50", nil, token)
		require.Equal(t, modelplane.ReplicaReady, r.State, "%s %v %d %s", r.Error, r.LogTail, code, logs)
		return r
	}
	a, b := start(), start()
	pb := runProbe(t, b)
	replicas := filepath.Join(dir, "replicas")
	other := filepath.Join(replicas, b.ID)
	own := filepath.Join(replicas, a.ID)
	forbidden := []string{
		filepath.Join(dir, "state.json"), dir, replicas, tokenFile, base,
		other, filepath.Join(other, "pkg", "model", "model.py"), filepath.Join(other, "secrets", "hf_token"),
		filepath.Join(other, "home"), filepath.Join(other, "logs", "stdout.log"),
		fmt.Sprintf("/proc/%d/environ", pb.PID), fmt.Sprintf("/proc/%d/environ", os.Getpid()),
	}
	allowed := []string{
		filepath.Join(own, "pkg", "model", "model.py"), filepath.Join(own, "secrets", "hf_token"),
		filepath.Join(own, "home"), filepath.Join(own, "pkg"),
	}
	check := func(p probe) {
		t.Helper()
		for _, path := range forbidden {
			require.Equal(t, "PermissionError", p.Results[path], "reading %s", path)
		}
		for _, path := range allowed {
			require.Equal(t, "read", p.Results[path], "reading %s", path)
		}
		require.Equal(t, map[string]string{"HOME": "wrote", "TMPDIR": "wrote"}, p.Wrote)
		require.True(t, p.SecretSeen)
	}
	pa := runProbe(t, a, append(forbidden, allowed...)...)
	check(pa)
	require.NotZero(t, pa.UID)
	require.NotEqual(t, pa.UID, pb.UID, "each replica runs as a user of its own")
	require.Equal(t, pa.UID, pa.GID)
	require.Empty(t, pa.Groups, "no supplementary group of the agent's")
	require.GreaterOrEqual(t, pa.UID, 70000)
	require.LessOrEqual(t, pa.UID, 79999)

	// A hot reload reads the patched files; a restart in place runs as the same user.
	code, body := n.call(http.MethodPost, "/v1/replicas/"+a.ID+"/patch",
		agentproto.PatchRequest{PatchHash: "hash-v2", Files: patch.FileSet{Files: []patch.File{
			{Path: "model/model.py", Content: proberSource("v2")}}}, How: patch.HowHotReload}, token)
	require.Equal(t, http.StatusOK, code, string(body))
	pa2 := runProbe(t, a, append(forbidden, allowed...)...)
	require.Equal(t, "v2", pa2.Version)
	check(pa2)
	code, body = n.call(http.MethodPost, "/v1/replicas/"+a.ID+"/patch",
		agentproto.PatchRequest{PatchHash: "hash-v3", Files: patch.FileSet{Files: []patch.File{
			{Path: "model/model.py", Content: proberSource("v3")}}}, How: patch.HowRestart}, token)
	require.Equal(t, http.StatusOK, code, string(body))
	a = n.waitState(a.ID, modelplane.ReplicaReady)
	pa3 := runProbe(t, a, append(forbidden, allowed...)...)
	require.Equal(t, "v3", pa3.Version)
	require.Equal(t, pa.UID, pa3.UID)
	check(pa3)
}

// TestAgent_WithoutIsolationSaysSoAtStartAndInItsInventory: an agent told not to isolate, or
// whose state directory replica users cannot reach, reports a warning saying what model code
// can read, and refuses to start when isolation is required.
func TestAgent_WithoutIsolationSaysSoAtStartAndInItsInventory(t *testing.T) {
	off := startNode(t, t.TempDir(), "none", func(c *agent.Config) { c.ReplicaUIDs = agent.ReplicaUIDsOff })
	iso := off.inventory().Isolation
	require.Equal(t, agentproto.IsolationNone, iso.Mode)
	require.Contains(t, iso.Warning, "turned off")
	require.Contains(t, iso.Warning, "control token")

	// t.TempDir's parent is mode 0700: nobody else passes through it.
	hidden := startNode(t, t.TempDir(), "none")
	iso = hidden.inventory().Isolation
	require.Equal(t, agentproto.IsolationNone, iso.Mode)
	if os.Geteuid() == 0 {
		require.Contains(t, iso.Warning, "cannot reach the state directory")
		require.Contains(t, iso.Warning, "is mode 0700")
	}

	cfg := agent.Config{Token: token, StateDir: t.TempDir(), ReplicaUIDs: agent.ReplicaUIDsOff, RequireIsolation: true}
	_, err := agent.New(cfg, off.gpus, agent.Runtimes{})
	require.ErrorContains(t, err, "isolation is required")

	cfg.ReplicaUIDs, cfg.RequireIsolation = "5-2", false
	_, err = agent.New(cfg, off.gpus, agent.Runtimes{})
	require.ErrorContains(t, err, `replica user IDs "5-2"`)
	require.True(t, strings.Contains(err.Error(), "off"))
}
