package store_test

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/jmoiron/sqlx"
	"github.com/lib/pq"
	"github.com/stretchr/testify/require"

	"github.com/modelplane/modelplane"
	"github.com/modelplane/modelplane/settings"
	"github.com/modelplane/modelplane/store"
)

// newScalableDeployment makes a deployment of m with the given settings, in status.
func newScalableDeployment(t *testing.T, db *sqlx.DB, m store.Model, status string, s settings.AutoscalingSettings) store.Deployment {
	t.Helper()
	ctx := context.Background()
	d, err := store.CreateDeployment(ctx, db, store.NewDeployment{ModelID: m.ID, WorkspaceID: m.WorkspaceID, AutoscalingSettings: s})
	require.NoError(t, err)
	_, err = db.ExecContext(ctx, `UPDATE deployments SET status = $2 WHERE id = $1`, d.ID, status)
	require.NoError(t, err)
	return d
}

func addReplica(t *testing.T, db *sqlx.DB, deploymentID, state string) {
	t.Helper()
	ctx := context.Background()
	r, _, err := store.CreateReplica(ctx, db, store.NewReplica{ID: modelplane.NewID(12), DeploymentID: deploymentID})
	require.NoError(t, err)
	_, err = db.ExecContext(ctx, `UPDATE replicas SET state = $2 WHERE id = $1`, r.ID, state)
	require.NoError(t, err)
}

func targetsByID(t *testing.T, db *sqlx.DB, now time.Time) map[string]store.AutoscalingTarget {
	t.Helper()
	ts, err := store.AutoscalingTargets(context.Background(), db, now)
	require.NoError(t, err)
	out := map[string]store.AutoscalingTarget{}
	for _, tg := range ts {
		out[tg.DeploymentID] = tg
	}
	return out
}

