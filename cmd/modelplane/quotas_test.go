package main

import (
	"context"
	"testing"

	"github.com/jmoiron/sqlx"
	"github.com/stretchr/testify/require"

	"github.com/modelplane/modelplane"
	"github.com/modelplane/modelplane/store"
)

func TestQuotasSetAndShow_SetWhatIsGivenAndShowLimitsWithUsage(t *testing.T) {
	ctx := context.Background()
	db, ws := quotaWorkspace(t)
	name := ws.Name

	out, err := modelplaneCmd("quotas", "show", "--database-url", dbURL, "--workspace", name).CombinedOutput()
	require.NoError(t, err, string(out))
	def := store.DefaultQuotas()
	require.Equal(t, [][]string{
		{"workspace", name, "(" + ws.ID + "):", "quotas", "are", "the", "defaults"},
		{"QUOTA", "LIMIT", "USED"},
		{"replicas", "64", "0"}, {"gpus", "64", "0"}, {"async_requests", "50000", "0"}, {"archive_bytes", "107374182400", "0"},
	}, table(string(out)))
	require.Equal(t, int64(107374182400), def.ArchiveBytes)

	out, err = modelplaneCmd("quotas", "set", "--database-url", dbURL, "--workspace", name,
		"--replicas", "8", "--gpus", "4", "--archive-bytes", "50GiB").CombinedOutput()
	require.NoError(t, err, string(out))
	require.Contains(t, string(out), "quotas are set by the operator")
	q, err := store.WorkspaceQuotas(ctx, db, ws.ID)
	require.NoError(t, err)
	require.Equal(t, store.Quotas{Replicas: 8, GPUs: 4, AsyncRequests: def.AsyncRequests, ArchiveBytes: 50 << 30}, q,
		"the quotas given are set, async_requests keeps its default")

	out, err = modelplaneCmd("quotas", "set", "--database-url", dbURL, "--workspace", name, "--async-requests", "5").CombinedOutput()
	require.NoError(t, err, string(out))
	q, err = store.WorkspaceQuotas(ctx, db, ws.ID)
	require.NoError(t, err)
	require.Equal(t, store.Quotas{Replicas: 8, GPUs: 4, AsyncRequests: 5, ArchiveBytes: 50 << 30}, q, "a second set keeps what it does not name")

	out, err = modelplaneCmd("quotas", "show", "--database-url", dbURL, "--workspace", name).CombinedOutput()
	require.NoError(t, err, string(out))
	require.Contains(t, table(string(out)), []string{"async_requests", "5", "0"})
	require.Contains(t, table(string(out)), []string{"archive_bytes", "53687091200", "0"})
}

func TestQuotasSet_RefusesNothingToSetBadValuesAndUnknownWorkspaces(t *testing.T) {
	ctx := context.Background()
	db, ws := quotaWorkspace(t)
	name := ws.Name
	for _, tt := range []struct {
		args []string
		want string
	}{
		{[]string{"--workspace", name}, "give at least one of --replicas, --gpus, --async-requests, --archive-bytes"},
		{[]string{"--workspace", name, "--replicas", "-1"}, "--replicas: must be 0 or more, not -1"},
		{[]string{"--workspace", name, "--archive-bytes", "lots"}, "--archive-bytes: must be an amount"},
		{[]string{"--workspace", "no-such-" + name, "--replicas", "1"}, `workspace "no-such-` + name + `"`},
	} {
		out, err := modelplaneCmd(append([]string{"quotas", "set", "--database-url", dbURL}, tt.args...)...).CombinedOutput()
		require.Error(t, err, "%v: %s", tt.args, out)
		require.Contains(t, string(out), tt.want, "%v", tt.args)
	}
	_, set, err := store.WorkspaceQuotasSet(ctx, db, ws.ID)
	require.NoError(t, err)
	require.False(t, set, "nothing was set")
}

// quotaWorkspace opens the test database and makes a workspace of its own in it.
func quotaWorkspace(t *testing.T) (*sqlx.DB, store.Workspace) {
	t.Helper()
	db, err := store.Open(context.Background(), dbURL)
	require.NoError(t, err)
	t.Cleanup(func() { db.Close() })
	ws, _, err := store.EnsureWorkspace(context.Background(), db, "quotas-"+modelplane.NewID(6))
	require.NoError(t, err)
	return db, ws
}
