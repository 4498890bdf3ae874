package store_test

import (
	"context"
	"testing"
	"time"

	"github.com/jmoiron/sqlx"
	"github.com/stretchr/testify/require"

	"github.com/modelplane/modelplane"
	"github.com/modelplane/modelplane/settings"
	"github.com/modelplane/modelplane/store"
)

// addColdStart adds a replica of the deployment, created at created, READY took seconds later
// (never READY for a negative one).
func addColdStart(t *testing.T, db *sqlx.DB, deploymentID string, created time.Time, seconds int) {
	t.Helper()
	ctx := context.Background()
	r, _, err := store.CreateReplica(ctx, db, store.NewReplica{ID: modelplane.NewID(12), DeploymentID: deploymentID})
	require.NoError(t, err)
	var ready *time.Time
	if seconds >= 0 {
		at := created.Add(time.Duration(seconds) * time.Second)
		ready = &at
	}
	_, err = db.ExecContext(ctx, `UPDATE replicas SET state = 'STOPPED', created_at = $2, ready_at = $3 WHERE id = $1`,
		r.ID, created, ready)
	require.NoError(t, err)
}

func scheduledByID(t *testing.T, db *sqlx.DB, deploymentID string) store.ScheduledDeployment {
	t.Helper()
	got, err := store.ScheduledDeployments(context.Background(), db, deploymentID)
	require.NoError(t, err)
	require.Len(t, got, 1, "deployment %s is served with schedules", deploymentID)
	return got[0]
}

func TestScheduledDeployments_LeadIsTheMedianColdStartOfTheNewestReadyReplicas(t *testing.T) {
	db := openDB(t)
	m := newModel(t, db)
	now := time.Now().UTC().Truncate(time.Second)
	measured := newScalableDeployment(t, db, m, "SCALED_TO_ZERO", settings.DefaultAutoscalingSettings())
	fresh := newScalableDeployment(t, db, m, "SCALED_TO_ZERO", settings.DefaultAutoscalingSettings())
	serveWithSchedules(t, db, m, modelplane.ProductionEnvironment, measured.ID, allDay("a", 1, 1))
	serveWithSchedules(t, db, m, "staging", fresh.ID, allDay("b", 1, 1))

	require.Equal(t, settings.DefaultScheduleLead, scheduledByID(t, db, measured.ID).Lead(),
		"no replica of the model came up yet: the default")

	// The oldest took 500 s and one never came up; the five newest READY took 10 to 50 s.
	addColdStart(t, db, measured.ID, now.Add(-time.Hour), 500)
	for i, s := range []int{30, 10, -1, 50, 20, 40} {
		addColdStart(t, db, measured.ID, now.Add(time.Duration(i-10)*time.Minute), s)
	}
	got := scheduledByID(t, db, measured.ID)
	require.Equal(t, []float64{40, 20, 50, 10, 30}, []float64(got.ColdStartSeconds), "newest first")
	require.Equal(t, 30*time.Second, got.Lead())
	require.Equal(t, 30*time.Second, scheduledByID(t, db, fresh.ID).Lead(),
		"a deployment none of whose replicas came up yet goes by its model's")

	addColdStart(t, db, fresh.ID, now, 7)
	require.Equal(t, 7*time.Second, scheduledByID(t, db, fresh.ID).Lead(), "then by its own")

	// An environment without an enabled schedule leaves its deployment out.
	require.NoError(t, store.UpdateEnvironmentSchedules(context.Background(), db, m.ID, "staging", settings.AutoscalingSchedules{}))
	none, err := store.ScheduledDeployments(context.Background(), db, fresh.ID)
	require.NoError(t, err)
	require.Empty(t, none)
}

func TestAutoscalingTargets_ScheduleInForceReplacesTheBoundsAndTheFieldsItSets(t *testing.T) {
	db := openDB(t)
	ctx := context.Background()
	m := newModel(t, db)
	now := time.Now().UTC().Truncate(time.Second)
	own := settings.DefaultAutoscalingSettings()
	own.MaxReplica, own.ConcurrencyTarget = 3, 4
	d := newScalableDeployment(t, db, m, "ACTIVE", own)
	other := newScalableDeployment(t, db, m, "ACTIVE", own)

	peak := allDay("peak", 2, 6)
	delay := 60
	peak.AutoscalingSettings.ScaleDownDelay = &delay
	// Production's schedule and staging's are both in force: the larger floor wins.
	serveWithSchedules(t, db, m, modelplane.ProductionEnvironment, d.ID, allDay("small", 1, 8), peak)
	serveWithSchedules(t, db, m, "staging", d.ID, allDay("smaller", 1, 1))
	serveWithSchedules(t, db, m, "canary", other.ID, hoursFrom(now, 3, 5, 5))

	got := targetsByID(t, db, now)
	want := own
	want.MinReplica, want.MaxReplica, want.ScaleDownDelay = 2, 6, 60
	require.Equal(t, want, got[d.ID].Settings, "the schedule's bounds and delay, the deployment's concurrency target")
	require.Equal(t, "peak", got[d.ID].Schedule.ID)
	require.Equal(t, own, got[other.ID].Settings, "a schedule hours away leaves the deployment's own settings")
	require.Nil(t, got[other.ID].Schedule)

	inForce, err := store.SchedulesInForce(ctx, db, now, d.ID)
	require.NoError(t, err)
	require.Equal(t, map[string]*settings.AutoscalingSchedule{d.ID: &peak}, inForce, "the API's view is the autoscaler's")
}
