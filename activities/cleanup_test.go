package activities_test

import (
	"context"
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/modelplane/modelplane"
	"github.com/modelplane/modelplane/blob"
	"github.com/modelplane/modelplane/store"
	"github.com/modelplane/modelplane/workflows/contract"
)

func TestStopUnwantedReplicas_StopsThoseOfDeletedDeploymentsOnly(t *testing.T) {
	f := newFixture(t, h100Config)
	ctx := context.Background()
	keep, gone := modelplane.NewID(12), modelplane.NewID(12)
	for _, id := range []string{keep, gone} {
		_, err := f.env.ExecuteActivity(f.acts.PlaceReplica, contract.PlaceReplicaInput{DeploymentID: f.dep.ID, ReplicaID: id})
		if err != nil {
			// The fixture's node has one GPU: the second replica is recorded without one.
			_, _, err = store.CreateReplica(ctx, f.db, store.NewReplica{ID: id, DeploymentID: f.dep.ID, NodeID: f.node.ID})
		}
		require.NoError(t, err)
	}
	_, err := f.db.Exec(`UPDATE replicas SET state = 'READY', updated_at = now() - interval '1 hour' WHERE id IN ($1, $2)`, keep, gone)
	require.NoError(t, err)

	// The deployment is alive: nothing is unwanted.
	val, err := f.env.ExecuteActivity(f.acts.StopUnwantedReplicas, contract.StopUnwantedReplicasInput{QuietFor: time.Minute, Grace: time.Second})
	require.NoError(t, err)
	var res contract.StopUnwantedReplicasResult
	require.NoError(t, val.Get(&res))
	require.Zero(t, res.Stopped)

	require.NoError(t, store.MarkDeploymentDeleted(ctx, f.db, f.dep.ModelID, f.dep.ID))
	_, err = f.db.Exec(`UPDATE replicas SET updated_at = now() WHERE id = $1`, keep)
	require.NoError(t, err)
	val, err = f.env.ExecuteActivity(f.acts.StopUnwantedReplicas, contract.StopUnwantedReplicasInput{QuietFor: time.Minute, Grace: time.Second})
	require.NoError(t, err)
	require.NoError(t, val.Get(&res))
	require.Equal(t, 1, res.Stopped, "only the replica left alone for the quiet period is taken over")
	r, err := store.ReplicaByID(ctx, f.db, gone)
	require.NoError(t, err)
	require.Equal(t, modelplane.ReplicaStopped, r.State)
	r, err = store.ReplicaByID(ctx, f.db, keep)
	require.NoError(t, err)
	require.Equal(t, modelplane.ReplicaReady, r.State, "a replica its workflow may be stopping right now is left to it")
}

func TestPruneArchives_RemovesOnlyOldUnusedOnes(t *testing.T) {
	f := newFixture(t, h100Config)
	ctx := context.Background()
	blobs, err := blob.NewDir(t.TempDir())
	require.NoError(t, err)
	f.acts.Blobs = blobs
	digest, _, _, err := blobs.Put(ctx, strings.NewReader("old package"), 100)
	require.NoError(t, err)
	_, _, err = store.CreateArchive(ctx, f.db, store.Archive{WorkspaceID: f.dep.WorkspaceID, ID: digest, SizeBytes: 11, Config: []byte(h100Config)})
	require.NoError(t, err)
	_, err = f.db.Exec(`UPDATE archives SET created_at = now() - interval '2 days' WHERE id IN ($1, $2) AND workspace_id = $3`,
		digest, *f.dep.ArchiveID, f.dep.WorkspaceID)
	require.NoError(t, err)

	val, err := f.env.ExecuteActivity(f.acts.PruneArchives, contract.PruneArchivesInput{Before: time.Now().Add(-24 * time.Hour)})
	require.NoError(t, err)
	var res contract.PruneArchivesResult
	require.NoError(t, val.Get(&res))
	require.Equal(t, 1, res.Archives, "the deployment's own archive stays")
	require.Equal(t, 1, res.Blobs)
	_, _, err = blobs.Open(ctx, digest)
	require.ErrorIs(t, err, blob.ErrNotFound)
	_, err = store.ArchiveByID(ctx, f.db, f.dep.WorkspaceID, *f.dep.ArchiveID)
	require.NoError(t, err)

	// Once its deployment is deleted, the archive goes too.
	require.NoError(t, store.MarkDeploymentDeleted(ctx, f.db, f.dep.ModelID, f.dep.ID))
	val, err = f.env.ExecuteActivity(f.acts.PruneArchives, contract.PruneArchivesInput{Before: time.Now().Add(-24 * time.Hour)})
	require.NoError(t, err)
	require.NoError(t, val.Get(&res))
	require.Equal(t, 1, res.Archives)
	_, err = store.ArchiveByID(ctx, f.db, f.dep.WorkspaceID, *f.dep.ArchiveID)
	require.ErrorIs(t, err, store.ErrNotFound)
}

