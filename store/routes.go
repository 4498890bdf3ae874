package store

import (
	"context"
	"database/sql"
	"time"

	"strconv"

	"github.com/jmoiron/sqlx"

	"github.com/modelplane/modelplane"
	"github.com/modelplane/modelplane/modelpkg"
	"github.com/modelplane/modelplane/settings"
)

// Routes is everything a gateway needs to route inference requests, read in one snapshot.
type Routes struct {
	// At is the database time the snapshot was taken at (its transaction's start, so the
	// snapshot holds everything committed before it).
	At           time.Time
	Models       []RouteModel
	Environments []RouteEnvironment
	Deployments  []RouteDeployment
	Replicas     []RouteReplica
}

// RouteModel is a model and the workspace that owns it.
type RouteModel struct {
	ID          string `db:"id"`
	WorkspaceID string `db:"workspace_id"`
}

// RouteEnvironment is where an environment sends its traffic: to its current deployment,
// and while a promotion ramps up, CandidatePercent of it to the candidate.
type RouteEnvironment struct {
	ModelID             string  `db:"model_id"`
	Name                string  `db:"name"`
	CurrentDeploymentID *string `db:"current_deployment_id"`
	CandidateID         *string `db:"candidate_id"`
	CandidatePercent    int     `db:"candidate_percent"`
	// Shadow names the deployment a share of the environment's requests is copied to;
	// ShadowChangedAt is when it last changed, the key of the copies' figures.
	Shadow          settings.ShadowSettings `db:"shadow_settings"`
	ShadowChangedAt time.Time               `db:"shadow_changed_at"`
}

// RouteDeployment is a deployment's status as far as routing cares. Deleted deployments are
// included so that a request to one can say why it fails.
type RouteDeployment struct {
	ID            string                      `db:"id"`
	ModelID       string                      `db:"model_id"`
	Name          string                      `db:"name"`
	IsDevelopment bool                        `db:"is_development"`
	Status        modelplane.DeploymentStatus `db:"status"`
	Deleted       bool                        `db:"deleted"`
	// ReplicasStarting counts replicas being placed or started.
	ReplicasStarting int `db:"replicas_starting"`
	// ConcurrencyTarget is the deployment's autoscaling concurrency_target (at least 1).
	ConcurrencyTarget int `db:"concurrency_target"`
	// Backpressure is the deployment's request backpressure policy; nil when none is set.
	Backpressure *settings.BackpressurePolicy `db:"backpressure_policy"`
	// StreamingReadTimeout is its config's runtime.streaming_read_timeout in seconds: how long
	// a streamed answer may stay silent (Truss's default 60 when the config has none).
	StreamingReadTimeout int `db:"streaming_read_timeout"`
}

// RouteReplica is a READY replica and where its model server takes predictions.
type RouteReplica struct {
	ID           string `db:"id"`
	DeploymentID string `db:"deployment_id"`
	Address      string `db:"address"`
	PredictPath  string `db:"predict_path"`
	// WebsocketPath is where it takes websocket connections; empty is /websocket.
	WebsocketPath string `db:"websocket_path"`
}

// LoadRoutes reads the routing data in one consistent snapshot.
func LoadRoutes(ctx context.Context, db *sqlx.DB) (Routes, error) {
	var r Routes
	tx, err := db.BeginTxx(ctx, &sql.TxOptions{Isolation: sql.LevelRepeatableRead, ReadOnly: true})
	if err != nil {
		return r, translate(err)
	}
	defer func() { _ = tx.Rollback() }()
	steps := []struct {
		dest  any
		query string
	}{
		{&r.At, `SELECT now()`},
		{&r.Models, `SELECT id, workspace_id FROM models`},
		// A promotion that is ramping (or paused while ramping) splits the environment's
		// traffic; any other promotion state leaves it all on the current deployment.
		{&r.Environments, `
			SELECT e.model_id, e.name, e.current_deployment_id,
			       p.candidate_deployment_id AS candidate_id,
			       COALESCE(p.percent_traffic_to_new_version, 0) AS candidate_percent,
			       e.shadow_settings, e.shadow_changed_at
			FROM environments e
			LEFT JOIN promotions p ON p.model_id = e.model_id AND p.environment = e.name
			     AND p.status IN ` + sqlSplittingPromotionStatuses + ` AND p.candidate_deployment_id IS NOT NULL
			     AND p.percent_traffic_to_new_version > 0`},
		{&r.Deployments, `
			SELECT d.id, d.model_id, d.name, d.is_development, d.status, d.deleted_at IS NOT NULL AS deleted,
			       (SELECT count(*) FROM replicas r
			        WHERE r.deployment_id = d.id AND r.state IN ` + sqlStartingReplicaStates + `) AS replicas_starting,
			       GREATEST(COALESCE((` + effectiveSettingsSQL + `)->>'concurrency_target', '1')::int, 1) AS concurrency_target,
			       d.request_backpressure_settings->>'policy' AS backpressure_policy,
			       CASE WHEN jsonb_typeof(d.config->'runtime'->'streaming_read_timeout') = 'number'
			            THEN (d.config->'runtime'->>'streaming_read_timeout')::numeric::int
			            ELSE ` + strconv.Itoa(modelpkg.DefaultStreamingReadTimeout) + ` END AS streaming_read_timeout
			FROM deployments d`},
		{&r.Replicas, `
			SELECT id, deployment_id, address, predict_path, websocket_path FROM replicas
			WHERE state = ` + sqlReplicaReady + ` AND address <> ''`},
	}
	for _, s := range steps {
		if t, ok := s.dest.(*time.Time); ok {
			err = tx.GetContext(ctx, t, s.query)
		} else {
			err = tx.SelectContext(ctx, s.dest, s.query)
		}
		if err != nil {
			return r, translate(err)
		}
	}
	return r, nil
}
