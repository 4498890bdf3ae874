package autoscaler

import (
	"context"
	"testing"
	"time"

	"github.com/jmoiron/sqlx"
	"github.com/stretchr/testify/require"

	"github.com/modelplane/modelplane"
	"github.com/modelplane/modelplane/settings"
	"github.com/modelplane/modelplane/store"
	"github.com/modelplane/modelplane/workflows/contract"
)

// hourWindow is an enabled DAILY schedule, every weekday, open for the hour (UTC) that open
// starts, with the replica bounds given.
func hourWindow(id string, open time.Time, minReplica, maxReplica int) settings.AutoscalingSchedule {
	start, end := open.UTC().Hour(), (open.UTC().Hour()+1)%24
	return settings.AutoscalingSchedule{ID: id, Name: id, Enabled: true, Cadence: settings.CadenceDaily,
		Weekdays: settings.Weekdays(), StartHour: &start, EndHour: &end,
		AutoscalingSettings: settings.ScheduleAutoscalingSettings{MinReplica: minReplica, MaxReplica: maxReplica}}
}

// scheduleProduction points the model's production environment at the deployment and gives
// it the schedules, in UTC.
func scheduleProduction(t *testing.T, db *sqlx.DB, modelID, deploymentID string, ss ...settings.AutoscalingSchedule) {
	t.Helper()
	ctx := context.Background()
	require.NoError(t, store.SetEnvironmentDeployment(ctx, db, modelID, modelplane.ProductionEnvironment, deploymentID))
	tz := "UTC"
	require.NoError(t, store.UpdateEnvironmentSchedules(ctx, db, modelID, modelplane.ProductionEnvironment,
		settings.AutoscalingSchedules{Timezone: &tz, Schedules: ss}))
}

// addColdStarts records stopped replicas of the deployment that took the given seconds from
// creation to READY.
func addColdStarts(t *testing.T, db *sqlx.DB, deploymentID string, seconds ...int) {
	t.Helper()
	ctx := context.Background()
	for _, s := range seconds {
		r, _, err := store.CreateReplica(ctx, db, store.NewReplica{ID: modelplane.NewID(12), DeploymentID: deploymentID})
		require.NoError(t, err)
		_, err = db.ExecContext(ctx, `UPDATE replicas SET state = 'STOPPED', created_at = now() - interval '1 day',
			ready_at = now() - interval '1 day' + make_interval(secs => $2) WHERE id = $1`, r.ID, s)
		require.NoError(t, err)
	}
}

// addPending adds n PENDING replicas of the deployment, as its workflow does on a Scale.
func addPending(t *testing.T, db *sqlx.DB, deploymentID string, n int) {
	t.Helper()
	for range n {
		_, _, err := store.CreateReplica(context.Background(), db, store.NewReplica{ID: modelplane.NewID(12), DeploymentID: deploymentID})
		require.NoError(t, err)
	}
}

// nextWindow is the start of an hour a few hours from now, when the tests' windows open: the
// replicas they make now are long started by then.
func nextWindow() time.Time { return time.Now().UTC().Truncate(time.Hour).Add(3 * time.Hour) }

func TestTick_ScheduleWakesADeploymentAtZeroItsColdStartBeforeItsWindowOpens(t *testing.T) {
	db := openDB(t)
	ctx := context.Background()
	m := newModel(t, db)
	open := nextWindow()
	measured := newDeployment(t, db, m, "SCALED_TO_ZERO", linear(8), 0)
	addColdStarts(t, db, measured.ID, 40, 50, 45) // its lead: 45 s
	scheduleProduction(t, db, m.ID, measured.ID, hourWindow("peak", open, 2, 4))
	// Another model's deployment that never had a replica READY: the default lead.
	other, err := store.CreateModel(ctx, db, m.WorkspaceID, "other")
	require.NoError(t, err)
	unmeasured := newDeployment(t, db, other, "SCALED_TO_ZERO", linear(8), 0)
	scheduleProduction(t, db, other.ID, unmeasured.ID, hourWindow("peak", open, 1, 1))

	byWorkflow := map[string]string{contract.DeploymentWorkflowID(measured.ID): measured.ID,
		contract.DeploymentWorkflowID(unmeasured.ID): unmeasured.ID}

	tc := &fakeTemporal{}
	l := New(Options{DB: db, Temporal: tc, Logger: discardLogger()})
	lead := int(settings.DefaultScheduleLead / time.Second)
	want := map[int][]scaleCall{
		-lead: {{contract.DeploymentWorkflowID(unmeasured.ID), 1}},
		-45:   {{contract.DeploymentWorkflowID(measured.ID), 2}},
	}
	for s := -2 * lead; s <= 5; s++ {
		require.NoError(t, l.tick(ctx, open.Add(time.Duration(s)*time.Second)))
		calls := tc.takeCalls(measured.ID, unmeasured.ID)
		require.Equal(t, want[s], calls,
			"Scale sent %ds from the window's opening: each deployment wakes to the schedule's min_replica "+
				"its cold start (measured 45 s, never measured %ds) before it", s, lead)
		for _, c := range calls { // the workflow places the replicas
			addPending(t, db, byWorkflow[c.WorkflowID], c.Replicas)
		}
	}
}

