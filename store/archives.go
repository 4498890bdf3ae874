package store

import (
	"context"
	"encoding/json"
	"time"

	"github.com/jmoiron/sqlx"
	"github.com/lib/pq"
)

// Archive is an uploaded model package of a workspace; its bytes are in the blob store under
// ID ("sha256:<hex>").
type Archive struct {
	WorkspaceID string          `db:"workspace_id"`
	ID          string          `db:"id"`
	SizeBytes   int64           `db:"size_bytes"`
	Config      json.RawMessage `db:"config"`
	CreatedAt   time.Time       `db:"created_at"`
}

// CreateArchive records an upload; recording the same archive again keeps the first record
// and answers created false.
func CreateArchive(ctx context.Context, db sqlx.ExtContext, a Archive) (Archive, bool, error) {
	var out Archive
	err := get(ctx, db, &out, `
		INSERT INTO archives (workspace_id, id, size_bytes, config) VALUES ($1, $2, $3, $4)
		ON CONFLICT (workspace_id, id) DO NOTHING
		RETURNING *`, a.WorkspaceID, a.ID, a.SizeBytes, []byte(a.Config))
	if err == ErrNotFound {
		out, err = ArchiveByID(ctx, db, a.WorkspaceID, a.ID)
		return out, false, err
	}
	return out, err == nil, err
}

// ArchiveByID returns one of the workspace's archives.
func ArchiveByID(ctx context.Context, db sqlx.QueryerContext, workspaceID, id string) (Archive, error) {
	var a Archive
	err := get(ctx, db, &a, `SELECT * FROM archives WHERE workspace_id = $1 AND id = $2`, workspaceID, id)
	return a, err
}

// ArchiveConfigs are the config.yaml of each of the workspace's archives, by archive ID, in
// one query; an archive the workspace does not have has no entry.
func ArchiveConfigs(ctx context.Context, db sqlx.QueryerContext, workspaceID string, ids []string) (map[string]json.RawMessage, error) {
	var rows []struct {
		ID     string          `db:"id"`
		Config json.RawMessage `db:"config"`
	}
	if err := list(ctx, db, &rows, `SELECT id, config FROM archives WHERE workspace_id = $1 AND id = ANY($2)`,
		workspaceID, pq.Array(ids)); err != nil {
		return nil, err
	}
	out := make(map[string]json.RawMessage, len(rows))
	for _, r := range rows {
		out[r.ID] = r.Config
	}
	return out, nil
}

// ArchiveServableToNode says whether the node named nodeName, whose agent reported agentID,
// may download the archive: a live replica of a deployment that runs it is placed on the node,
// or the node was asked to build that deployment's Python environment (RecordEnvBuildNode).
// An unknown node, or an agent ID the node did not report, may download nothing.
func ArchiveServableToNode(ctx context.Context, db sqlx.QueryerContext, id, nodeName, agentID string) (bool, error) {
	if nodeName == "" || agentID == "" {
		return false, nil
	}
	var ok bool
	err := get(ctx, db, &ok, `
		SELECT EXISTS (
			SELECT 1 FROM nodes n
			JOIN deployments d ON d.archive_id = $1 AND d.deleted_at IS NULL
			WHERE n.name = $2 AND n.agent_id = $3
			  AND (EXISTS (SELECT 1 FROM replicas r
			               WHERE r.deployment_id = d.id AND r.node_id = n.id AND r.state IN `+sqlLiveReplicaStates+`)
			       OR EXISTS (SELECT 1 FROM env_build_nodes b WHERE b.deployment_id = d.id AND b.node_id = n.id)))`,
		id, nodeName, agentID)
	return ok, err
}

// RecordEnvBuildNode records that the node was asked to build the deployment's Python
// environment, which lets it download the deployment's archive. Recording it again changes
// nothing.
func RecordEnvBuildNode(ctx context.Context, db sqlx.ExecerContext, deploymentID, nodeID string) error {
	return exec(ctx, db, false, `
		INSERT INTO env_build_nodes (deployment_id, node_id) VALUES ($1, $2)
		ON CONFLICT (deployment_id, node_id) DO UPDATE SET asked_at = now()`, deploymentID, nodeID)
}

