package store

import (
	"context"

	"github.com/jmoiron/sqlx"
	"github.com/modelplane/modelplane"
	"github.com/modelplane/modelplane/settings"
)

// NewPromotion says what promotion to record. ID is chosen by the caller (the workflow), so
// that a retried insert finds the row it made before.
type NewPromotion struct {
	ID                   string
	ModelID              string
	Environment          string
	SourceDeploymentID   string
	PreviousDeploymentID *string
	Settings             settings.PromotionSettings
	WorkflowID           string
}

// CreatePromotion records a promotion in status RELEASING. A second running promotion of the
// same environment is ErrConflict (index promotions_one_running), and so is a taken ID.
func CreatePromotion(ctx context.Context, db sqlx.ExtContext, p NewPromotion) (Promotion, error) {
	var out Promotion
	err := get(ctx, db, &out, `
		INSERT INTO promotions (id, model_id, environment, source_deployment_id, previous_deployment_id,
		                        status, settings, workflow_id)
		VALUES ($1, $2, $3, $4, $5, `+sqlPromotionReleasing+`, $6, $7)
		RETURNING *`,
		p.ID, p.ModelID, p.Environment, p.SourceDeploymentID, p.PreviousDeploymentID, p.Settings, p.WorkflowID)
	return out, err
}

// PromotionByID returns one promotion.
func PromotionByID(ctx context.Context, db sqlx.QueryerContext, id string) (Promotion, error) {
	var p Promotion
	err := get(ctx, db, &p, `SELECT * FROM promotions WHERE id = $1`, id)
	return p, err
}

// SetPromotionStatus records the promotion's progress; finished stamps finished_at (once).
func SetPromotionStatus(ctx context.Context, db sqlx.ExecerContext, id string, status modelplane.PromotionStatus, percent int, errorMessage string, finished bool) error {
	return exec(ctx, db, true, `
		UPDATE promotions
		SET status = $2, percent_traffic_to_new_version = $3, error_message = $4, updated_at = now(),
		    finished_at = CASE WHEN $5 THEN coalesce(finished_at, now()) ELSE finished_at END
		WHERE id = $1`, id, status, percent, errorMessage, finished)
}

// SetPromotionCandidate records the deployment the promotion brings up, on the promotion and
// as the environment's candidate.
func SetPromotionCandidate(ctx context.Context, db sqlx.ExecerContext, id, candidateID string) error {
	if err := exec(ctx, db, true, `
		UPDATE promotions SET candidate_deployment_id = $2, updated_at = now() WHERE id = $1`,
		id, candidateID); err != nil {
		return err
	}
	return exec(ctx, db, true, `
		UPDATE environments e SET candidate_deployment_id = $2, updated_at = now()
		FROM promotions p
		WHERE p.id = $1 AND e.model_id = p.model_id AND e.name = p.environment`, id, candidateID)
}

// ClearEnvironmentCandidate drops the environment's candidate when it is still candidateID,
// so a promotion that ends cleans up after itself and nobody else.
func ClearEnvironmentCandidate(ctx context.Context, db sqlx.ExecerContext, modelID, env, candidateID string) error {
	return exec(ctx, db, false, `
		UPDATE environments SET candidate_deployment_id = NULL, updated_at = now()
		WHERE model_id = $1 AND name = $2 AND candidate_deployment_id = $3`, modelID, env, candidateID)
}

// SwitchEnvironmentDeployment points the environment at its candidate: current becomes
// candidateID and the candidate is cleared. The deployment must be a live one of the model.
func SwitchEnvironmentDeployment(ctx context.Context, db sqlx.ExecerContext, modelID, env, candidateID string) error {
	return exec(ctx, db, true, `
		UPDATE environments SET current_deployment_id = $3, candidate_deployment_id = NULL, updated_at = now()
		WHERE model_id = $1 AND name = $2
		  AND EXISTS (SELECT 1 FROM deployments WHERE id = $3 AND model_id = $1 AND deleted_at IS NULL)`,
		modelID, env, candidateID)
}

// CreateDeploymentWithID inserts a published deployment with an ID the caller chose, taking
// the model's next deployment-N name unless d.Name is set. When a deployment with that ID
// exists already it is returned as it is, so a retried insert creates nothing twice.
func CreateDeploymentWithID(ctx context.Context, db sqlx.ExtContext, id string, d NewDeployment) (Deployment, error) {
	var out Deployment
	err := get(ctx, db, &out, `SELECT * FROM deployments WHERE id = $1 AND model_id = $2`, id, d.ModelID)
	if err != ErrNotFound {
		return out, err
	}
	d.ID = id
	return CreateDeployment(ctx, db, d)
}

// ForceCancelPromotion ends the environment's running promotion CANCELED without its
// workflow, for when the workflow is stuck or gone: no traffic to the candidate any more
// (percent 0), finished now, errorMessage saying why, and the environment's candidate
// cleared when it is still this promotion's. It answers the promotion as it is now; no
// promotion running is ErrNotFound. The row is locked first, so of two callers, and of a
// caller and a workflow finishing the promotion, only one ends it.
func ForceCancelPromotion(ctx context.Context, db *sqlx.DB, modelID, env, errorMessage string) (Promotion, error) {
	var p Promotion
	err := WithTx(ctx, db, func(tx *sqlx.Tx) error {
		if err := get(ctx, tx, &p, `
			SELECT * FROM promotions
			WHERE model_id = $1 AND environment = $2 AND status IN `+sqlInProgressPromotionStatuses+`
			FOR UPDATE`, modelID, env); err != nil {
			return err
		}
		if err := SetPromotionStatus(ctx, tx, p.ID, modelplane.PromotionCanceled, 0, errorMessage, true); err != nil {
			return err
		}
		if p.CandidateDeploymentID != nil {
			if err := ClearEnvironmentCandidate(ctx, tx, modelID, env, *p.CandidateDeploymentID); err != nil {
				return err
			}
		}
		return get(ctx, tx, &p, `SELECT * FROM promotions WHERE id = $1`, p.ID)
	})
	return p, err
}

// RollingDeployments returns the IDs of the deployments a rolling deploy in progress is
// replacing or bringing up (its previous deployment and its candidate): the promotion sets
// their replicas step by step, and the autoscaler leaves them alone until it ends.
func RollingDeployments(ctx context.Context, db sqlx.QueryerContext) (map[string]bool, error) {
	var ids []string
	if err := sqlx.SelectContext(ctx, db, &ids, `
		SELECT held.id FROM promotions p,
		     unnest(ARRAY[p.previous_deployment_id, p.candidate_deployment_id]) AS held(id)
		WHERE p.status IN `+sqlInProgressPromotionStatuses+`
		  AND (p.settings->>'rolling_deploy')::boolean AND held.id IS NOT NULL`); err != nil {
		return nil, err
	}
	out := make(map[string]bool, len(ids))
	for _, id := range ids {
		out[id] = true
	}
	return out, nil
}
