package store

import (
	"context"
	"database/sql/driver"
	"encoding/json"
	"errors"
	"time"

	"github.com/jmoiron/sqlx"

	"github.com/modelplane/modelplane"
	"github.com/modelplane/modelplane/patch"
)

// PatchPoint is a patch point in a jsonb column.
type PatchPoint struct{ patch.Point }

// Value implements driver.Valuer.
func (p PatchPoint) Value() (driver.Value, error) { return json.Marshal(p.Point) }

// Scan implements sql.Scanner.
func (p *PatchPoint) Scan(src any) error { return modelplane.ScanJSON(src, &p.Point) }

// PatchOps are a patch's operations in a jsonb column.
type PatchOps []patch.Op

// Value implements driver.Valuer.
func (o PatchOps) Value() (driver.Value, error) { return json.Marshal([]patch.Op(o)) }

// Scan implements sql.Scanner.
func (o *PatchOps) Scan(src any) error { return modelplane.ScanJSON(src, (*[]patch.Op)(o)) }

// PatchState is the live-reload state of a development deployment.
type PatchState struct {
	DeploymentID string     `db:"deployment_id"`
	BasePoint    PatchPoint `db:"base_point"`
	BaseHash     string     `db:"base_hash"`
	HeadPoint    PatchPoint `db:"head_point"`
	HeadHash     string     `db:"head_hash"`
	HeadSeq      int64      `db:"head_seq"`
	AppliedSeq   int64      `db:"applied_seq"`
	AppliedHash  string     `db:"applied_hash"`
	UpdatedAt    time.Time  `db:"updated_at"`
}

// StoredPatch is one staged patch.
type StoredPatch struct {
	DeploymentID string    `db:"deployment_id"`
	Seq          int64     `db:"seq"`
	PrevHash     string    `db:"prev_hash"`
	NextHash     string    `db:"next_hash"`
	Config       string    `db:"config"`
	Ops          PatchOps  `db:"ops"`
	CreatedAt    time.Time `db:"created_at"`
}

// PatchStateOf returns the deployment's live-reload state; ErrNotFound before its first
// patch request made it.
func PatchStateOf(ctx context.Context, db sqlx.QueryerContext, deploymentID string) (PatchState, error) {
	var s PatchState
	err := get(ctx, db, &s, `SELECT deployment_id, base_point, base_hash, head_point, head_hash, head_seq,
		applied_seq, applied_hash, updated_at FROM patch_states WHERE deployment_id = $1`, deploymentID)
	return s, err
}

// EnsurePatchState makes the deployment's live-reload state from its archive's point, unless
// it exists, and returns it.
func EnsurePatchState(ctx context.Context, db sqlx.ExtContext, deploymentID string, base patch.Point) (PatchState, error) {
	h := base.Hash()
	if err := exec(ctx, db, false, `
		INSERT INTO patch_states (deployment_id, base_point, base_hash, head_point, head_hash, applied_hash)
		VALUES ($1, $2, $3, $2, $3, $3)
		ON CONFLICT (deployment_id) DO NOTHING`, deploymentID, PatchPoint{base}, h); err != nil {
		return PatchState{}, err
	}
	return PatchStateOf(ctx, db, deploymentID)
}

// ErrStalePatch is a patch against a point other than the deployment's head.
var ErrStalePatch = errors.New("stale patch base")

// StagePatch records a patch from prevHash to next, which must be the head's successor: a
// prevHash other than the head's is ErrStalePatch. Concurrent patches are serialised on the
// state's row, so exactly one of two patches against the same head is staged.
func StagePatch(ctx context.Context, db *sqlx.DB, deploymentID, prevHash string, next patch.Point, ops []patch.Op) (PatchState, error) {
	var out PatchState
	err := WithTx(ctx, db, func(tx *sqlx.Tx) error {
		var s PatchState
		if err := get(ctx, tx, &s, `SELECT deployment_id, head_hash, head_seq FROM patch_states
			WHERE deployment_id = $1 FOR UPDATE`, deploymentID); err != nil {
			return err
		}
		if s.HeadHash != prevHash {
			return ErrStalePatch
		}
		nextHash := next.Hash()
		if err := exec(ctx, tx, true, `
			INSERT INTO patches (deployment_id, seq, prev_hash, next_hash, config, ops)
			VALUES ($1, $2, $3, $4, $5, $6)`,
			deploymentID, s.HeadSeq+1, prevHash, nextHash, next.Config, PatchOps(ops)); err != nil {
			return err
		}
		if err := exec(ctx, tx, true, `
			UPDATE patch_states SET head_point = $2, head_hash = $3, head_seq = head_seq + 1, updated_at = now()
			WHERE deployment_id = $1`, deploymentID, PatchPoint{next}, nextHash); err != nil {
			return err
		}
		var err error
		out, err = PatchStateOf(ctx, tx, deploymentID)
		return err
	})
	return out, err
}

// PatchesBetween returns the staged patches with after < seq <= upTo, in order.
func PatchesBetween(ctx context.Context, db sqlx.QueryerContext, deploymentID string, after, upTo int64) ([]StoredPatch, error) {
	out := []StoredPatch{}
	err := list(ctx, db, &out, `SELECT * FROM patches WHERE deployment_id = $1 AND seq > $2 AND seq <= $3
		ORDER BY seq`, deploymentID, after, upTo)
	return out, err
}

// PatchSeqOf returns the seq of the point with this hash (0 for the base, or for an empty
// hash: a replica started without a patch runs the base); false when no patch of the
// deployment leads there.
func PatchSeqOf(ctx context.Context, db sqlx.QueryerContext, s PatchState, hash string) (int64, bool, error) {
	if hash == "" || hash == s.BaseHash {
		return 0, true, nil
	}
	var seq int64
	err := get(ctx, db, &seq, `SELECT max(seq) FROM patches WHERE deployment_id = $1 AND next_hash = $2
		HAVING max(seq) IS NOT NULL`, s.DeploymentID, hash)
	if errors.Is(err, ErrNotFound) {
		return 0, false, nil
	}
	return seq, err == nil, err
}

// ConfigAt returns the config.yaml text of the deployment's point at seq.
func ConfigAt(ctx context.Context, db sqlx.QueryerContext, s PatchState, seq int64) (string, error) {
	if seq == 0 {
		return s.BasePoint.Config, nil
	}
	var text string
	err := get(ctx, db, &text, `SELECT config FROM patches WHERE deployment_id = $1 AND seq = $2`, s.DeploymentID, seq)
	return text, err
}

// MarkPatchesApplied records that the deployment's replicas run its point at seq (from 0 or
// an earlier seq; never backwards).
func MarkPatchesApplied(ctx context.Context, db sqlx.ExecerContext, deploymentID string, seq int64, hash string) error {
	return exec(ctx, db, false, `
		UPDATE patch_states SET applied_seq = $2, applied_hash = $3, updated_at = now()
		WHERE deployment_id = $1 AND applied_seq < $2`, deploymentID, seq, hash)
}

// KeepAwake keeps the deployment from scaling to zero until the given time.
func KeepAwake(ctx context.Context, db sqlx.ExecerContext, deploymentID string, until time.Time) error {
	return exec(ctx, db, false, `
		INSERT INTO awake_leases (deployment_id, until) VALUES ($1, $2)
		ON CONFLICT (deployment_id) DO UPDATE SET until = GREATEST(awake_leases.until, EXCLUDED.until)`,
		deploymentID, until)
}
