package store

import (
	"context"
	"time"

	"github.com/jmoiron/sqlx"

	"github.com/modelplane/modelplane"
	"github.com/modelplane/modelplane/settings"
)

// Deployment is one immutable version of a model (or its mutable development deployment).
type Deployment struct {
	ID            string  `db:"id"`
	ModelID       string  `db:"model_id"`
	WorkspaceID   string  `db:"workspace_id"`
	Name          string  `db:"name"`
	IsDevelopment bool    `db:"is_development"`
	ArchiveID     *string `db:"archive_id"`
	// Config is the create request's config when it differs from the package's config.yaml,
	// which it then replaces; empty when the deployment runs its package's.
	Config JSONMap `db:"config"`
	// RawConfig is the config.yaml text the create request gave, nil when it gave none.
	RawConfig *string `db:"raw_config"`
	// UserEnv is the client's metadata from the create request (its version...); it never
	// reaches the model.
	UserEnv JSONMap `db:"user_env"`
	// DeployTimeoutMinutes bounds how long a replica may take to become ready; nil: no bound.
	DeployTimeoutMinutes    *int                         `db:"deploy_timeout_minutes"`
	PreserveEnvInstanceType bool                         `db:"preserve_env_instance_type"`
	Status                  modelplane.DeploymentStatus  `db:"status"`
	StatusReason            string                       `db:"status_reason"`
	AutoscalingSettings     settings.AutoscalingSettings `db:"autoscaling_settings"`
	// RequestBackpressureSettings say what gateways do when every replica is at its
	// concurrency target.
	RequestBackpressureSettings settings.RequestBackpressureSettings `db:"request_backpressure_settings"`
	Labels                      JSONMap                              `db:"labels"`
	// InstanceTypeName is a column nothing writes; the API answers the instance type the
	// deployment runs on, from its config and the GPUs its replicas hold.
	InstanceTypeName string `db:"instance_type_name"`
	// GPUsPerReplica is the GPUs one replica holds (a MIG instance counts as one), from the
	// config the deployment was created with; the workspace's GPU quota counts them.
	GPUsPerReplica int        `db:"gpus_per_replica"`
	CreatedAt      time.Time  `db:"created_at"`
	UpdatedAt      time.Time  `db:"updated_at"`
	DeletedAt      *time.Time `db:"deleted_at"`
}

// NewDeployment says what to create. An empty Name on a published deployment takes the
// model's next deployment-N.
type NewDeployment struct {
	// ID is the deployment's ID; empty draws a new one.
	ID                  string
	ModelID             string
	WorkspaceID         string
	Name                string
	IsDevelopment       bool
	ArchiveID           *string
	Config              JSONMap
	AutoscalingSettings settings.AutoscalingSettings
	Labels              JSONMap
	// RawConfig, UserEnv and DeployTimeoutMinutes are the create request's, as Deployment
	// says.
	RawConfig            *string
	UserEnv              JSONMap
	DeployTimeoutMinutes *int
	// GPUsPerReplica is Deployment's.
	GPUsPerReplica int
	// DropEnvInstanceType is preserve_env_instance_type false, so that the zero value is the
	// spec's default (true).
	DropEnvInstanceType bool
}

// CreateDeployment inserts a deployment in status BUILDING. Taking a name another live
// deployment of the model has, or a second development deployment, is ErrConflict.
func CreateDeployment(ctx context.Context, db sqlx.ExtContext, d NewDeployment) (Deployment, error) {
	var out Deployment
	name := d.Name
	if d.IsDevelopment {
		name = modelplane.DevelopmentName
	}
	id := d.ID
	if id == "" {
		id = modelplane.NewID(8)
	}
	err := get(ctx, db, &out, `
		WITH n AS (
			UPDATE models SET deployment_counter = deployment_counter + CASE WHEN $4::text = '' THEN 1 ELSE 0 END
			WHERE id = $2 AND workspace_id = $3
			RETURNING deployment_counter
		)
		INSERT INTO deployments (id, model_id, workspace_id, name, is_development, archive_id, config,
		                         autoscaling_settings, labels, raw_config, user_env, deploy_timeout_minutes,
		                         preserve_env_instance_type, gpus_per_replica)
		SELECT $1, $2, $3, CASE WHEN $4::text = '' THEN 'deployment-' || n.deployment_counter ELSE $4 END,
		       $5, $6, $7, $8, $9, $10, $11, $12, $13, $14
		FROM n
		RETURNING *`,
		id, d.ModelID, d.WorkspaceID, name, d.IsDevelopment, d.ArchiveID, d.Config,
		d.AutoscalingSettings, d.Labels, d.RawConfig, d.UserEnv, d.DeployTimeoutMinutes, !d.DropEnvInstanceType, d.GPUsPerReplica)
	return out, err
}

