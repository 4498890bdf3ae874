package e2e

import (
	"bytes"
	"context"
	"encoding/json"
	"net/http"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/modelplane/modelplane/apiv1"
	"github.com/modelplane/modelplane/client"
	"github.com/modelplane/modelplane/modelpkg"
)

// echoPayload is the payload a Baseten client sends for examples/models/echo: its
// config.yaml as config and raw_config.
func echoPayload(t *testing.T) apiv1.DeploymentArchivePayload {
	t.Helper()
	cfg, err := modelpkg.ReadConfig("../examples/models/echo")
	require.NoError(t, err)
	p, err := client.PackagePayload(cfg)
	require.NoError(t, err)
	return p
}

// predictReplica sends a prediction straight to the deployment's replica.
func (h *harness) predictReplica(deploymentID string) map[string]any {
	h.t.Helper()
	r, ok := h.replica(deploymentID)
	require.True(h.t, ok, "the agent runs no replica of deployment %s", deploymentID)
	resp, err := http.Post("http://"+r.Address+r.PredictPath, "application/json", strings.NewReader(`{"text": "hi"}`))
	require.NoError(h.t, err)
	defer resp.Body.Close()
	var out map[string]any
	require.NoError(h.t, json.NewDecoder(resp.Body).Decode(&out))
	return out
}

func TestCreate_SpecBodyWhoseConfigDiffersRunsTheRequestsConfig(t *testing.T) {
	h := start(t)
	archive := echoArchive(t, h)
	p := echoPayload(t)
	// The request's config greets otherwise than the package's config.yaml.
	p.Config["environment_variables"] = map[string]any{"ECHO_GREETING": "bonjour"}
	p.RawConfig = nil

	code, body := h.call(http.MethodPost, "/v1/models", map[string]any{"source": map[string]any{
		"kind": "model_archive", "name": "echo-spec", "s3_key": archive,
		"deployment": map[string]any{"config": p.Config, "deployment_name": "spec-1", "labels": map[string]any{"team": "ml"},
			"user_env": map[string]any{"truss_version": "0.9.50"}, "environment_name": nil},
	}})
	require.Equal(t, http.StatusOK, code, "%v", body)
	modelID := body["model"].(map[string]any)["id"].(string)
	dep := body["deployment"].(map[string]any)
	depID := dep["id"].(string)
	require.Equal(t, "spec-1", dep["name"])
	require.Equal(t, map[string]any{"team": "ml"}, dep["labels"])
	h.waitStatus(modelID, depID, "ACTIVE")

	out := h.predictReplica(depID)
	require.Equal(t, "bonjour", out["greeting"], "the replica runs with the request's environment variables")
	require.Equal(t, "echo", out["model_name"])

	code, body = h.call(http.MethodGet, "/v1/models/"+modelID+"/deployments/"+depID+"/config", nil)
	require.Equal(t, http.StatusOK, code, "%v", body)
	require.Contains(t, body["raw_config"], "ECHO_GREETING: bonjour")
	require.Equal(t, map[string]any{"ECHO_GREETING": "bonjour"}, body["config"].(map[string]any)["environment_variables"])
	require.NotContains(t, body["config"], "truss_version", "user_env is not the model's")

	// The same package pushed with its own config runs as packaged.
	code, body = h.call(http.MethodPost, "/v1/models/"+modelID+"/deployments", map[string]any{"source": map[string]any{
		"s3_key": archive, "deployment": map[string]any{"config": echoPayload(t).Config, "raw_config": echoPayload(t).RawConfig}}})
	require.Equal(t, http.StatusOK, code, "%v", body)
	second := body["deployment"].(map[string]any)["id"].(string)
	h.waitStatus(modelID, second, "ACTIVE")
	require.Equal(t, "hello", h.predictReplica(second)["greeting"])
}

func TestCreate_PrepareModelUploadThenPutThenCreateWithTheKey(t *testing.T) {
	h := start(t)
	ctx := context.Background()
	p := echoPayload(t)
	p.DeploymentName = "uploaded"

	prep, err := h.api.PrepareModelUpload(ctx, apiv1.PrepareModelUploadRequest{Name: "echo-upload", Deployment: p})
	require.NoError(t, err)
	require.NotNil(t, prep.S3Key)
	require.NotNil(t, prep.UploadURL)
	require.Equal(t, h.stack.APIURL+"/v1/uploads/"+*prep.S3Key, *prep.UploadURL)
	require.Nil(t, prep.Creds)

	var buf bytes.Buffer
	_, err = modelpkg.Pack("../examples/models/echo", &buf)
	require.NoError(t, err)
	pkg := buf.Bytes()
	a, err := h.api.UploadPrepared(ctx, *prep.S3Key, bytes.NewReader(pkg))
	require.NoError(t, err)
	require.True(t, strings.HasPrefix(a.ID, "sha256:"), a.ID)
	_, err = h.api.UploadPrepared(ctx, *prep.S3Key, bytes.NewReader(pkg))
	require.True(t, client.IsStatus(err, http.StatusConflict), "a second upload to the key is 409, got %v", err)

	code, body := h.call(http.MethodPost, "/v1/models", map[string]any{"source": map[string]any{
		"kind": "model_archive", "name": "echo-upload", "s3_key": *prep.S3Key,
		"deployment": map[string]any{"config": p.Config, "raw_config": *p.RawConfig, "deployment_name": "uploaded"}}})
	require.Equal(t, http.StatusOK, code, "%v", body)
	modelID := body["model"].(map[string]any)["id"].(string)
	depID := body["deployment"].(map[string]any)["id"].(string)
	require.Equal(t, "uploaded", body["deployment"].(map[string]any)["name"])
	h.waitStatus(modelID, depID, "ACTIVE")
	require.Equal(t, map[string]any{"text": "hi"}, h.predictReplica(depID)["echo"])

	// The download is the package that was PUT.
	code, body = h.call(http.MethodGet, "/v1/models/"+modelID+"/deployments/"+depID+"/download", nil)
	require.Equal(t, http.StatusOK, code, "%v", body)
	resp, err := http.Get(body["download_url"].(string))
	require.NoError(t, err)
	defer resp.Body.Close()
	var got bytes.Buffer
	_, err = got.ReadFrom(resp.Body)
	require.NoError(t, err)
	require.True(t, bytes.Equal(pkg, got.Bytes()), "the deployment runs the uploaded archive")
}
