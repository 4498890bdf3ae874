package e2e

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"log/slog"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	enumspb "go.temporal.io/api/enums/v1"
	"google.golang.org/protobuf/proto"

	"github.com/modelplane/modelplane/devstack"
	"github.com/modelplane/modelplane/internal/proctest"
	"github.com/modelplane/modelplane/modelpkg"
	"github.com/modelplane/modelplane/workflows/contract"
)

// TestSecrets_ModelReadsASecretSetThroughTheAPIAndTheValueStaysOutOfHistoriesAnswersAndState
// deploys examples/models/secret before its secret exists (DEPLOY_FAILED naming it, no
// replica started), sets the secret, retries, and reads what the model got; then looks for
// the value in the deployment workflow's history, in the API's answers and in the agent's
// state file, where it must not be.
func TestSecrets_ModelReadsASecretSetThroughTheAPIAndTheValueStaysOutOfHistoriesAnswersAndState(t *testing.T) {
	// Every component of the stack logs here, at debug level, to be searched for the value.
	var logs proctest.Buffer
	h := startWith(t, devstack.Options{Logger: slog.New(slog.NewTextHandler(&logs, &slog.HandlerOptions{Level: slog.LevelDebug}))})
	ctx := context.Background()
	value := "sk-e2e-" + strings.Repeat("7c1d", 6)

	var buf bytes.Buffer
	_, err := modelpkg.Pack("../examples/models/secret", &buf)
	require.NoError(t, err)
	archive, err := h.api.UploadArchive(ctx, &buf)
	require.NoError(t, err)

	// Without the secret the deployment fails, naming it, before any replica is started.
	code, body := h.call(http.MethodPost, "/v1/models", map[string]any{
		"source": map[string]any{"kind": "model_archive", "name": "secret", "archive_id": archive.ID}})
	require.Equal(t, http.StatusOK, code, "%v", body)
	modelID := body["model"].(map[string]any)["id"].(string)
	depID := body["deployment"].(map[string]any)["id"].(string)
	h.waitStatus(modelID, depID, "DEPLOY_FAILED")
	code, body = h.call(http.MethodGet, "/v1/models/"+modelID+"/deployments/"+depID, nil)
	require.Equal(t, http.StatusOK, code)
	reason, _ := body["status_reason"].(string)
	require.Contains(t, reason, `"example_token"`, "the reason names the missing secret")
	rs, err := h.agent.Replicas(ctx)
	require.NoError(t, err)
	for _, r := range rs {
		require.NotEqual(t, depID, r.DeploymentID, "no replica may start without its secret")
	}

	// Set it through the API and retry: the model gets it, as its secrets argument and as a file.
	answers := []string{}
	keep := func(code int, body map[string]any) {
		b, err := json.Marshal(body)
		require.NoError(t, err)
		answers = append(answers, string(b))
	}
	code, body = h.call(http.MethodPost, "/v1/secrets", map[string]any{"name": "example_token", "value": value})
	require.Equal(t, http.StatusOK, code, "%v", body)
	keep(code, body)
	code, body = h.call(http.MethodPost, "/v1/models/"+modelID+"/deployments/"+depID+"/retry", nil)
	require.Equal(t, http.StatusOK, code, "%v", body)
	require.Equal(t, true, body["retried"], "%v", body)
	h.waitStatus(modelID, depID, "ACTIVE")
	r, ok := h.replica(depID)
	require.True(t, ok, "the agent runs no replica of the deployment")
	resp, err := http.Post("http://"+r.Address+r.PredictPath, "application/json", strings.NewReader(`{}`))
	require.NoError(t, err)
	var out map[string]any
	require.NoError(t, json.NewDecoder(resp.Body).Decode(&out))
	resp.Body.Close()
	sum := sha256.Sum256([]byte(value))
	want := hex.EncodeToString(sum[:])
	require.Equal(t, map[string]any{"has_secret": true, "sha256": want, "file_sha256": want}, out)

	// The value is in no answer of the API...
	for _, path := range []string{"/v1/secrets", "/v1/audit_logs", "/v1/models/" + modelID,
		"/v1/models/" + modelID + "/deployments/" + depID, "/v1/models/" + modelID + "/deployments/" + depID + "/config"} {
		keep(h.call(http.MethodGet, path, nil))
	}
	code, body = h.call(http.MethodGet, "/v1/nodes", nil)
	require.Equal(t, http.StatusOK, code, "%v", body)
	keep(code, body)
	for i, a := range answers {
		require.NotContains(t, a, value, "answer %d carries the secret's value: %s", i, a)
	}

	// ... nor in the stack's logs, nor in what the replica wrote ...
	require.Contains(t, logs.String(), depID, "the stack's log was captured")
	require.NotContains(t, logs.String(), value, "the stack's log carries the secret's value")
	logFiles, err := filepath.Glob(filepath.Join(h.dir, "agent", "replicas", r.ID, "*", "*.log"))
	require.NoError(t, err)
	more, err := filepath.Glob(filepath.Join(h.dir, "agent", "replicas", r.ID, "*.log"))
	require.NoError(t, err)
	logFiles = append(logFiles, more...)
	require.NotEmpty(t, logFiles, "the replica's log files were found")
	for _, f := range logFiles {
		text, err := os.ReadFile(f)
		require.NoError(t, err)
		require.NotContains(t, string(text), value, "%s carries the secret's value", f)
	}

	// ... nor in the agent's state file ...
	state, err := os.ReadFile(filepath.Join(h.dir, "agent", "state.json"))
	require.NoError(t, err)
	require.Contains(t, string(state), r.ID, "the state file records the replica")
	require.NotContains(t, string(state), value, "the agent's state file holds the secret's value")

	// ... nor in the deployment workflow's history, any run of it, payloads included.
	tc := h.temporal()
	hctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	it := tc.GetWorkflowHistory(hctx, contract.DeploymentWorkflowID(depID), "", false, enumspb.HISTORY_EVENT_FILTER_TYPE_ALL_EVENT)
	events, sawStart := 0, false
	for it.HasNext() {
		ev, err := it.Next()
		require.NoError(t, err)
		events++
		if a := ev.GetActivityTaskScheduledEventAttributes(); a != nil && a.GetActivityType().GetName() == contract.ActivityStartReplica {
			sawStart = true
		}
		raw, err := proto.Marshal(ev)
		require.NoError(t, err)
		require.NotContains(t, string(raw), value, "history event %d (%s) carries the secret's value", ev.GetEventId(), ev.GetEventType())
	}
	require.True(t, sawStart, "the history (%d events) holds the StartReplica activity it was searched for", events)
}
