package agent_test

import (
	"context"
	"encoding/json"
	"os"
	"path/filepath"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/modelplane/modelplane"
	"github.com/modelplane/modelplane/agent/agentproto"
	"github.com/modelplane/modelplane/patch"
)

const secretsConfig = `{"model_name": "live", "secrets": ["hf_token"]}`

// TestAgent_SecretsLiveInMemoryAndARestartInPlaceAfterAnAgentRestartFailsTheReplica starts
// a replica with a secret, restarts it in place (the agent still holds the value), then
// restarts the agent: the re-adopted replica keeps serving, but a restart in place, which
// would need the value the agent no longer holds, fails it with a reason naming the secret,
// so that the control plane replaces it.
func TestAgent_SecretsLiveInMemoryAndARestartInPlaceAfterAnAgentRestartFailsTheReplica(t *testing.T) {
	const value = "in-memory-only-5a0e"
	n, c, dir, r := liveReplica(t, func(req *agentproto.StartRequest) {
		req.Secrets = map[string]string{"hf_token": value, "unnamed": "not-for-this-model"}
		req.Config = json.RawMessage(secretsConfig)
	})
	ctx := context.Background()
	files, err := os.ReadDir(filepath.Join(dir, "replicas", r.ID, "secrets"))
	require.NoError(t, err)
	require.Len(t, files, 1, "only the secrets the config names are written")
	require.Equal(t, "hf_token", files[0].Name())

	res, err := c.PatchReplica(ctx, r.ID, agentproto.PatchRequest{PatchHash: "hash-v2",
		Files: codePatch(modelSource("v2")), How: patch.HowRestart})
	require.NoError(t, err)
	require.Equal(t, modelplane.ReplicaReady, res.Replica.State, "a restart in place while the agent holds the value: %s", res.Replica.Error)

	n.shutdown()
	state, err := os.ReadFile(filepath.Join(dir, "state.json"))
	require.NoError(t, err)
	require.NotContains(t, string(state), value, "the state file must not hold a secret's value")

	n2 := startNode(t, dir, "h200")
	after := n2.waitState(r.ID, modelplane.ReplicaReady)
	require.Equal(t, "v2", predictLive(t, after).Version, "the re-adopted replica keeps serving")
	c2 := agentproto.NewClient(n2.url, token)
	res, err = c2.PatchReplica(ctx, r.ID, agentproto.PatchRequest{PatchHash: "hash-v3",
		Files: codePatch(modelSource("v3")), How: patch.HowRestart})
	require.NoError(t, err)
	require.Equal(t, modelplane.ReplicaFailed, res.Replica.State)
	require.Contains(t, res.Replica.Error, `secret "hf_token"`)
	require.NotContains(t, res.Replica.Error, value)
}

func TestAgent_StartRefusesASecretNameThatIsNoFileName(t *testing.T) {
	n, _, _ := liveNode(t)
	url, sum := livePackage(t)
	req := startReq(newID(), url, sum, 1)
	req.Secrets = map[string]string{"../escape": "v"}
	code, body := n.call("POST", "/v1/replicas", req, token)
	require.Equal(t, 400, code, "%s", body)
	require.Contains(t, string(body), "secrets")
}