func TestPruneGatewayReports_RemovesOnlyGatewaysSilentSinceBefore(t *testing.T) {
	f := newFixture(t, h100Config)
	ctx := context.Background()
	f.reportGateway(t, "gw-dead", time.Now(), nil)
	f.reportGateway(t, "gw-live", time.Now(), nil)
	_, err := f.db.Exec(`UPDATE gateway_reports SET reported_at = now() - interval '2 hours' WHERE gateway_id = 'gw-dead'`)
	require.NoError(t, err)

	val, err := f.env.ExecuteActivity(f.acts.PruneGatewayReports, contract.PruneGatewayReportsInput{
		Before: time.Now().Add(-contract.GatewayReportRetention)})
	require.NoError(t, err)
	var res contract.PruneGatewayReportsResult
	require.NoError(t, val.Get(&res))
	require.EqualValues(t, 1, res.Deleted, "only the gateway silent for two hours goes")
	var left []string
	require.NoError(t, f.db.SelectContext(ctx, &left, `SELECT gateway_id FROM gateway_reports WHERE gateway_id LIKE 'gw-%' ORDER BY gateway_id`))
	require.Equal(t, []string{"gw-live"}, left)
}

func TestPruneOrphanBlobs_RemovesOnlyOldBlobsNothingRefersTo(t *testing.T) {
	f := newFixture(t, h100Config)
	ctx := context.Background()
	root := t.TempDir()
	blobs, err := blob.NewDir(root)
	require.NoError(t, err)
	f.acts.Blobs = blobs
	put := func(content string, age time.Duration) string {
		digest, _, _, err := blobs.Put(ctx, strings.NewReader(content), 100)
		require.NoError(t, err)
		when := time.Now().Add(-age)
		require.NoError(t, os.Chtimes(filepath.Join(root, "sha256", strings.TrimPrefix(digest, "sha256:")), when, when))
		return digest
	}
	orphan := put("left by a failed upload", 2*time.Hour)
	archived := put("an archive's", 2*time.Hour)
	uploading := put("an upload in flight", time.Minute)
	_, _, err = store.CreateArchive(ctx, f.db, store.Archive{WorkspaceID: f.dep.WorkspaceID, ID: archived, SizeBytes: 12, Config: []byte(h100Config)})
	require.NoError(t, err)

	val, err := f.env.ExecuteActivity(f.acts.PruneOrphanBlobs, contract.PruneOrphanBlobsInput{Before: time.Now().Add(-time.Hour)})
	require.NoError(t, err)
	var res contract.PruneOrphanBlobsResult
	require.NoError(t, val.Get(&res))
	require.Equal(t, 1, res.Blobs)
	_, _, err = blobs.Open(ctx, orphan)
	require.ErrorIs(t, err, blob.ErrNotFound, "an old blob nothing refers to goes")
	for _, d := range []string{archived, uploading} {
		r, _, err := blobs.Open(ctx, d)
		require.NoError(t, err, "a referenced blob, and one within the grace period, stay")
		r.Close()
	}
}

// directUploads is a Dir that also takes presigned uploads, as an S3 store does; it records
// the cutoff the sweep gives it.
type directUploads struct {
	*blob.Dir
	cutoff time.Time
}

func (d *directUploads) PresignUpload(context.Context, string, time.Duration) (string, error) {
	return "", nil
}

func (d *directUploads) OpenUpload(context.Context, string) (io.ReadCloser, int64, error) {
	return nil, 0, blob.ErrNotFound
}

func (d *directUploads) DeleteUpload(context.Context, string) error { return nil }

func (d *directUploads) DeleteUploadsOlder(_ context.Context, t time.Time) (int, error) {
	d.cutoff = t
	return 2, nil
}

func TestPruneOrphanBlobs_RemovesUploadsOlderThanAnUploadKeyLives(t *testing.T) {
	f := newFixture(t, h100Config)
	dir, err := blob.NewDir(t.TempDir())
	require.NoError(t, err)
	up := &directUploads{Dir: dir}
	f.acts.Blobs = up
	before := time.Now()
	_, err = f.env.ExecuteActivity(f.acts.PruneOrphanBlobs, contract.PruneOrphanBlobsInput{Before: time.Now().Add(-time.Hour)})
	require.NoError(t, err)
	require.WithinRange(t, up.cutoff, before.Add(-store.UploadTTL), time.Now().Add(-store.UploadTTL),
		"uploads written before an upload key's lifetime ago belong to expired keys")
}
