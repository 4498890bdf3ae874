package store

import (
	"context"
	"database/sql/driver"
	"encoding/json"
	"time"

	"github.com/jmoiron/sqlx"
	"github.com/lib/pq"

	"github.com/modelplane/modelplane"
	"github.com/modelplane/modelplane/settings"
)

// AutoscalingTarget is a deployment the autoscaler may scale, with everything it decides on.
type AutoscalingTarget struct {
	DeploymentID  string                      `db:"deployment_id"`
	ModelID       string                      `db:"model_id"`
	WorkspaceID   string                      `db:"workspace_id"`
	IsDevelopment bool                        `db:"is_development"`
	Status        modelplane.DeploymentStatus `db:"status"`
	// Settings are the deployment's autoscaling settings, each field missing from the stored
	// JSON taken from DefaultAutoscalingSettings.
	Settings settings.AutoscalingSettings `db:"settings"`
	// LiveReplicas counts the replicas PENDING, STARTING, READY, DRAINING or STOPPING: the
	// ones the deployment runs, is about to run or is still stopping. Counting those on
	// their way out keeps the loop from reading a scale-down in progress (by a promotion,
	// say) as a deployment at zero with recent load, and scaling it straight back up.
	LiveReplicas int `db:"live_replicas"`
	// Samples are the load per second within Settings.AutoscalingWindow, summed over
	// gateways, oldest first. Seconds without traffic have no sample.
	Samples LoadSeconds `db:"samples"`
	// LastRequestAt is the last second with a request within the hour; nil when none.
	LastRequestAt *time.Time `db:"last_request_at"`
	// NewestReplicaAt is when the newest of the live replicas was created; nil when none.
	NewestReplicaAt *time.Time `db:"newest_replica_at"`
	// AsyncQueued counts the deployment's async requests waiting in its queue.
	AsyncQueued int `db:"async_queued"`
	// GPUsPerReplica is the GPUs one more replica of the deployment would hold: its
	// recorded GPUs per replica, or the most a live replica of it holds when that is more.
	GPUsPerReplica int `db:"gpus_per_replica"`
	// KeptAwake says a lease (KeepAwake) holds the deployment at one replica at least.
	KeptAwake bool `db:"kept_awake"`
	// ZeroSince is when a deployment SCALED_TO_ZERO got there (its last status change); nil
	// in any other status.
	ZeroSince *time.Time `db:"zero_since"`
	// Schedule is the autoscaling schedule in force on the deployment (SchedulesInForce), whose
	// settings Settings has in place of its own; nil when its own are in force.
	Schedule *settings.AutoscalingSchedule `db:"-"`
}

// LoadSecond is a deployment's load over one second, summed over the gateways that saw it.
type LoadSecond struct {
	At          time.Time `json:"at"`
	Concurrency float64   `json:"concurrency"`
	Requests    int       `json:"requests"`
}

// LoadSeconds is a JSON array column of LoadSecond.
type LoadSeconds []LoadSecond

// Value stores the seconds as JSON.
func (l LoadSeconds) Value() (driver.Value, error) { return json.Marshal(l) }

// Scan reads the seconds from JSON.
func (l *LoadSeconds) Scan(src any) error { return modelplane.ScanJSON(src, l) }

// effectiveSettingsSQL is deployment d's stored autoscaling settings as a JSON object, nulls
// and non-objects counting as missing; callers put the defaults first. The deployment's row
// is the one truth: an environment shows and changes the settings of the deployment it
// serves.
const effectiveSettingsSQL = `
	jsonb_strip_nulls(CASE WHEN jsonb_typeof(d.autoscaling_settings) = 'object'
	                       THEN d.autoscaling_settings ELSE '{}' END)`

// wakeableAtZeroSQL holds for a deployment d at zero that a tick could scale up: a floor above
// zero (or settings the query cannot read, left to Decide), a schedule in force with a floor
// above zero (its ID in $4), a lease keeping it awake, a live replica, load since it got to
// zero, or queued async requests. The others would only be read and decided "steady" every
// tick, and are not returned. The tick checks it only on the candidates
// (autoscalingCandidatesSQL), a few index probes each.
var wakeableAtZeroSQL = `(
	COALESCE(CASE WHEN jsonb_typeof(($2::jsonb || ` + effectiveSettingsSQL + `)->'min_replica') = 'number'
	              THEN (($2::jsonb || ` + effectiveSettingsSQL + `)->>'min_replica')::numeric > 0 END, true)
	OR d.id = ANY($4)
	OR EXISTS (SELECT 1 FROM awake_leases l WHERE l.deployment_id = d.id AND l.until > $1)
	OR EXISTS (SELECT 1 FROM replicas r WHERE r.deployment_id = d.id AND r.state IN ` + sqlLiveReplicaStates + `)
	OR EXISTS (SELECT 1 FROM load_samples ls WHERE ls.deployment_id = d.id AND ls.at >= d.updated_at
	           AND ls.at <= $1 AND ls.at > $1 - interval '1 hour')
	OR EXISTS (SELECT 1 FROM async_requests a WHERE a.deployment_id = d.id AND a.status = ` + sqlAsyncQueued + `))`

