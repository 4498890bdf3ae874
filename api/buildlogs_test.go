package api_test

import (
	"context"
	"net/http"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/modelplane/modelplane"
	"github.com/modelplane/modelplane/store"
)

func TestBuildLogs_AnswersTheDeploymentsBuildOutputToItsWorkspaceOnly(t *testing.T) {
	f := newRoutesFixture(t)
	ctx := context.Background()
	base := f.base + "/deployments/" + f.prod.ID + "/build_logs"

	r := f.do(t, http.MethodGet, base, f.auth)
	require.Equal(t, http.StatusOK, r.Status, "%v", r.Body)
	require.Equal(t, []any{}, r.Body["lines"], "a deployment that built nothing has no lines")

	require.NoError(t, store.SetDeploymentStatus(ctx, f.db, f.prod.ID, modelplane.DeploymentBuilding, "installing 1 requirement on node n1"))
	require.NoError(t, store.AppendBuildLog(ctx, f.db, f.prod.ID, "installing 1 requirement on node n1\nSuccessfully installed a-1"))
	r = f.do(t, http.MethodGet, base, f.auth)
	require.Equal(t, http.StatusOK, r.Status, "%v", r.Body)
	require.Equal(t, f.prod.ID, r.Body["deployment_id"])
	require.Equal(t, "BUILDING", r.Body["status"])
	require.Equal(t, "installing 1 requirement on node n1", r.Body["status_reason"])
	require.Equal(t, []any{"installing 1 requirement on node n1", "Successfully installed a-1"}, r.Body["lines"])

	_, _, otherKey := f.workspace(t)
	r = f.do(t, http.MethodGet, base, "Api-Key "+otherKey)
	require.Equal(t, http.StatusNotFound, r.Status, "another workspace's deployment: %v", r.Body)
	r = f.do(t, http.MethodGet, f.base+"/deployments/nosuchdp/build_logs", f.auth)
	require.Equal(t, http.StatusNotFound, r.Status)
}