func TestTick_ScheduleFloorHoldsWhileOpenThenTheBaselineComesBackAfterItsDelay(t *testing.T) {
	db := openDB(t)
	ctx := context.Background()
	m := newModel(t, db)
	open := nextWindow()
	baseline := linear(8) // scale_down_delay 300 s
	baseline.MinReplica = 1
	// Its one replica was READY as it was made (0 s) and two took 30 s: its lead is 30 s.
	d := newDeployment(t, db, m, "ACTIVE", baseline, 1)
	addColdStarts(t, db, d.ID, 30, 30)
	scheduleProduction(t, db, m.ID, d.ID, hourWindow("peak", open, 3, 4))

	tc := &fakeTemporal{}
	l := New(Options{DB: db, Temporal: tc, Logger: discardLogger()})
	at := func(s int) time.Time { return open.Add(time.Duration(s) * time.Second) }
	require.NoError(t, l.tick(ctx, at(-31)))
	require.Empty(t, tc.takeCalls(d.ID), "before the lead time, the baseline's floor of 1")
	require.NoError(t, l.tick(ctx, at(-30)))
	require.Equal(t, []scaleCall{{contract.DeploymentWorkflowID(d.ID), 3}}, tc.takeCalls(d.ID), "the schedule's floor, 30 s early")
	addReady(t, db, d.ID, 2)
	require.NoError(t, l.tick(ctx, at(1800)))
	require.Empty(t, tc.takeCalls(d.ID), "the floor holds while the window is open")

	closed := 3600
	for s := closed; s < closed+300; s += 30 {
		require.NoError(t, l.tick(ctx, at(s)))
		require.Empty(t, tc.takeCalls(d.ID), "%ds after the window closed: within the baseline's scale_down_delay", s-closed)
	}
	require.NoError(t, l.tick(ctx, at(closed+300)))
	require.Equal(t, []scaleCall{{contract.DeploymentWorkflowID(d.ID), 2}}, tc.takeCalls(d.ID),
		"after the delay, down by the baseline's max_scale_down_rate towards its floor")
}

func TestTick_ScheduleMaxReplicaCapsTheLoad(t *testing.T) {
	db := openDB(t)
	ctx := context.Background()
	m := newModel(t, db)
	open := nextWindow()
	capped := newDeployment(t, db, m, "ACTIVE", linear(8), 1)
	free := newDeployment(t, db, m, "ACTIVE", linear(8), 1)
	scheduleProduction(t, db, m.ID, capped.ID, hourWindow("cap", open, 1, 3))
	now := open.Add(10 * time.Minute)
	for _, d := range []store.Deployment{capped, free} {
		load(t, db, d.ID, now, 20, 3) // 6 in flight
	}

	tc := &fakeTemporal{}
	l := New(Options{DB: db, Temporal: tc, Logger: discardLogger()})
	require.NoError(t, l.tick(ctx, now))
	require.ElementsMatch(t, []scaleCall{{contract.DeploymentWorkflowID(capped.ID), 3}, {contract.DeploymentWorkflowID(free.ID), 6}},
		tc.takeCalls(capped.ID, free.ID), "load for 6: the schedule's max_replica of 3 caps it; without a schedule, 6")
}

func TestTick_DisabledScheduleDoesNothing(t *testing.T) {
	db := openDB(t)
	ctx := context.Background()
	m := newModel(t, db)
	open := nextWindow()
	d := newDeployment(t, db, m, "SCALED_TO_ZERO", linear(8), 0)
	off := hourWindow("off", open, 2, 2)
	off.Enabled = false
	scheduleProduction(t, db, m.ID, d.ID, off)

	tc := &fakeTemporal{}
	l := New(Options{DB: db, Temporal: tc, Logger: discardLogger()})
	for _, s := range []int{-60, 0, 1800} {
		require.NoError(t, l.tick(ctx, open.Add(time.Duration(s)*time.Second)))
	}
	require.Empty(t, tc.takeCalls(d.ID), "a disabled schedule's window wakes nothing")
}
