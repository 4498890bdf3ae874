package store_test

import (
	"context"
	"encoding/json"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/modelplane/modelplane"
	"github.com/modelplane/modelplane/store"
)

func TestUploads_AKeyTakesOneArchiveOfItsWorkspace(t *testing.T) {
	db := openDB(t)
	ctx := context.Background()
	m := newModel(t, db)
	other := newModel(t, db)
	archive := "sha256:" + strings.Repeat("ef", 32)
	_, _, err := store.CreateArchive(ctx, db, store.Archive{WorkspaceID: m.WorkspaceID, ID: archive, SizeBytes: 1,
		Config: json.RawMessage(`{"model_name":"echo"}`)})
	require.NoError(t, err)

	key := "upl_" + modelplane.NewID(20)
	require.NoError(t, store.CreateUpload(ctx, db, key, m.WorkspaceID, time.Now().Add(time.Hour)))
	u, err := store.UploadByKey(ctx, db, m.WorkspaceID, key)
	require.NoError(t, err)
	require.Nil(t, u.ArchiveID)
	_, err = store.UploadByKey(ctx, db, other.WorkspaceID, key)
	require.ErrorIs(t, err, store.ErrNotFound, "another workspace does not see the key")
	require.ErrorIs(t, store.CompleteUpload(ctx, db, other.WorkspaceID, key, archive), store.ErrNotFound)

	require.NoError(t, store.CompleteUpload(ctx, db, m.WorkspaceID, key, archive))
	u, err = store.UploadByKey(ctx, db, m.WorkspaceID, key)
	require.NoError(t, err)
	require.Equal(t, archive, *u.ArchiveID)
	require.NotNil(t, u.UploadedAt)
	require.ErrorIs(t, store.CompleteUpload(ctx, db, m.WorkspaceID, key, archive), store.ErrUploaded, "a key takes one upload")
	require.ErrorIs(t, store.CompleteUpload(ctx, db, m.WorkspaceID, "upl_nosuchkey", archive), store.ErrNotFound)

	// A key nobody uploaded to goes once it has expired; one that holds an archive stays
	// until the archive goes.
	stale := "upl_" + modelplane.NewID(20)
	require.NoError(t, store.CreateUpload(ctx, db, stale, m.WorkspaceID, time.Now().Add(-time.Minute)))
	_, err = db.Exec(`UPDATE archive_uploads SET expires_at = now() - interval '1 minute' WHERE key = $1`, key)
	require.NoError(t, err)
	require.NoError(t, store.CreateUpload(ctx, db, "upl_"+modelplane.NewID(20), m.WorkspaceID, time.Now().Add(time.Hour)))
	_, err = store.UploadByKey(ctx, db, m.WorkspaceID, stale)
	require.ErrorIs(t, err, store.ErrNotFound)
	_, err = store.UploadByKey(ctx, db, m.WorkspaceID, key)
	require.NoError(t, err)
	_, err = store.DeleteArchive(ctx, db, m.WorkspaceID, archive)
	require.NoError(t, err)
	_, err = store.UploadByKey(ctx, db, m.WorkspaceID, key)
	require.ErrorIs(t, err, store.ErrNotFound, "the key goes with its archive")
}

func TestDeployments_KeepTheCreateRequestsPayload(t *testing.T) {
	db := openDB(t)
	ctx := context.Background()
	m := newModel(t, db)
	raw, timeout := "model_name: echo\n", 45
	d, err := store.CreateDeployment(ctx, db, store.NewDeployment{ModelID: m.ID, WorkspaceID: m.WorkspaceID,
		Config: store.JSONMap{"model_name": "echo"}, RawConfig: &raw, UserEnv: store.JSONMap{"truss_version": "1"},
		DeployTimeoutMinutes: &timeout, DropEnvInstanceType: true, Labels: store.JSONMap{"a": "b"}})
	require.NoError(t, err)
	got, err := store.DeploymentByID(ctx, db, m.ID, d.ID)
	require.NoError(t, err)
	require.Equal(t, store.JSONMap{"model_name": "echo"}, got.Config)
	require.Equal(t, raw, *got.RawConfig)
	require.Equal(t, store.JSONMap{"truss_version": "1"}, got.UserEnv)
	require.Equal(t, 45, *got.DeployTimeoutMinutes)
	require.False(t, got.PreserveEnvInstanceType)
	require.Equal(t, store.JSONMap{"a": "b"}, got.Labels)

	plain, err := store.CreateDeployment(ctx, db, store.NewDeployment{ModelID: m.ID, WorkspaceID: m.WorkspaceID})
	require.NoError(t, err)
	require.Nil(t, plain.RawConfig)
	require.Nil(t, plain.DeployTimeoutMinutes)
	require.True(t, plain.PreserveEnvInstanceType, "preserve_env_instance_type defaults to true")
	require.Empty(t, plain.UserEnv)

	bad := 5
	_, err = store.CreateDeployment(ctx, db, store.NewDeployment{ModelID: m.ID, WorkspaceID: m.WorkspaceID, DeployTimeoutMinutes: &bad})
	require.ErrorIs(t, err, store.ErrConstraint, "the schema holds deploy_timeout_minutes to 10-1440")

	require.False(t, m.DisableArchiveDownload)
	require.NoError(t, store.DisableArchiveDownload(ctx, db, m.ID))
	m, err = store.ModelByID(ctx, db, m.WorkspaceID, m.ID)
	require.NoError(t, err)
	require.True(t, m.DisableArchiveDownload)
}