func TestAutoscalingTargets_SettingsLiveCountSamplesAndLastRequest(t *testing.T) {
	db := openDB(t)
	ctx := context.Background()
	m := newModel(t, db)
	now := time.Now().UTC().Truncate(time.Second)

	own := settings.DefaultAutoscalingSettings()
	own.MaxReplica, own.AutoscalingWindow = 2, 30
	prod := settings.DefaultAutoscalingSettings()
	prod.MaxReplica, prod.AutoscalingWindow = 7, 10
	staging := settings.DefaultAutoscalingSettings()
	staging.MaxReplica = 9

	// The environments that serve it hold other settings (their own, for when they serve
	// none): the deployment's are the ones that count.
	served := newScalableDeployment(t, db, m, "ACTIVE", prod)
	require.NoError(t, store.SetEnvironmentDeployment(ctx, db, m.ID, modelplane.ProductionEnvironment, served.ID))
	_, err := db.ExecContext(ctx, `UPDATE environments SET autoscaling_settings = $2 WHERE model_id = $1 AND name = 'production'`, m.ID, own)
	require.NoError(t, err)
	_, err = store.CreateEnvironment(ctx, db, store.Environment{ModelID: m.ID, Name: "staging",
		AutoscalingSettings: staging, PromotionSettings: settings.DefaultPromotionSettings()})
	require.NoError(t, err)
	require.NoError(t, store.SetEnvironmentDeployment(ctx, db, m.ID, "staging", served.ID))

	unserved := newScalableDeployment(t, db, m, "DEPLOYING", own)
	empty := newScalableDeployment(t, db, m, "WAKING_UP", own)
	_, err = db.ExecContext(ctx, `UPDATE deployments SET autoscaling_settings = '{}' WHERE id = $1`, empty.ID)
	require.NoError(t, err)
	partial := newScalableDeployment(t, db, m, "UNHEALTHY", own)
	_, err = db.ExecContext(ctx, `UPDATE deployments SET autoscaling_settings = '{"max_replica": 4, "min_replica": null}' WHERE id = $1`, partial.ID)
	require.NoError(t, err)

	deleted := newScalableDeployment(t, db, m, "ACTIVE", own)
	require.NoError(t, store.MarkDeploymentDeleted(ctx, db, m.ID, deleted.ID))
	inactive := newScalableDeployment(t, db, m, "INACTIVE", own)
	building := newScalableDeployment(t, db, m, "BUILDING", own)
	failed := newScalableDeployment(t, db, m, "BUILD_FAILED", own)

	for _, st := range []string{"PENDING", "STARTING", "READY", "READY", "DRAINING", "STOPPING", "STOPPED", "FAILED"} {
		addReplica(t, db, served.ID, st)
	}

	at := func(secondsAgo int) time.Time { return now.Add(-time.Duration(secondsAgo) * time.Second) }
	require.NoError(t, store.InsertLoadSamples(ctx, db, []store.LoadSample{
		// served's window is production's 10 s: (now-10s, now].
		{DeploymentID: served.ID, GatewayID: "g1", At: at(0), Concurrency: 1.5, Requests: 0},
		{DeploymentID: served.ID, GatewayID: "g2", At: at(0), Concurrency: 0.5, Requests: 0},
		{DeploymentID: served.ID, GatewayID: "g1", At: at(3), Concurrency: 1, Requests: 2},
		{DeploymentID: served.ID, GatewayID: "g2", At: at(3), Concurrency: 2, Requests: 1},
		{DeploymentID: served.ID, GatewayID: "g1", At: at(9), Concurrency: 4, Requests: 0},
		{DeploymentID: served.ID, GatewayID: "g1", At: at(10), Concurrency: 8, Requests: 5}, // just outside
		{DeploymentID: served.ID, GatewayID: "g1", At: now.Add(time.Second), Concurrency: 8, Requests: 5},
		// unserved: nothing in its 30 s window; its last request half an hour ago.
		{DeploymentID: unserved.ID, GatewayID: "g1", At: at(1800), Concurrency: 1, Requests: 3},
		{DeploymentID: unserved.ID, GatewayID: "g1", At: at(1700), Concurrency: 1, Requests: 0},
		{DeploymentID: unserved.ID, GatewayID: "g1", At: at(7200), Concurrency: 1, Requests: 9},
		// empty: only a request older than an hour.
		{DeploymentID: empty.ID, GatewayID: "g1", At: at(3601), Concurrency: 1, Requests: 1},
		{DeploymentID: deleted.ID, GatewayID: "g1", At: at(1), Concurrency: 9, Requests: 9},
		{DeploymentID: inactive.ID, GatewayID: "g1", At: at(1), Concurrency: 9, Requests: 9},
	}))

	got := targetsByID(t, db, now)
	for _, excluded := range []store.Deployment{deleted, inactive, building, failed} {
		require.NotContains(t, got, excluded.ID, "deployment %s (status %s or deleted) must not be a target", excluded.ID, excluded.Status)
	}

	s := got[served.ID]
	require.Equal(t, prod, s.Settings, "the deployment's own settings count, not the environments' columns")
	require.Equal(t, m.ID, s.ModelID)
	require.Equal(t, modelplane.DeploymentActive, s.Status)
	require.False(t, s.IsDevelopment)
	require.Equal(t, 6, s.LiveReplicas, "PENDING, STARTING, READY, DRAINING and STOPPING replicas count; STOPPED and FAILED do not")
	require.NotNil(t, s.NewestReplicaAt)
	require.Len(t, s.Samples, 3, "samples within the 10 s window, one per second: %+v", s.Samples)
	want := []store.LoadSecond{
		{At: at(9), Concurrency: 4, Requests: 0},
		{At: at(3), Concurrency: 3, Requests: 3},
		{At: at(0), Concurrency: 2, Requests: 0},
	}
	for i, w := range want {
		require.True(t, w.At.Equal(s.Samples[i].At), "sample %d at %v, want %v", i, s.Samples[i].At, w.At)
		require.InDelta(t, w.Concurrency, s.Samples[i].Concurrency, 1e-9, "sample %d concurrency summed over gateways", i)
		require.Equal(t, w.Requests, s.Samples[i].Requests, "sample %d requests summed over gateways", i)
	}
	require.NotNil(t, s.LastRequestAt)
	require.True(t, at(3).Equal(*s.LastRequestAt), "last request at %v, want %v", *s.LastRequestAt, at(3))

	u := got[unserved.ID]
	require.Equal(t, own, u.Settings, "a deployment no environment serves has its own settings")
	require.Equal(t, 0, u.LiveReplicas)
	require.Nil(t, u.NewestReplicaAt)
	require.Empty(t, u.Samples)
	require.NotNil(t, u.LastRequestAt)
	require.True(t, at(1800).Equal(*u.LastRequestAt), "last request at %v, want %v", *u.LastRequestAt, at(1800))

	e := got[empty.ID]
	require.Equal(t, settings.DefaultAutoscalingSettings(), e.Settings, "{} falls back to the defaults")
	require.Empty(t, e.Samples)
	require.Nil(t, e.LastRequestAt, "a request more than an hour ago is none")

	p := got[partial.ID]
	wantPartial := settings.DefaultAutoscalingSettings()
	wantPartial.MaxReplica = 4
	require.Equal(t, wantPartial, p.Settings, "missing and null fields fall back to the defaults one by one")
}

