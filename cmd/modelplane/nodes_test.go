package main

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

	"github.com/modelplane/modelplane"
	"github.com/modelplane/modelplane/agent/agentproto"
	"github.com/modelplane/modelplane/nodeauth"
	"github.com/modelplane/modelplane/secretbox"
	"github.com/modelplane/modelplane/store"
)

// An operator issues a node its own token; its agent reports with it to an API that has no
// shared token; the token is listed (never shown again) and, once revoked, refused.
func TestNodesToken_IssuedReportedWithListedAndRevoked(t *testing.T) {
	ctx := context.Background()
	dir := t.TempDir()
	keyText, err := secretbox.Generate()
	require.NoError(t, err)
	keyFile := filepath.Join(dir, "secrets-key")
	require.NoError(t, os.WriteFile(keyFile, []byte(keyText), 0o600))
	name := "own-token-" + modelplane.NewID(6)

	out, err := modelplaneCmd("nodes", "token", "create", "--name", name, "--database-url", dbURL, "--secrets-key-file", keyFile).Output()
	require.NoError(t, err)
	token := strings.TrimSpace(string(out))
	require.True(t, strings.HasPrefix(token, nodeauth.Prefix), "create prints the token alone, got %q", out)
	tokenFile := filepath.Join(dir, "node-token")
	require.NoError(t, os.WriteFile(tokenFile, []byte(token+"\n"), 0o600))

	cmd := modelplaneCmd("nodes", "token", "create", "--database-url", dbURL, "--secrets-key-file", keyFile)
	cmd.Env = append(cmd.Env, "MODELPLANE_SECRETS_KEY=")
	out, err = cmd.CombinedOutput()
	require.Error(t, err, "a token needs its node's name")
	assert.Contains(t, string(out), "node name")
	cmd = modelplaneCmd("nodes", "token", "create", "--name", name, "--database-url", dbURL)
	cmd.Env = append(cmd.Env, "MODELPLANE_SECRETS_KEY=", "MODELPLANE_SECRETS_KEY_FILE=")
	out, err = cmd.CombinedOutput()
	require.Error(t, err, "a token needs the secrets key")
	assert.Contains(t, string(out), "secrets key")

	addr := freeAddr(t)
	startServer(t, addr, "/healthz", "api", "--listen", addr, "--database-url", dbURL,
		"--blob-dir", filepath.Join(dir, "blobs"), "--secrets-key-file", keyFile)
	startProcess(t, "agent", "--listen", freeAddr(t), "--api-url", "http://"+addr, "--token-file", tokenFile,
		"--state-dir", filepath.Join(dir, "agent"), "--gpu-profile", "none", "--name", name)
	db, err := store.Open(ctx, dbURL)
	require.NoError(t, err)
	defer db.Close()
	require.Eventually(t, func() bool {
		var sum []byte
		err := db.GetContext(ctx, &sum, `SELECT token_sha256 FROM nodes WHERE name = $1`, name)
		return err == nil && bytes.Equal(sum, nodeauth.Sum(token))
	}, 30*time.Second, 100*time.Millisecond, "the agent registers with its own token")

	out, err = modelplaneCmd("nodes", "token", "list", "--database-url", dbURL).Output()
	require.NoError(t, err)
	var id string
	for line := range strings.Lines(string(out)) {
		if f := strings.Fields(line); len(f) >= 2 && f[1] == name {
			id = f[0]
		}
	}
	require.NotEmpty(t, id, "list names the node's token: %s", out)
	assert.NotContains(t, string(out), token, "the token is shown once, at create")

	out, err = modelplaneCmd("nodes", "token", "revoke", id, "--database-url", dbURL).CombinedOutput()
	require.NoError(t, err, "%s", out)
	body, _ := json.Marshal(agentproto.Heartbeat{Name: name, AgentID: "x", AgentURL: "http://127.0.0.1:1"})
	req, _ := http.NewRequest(http.MethodPost, "http://"+addr+agentproto.HeartbeatPath, bytes.NewReader(body))
	req.Header.Set("Authorization", "Bearer "+token)
	req.Header.Set("Content-Type", "application/json")
	res, err := http.DefaultClient.Do(req)
	require.NoError(t, err)
	res.Body.Close()
	assert.Equal(t, http.StatusUnauthorized, res.StatusCode, "a revoked token is refused at once")

	out, err = modelplaneCmd("nodes", "token", "revoke", id, "--database-url", dbURL).CombinedOutput()
	require.Error(t, err)
	assert.Contains(t, string(out), "revoked already")
}