// DeploymentByID returns a live (not deleted) deployment of the model.
func DeploymentByID(ctx context.Context, db sqlx.QueryerContext, modelID, id string) (Deployment, error) {
	var d Deployment
	err := get(ctx, db, &d, `SELECT * FROM deployments WHERE model_id = $1 AND id = $2 AND deleted_at IS NULL`, modelID, id)
	return d, err
}

// DeploymentModelID answers the model a deployment (live or deleted) belongs to.
func DeploymentModelID(ctx context.Context, db sqlx.QueryerContext, id string) (string, error) {
	var modelID string
	err := get(ctx, db, &modelID, `SELECT model_id FROM deployments WHERE id = $1`, id)
	return modelID, err
}

// ListDeployments returns the model's live deployments, oldest first.
func ListDeployments(ctx context.Context, db sqlx.QueryerContext, modelID string) ([]Deployment, error) {
	ds := []Deployment{}
	err := list(ctx, db, &ds, `
		SELECT * FROM deployments WHERE model_id = $1 AND deleted_at IS NULL ORDER BY created_at, id`, modelID)
	return ds, err
}

// RenameDeployment changes a published deployment's name; the development deployment keeps
// its name (ErrConstraint) and a taken name is ErrConflict.
func RenameDeployment(ctx context.Context, db sqlx.ExecerContext, modelID, id, name string) error {
	return exec(ctx, db, true, `
		UPDATE deployments SET name = $3, updated_at = now()
		WHERE model_id = $1 AND id = $2 AND deleted_at IS NULL`, modelID, id, name)
}

// MarkDeploymentDeleted turns a deployment into a tombstone that frees its name.
func MarkDeploymentDeleted(ctx context.Context, db sqlx.ExecerContext, modelID, id string) error {
	return exec(ctx, db, true, `
		UPDATE deployments SET deleted_at = now(), updated_at = now()
		WHERE model_id = $1 AND id = $2 AND deleted_at IS NULL`, modelID, id)
}

// DropMinReplica sets the deployment's min_replica to 0, keeping its other autoscaling
// settings, unless it serves an environment (whose floor it is); a deployment at zero then
// stays there until a request wakes it.
func DropMinReplica(ctx context.Context, db sqlx.ExecerContext, deploymentID string) error {
	_, err := db.ExecContext(ctx, `
		UPDATE deployments SET autoscaling_settings = jsonb_set(
			CASE WHEN jsonb_typeof(autoscaling_settings) = 'object' THEN autoscaling_settings ELSE '{}' END,
			'{min_replica}', '0'), updated_at = now()
		WHERE id = $1 AND deleted_at IS NULL
		  AND NOT EXISTS (SELECT 1 FROM environments e WHERE e.current_deployment_id = deployments.id)`, deploymentID)
	return err
}

// UpdateDeploymentAutoscaling replaces a live deployment's autoscaling settings.
func UpdateDeploymentAutoscaling(ctx context.Context, db sqlx.ExecerContext, modelID, id string, s settings.AutoscalingSettings) error {
	return exec(ctx, db, true, `
		UPDATE deployments SET autoscaling_settings = $3, updated_at = now()
		WHERE model_id = $1 AND id = $2 AND deleted_at IS NULL`, modelID, id, s)
}

// UpdateDeploymentBackpressure replaces a live deployment's request backpressure settings.
func UpdateDeploymentBackpressure(ctx context.Context, db sqlx.ExecerContext, modelID, id string, s settings.RequestBackpressureSettings) error {
	return exec(ctx, db, true, `
		UPDATE deployments SET request_backpressure_settings = $3, updated_at = now()
		WHERE model_id = $1 AND id = $2 AND deleted_at IS NULL`, modelID, id, s)
}

// DeploymentForUpdate reads a live deployment of the model under a row lock, so that two
// changes of its settings do not lose each other's fields.
func DeploymentForUpdate(ctx context.Context, tx *sqlx.Tx, modelID, id string) (Deployment, error) {
	var d Deployment
	err := get(ctx, tx, &d, `SELECT * FROM deployments WHERE model_id = $1 AND id = $2 AND deleted_at IS NULL FOR UPDATE`, modelID, id)
	return d, err
}

// PromotingInto names the environment a running promotion is bringing the deployment into
// (the deployment is its candidate and does not serve it yet); "" when none.
func PromotingInto(ctx context.Context, db sqlx.QueryerContext, modelID, id string) (string, error) {
	var names []string
	err := list(ctx, db, &names, `
		SELECT name FROM environments
		WHERE model_id = $1 AND candidate_deployment_id = $2 AND current_deployment_id IS DISTINCT FROM $2
		ORDER BY name <> 'production', name LIMIT 1`, modelID, id)
	if err != nil || len(names) == 0 {
		return "", err
	}
	return names[0], nil
}