// UnreferencedArchives lists archives uploaded before `before` that no live deployment runs.
func UnreferencedArchives(ctx context.Context, db sqlx.QueryerContext, before time.Time) ([]Archive, error) {
	out := []Archive{}
	err := list(ctx, db, &out, `
		SELECT a.* FROM archives a
		WHERE a.created_at < $1
		  AND NOT EXISTS (SELECT 1 FROM deployments d
		                  WHERE d.workspace_id = a.workspace_id AND d.archive_id = a.id AND d.deleted_at IS NULL)
		ORDER BY a.created_at`, before)
	return out, err
}

// DeleteArchive removes a workspace's archive record, and the tombstones' references to it,
// unless a live deployment took it up meanwhile (then ErrConflict). It reports whether another
// workspace still holds the same bytes, in which case the blob must stay.
func DeleteArchive(ctx context.Context, db *sqlx.DB, workspaceID, id string) (blobShared bool, err error) {
	err = WithTx(ctx, db, func(tx *sqlx.Tx) error {
		var live bool
		if err := get(ctx, tx, &live, `SELECT EXISTS (SELECT 1 FROM deployments
			WHERE workspace_id = $1 AND archive_id = $2 AND deleted_at IS NULL)`, workspaceID, id); err != nil {
			return err
		}
		if live {
			return &Error{Kind: ErrConflict, Detail: "archive " + id + " is in use"}
		}
		if err := exec(ctx, tx, false, `UPDATE deployments SET archive_id = NULL
			WHERE workspace_id = $1 AND archive_id = $2 AND deleted_at IS NOT NULL`, workspaceID, id); err != nil {
			return err
		}
		if err := exec(ctx, tx, true, `DELETE FROM archives WHERE workspace_id = $1 AND id = $2`, workspaceID, id); err != nil {
			return err
		}
		return get(ctx, tx, &blobShared, `SELECT EXISTS (SELECT 1 FROM archives WHERE id = $1)`, id)
	})
	return blobShared, err
}

// ReferencedBlobs returns which of the digests an archive (of any workspace) or an upload
// key refers to: their blobs must stay.
func ReferencedBlobs(ctx context.Context, db sqlx.QueryerContext, digests []string) (map[string]bool, error) {
	var ids []string
	if err := list(ctx, db, &ids, `
		SELECT id FROM archives WHERE id = ANY($1)
		UNION
		SELECT archive_id FROM archive_uploads WHERE archive_id = ANY($1)`, pq.Array(digests)); err != nil {
		return nil, err
	}
	out := make(map[string]bool, len(ids))
	for _, id := range ids {
		out[id] = true
	}
	return out, nil
}

// CreateArchiveInQuota is CreateArchive for an archive that must fit the workspace's
// archive_bytes quota: a new archive that would take the workspace's stored bytes past it is
// not recorded and answers a *QuotaExceeded. An archive the workspace has already is answered
// as CreateArchive answers it, whatever the quota. Archives of one workspace are recorded one
// at a time (the workspace's row is locked), so two uploads cannot both pass the check.
func CreateArchiveInQuota(ctx context.Context, db *sqlx.DB, a Archive) (out Archive, created bool, err error) {
	err = WithTx(ctx, db, func(tx *sqlx.Tx) error {
		if _, err := tx.ExecContext(ctx, `SELECT 1 FROM workspaces WHERE id = $1 FOR UPDATE`, a.WorkspaceID); err != nil {
			return translate(err)
		}
		if have, err := ArchiveByID(ctx, tx, a.WorkspaceID, a.ID); err == nil {
			out = have
			return nil
		} else if err != ErrNotFound {
			return err
		}
		q, err := WorkspaceQuotas(ctx, tx, a.WorkspaceID)
		if err != nil {
			return err
		}
		stored, err := ArchiveBytes(ctx, tx, a.WorkspaceID)
		if err != nil {
			return err
		}
		if stored+a.SizeBytes > q.ArchiveBytes {
			return &QuotaExceeded{Quota: "archive_bytes", Limit: q.ArchiveBytes, Used: stored, Asked: a.SizeBytes}
		}
		out, created, err = CreateArchive(ctx, tx, a)
		return err
	})
	return out, created, err
}

// ArchiveBytes sums the sizes of the workspace's archives.
func ArchiveBytes(ctx context.Context, db sqlx.QueryerContext, workspaceID string) (int64, error) {
	var n int64
	err := get(ctx, db, &n, `SELECT COALESCE(sum(size_bytes), 0) FROM archives WHERE workspace_id = $1`, workspaceID)
	return n, err
}