// floorAtZeroSQL holds for a deployment whose stored settings give it a floor above zero, or a
// min_replica the query cannot read, where the defaults' min_replica is 0: the floor part of
// wakeableAtZeroSQL then. It is the predicate of the index deployments_floor_at_zero
// (migration 00026), spelt the same so that the planner uses it; the column is unqualified
// for that.
const floorAtZeroSQL = `
	CASE COALESCE(jsonb_typeof(CASE WHEN jsonb_typeof(autoscaling_settings) = 'object'
	                                THEN autoscaling_settings->'min_replica' END), 'null')
	WHEN 'null' THEN false
	WHEN 'number' THEN (autoscaling_settings->>'min_replica')::numeric > 0
	ELSE true END`

// sampledDeploymentsSQL lists the deployments that have load samples, one index probe each (a
// skip scan of load_samples' primary key), however many samples they have. Samples are kept
// for LoadSampleRetention (2 hours by default), so a deployment idle longer has none.
var sampledDeploymentsSQL = `
	WITH RECURSIVE s AS (
	    (SELECT deployment_id FROM load_samples ORDER BY deployment_id LIMIT 1)
	    UNION ALL
	    SELECT (SELECT ls.deployment_id FROM load_samples ls
	            WHERE ls.deployment_id > s.deployment_id ORDER BY ls.deployment_id LIMIT 1)
	    FROM s WHERE s.deployment_id IS NOT NULL)
	SELECT deployment_id FROM s WHERE deployment_id IS NOT NULL`

// autoscalingCandidatesSQL lists (with repeats) every deployment that may be a target where
// the defaults' min_replica is 0, each from an index of its own, never scanning the
// deployments: those in an autoscaled status but SCALED_TO_ZERO (deployments_autoscaled_awake),
// those at zero with a floor (deployments_floor_at_zero), those a schedule in force gives a
// floor ($4, read from environments_scheduled), those with a live awake lease
// (awake_leases_until), a live replica (replicas_live), queued async requests (a skip scan of
// async_requests_queue) or load samples (a skip scan of load_samples' primary key). It holds
// more than the targets (an awake deployment's live replicas, load from before zero); the
// targets' own conditions are checked on each.
var autoscalingCandidatesSQL = `
	SELECT d.id FROM deployments d
	WHERE d.deleted_at IS NULL AND d.status IN ` + sqlAutoscaledAwakeStatuses + `
	UNION ALL
	SELECT d.id FROM deployments d
	WHERE d.deleted_at IS NULL AND d.status = ` + sqlDeploymentScaledToZero + ` AND ` + floorAtZeroSQL + `
	UNION ALL
	SELECT unnest($4::text[])
	UNION ALL
	SELECT l.deployment_id FROM awake_leases l WHERE l.until > $1
	UNION ALL
	SELECT r.deployment_id FROM replicas r WHERE r.state IN ` + sqlLiveReplicaStates + `
	UNION ALL
	SELECT q.deployment_id FROM (` + queuedDeploymentsSQL + `) q
	UNION ALL
	SELECT s.deployment_id FROM (` + sampledDeploymentsSQL + `) s`