func TestAutoscalingTargets_EnvironmentColumnDoesNotOverrideTheDeployments(t *testing.T) {
	db := openDB(t)
	ctx := context.Background()
	m := newModel(t, db)
	own := settings.DefaultAutoscalingSettings()
	own.MinReplica, own.MaxReplica = 1, 3
	d := newScalableDeployment(t, db, m, "ACTIVE", own)
	require.NoError(t, store.SetEnvironmentDeployment(ctx, db, m.ID, modelplane.ProductionEnvironment, d.ID))
	_, err := db.ExecContext(ctx, `UPDATE environments SET autoscaling_settings = '{"scale_down_delay": 60}' WHERE model_id = $1`, m.ID)
	require.NoError(t, err)

	require.Equal(t, own, targetsByID(t, db, time.Now())[d.ID].Settings,
		"a deployment that serves an environment scales on its own settings")
}

func TestGiveEnvironmentSettings_CarriesThePreviousDeploymentsOrTheEnvironmentsOwn(t *testing.T) {
	db := openDB(t)
	ctx := context.Background()
	m := newModel(t, db)
	prevAS := settings.DefaultAutoscalingSettings()
	prevAS.MinReplica, prevAS.MaxReplica = 2, 5
	reject := settings.BackpressureRejectOnFull
	prev := newScalableDeployment(t, db, m, "ACTIVE", prevAS)
	require.NoError(t, store.UpdateDeploymentBackpressure(ctx, db, m.ID, prev.ID, settings.RequestBackpressureSettings{Policy: &reject}))
	require.NoError(t, store.SetEnvironmentDeployment(ctx, db, m.ID, modelplane.ProductionEnvironment, prev.ID))
	cand := newScalableDeployment(t, db, m, "ACTIVE", settings.DefaultAutoscalingSettings())

	require.NoError(t, store.GiveEnvironmentSettings(ctx, db, m.ID, modelplane.ProductionEnvironment, cand.ID))
	got, err := store.DeploymentByID(ctx, db, m.ID, cand.ID)
	require.NoError(t, err)
	require.Equal(t, prevAS, got.AutoscalingSettings, "the new deployment takes the previous deployment's autoscaling settings")
	require.Equal(t, reject, got.RequestBackpressureSettings.PolicyOrNone(), "and its backpressure policy")

	// An environment that serves nothing gives its own.
	envAS := settings.DefaultAutoscalingSettings()
	envAS.ConcurrencyTarget = 4
	_, err = store.CreateEnvironment(ctx, db, store.Environment{ModelID: m.ID, Name: "staging",
		AutoscalingSettings: envAS, PromotionSettings: settings.DefaultPromotionSettings()})
	require.NoError(t, err)
	require.NoError(t, store.GiveEnvironmentSettings(ctx, db, m.ID, "staging", cand.ID))
	got, err = store.DeploymentByID(ctx, db, m.ID, cand.ID)
	require.NoError(t, err)
	require.Equal(t, envAS, got.AutoscalingSettings)
	require.Nil(t, got.RequestBackpressureSettings.Policy, "staging sets no policy")

	require.ErrorIs(t, store.GiveEnvironmentSettings(ctx, db, m.ID, "nope", cand.ID), store.ErrNotFound)
}

