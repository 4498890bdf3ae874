package store

import (
	"context"
	"strconv"
	"time"

	"github.com/jmoiron/sqlx"
	"github.com/lib/pq"

	"github.com/modelplane/modelplane"
	"github.com/modelplane/modelplane/settings"
)

// coldStartSample is how many of the newest replicas that became READY a deployment's lead
// time is measured on.
const coldStartSample = 5

// ScheduledDeployment is a live deployment that environments with an enabled autoscaling
// schedule serve, with what it takes to tell which schedule is in force on it.
type ScheduledDeployment struct {
	DeploymentID string `db:"deployment_id"`
	// Schedules are those of each environment it serves that has an enabled one, production
	// first, then by name.
	Schedules ScheduleCollections `db:"schedules"`
	// ColdStartSeconds are how long its newest replicas that became READY (coldStartSample at
	// most) took from creation to READY; its model's newest when none of its own has yet.
	ColdStartSeconds pq.Float64Array `db:"cold_start_seconds"`
}

// ScheduleCollections are the autoscaling schedules of several environments, a JSON array
// column.
type ScheduleCollections []settings.AutoscalingSchedules

// Scan reads the collections from JSON.
func (c *ScheduleCollections) Scan(src any) error { return modelplane.ScanJSON(src, c) }

// Lead is how long before a schedule's window opens its settings apply to the deployment:
// the median of its measured cold starts (settings.ScheduleLead).
func (d ScheduledDeployment) Lead() time.Duration {
	starts := make([]time.Duration, len(d.ColdStartSeconds))
	for i, s := range d.ColdStartSeconds {
		starts[i] = time.Duration(s * float64(time.Second))
	}
	return settings.ScheduleLead(starts)
}

// InForce returns the schedule in force on the deployment at now, nil when its own settings
// are (settings.ScheduleInForce).
func (d ScheduledDeployment) InForce(now time.Time) *settings.AutoscalingSchedule {
	return settings.ScheduleInForce(now, d.Lead(), d.Schedules...)
}

// scheduledEnvironmentSQL holds for an environment e with an enabled autoscaling schedule. It
// is the predicate of the index environments_scheduled (migration 00027), spelt the same.
const scheduledEnvironmentSQL = `e.autoscaling_schedules @? '$.schedules[*] ? (@.enabled == true)'`

// coldStartsSQL is the seconds the newest replicas that became READY of the deployments that
// from (a FROM clause naming replicas r) lets through took from creation to READY, newest
// first; null when there are none.
func coldStartsSQL(from string) string {
	return `(SELECT array_agg(c.seconds ORDER BY c.created_at DESC) FROM (
		SELECT r.created_at, extract(epoch FROM r.ready_at - r.created_at)::float8 AS seconds
		FROM ` + from + ` AND r.ready_at IS NOT NULL
		ORDER BY r.created_at DESC LIMIT ` + strconv.Itoa(coldStartSample) + `) c)`
}

// scheduledDeploymentsSQL reads the live deployments that environments with an enabled
// schedule serve (all of them when $1 is empty, else the one with that ID): from the index of
// those environments, then for each deployment an index probe of its newest READY replicas
// (replicas_cold_starts) and, only when it has none, its model's.
var scheduledDeploymentsSQL = `
	SELECT d.id AS deployment_id,
	       json_agg(e.autoscaling_schedules ORDER BY e.name <> 'production', e.name) AS schedules,
	       COALESCE(` + coldStartsSQL(`replicas r WHERE r.deployment_id = d.id`) + `,
	                ` + coldStartsSQL(`replicas r JOIN deployments md ON md.id = r.deployment_id WHERE md.model_id = d.model_id`) + `,
	                '{}') AS cold_start_seconds
	FROM environments e
	JOIN deployments d ON d.id = e.current_deployment_id AND d.deleted_at IS NULL
	WHERE ` + scheduledEnvironmentSQL + ` AND ($1 = '' OR d.id = $1)
	GROUP BY d.id
	ORDER BY d.id`

// ScheduledDeployments returns every live deployment that environments with an enabled
// autoscaling schedule serve, or only deploymentID's when it is not "" (none when they serve
// it none).
func ScheduledDeployments(ctx context.Context, db sqlx.QueryerContext, deploymentID string) ([]ScheduledDeployment, error) {
	out := []ScheduledDeployment{}
	err := list(ctx, db, &out, scheduledDeploymentsSQL, deploymentID)
	return out, err
}

// SchedulesInForce returns the schedules in force at now, by the ID of the deployment each is
// in force on; a deployment on which its own settings are has none.
func SchedulesInForce(ctx context.Context, db sqlx.QueryerContext, now time.Time, deploymentID string) (map[string]*settings.AutoscalingSchedule, error) {
	scheduled, err := ScheduledDeployments(ctx, db, deploymentID)
	if err != nil {
		return nil, err
	}
	out := map[string]*settings.AutoscalingSchedule{}
	for _, d := range scheduled {
		if s := d.InForce(now); s != nil {
			out[d.DeploymentID] = s
		}
	}
	return out, nil
}
