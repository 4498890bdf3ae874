package store

import (
	"context"
	"errors"
	"time"

	"github.com/jmoiron/sqlx"

	"github.com/modelplane/modelplane/settings"
)

// Environment is a named pointer from a model to the deployment that serves it.
type Environment struct {
	ModelID               string                       `db:"model_id"`
	Name                  string                       `db:"name"`
	CurrentDeploymentID   *string                      `db:"current_deployment_id"`
	CandidateDeploymentID *string                      `db:"candidate_deployment_id"`
	AutoscalingSettings   settings.AutoscalingSettings `db:"autoscaling_settings"`
	PromotionSettings     settings.PromotionSettings   `db:"promotion_settings"`
	// AutoscalingSettings and RequestBackpressureSettings are what a deployment promoted
	// into the environment gets while it serves none; once it serves one, that deployment's
	// settings are the environment's.
	RequestBackpressureSettings settings.RequestBackpressureSettings `db:"request_backpressure_settings"`
	// AutoscalingSchedules are applied by the autoscaler to the deployment the environment
	// serves (SchedulesInForce).
	AutoscalingSchedules settings.AutoscalingSchedules `db:"autoscaling_schedules"`
	// ShadowSettings name the deployment gateways copy a share of the environment's requests
	// to; ShadowChangedAt is when they last changed, which the comparison figures count from.
	ShadowSettings  settings.ShadowSettings `db:"shadow_settings"`
	ShadowChangedAt time.Time               `db:"shadow_changed_at"`
	CreatedAt       time.Time               `db:"created_at"`
	UpdatedAt       time.Time               `db:"updated_at"`
}

// CreateEnvironment adds a custom environment; a name the model already has is ErrConflict.
func CreateEnvironment(ctx context.Context, db sqlx.ExtContext, e Environment) (Environment, error) {
	var out Environment
	err := get(ctx, db, &out, `
		INSERT INTO environments (model_id, name, autoscaling_settings, promotion_settings, request_backpressure_settings)
		VALUES ($1, $2, $3, $4, $5)
		RETURNING *`, e.ModelID, e.Name, e.AutoscalingSettings, e.PromotionSettings, e.RequestBackpressureSettings)
	return out, err
}

// EnvironmentByName returns one of the model's environments.
func EnvironmentByName(ctx context.Context, db sqlx.QueryerContext, modelID, name string) (Environment, error) {
	var e Environment
	err := get(ctx, db, &e, `SELECT * FROM environments WHERE model_id = $1 AND name = $2`, modelID, name)
	return e, err
}

// ListEnvironments returns the model's environments, production first.
func ListEnvironments(ctx context.Context, db sqlx.QueryerContext, modelID string) ([]Environment, error) {
	es := []Environment{}
	err := list(ctx, db, &es, `
		SELECT * FROM environments WHERE model_id = $1
		ORDER BY name <> 'production', created_at, name`, modelID)
	return es, err
}

// SetEnvironmentDeployment points the environment at a deployment of the same model.
func SetEnvironmentDeployment(ctx context.Context, db sqlx.ExecerContext, modelID, name, deploymentID string) error {
	return exec(ctx, db, true, `
		UPDATE environments SET current_deployment_id = $3, updated_at = now()
		WHERE model_id = $1 AND name = $2
		  AND EXISTS (SELECT 1 FROM deployments WHERE id = $3 AND model_id = $1 AND deleted_at IS NULL)`,
		modelID, name, deploymentID)
}

// DeleteEnvironment removes a custom environment; production is refused with ErrConstraint.
func DeleteEnvironment(ctx context.Context, db sqlx.ExecerContext, modelID, name string) error {
	return exec(ctx, db, true, `DELETE FROM environments WHERE model_id = $1 AND name = $2`, modelID, name)
}