// autoscalingTargetsSQL reads every target in one statement, from the deployments that
// candidates (a condition on d) lets through.
//
// With autoscalingCandidatesSQL, a tick reads the deployments not at zero and, of those at
// zero, only the ones something could wake or that have load samples kept: one probe of the
// deployments' primary key for each candidate, then per target an index probe on
// replicas_live, two on load_samples' primary key (deployment_id, at) and one on the async
// queue, and for one at zero the probes of wakeableAtZeroSQL. The deployments idle at zero
// cost nothing. Without it (the defaults' min_replica above zero, where every deployment at
// zero is a target), it reads every deployment's row.
//
// Settings are the deployment's own merged over the defaults ($2) as JSON objects: a stored
// {} (the column default) or an object missing fields falls back field by field, and nulls
// or non-objects count as missing.
func autoscalingTargetsSQL(candidates string) string {
	return `
	WITH targets AS (
		SELECT d.id, d.model_id, d.workspace_id, d.is_development, d.status, d.gpus_per_replica,
		       CASE WHEN d.status = ` + sqlDeploymentScaledToZero + ` THEN d.updated_at END AS zero_since,
		       $2::jsonb || (` + effectiveSettingsSQL + `) AS settings,
		       EXISTS (SELECT 1 FROM awake_leases l WHERE l.deployment_id = d.id AND l.until > $1) AS kept_awake
		FROM deployments d
		WHERE ` + candidates + ` AND d.deleted_at IS NULL AND d.status = ANY($3)
		  AND (d.status <> ` + sqlDeploymentScaledToZero + ` OR ` + wakeableAtZeroSQL + `)
	)
	SELECT t.id AS deployment_id, t.model_id, t.workspace_id, t.is_development, t.status, t.settings, t.zero_since,
	       t.kept_awake, r.live_replicas, r.newest_replica_at, GREATEST(t.gpus_per_replica, r.most_gpus) AS gpus_per_replica,
	       (SELECT COALESCE(json_agg(json_build_object('at', s.at, 'concurrency', s.concurrency,
	                                                    'requests', s.requests) ORDER BY s.at), '[]')
	        FROM (SELECT ls.at, sum(ls.concurrency) AS concurrency, sum(ls.requests) AS requests
	              FROM load_samples ls
	              WHERE ls.deployment_id = t.id AND ls.at <= $1
	                AND ls.at > $1 - make_interval(secs => LEAST(GREATEST(
	                        COALESCE((t.settings->>'autoscaling_window')::numeric, 0), 1), 3600))
	              GROUP BY ls.at) s) AS samples,
	       (SELECT max(ls.at) FROM load_samples ls
	        WHERE ls.deployment_id = t.id AND ls.requests > 0
	          AND ls.at <= $1 AND ls.at > $1 - interval '1 hour') AS last_request_at,
	       (SELECT count(*) FROM async_requests a
	        WHERE a.deployment_id = t.id AND a.status = ` + sqlAsyncQueued + `) AS async_queued
	FROM targets t
	CROSS JOIN LATERAL (
		SELECT count(*) AS live_replicas, max(r.created_at) AS newest_replica_at,
		       COALESCE(max((SELECT count(*) FROM gpus g WHERE g.assigned_replica_id = r.id)), 0) AS most_gpus
		FROM replicas r
		WHERE r.deployment_id = t.id AND r.state IN ` + sqlLiveReplicaStates + `
	) r
	ORDER BY t.id`
}

var (
	// autoscalingTargetsQuery reads the targets from the candidates, where the defaults'
	// min_replica is 0.
	autoscalingTargetsQuery = autoscalingTargetsSQL(`d.id = ANY(ARRAY(` + autoscalingCandidatesSQL + `))`)
	// autoscalingTargetsScanQuery reads them from every deployment, where the defaults'
	// min_replica is above zero and so every deployment at zero a target.
	autoscalingTargetsScanQuery = autoscalingTargetsSQL(`true`)
)

// AutoscalingTargets returns every deployment the autoscaler may scale at now: live (not
// deleted), in a status where it serves or is coming up, and when at zero something that
// could wake it (wakeableAtZeroSQL), found from the candidates' indexes rather than by reading
// every deployment (autoscalingTargetsSQL), with its effective settings (those of the
// schedule in force on it, if one is, in place of its own), live replica count, load samples
// within its window, last request within the hour and newest live replica.
func AutoscalingTargets(ctx context.Context, db sqlx.QueryerContext, now time.Time) ([]AutoscalingTarget, error) {
	return autoscalingTargets(ctx, db, now, false)
}

// autoscalingTargets is AutoscalingTargets, read from every deployment when byScan is set or
// the defaults call for it.
func autoscalingTargets(ctx context.Context, db sqlx.QueryerContext, now time.Time, byScan bool) ([]AutoscalingTarget, error) {
	def := settings.DefaultAutoscalingSettings()
	defaults, err := json.Marshal(def)
	if err != nil {
		return nil, err
	}
	query := autoscalingTargetsQuery
	if byScan || def.MinReplica > 0 {
		query = autoscalingTargetsScanQuery
	}
	// Which schedule is in force is worked out here, on the few deployments that
	// environments with schedules serve; those it gives a floor are candidates at zero.
	inForce, err := SchedulesInForce(ctx, db, now, "")
	if err != nil {
		return nil, err
	}
	floored := []string{}
	for id, s := range inForce {
		if s.AutoscalingSettings.MinReplica > 0 {
			floored = append(floored, id)
		}
	}
	out := []AutoscalingTarget{}
	if err := list(ctx, db, &out, query, now, string(defaults), sqlArray(modelplane.AutoscaledDeploymentStatuses()),
		pq.Array(floored)); err != nil {
		return out, err
	}
	for i := range out {
		if s := inForce[out[i].DeploymentID]; s != nil {
			out[i].Schedule = s
			out[i].Settings = settings.Applied(out[i].Settings, s)
		}
	}
	return out, nil
}
