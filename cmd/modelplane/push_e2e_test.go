package main

import (
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"
)

// TestPush_EchoModelBecomesActiveOnDev pushes the example through the real CLI to a real dev
// stack, whose local agent runs it.
func TestPush_EchoModelBecomesActiveOnDev(t *testing.T) {
	apiURL, dataDir := startDev(t)
	key, err := os.ReadFile(filepath.Join(dataDir, "api-key"))
	require.NoError(t, err)
	run := func(args ...string) (string, error) {
		cmd := modelplaneCmd(args...)
		cmd.Env = append(cmd.Env, "MODELPLANE_URL="+apiURL, "MODELPLANE_API_KEY="+strings.TrimSpace(string(key)))
		out, err := cmd.CombinedOutput()
		return string(out), err
	}

	out, err := run("push", "../../examples/models/echo", "--timeout", "90s")
	require.NoError(t, err, out)
	require.Contains(t, out, "ACTIVE")

	out, err = run("models", "--output", "json")
	require.NoError(t, err, out)
	var models []struct{ ID, Name string }
	require.NoError(t, json.Unmarshal([]byte(out), &models), out)
	require.Len(t, models, 1)
	modelID := models[0].ID
	out, err = run("deployments", modelID)
	require.NoError(t, err, out)
	require.Contains(t, out, "deployment-1")
	require.Contains(t, out, "ACTIVE")

	// A second push adds deployment-2 to the same model.
	out, err = run("push", "../../examples/models/echo", "--timeout", "90s")
	require.NoError(t, err, out)
	out, err = run("deployments", modelID, "--output", "json")
	require.NoError(t, err, out)
	var deps []struct{ ID, Name, Status string }
	require.NoError(t, json.Unmarshal([]byte(out), &deps), out)
	require.Len(t, deps, 2, "the second push adds a deployment to the same model")

	// --promote deploys straight to production and waits until production serves it.
	out, err = run("push", "../../examples/models/echo", "--promote", "--timeout", "90s")
	require.NoError(t, err, out)
	require.Contains(t, out, "production")
	out, err = run("environments", modelID, "--output", "json")
	require.NoError(t, err, out)
	var envs []struct {
		Name              string
		CurrentDeployment *struct{ Name string } `json:"current_deployment"`
	}
	require.NoError(t, json.Unmarshal([]byte(out), &envs), out)
	require.Equal(t, "production", envs[0].Name)
	require.NotNil(t, envs[0].CurrentDeployment)
	require.Equal(t, "deployment-3", envs[0].CurrentDeployment.Name)

	out, err = run("deactivate", "echo", deps[0].ID)
	require.NoError(t, err, out)
	out, err = run("delete", modelID)
	require.NoError(t, err, out)
	out, err = run("models", "--output", "json")
	require.NoError(t, err, out)
	require.JSONEq(t, "[]", out)
}