// UpdateEnvironmentSettings replaces the environment's own autoscaling, promotion and
// request backpressure settings.
func UpdateEnvironmentSettings(ctx context.Context, db sqlx.ExecerContext, modelID, name string, as settings.AutoscalingSettings,
	ps settings.PromotionSettings, bp settings.RequestBackpressureSettings) error {
	return exec(ctx, db, true, `
		UPDATE environments SET autoscaling_settings = $3, promotion_settings = $4, request_backpressure_settings = $5,
		       updated_at = now()
		WHERE model_id = $1 AND name = $2`, modelID, name, as, ps, bp)
}

// UpdateEnvironmentSchedules replaces the environment's autoscaling schedules.
func UpdateEnvironmentSchedules(ctx context.Context, db sqlx.ExecerContext, modelID, name string, s settings.AutoscalingSchedules) error {
	return exec(ctx, db, true, `
		UPDATE environments SET autoscaling_schedules = $3, updated_at = now()
		WHERE model_id = $1 AND name = $2`, modelID, name, s)
}

// GiveEnvironmentSettings gives the deployment about to serve the environment the settings
// the environment has now: those of the deployment it serves, or its own while it serves
// none (autoscaling and request backpressure alike). It is how a promotion carries the
// previous deployment's settings over; call it before the environment switches.
func GiveEnvironmentSettings(ctx context.Context, db sqlx.ExecerContext, modelID, env, deploymentID string) error {
	return exec(ctx, db, true, `
		UPDATE deployments d
		SET autoscaling_settings = COALESCE(cur.autoscaling_settings, e.autoscaling_settings),
		    request_backpressure_settings = COALESCE(cur.request_backpressure_settings, e.request_backpressure_settings),
		    updated_at = now()
		FROM environments e
		LEFT JOIN deployments cur ON cur.id = e.current_deployment_id AND cur.deleted_at IS NULL
		WHERE e.model_id = $1 AND e.name = $2 AND d.id = $3 AND d.model_id = $1 AND d.deleted_at IS NULL`,
		modelID, env, deploymentID)
}

// EnvironmentFor names the environment a deployment serves, or is being promoted into, with
// production first; "" when none. It is the MODELPLANE_ENVIRONMENT its replicas get.
func EnvironmentFor(ctx context.Context, db sqlx.QueryerContext, modelID, deploymentID string) (string, error) {
	var names []string
	err := list(ctx, db, &names, `
		SELECT name FROM environments
		WHERE model_id = $1 AND (current_deployment_id = $2 OR candidate_deployment_id = $2)
		ORDER BY COALESCE(current_deployment_id = $2, false) DESC, name <> 'production', name
		LIMIT 1`, modelID, deploymentID)
	if err != nil || len(names) == 0 {
		return "", err
	}
	return names[0], nil
}

// DeploymentServes reports whether the deployment is the current deployment of one of the
// model's environments.
func DeploymentServes(ctx context.Context, db sqlx.QueryerContext, modelID, deploymentID string) (bool, error) {
	var serves bool
	err := get(ctx, db, &serves, `
		SELECT EXISTS (SELECT 1 FROM environments WHERE model_id = $1 AND current_deployment_id = $2)`,
		modelID, deploymentID)
	return serves, err
}

// EnvironmentForUpdate reads the model's environment under a row lock, so that two PATCHes
// do not lose each other's fields.
func EnvironmentForUpdate(ctx context.Context, tx *sqlx.Tx, modelID, name string) (Environment, error) {
	var e Environment
	err := get(ctx, tx, &e, `SELECT * FROM environments WHERE model_id = $1 AND name = $2 FOR UPDATE`, modelID, name)
	return e, err
}

// ServedDeploymentForUpdate reads, under a row lock, the live deployment the environment
// serves; nil when it serves none. It is how a change of the environment's settings reaches
// the deployment whose settings they are.
func ServedDeploymentForUpdate(ctx context.Context, tx *sqlx.Tx, e Environment) (*Deployment, error) {
	if e.CurrentDeploymentID == nil {
		return nil, nil
	}
	d, err := DeploymentForUpdate(ctx, tx, e.ModelID, *e.CurrentDeploymentID)
	if errors.Is(err, ErrNotFound) {
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	return &d, nil
}
