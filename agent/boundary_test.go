package agent_test

import (
	"context"
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/modelplane/modelplane"
	"github.com/modelplane/modelplane/agent"
	"github.com/modelplane/modelplane/agent/agentproto"
	"github.com/modelplane/modelplane/patch"
)

// TestAgent_NoAnswerOrHeartbeatTellsSecretsTokenOrHandle starts a replica with secrets,
// environment values and a config override, which the agent keeps in its state file with the
// replica's control token and runtime handle, and reads every answer that carries the
// replica: start (new and repeated), list, get, patch, stop, and the heartbeat. None may
// carry any of them.
func TestAgent_NoAnswerOrHeartbeatTellsSecretsTokenOrHandle(t *testing.T) {
	var mu sync.Mutex
	var heartbeats []string
	api := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		body, _ := io.ReadAll(r.Body)
		mu.Lock()
		heartbeats = append(heartbeats, string(body))
		mu.Unlock()
		w.WriteHeader(http.StatusOK)
	}))
	defer api.Close()
	dir := t.TempDir()
	defer stopAll(t, dir)
	n := startNode(t, dir, "h200", func(c *agent.Config) { c.APIURL = api.URL })
	c := agentproto.NewClient(n.url, token)

	const (
		secretValue = "secret-value-7f3a9c"
		envValue    = "env-value-51be02"
		configValue = "config-value-c0ffee"
	)
	url, sum := livePackage(t)
	id := newID()
	req := startReq(id, url, sum, 1)
	req.Secrets = map[string]string{"hf_token": secretValue}
	req.Env = map[string]string{"MODEL_API_KEY": envValue}
	req.Config = json.RawMessage(`{"model_name": "live", "secrets": ["hf_token"],
		"environment_variables": {"GREETING": "` + configValue + `"}}`)

	answers := map[string]string{}
	read := func(name, method, path string, body any, want int) {
		t.Helper()
		code, got := n.call(method, path, body, token)
		require.Equal(t, want, code, "%s: %s", name, got)
		answers[name] = string(got)
	}
	read("start", http.MethodPost, "/v1/replicas", req, http.StatusCreated)
	n.waitState(id, modelplane.ReplicaReady)
	read("repeated start", http.MethodPost, "/v1/replicas", req, http.StatusOK)
	read("list", http.MethodGet, "/v1/replicas", nil, http.StatusOK)
	read("get", http.MethodGet, "/v1/replicas/"+id, nil, http.StatusOK)
	read("patch", http.MethodPost, "/v1/replicas/"+id+"/patch",
		agentproto.PatchRequest{PatchHash: "hash-v2", Files: codePatch(modelSource("v2")), How: patch.HowHotReload}, http.StatusOK)

	// Every heartbeat so far, and one sent after the patch.
	seen := len(heartbeatsNow(&mu, &heartbeats))
	require.Eventually(t, func() bool { return len(heartbeatsNow(&mu, &heartbeats)) > seen+1 }, 5*time.Second, 20*time.Millisecond)
	hbs := heartbeatsNow(&mu, &heartbeats)
	require.Contains(t, hbs[len(hbs)-1], `"id":"`+id+`"`, "the heartbeat must report the replica")
	answers["heartbeat"] = strings.Join(hbs, "\n")

	// What the agent keeps and must keep to itself, read from its state file.
	stored := storedRecord(t, dir, id)
	require.Len(t, stored.ControlToken, 32, "a python replica gets a control token")
	require.NotNil(t, stored.Handle, "a started replica has a runtime handle")
	require.NotEmpty(t, stored.Handle.LogDir)
	require.Nil(t, stored.Request.Secrets, "the state file keeps the start request without the secrets' values")
	state, err := os.ReadFile(filepath.Join(dir, "state.json"))
	require.NoError(t, err)
	require.NotContains(t, string(state), secretValue, "the state file must not hold a secret's value")
	secretFile := filepath.Join(dir, "replicas", id, "secrets", "hf_token")
	got, err := os.ReadFile(secretFile)
	require.NoError(t, err, "the replica's secrets directory holds one file per named secret")
	require.Equal(t, secretValue, string(got))
	info, err := os.Stat(secretFile)
	require.NoError(t, err)
	require.Equal(t, os.FileMode(0o600), info.Mode().Perm(), "a process replica's secret file is the agent user's alone")
	read("stop", http.MethodDelete, "/v1/replicas/"+id+"?grace_seconds=5", nil, http.StatusOK)
	stopped, err := c.Replica(context.Background(), id)
	require.NoError(t, err)
	require.Equal(t, modelplane.ReplicaStopped, stopped.State)
	_, err = os.Stat(secretFile)
	require.True(t, os.IsNotExist(err), "a stopped replica's secret files are removed: %v", err)

	forbidden := map[string]string{
		"secret value":           secretValue,
		"env value":              envValue,
		"config override value":  configValue,
		"control token":          stored.ControlToken,
		"handle's log directory": stored.Handle.LogDir,
		"handle":                 `"handle"`,
		"start request":          `"request"`,
		"control token key":      `"control_token"`,
	}
	for name, body := range answers {
		require.Contains(t, body, id, "%s must be about the replica", name)
		for what, value := range forbidden {
			require.NotContains(t, body, value, "the %s answer carries the %s", name, what)
		}
	}
}

func heartbeatsNow(mu *sync.Mutex, hbs *[]string) []string {
	mu.Lock()
	defer mu.Unlock()
	return append([]string(nil), *hbs...)
}

// fullRecord is the state file's record of a replica with what it keeps to itself.
type fullRecord struct {
	storedReplica
	ControlToken string                  `json:"control_token"`
	Request      agentproto.StartRequest `json:"request"`
}

func storedRecord(t *testing.T, dir, id string) fullRecord {
	t.Helper()
	b, err := os.ReadFile(filepath.Join(dir, "state.json"))
	require.NoError(t, err)
	var st struct {
		Replicas []fullRecord `json:"replicas"`
	}
	require.NoError(t, json.Unmarshal(b, &st))
	for _, r := range st.Replicas {
		if r.ID == id {
			return r
		}
	}
	t.Fatalf("replica %s is not in the state file", id)
	return fullRecord{}
}
