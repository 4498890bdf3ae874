package activities_test

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/modelplane/modelplane"
	"github.com/modelplane/modelplane/agent/agentproto"
	"github.com/modelplane/modelplane/store"
	"github.com/modelplane/modelplane/workflows/contract"
)

const requirementsConfig = `{"model_name":"echo","requirements":["mpgreet==1.0"],"resources":{"accelerator":"H100:1"}}`

func (f *fixture) buildPythonEnv(t *testing.T) (contract.BuildPythonEnvResult, error) {
	t.Helper()
	v, err := f.env.ExecuteActivity(f.acts.LoadDeploymentSpec, contract.LoadDeploymentSpecInput{DeploymentID: f.dep.ID, ModelID: f.dep.ModelID})
	require.NoError(t, err)
	var spec contract.DeploymentSpec
	require.NoError(t, v.Get(&spec))
	v, err = f.env.ExecuteActivity(f.acts.BuildPythonEnv, contract.BuildPythonEnvInput{Spec: spec, PollInterval: time.Millisecond})
	var res contract.BuildPythonEnvResult
	if err == nil {
		require.NoError(t, v.Get(&res))
	}
	return res, err
}

func TestBuildPythonEnv_WaitsForTheNodesBuildAndLogsItsOutput(t *testing.T) {
	f := newFixture(t, requirementsConfig)
	f.agent.envs = []agentproto.EnvStatus{
		{Key: "3f2a", State: agentproto.EnvBuilding, Requirements: 1},
		{Key: "3f2a", State: agentproto.EnvBuilding, Requirements: 1, LogTail: []string{"Processing mpgreet-1.0-py3-none-any.whl"}},
		{Key: "3f2a", State: agentproto.EnvReady, Requirements: 1, LogTail: []string{"Processing mpgreet-1.0-py3-none-any.whl", "Successfully installed mpgreet-1.0"}},
	}
	res, err := f.buildPythonEnv(t)
	require.NoError(t, err)
	require.Equal(t, []string{f.node.Name}, res.Nodes)
	require.False(t, res.Reused)

	d, err := store.DeploymentByID(context.Background(), f.db, f.dep.ModelID, f.dep.ID)
	require.NoError(t, err)
	require.Equal(t, modelplane.DeploymentBuilding, d.Status, "the deployment stays BUILDING until the workflow moves on")
	require.Contains(t, d.StatusReason, "requirements installed on node "+f.node.Name)
	lines, err := store.BuildLogLines(context.Background(), f.db, f.dep.ID)
	require.NoError(t, err)
	log := strings.Join(lines, "\n")
	require.Contains(t, log, "installing 1 requirement on node "+f.node.Name)
	require.Contains(t, log, "Successfully installed mpgreet-1.0", "pip's output is in the build log")
}

func TestBuildPythonEnv_LetsTheAskedNodeDownloadTheArchive(t *testing.T) {
	f := newFixture(t, requirementsConfig)
	ctx := context.Background()
	ok, err := store.ArchiveServableToNode(ctx, f.db, *f.dep.ArchiveID, f.node.Name, f.node.AgentID)
	require.NoError(t, err)
	require.False(t, ok, "before the build, no replica and no build give the node the archive")

	f.agent.envs = []agentproto.EnvStatus{{Key: "3f2a", State: agentproto.EnvReady, Requirements: 1}}
	_, err = f.buildPythonEnv(t)
	require.NoError(t, err)
	ok, err = store.ArchiveServableToNode(ctx, f.db, *f.dep.ArchiveID, f.node.Name, f.node.AgentID)
	require.NoError(t, err)
	require.True(t, ok, "the node asked to build the environment may download the archive it builds from")
}

func TestBuildPythonEnv_AFailedInstallIsBuildFailedWithPipsLines(t *testing.T) {
	f := newFixture(t, requirementsConfig)
	pip := "ERROR: No matching distribution found for mpgreet==1.0"
	f.agent.envs = []agentproto.EnvStatus{
		{Key: "3f2a", State: agentproto.EnvBuilding, Requirements: 1},
		{Key: "3f2a", State: agentproto.EnvFailed, Requirements: 1, Error: "pip install failed: " + pip, LogTail: []string{pip}},
	}
	_, err := f.buildPythonEnv(t)
	require.Equal(t, contract.ErrTypeBuildFailed, appErrType(err), "got %v", err)
	require.Contains(t, err.Error(), pip, "the error carries pip's words")
	lines, err := store.BuildLogLines(context.Background(), f.db, f.dep.ID)
	require.NoError(t, err)
	require.Contains(t, strings.Join(lines, "\n"), pip)
}
