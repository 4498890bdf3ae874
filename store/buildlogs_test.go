package store_test

import (
	"context"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/modelplane/modelplane/store"
)

func TestBuildLog_AppendsLinesAndKeepsTheLastPart(t *testing.T) {
	db := openDB(t)
	ctx := context.Background()
	m := newModel(t, db)
	d, err := store.CreateDeployment(ctx, db, store.NewDeployment{ModelID: m.ID, WorkspaceID: m.WorkspaceID})
	require.NoError(t, err)

	lines, err := store.BuildLogLines(ctx, db, d.ID)
	require.NoError(t, err)
	require.Empty(t, lines, "a deployment that has built nothing has no log")

	require.NoError(t, store.AppendBuildLog(ctx, db, d.ID, "installing 1 requirement on node n1"))
	require.NoError(t, store.AppendBuildLog(ctx, db, d.ID, "Collecting a==1\nSuccessfully installed a-1\n"))
	lines, err = store.BuildLogLines(ctx, db, d.ID)
	require.NoError(t, err)
	require.Equal(t, []string{"installing 1 requirement on node n1", "Collecting a==1", "Successfully installed a-1"}, lines)

	line := strings.Repeat("x", 1023) + "\n"
	require.NoError(t, store.AppendBuildLog(ctx, db, d.ID, strings.Repeat(line, 300)))
	require.NoError(t, store.AppendBuildLog(ctx, db, d.ID, "last line"))
	lines, err = store.BuildLogLines(ctx, db, d.ID)
	require.NoError(t, err)
	require.Equal(t, "last line", lines[len(lines)-1])
	require.Len(t, lines, 256, "the last 256 KiB: 255 whole lines of 1 KiB and the last")
	for _, l := range lines[:255] {
		require.Len(t, l, 1023)
	}
}