func TestDropMinReplica_KeepsTheOtherSettingsAndSparesADeploymentThatServes(t *testing.T) {
	db := openDB(t)
	ctx := context.Background()
	m := newModel(t, db)
	s := settings.DefaultAutoscalingSettings()
	s.MinReplica, s.MaxReplica, s.ScaleDownDelay = 2, 4, 30
	demoted := newScalableDeployment(t, db, m, "ACTIVE", s)
	serving := newScalableDeployment(t, db, m, "ACTIVE", s)
	require.NoError(t, store.SetEnvironmentDeployment(ctx, db, m.ID, modelplane.ProductionEnvironment, serving.ID))

	require.NoError(t, store.DropMinReplica(ctx, db, demoted.ID))
	require.NoError(t, store.DropMinReplica(ctx, db, serving.ID))
	want := s
	want.MinReplica = 0
	require.Equal(t, want, targetsByID(t, db, time.Now())[demoted.ID].Settings, "only the floor drops")
	require.Equal(t, s, targetsByID(t, db, time.Now())[serving.ID].Settings, "production's floor is production's")
}

func TestAutoscalingTargets_LeavesOutDeploymentsIdleAtZeroButNotThoseSomethingMayWake(t *testing.T) {
	db := openDB(t)
	ctx := context.Background()
	m := newModel(t, db)
	now := time.Now().UTC().Truncate(time.Second)
	zero := settings.DefaultAutoscalingSettings()
	zero.MinReplica = 0
	floor := zero
	floor.MinReplica, floor.MaxReplica = 1, 2

	idle := newScalableDeployment(t, db, m, "SCALED_TO_ZERO", zero)
	oldLoad := newScalableDeployment(t, db, m, "SCALED_TO_ZERO", zero)
	newLoad := newScalableDeployment(t, db, m, "SCALED_TO_ZERO", zero)
	stale := newScalableDeployment(t, db, m, "SCALED_TO_ZERO", zero)
	floored := newScalableDeployment(t, db, m, "SCALED_TO_ZERO", floor)
	unreadable := newScalableDeployment(t, db, m, "SCALED_TO_ZERO", zero)
	nullFloor := newScalableDeployment(t, db, m, "SCALED_TO_ZERO", zero)
	notObject := newScalableDeployment(t, db, m, "SCALED_TO_ZERO", zero)
	replica := newScalableDeployment(t, db, m, "SCALED_TO_ZERO", zero)
	stopped := newScalableDeployment(t, db, m, "SCALED_TO_ZERO", zero)
	awake := newScalableDeployment(t, db, m, "SCALED_TO_ZERO", zero)
	expired := newScalableDeployment(t, db, m, "SCALED_TO_ZERO", zero)
	queued := newScalableDeployment(t, db, m, "SCALED_TO_ZERO", zero)
	started := newScalableDeployment(t, db, m, "SCALED_TO_ZERO", zero)
	deleted := newScalableDeployment(t, db, m, "SCALED_TO_ZERO", floor)
	active := newScalableDeployment(t, db, m, "ACTIVE", zero)
	inactive := newScalableDeployment(t, db, m, "INACTIVE", floor)
	// Every one got to zero a minute ago, but stale two hours ago.
	_, err := db.ExecContext(ctx, `UPDATE deployments SET updated_at = $2 WHERE model_id = $1`, m.ID, now.Add(-time.Minute))
	require.NoError(t, err)
	_, err = db.ExecContext(ctx, `UPDATE deployments SET updated_at = $2 WHERE id = $1`, stale.ID, now.Add(-2*time.Hour))
	require.NoError(t, err)
	for id, s := range map[string]string{nullFloor.ID: `{"min_replica": null}`,
		notObject.ID: `[{"min_replica": 3}]`} {
		_, err = db.ExecContext(ctx, `UPDATE deployments SET autoscaling_settings = $2 WHERE id = $1`, id, s)
		require.NoError(t, err)
	}
	_, err = db.ExecContext(ctx, `UPDATE deployments SET deleted_at = $2 WHERE id = $1`, deleted.ID, now)
	require.NoError(t, err)

	require.NoError(t, store.InsertLoadSamples(ctx, db, []store.LoadSample{
		{DeploymentID: oldLoad.ID, GatewayID: "g1", At: now.Add(-2 * time.Minute), Concurrency: 1, Requests: 1},
		{DeploymentID: newLoad.ID, GatewayID: "g1", At: now.Add(-time.Second), Concurrency: 1, Requests: 1},
		{DeploymentID: stale.ID, GatewayID: "g1", At: now.Add(-90 * time.Minute), Concurrency: 1, Requests: 1},
	}))
	addReplica(t, db, replica.ID, "PENDING")
	addReplica(t, db, stopped.ID, "STOPPED")
	// Environments with schedules serve five: one in force now with a floor, one in force
	// whose floor is 0, one whose window is hours away, one disabled, and one in force with a
	// floor on an INACTIVE deployment.
	scheduled := newScalableDeployment(t, db, m, "SCALED_TO_ZERO", zero)
	scheduledNoFloor := newScalableDeployment(t, db, m, "SCALED_TO_ZERO", zero)
	scheduledLater := newScalableDeployment(t, db, m, "SCALED_TO_ZERO", zero)
	scheduledOff := newScalableDeployment(t, db, m, "SCALED_TO_ZERO", zero)
	scheduledInactive := newScalableDeployment(t, db, m, "INACTIVE", zero)
	_, err = db.ExecContext(ctx, `UPDATE deployments SET updated_at = $2 WHERE id = ANY($1)`,
		pq.Array([]string{scheduled.ID, scheduledNoFloor.ID, scheduledLater.ID, scheduledOff.ID, scheduledInactive.ID}), now.Add(-time.Minute))
	require.NoError(t, err)
	off := allDay("off", 2, 2)
	off.Enabled = false
	serveWithSchedules(t, db, m, "sched-open", scheduled.ID, allDay("open", 1, 2))
	serveWithSchedules(t, db, m, "sched-no-floor", scheduledNoFloor.ID, allDay("no-floor", 0, 2))
	serveWithSchedules(t, db, m, "sched-later", scheduledLater.ID, hoursFrom(now, 3, 1, 2))
	serveWithSchedules(t, db, m, "sched-off", scheduledOff.ID, off)
	serveWithSchedules(t, db, m, "sched-inactive", scheduledInactive.ID, allDay("inactive", 1, 1))
	for id, until := range map[string]time.Time{awake.ID: now.Add(time.Minute), expired.ID: now.Add(-time.Second),
		deleted.ID: now.Add(time.Minute), inactive.ID: now.Add(time.Minute)} {
		_, err = db.ExecContext(ctx, `INSERT INTO awake_leases (deployment_id, until) VALUES ($1, $2)`, id, until)
		require.NoError(t, err)
	}
	for id, status := range map[string]string{queued.ID: "QUEUED", started.ID: "IN_PROGRESS"} {
		_, err = db.ExecContext(ctx, `
			INSERT INTO async_requests (id, workspace_id, model_id, deployment_id, model_input, status)
			VALUES ($1, $2, $3, $4, '{}', $5)`, modelplane.NewID(16), m.WorkspaceID, m.ID, id, status)
		require.NoError(t, err)
	}

	got := targetsByID(t, db, now)
	for name, d := range map[string]store.Deployment{"nothing": idle, "load from before it got to zero": oldLoad,
		"load from over an hour ago": stale, "min_replica null (the default's 0)": nullFloor,
		"settings that are not an object (the defaults)": notObject, "a STOPPED replica": stopped,
		"an expired lease": expired, "an async request in progress": started, "deleted": deleted, "INACTIVE": inactive,
		"a schedule in force with min_replica 0": scheduledNoFloor, "a schedule hours away": scheduledLater,
		"a disabled schedule": scheduledOff, "INACTIVE and a schedule in force": scheduledInactive} {
		require.NotContains(t, got, d.ID, "a deployment at zero with %s is no target", name)
	}
	for name, d := range map[string]store.Deployment{"load since zero": newLoad, "min_replica 1": floored,
		"a live replica": replica, "an awake lease": awake,
		"a queued async request": queued, "ACTIVE": active, "a schedule in force with min_replica 1": scheduled} {
		require.Contains(t, got, d.ID, "a deployment with %s is a target", name)
	}
	require.Equal(t, 1, got[scheduled.ID].Settings.MinReplica, "the schedule's floor is in force")
	require.Equal(t, "open", got[scheduled.ID].Schedule.ID)

	// The same rows, in the same order, as reading every deployment gives.
	want, err := store.AutoscalingTargetsByScan(ctx, db, now)
	require.NoError(t, err)
	all, err := store.AutoscalingTargets(ctx, db, now)
	require.NoError(t, err)
	require.Equal(t, want, all)

	// One whose min_replica the query cannot read is read, for Decide to refuse, not left out.
	_, err = db.ExecContext(ctx, `UPDATE deployments SET autoscaling_settings = '{"min_replica": "2"}' WHERE id = $1`, unreadable.ID)
	require.NoError(t, err)
	_, err = store.AutoscalingTargets(ctx, db, now)
	require.ErrorContains(t, err, "min_replica")
	_, err = db.ExecContext(ctx, `DELETE FROM deployments WHERE id = $1`, unreadable.ID)
	require.NoError(t, err)
}

