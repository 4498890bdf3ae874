package store

import (
	"context"
	"time"

	"github.com/jmoiron/sqlx"
	"github.com/lib/pq"

	"github.com/modelplane/modelplane"
	"github.com/modelplane/modelplane/settings"
)

// DeploymentView is a deployment with what the API reports about it beside its own columns:
// whether it serves production, which environment points at it, and its ready replicas.
type DeploymentView struct {
	Deployment
	IsProduction       bool    `db:"is_production"`
	EnvironmentName    *string `db:"environment_name"`
	ActiveReplicaCount int     `db:"active_replica_count"`
}

var deploymentViewSelect = `
	SELECT d.*,
	       EXISTS (SELECT 1 FROM environments e WHERE e.model_id = d.model_id AND e.name = 'production'
	                                              AND e.current_deployment_id = d.id) AS is_production,
	       (SELECT e.name FROM environments e WHERE e.model_id = d.model_id AND e.current_deployment_id = d.id
	        ORDER BY e.name <> 'production', e.name LIMIT 1) AS environment_name,
	       (SELECT count(*) FROM replicas r WHERE r.deployment_id = d.id AND r.state = ` + sqlReplicaReady + `) AS active_replica_count
	FROM deployments d`

// ListDeploymentViews returns the model's live deployments, oldest first.
func ListDeploymentViews(ctx context.Context, db sqlx.QueryerContext, modelID string) ([]DeploymentView, error) {
	out := []DeploymentView{}
	err := list(ctx, db, &out, deploymentViewSelect+`
		WHERE d.model_id = $1 AND d.deleted_at IS NULL ORDER BY d.created_at, d.id`, modelID)
	return out, err
}

// DeploymentViewsByID returns the live deployments of those IDs, in any model, oldest first;
// an ID of no live deployment is left out.
func DeploymentViewsByID(ctx context.Context, db sqlx.QueryerContext, ids []string) ([]DeploymentView, error) {
	out := []DeploymentView{}
	err := list(ctx, db, &out, deploymentViewSelect+`
		WHERE d.id = ANY($1) AND d.deleted_at IS NULL ORDER BY d.created_at, d.id`, pq.Array(ids))
	return out, err
}

// DeploymentViewByRef returns a live deployment of the model by ID, or by the aliases
// "development" (the development deployment) and "production" (the deployment production
// points at).
func DeploymentViewByRef(ctx context.Context, db sqlx.QueryerContext, modelID, ref string) (DeploymentView, error) {
	var v DeploymentView
	var err error
	switch ref {
	case modelplane.DevelopmentName:
		err = get(ctx, db, &v, deploymentViewSelect+`
			WHERE d.model_id = $1 AND d.is_development AND d.deleted_at IS NULL`, modelID)
	case modelplane.ProductionEnvironment:
		err = get(ctx, db, &v, deploymentViewSelect+`
			WHERE d.model_id = $1 AND d.deleted_at IS NULL AND d.id = (
				SELECT current_deployment_id FROM environments WHERE model_id = $1 AND name = 'production')`, modelID)
	default:
		err = get(ctx, db, &v, deploymentViewSelect+`
			WHERE d.model_id = $1 AND d.id = $2 AND d.deleted_at IS NULL`, modelID, ref)
	}
	return v, err
}

// Promotion is one promotion of an environment.
type Promotion struct {
	ID                    string                     `db:"id"`
	ModelID               string                     `db:"model_id"`
	Environment           string                     `db:"environment"`
	SourceDeploymentID    string                     `db:"source_deployment_id"`
	CandidateDeploymentID *string                    `db:"candidate_deployment_id"`
	PreviousDeploymentID  *string                    `db:"previous_deployment_id"`
	Status                modelplane.PromotionStatus `db:"status"`
	PercentTrafficToNew   int                        `db:"percent_traffic_to_new_version"`
	ErrorMessage          string                     `db:"error_message"`
	Settings              settings.PromotionSettings `db:"settings"`
	WorkflowID            string                     `db:"workflow_id"`
	CreatedAt             time.Time                  `db:"created_at"`
	UpdatedAt             time.Time                  `db:"updated_at"`
	FinishedAt            *time.Time                 `db:"finished_at"`
}

// RunningPromotion returns the environment's promotion in flight, or ErrNotFound.
func RunningPromotion(ctx context.Context, db sqlx.QueryerContext, modelID, env string) (Promotion, error) {
	var p Promotion
	err := get(ctx, db, &p, `
		SELECT * FROM promotions
		WHERE model_id = $1 AND environment = $2 AND status IN `+sqlInProgressPromotionStatuses,
		modelID, env)
	return p, err
}
