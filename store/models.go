package store

import (
	"context"
	"time"

	"github.com/jmoiron/sqlx"

	"github.com/modelplane/modelplane"
	"github.com/modelplane/modelplane/settings"
)

// Model is a named model in a workspace, with what ModelV1 reports about its deployments.
type Model struct {
	ID          string `db:"id"`
	WorkspaceID string `db:"workspace_id"`
	Name        string `db:"name"`
	// InstanceTypeName is a column nothing writes; the API answers the instance type of the
	// model's production deployment.
	InstanceTypeName string `db:"instance_type_name"`
	// DisableArchiveDownload, set at creation, keeps the packages of the model's deployments
	// from being downloaded.
	DisableArchiveDownload bool `db:"disable_archive_download"`
	// TeamName is the name of the model's workspace (Baseten's team_name).
	TeamName                string    `db:"team_name"`
	CreatedAt               time.Time `db:"created_at"`
	DeploymentsCount        int       `db:"deployments_count"`
	ProductionDeploymentID  *string   `db:"production_deployment_id"`
	DevelopmentDeploymentID *string   `db:"development_deployment_id"`
}

// CreateModel creates a model and its production environment in one statement, so a model
// never exists without one. ID defaults to a new one.
func CreateModel(ctx context.Context, db sqlx.ExtContext, workspaceID, name string) (Model, error) {
	var m Model
	err := get(ctx, db, &m, `
		WITH m AS (
			INSERT INTO models (id, workspace_id, name) VALUES ($1, $2, $3)
			RETURNING id, workspace_id, name, instance_type_name, disable_archive_download, created_at
		), e AS (
			INSERT INTO environments (model_id, name, autoscaling_settings, promotion_settings)
			SELECT id, 'production', $4, $5 FROM m
		)
		SELECT m.*, 0 AS deployments_count, NULL AS production_deployment_id,
		       NULL AS development_deployment_id, w.name AS team_name
		FROM m JOIN workspaces w ON w.id = m.workspace_id`,
		modelplane.NewID(8), workspaceID, name, settings.DefaultAutoscalingSettings(), settings.DefaultPromotionSettings())
	return m, err
}

const modelSelect = `
	SELECT m.id, m.workspace_id, m.name, m.instance_type_name, m.disable_archive_download, m.created_at,
	       (SELECT w.name FROM workspaces w WHERE w.id = m.workspace_id) AS team_name,
	       (SELECT count(*) FROM deployments d WHERE d.model_id = m.id AND d.deleted_at IS NULL) AS deployments_count,
	       (SELECT current_deployment_id FROM environments e WHERE e.model_id = m.id AND e.name = 'production') AS production_deployment_id,
	       (SELECT d.id FROM deployments d WHERE d.model_id = m.id AND d.is_development AND d.deleted_at IS NULL) AS development_deployment_id
	FROM models m`

// DisableArchiveDownload keeps the packages of the model's deployments from being
// downloaded; the create request of the model sets it, and nothing clears it.
func DisableArchiveDownload(ctx context.Context, db sqlx.ExecerContext, modelID string) error {
	return exec(ctx, db, true, `UPDATE models SET disable_archive_download = true WHERE id = $1`, modelID)
}

// ModelByID returns the model if it belongs to the workspace; another workspace's model is
// ErrNotFound, so IDs do not leak across workspaces.
func ModelByID(ctx context.Context, db sqlx.QueryerContext, workspaceID, id string) (Model, error) {
	var m Model
	err := get(ctx, db, &m, modelSelect+` WHERE m.workspace_id = $1 AND m.id = $2`, workspaceID, id)
	return m, err
}

// ListModels returns the workspace's models, oldest first.
func ListModels(ctx context.Context, db sqlx.QueryerContext, workspaceID string) ([]Model, error) {
	models := []Model{}
	err := list(ctx, db, &models, modelSelect+` WHERE m.workspace_id = $1 ORDER BY m.created_at, m.id`, workspaceID)
	return models, err
}

// DeleteModel removes a model with its deployments, environments, promotions and replicas.
// The usage intervals of replicas still live end in the same statement, since their rows go;
// the usage itself stays.
func DeleteModel(ctx context.Context, db sqlx.ExecerContext, workspaceID, id string) error {
	return exec(ctx, db, true, `
		WITH ended AS (`+usageEnd+` AND u.workspace_id = $2 AND u.model_id = $3)
		DELETE FROM models WHERE workspace_id = $2 AND id = $3`, NodeDownAfter.Seconds(), workspaceID, id)
}