// serveWithSchedules points the model's environment env (made unless it is production) at
// the deployment and gives it the schedules, in UTC.
func serveWithSchedules(t *testing.T, db *sqlx.DB, m store.Model, env, deploymentID string, ss ...settings.AutoscalingSchedule) {
	t.Helper()
	ctx := context.Background()
	if env != modelplane.ProductionEnvironment {
		_, err := store.CreateEnvironment(ctx, db, store.Environment{ModelID: m.ID, Name: env,
			AutoscalingSettings: settings.DefaultAutoscalingSettings(), PromotionSettings: settings.DefaultPromotionSettings()})
		require.NoError(t, err)
	}
	require.NoError(t, store.SetEnvironmentDeployment(ctx, db, m.ID, env, deploymentID))
	tz := "UTC"
	require.NoError(t, store.UpdateEnvironmentSchedules(ctx, db, m.ID, env, settings.AutoscalingSchedules{Timezone: &tz, Schedules: ss}))
}

// allDay is an enabled DAILY schedule open all day every day (its end is its start).
func allDay(id string, minReplica, maxReplica int) settings.AutoscalingSchedule {
	return dailySchedule(id, 0, 0, minReplica, maxReplica)
}

// hoursFrom is an enabled DAILY schedule open for an hour every day, from hours whole hours
// after now's hour (UTC).
func hoursFrom(now time.Time, hours, minReplica, maxReplica int) settings.AutoscalingSchedule {
	start := (now.UTC().Hour() + hours) % 24
	return dailySchedule(fmt.Sprintf("in-%dh", hours), start, (start+1)%24, minReplica, maxReplica)
}

func dailySchedule(id string, startHour, endHour, minReplica, maxReplica int) settings.AutoscalingSchedule {
	return settings.AutoscalingSchedule{ID: id, Name: id, Enabled: true, Cadence: settings.CadenceDaily,
		Weekdays: settings.Weekdays(), StartHour: &startHour, EndHour: &endHour,
		AutoscalingSettings: settings.ScheduleAutoscalingSettings{MinReplica: minReplica, MaxReplica: maxReplica}}
}
