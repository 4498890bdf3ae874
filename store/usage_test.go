package store_test

import (
	"context"
	"math/rand/v2"
	"testing"
	"time"

	"github.com/jmoiron/sqlx"
	"github.com/stretchr/testify/require"

	"github.com/modelplane/modelplane"
	"github.com/modelplane/modelplane/store"
)

// interval is one usage_intervals row as a test reads it.
type interval struct {
	ReplicaID      string     `db:"replica_id"`
	ModelName      string     `db:"model_name"`
	DeploymentName string     `db:"deployment_name"`
	GPUCount       int        `db:"gpu_count"`
	GPUType        string     `db:"gpu_type"`
	MIGProfile     string     `db:"mig_profile"`
	StartedAt      time.Time  `db:"started_at"`
	EndedAt        *time.Time `db:"ended_at"`
}

func intervalsOf(t *testing.T, db *sqlx.DB, replicaID string) []interval {
	t.Helper()
	var out []interval
	require.NoError(t, db.Select(&out, `
		SELECT replica_id, model_name, deployment_name, gpu_count, gpu_type, mig_profile, started_at, ended_at
		FROM usage_intervals WHERE replica_id = $1 ORDER BY id`, replicaID))
	return out
}

// placeOn records a replica of the deployment on the node, holding the GPUs.
func placeOn(t *testing.T, db *sqlx.DB, deploymentID, nodeID string, gpus ...string) store.Replica {
	t.Helper()
	r, created, err := store.CreateReplica(context.Background(), db, store.NewReplica{
		ID: modelplane.NewID(12), DeploymentID: deploymentID, NodeID: nodeID, GPUUUIDs: gpus})
	require.NoError(t, err)
	require.True(t, created)
	return r
}

// backdate moves the replica's open interval's start back by d, as if it had been placed then.
func backdate(t *testing.T, db *sqlx.DB, replicaID string, d time.Duration) {
	t.Helper()
	_, err := db.Exec(`UPDATE usage_intervals SET started_at = started_at - $2 * interval '1 second'
		WHERE replica_id = $1 AND ended_at IS NULL`, replicaID, d.Seconds())
	require.NoError(t, err)
}

func TestUsage_ReplicaThatRestartsInPlaceIsOneIntervalFromPlacementToStop(t *testing.T) {
	db := openDB(t)
	ctx := context.Background()
	n := newNode(t, db)
	d := newDeployment(t, db)
	r := placeOn(t, db, d.ID, n.ID, "GPU-"+n.Name)

	got := intervalsOf(t, db, r.ID)
	require.Len(t, got, 1, "placement opens the interval")
	require.Nil(t, got[0].EndedAt)
	require.True(t, got[0].StartedAt.Equal(r.CreatedAt), "the interval starts at placement: %v, placed %v", got[0].StartedAt, r.CreatedAt)
	require.Equal(t, 1, got[0].GPUCount)
	require.Equal(t, "H100", got[0].GPUType)
	require.Empty(t, got[0].MIGProfile)
	require.Equal(t, "echo", got[0].ModelName)
	require.Equal(t, d.Name, got[0].DeploymentName)

	for _, s := range []modelplane.ReplicaState{modelplane.ReplicaStarting, modelplane.ReplicaReady,
		modelplane.ReplicaStarting, modelplane.ReplicaReady} {
		require.NoError(t, store.SetReplicaState(ctx, db, r.ID, s, "10.0.0.1:9000", ""))
	}
	require.NoError(t, store.MarkReplicaReady(ctx, db, r.ID, "10.0.0.1:9000", "/predict", ""))
	got = intervalsOf(t, db, r.ID)
	require.Len(t, got, 1, "a restart in place keeps the one interval")
	require.Nil(t, got[0].EndedAt, "a live replica's interval is open")

	require.NoError(t, store.SetReplicaState(ctx, db, r.ID, modelplane.ReplicaStopped, "", ""))
	require.NoError(t, store.SetReplicaState(ctx, db, r.ID, modelplane.ReplicaFailed, "", "late report"))
	stopped, err := store.ReplicaByID(ctx, db, r.ID)
	require.NoError(t, err)
	got = intervalsOf(t, db, r.ID)
	require.Len(t, got, 1)
	require.NotNil(t, got[0].EndedAt, "a stopped replica's interval is closed")
	require.True(t, got[0].EndedAt.Equal(*stopped.StoppedAt), "it ends when the replica stopped: %v, stopped %v", *got[0].EndedAt, *stopped.StoppedAt)

	// A retried placement of the same replica opens nothing more.
	_, created, err := store.CreateReplica(ctx, db, store.NewReplica{ID: r.ID, DeploymentID: d.ID, NodeID: n.ID})
	require.NoError(t, err)
	require.False(t, created)
	require.Len(t, intervalsOf(t, db, r.ID), 1)
}

func TestUsage_ReplicasOfADeadNodeEndAtItsLastHeartbeat(t *testing.T) {
	db := openDB(t)
	ctx := context.Background()
	dead, alive := newNode(t, db), newNode(t, db)
	d := newDeployment(t, db)
	lost := placeOn(t, db, d.ID, dead.ID, "GPU-"+dead.Name)
	kept := placeOn(t, db, d.ID, alive.ID, "GPU-"+alive.Name)
	backdate(t, db, lost.ID, 10*time.Minute)
	backdate(t, db, kept.ID, 10*time.Minute)
	var lastBeat time.Time
	require.NoError(t, db.Get(&lastBeat, `UPDATE nodes SET last_heartbeat_at = now() - interval '2 minutes'
		WHERE id = $1 RETURNING last_heartbeat_at`, dead.ID))

	require.NoError(t, store.SetReplicaState(ctx, db, lost.ID, modelplane.ReplicaFailed, "", "the replica's node is down"))
	require.NoError(t, store.SetReplicaState(ctx, db, kept.ID, modelplane.ReplicaStopped, "", ""))

	got := intervalsOf(t, db, lost.ID)
	require.Len(t, got, 1)
	require.NotNil(t, got[0].EndedAt)
	require.True(t, got[0].EndedAt.Equal(lastBeat), "a dead node's replica ends at its last heartbeat %v, not %v", lastBeat, *got[0].EndedAt)

	stopped, err := store.ReplicaByID(ctx, db, kept.ID)
	require.NoError(t, err)
	got = intervalsOf(t, db, kept.ID)
	require.NotNil(t, got[0].EndedAt)
	require.True(t, got[0].EndedAt.Equal(*stopped.StoppedAt), "a live node's replica ends when it stops")

	// A node that died before the replica was placed charges nothing.
	late := placeOn(t, db, d.ID, dead.ID)
	require.NoError(t, store.SetReplicaState(ctx, db, late.ID, modelplane.ReplicaFailed, "", "down"))
	got = intervalsOf(t, db, late.ID)
	require.True(t, got[0].EndedAt.Equal(got[0].StartedAt), "started %v ended %v", got[0].StartedAt, *got[0].EndedAt)
}

func TestUsage_DeletedDeploymentAndDeletedModelKeepTheirUsageAndNames(t *testing.T) {
	db := openDB(t)
	ctx := context.Background()
	n := newNode(t, db)
	d := newDeployment(t, db)
	other, err := store.CreateDeployment(ctx, db, store.NewDeployment{ModelID: d.ModelID, WorkspaceID: d.WorkspaceID})
	require.NoError(t, err)
	stoppedFirst := placeOn(t, db, d.ID, n.ID, "GPU-"+n.Name)
	stillLive := placeOn(t, db, other.ID, n.ID)
	backdate(t, db, stoppedFirst.ID, time.Hour)
	backdate(t, db, stillLive.ID, time.Hour)

	// A deleted deployment: its replicas stop, then it becomes a tombstone.
	require.NoError(t, store.SetReplicaState(ctx, db, stoppedFirst.ID, modelplane.ReplicaStopped, "", ""))
	require.NoError(t, store.MarkDeploymentDeleted(ctx, db, d.ModelID, d.ID))
	// A deleted model takes its replica rows with it, live or not.
	require.NoError(t, store.DeleteModel(ctx, db, d.WorkspaceID, d.ModelID))
	_, err = store.ReplicaByID(ctx, db, stillLive.ID)
	require.ErrorIs(t, err, store.ErrNotFound)
	got := intervalsOf(t, db, stillLive.ID)
	require.Len(t, got, 1)
	require.NotNil(t, got[0].EndedAt, "a replica whose row went with its model ends then")

	now := time.Now()
	rows, err := store.UsageReport(ctx, db, store.UsageQuery{WorkspaceID: d.WorkspaceID,
		Start: now.Add(-3 * time.Hour), End: now.Add(time.Hour), GroupBy: store.UsageByDeployment})
	require.NoError(t, err)
	byDeployment := map[string]float64{}
	gpuSeconds := map[string]float64{}
	for _, r := range rows {
		require.Equal(t, d.ModelID, r.ModelID)
		require.Equal(t, "echo", r.ModelName, "a deleted model's usage keeps its name")
		byDeployment[r.DeploymentName] += r.ReplicaSeconds
		gpuSeconds[r.DeploymentName] += r.GPUSeconds
		require.Empty(t, r.GPUType, "grouped by deployment, the GPU type is folded away")
	}
	require.InDelta(t, 3600, byDeployment[d.Name], 2, "the deleted deployment's hour: %v", rows)
	require.InDelta(t, 3600, gpuSeconds[d.Name], 2, "one GPU for the hour")
	require.InDelta(t, 3600, byDeployment[other.Name], 2, "the deleted model's other deployment's hour")
	require.Zero(t, gpuSeconds[other.Name], "a replica without GPUs counts no GPU-seconds")
}

func TestUsage_ReplicaOnAMIGInstanceCountsUnderItsProfile(t *testing.T) {
	db := openDB(t)
	ctx := context.Background()
	name := "node-" + modelplane.NewID(6)
	n, err := store.RecordHeartbeat(ctx, db, store.NodeReport{
		Name: name, AgentID: "agent-" + name, AgentURL: "http://" + name + ":7070", GPUProfile: "fake",
		TokenSHA256: make([]byte, 32),
		GPUs: []store.GPU{{UUID: "GPU-" + name, Name: "NVIDIA H200", MIGMode: true, Healthy: true,
			MIGInstances: []store.GPU{{UUID: "MIG-" + name, MIGProfile: "1g.18gb"}}}},
	})
	require.NoError(t, err)
	d := newDeployment(t, db)
	r := placeOn(t, db, d.ID, n.ID, "MIG-"+name)
	backdate(t, db, r.ID, 30*time.Minute)
	require.NoError(t, store.SetReplicaState(ctx, db, r.ID, modelplane.ReplicaStopped, "", ""))

	got := intervalsOf(t, db, r.ID)
	require.Equal(t, 1, got[0].GPUCount)
	require.Equal(t, "NVIDIA H200", got[0].GPUType, "a MIG instance is of its parent GPU's type")
	require.Equal(t, "1g.18gb", got[0].MIGProfile)

	now := time.Now()
	rows, err := store.UsageReport(ctx, db, store.UsageQuery{WorkspaceID: d.WorkspaceID,
		Start: now.Add(-2 * time.Hour), End: now.Add(time.Hour), GroupBy: store.UsageByGPUType})
	require.NoError(t, err)
	var sum float64
	for _, row := range rows {
		require.Equal(t, "NVIDIA H200", row.GPUType)
		require.Equal(t, "1g.18gb", row.MIGProfile)
		require.Empty(t, row.ModelID+row.DeploymentID, "grouped by GPU type, the model and deployment are folded away")
		sum += row.GPUSeconds
	}
	require.InDelta(t, 1800, sum, 2)
}

// span is a replica's life [from, to) holding gpus GPUs.
type span struct {
	from, to time.Time
	gpus     int
}

// writeIntervals records a usage interval of the deployment for each span, directly.
func writeIntervals(t *testing.T, db *sqlx.DB, d store.Deployment, spans []span) {
	t.Helper()
	for _, s := range spans {
		_, err := db.Exec(`
			INSERT INTO usage_intervals (replica_id, workspace_id, model_id, model_name, deployment_id, deployment_name,
			                             gpu_count, gpu_type, started_at, ended_at)
			VALUES ($1, $2, $3, 'echo', $4, $5, $6, 'NVIDIA H200', $7, $8)`,
			modelplane.NewID(12), d.WorkspaceID, d.ModelID, d.ID, d.Name, s.gpus, s.from, s.to)
		require.NoError(t, err)
	}
}

func TestUsageReport_SplitsAtHoursAndTheRangeEnds(t *testing.T) {
	db := openDB(t)
	ctx := context.Background()
	d := newDeployment(t, db)
	base := time.Date(2026, 3, 1, 10, 0, 0, 0, time.UTC)
	writeIntervals(t, db, d, []span{
		{base.Add(30 * time.Minute), base.Add(2*time.Hour + 15*time.Minute), 2}, // 10:30 to 12:15
		{base.Add(-time.Hour), base.Add(10 * time.Minute), 1},                   // 09:00 to 10:10
	})
	// Another workspace's usage in the same hours is not counted.
	writeIntervals(t, db, newDeployment(t, db), []span{{base, base.Add(3 * time.Hour), 8}})

	rows, err := store.UsageReport(ctx, db, store.UsageQuery{WorkspaceID: d.WorkspaceID,
		Start: base.Add(5 * time.Minute), End: base.Add(2 * time.Hour), GroupBy: store.UsageByModel})
	require.NoError(t, err)
	want := []store.UsageRow{
		{Hour: base, ModelID: d.ModelID, ModelName: "echo", ReplicaSeconds: 5*60 + 30*60, GPUSeconds: 5*60 + 2*30*60},
		{Hour: base.Add(time.Hour), ModelID: d.ModelID, ModelName: "echo", ReplicaSeconds: 3600, GPUSeconds: 2 * 3600},
	}
	require.Equal(t, want, rows, "10:05 to 12:00: 5 minutes of one GPU and 30 of two in the 10:00 hour, one hour of two at 11:00")
}

// TestUsageReport_SumsEqualLifetimesWithinTheRange checks, over random intervals and ranges,
// that the rows add up to the intervals' lifetimes clipped to the range.
func TestUsageReport_SumsEqualLifetimesWithinTheRange(t *testing.T) {
	db := openDB(t)
	ctx := context.Background()
	rng := rand.New(rand.NewPCG(1, 2))
	base := time.Date(2026, 5, 1, 0, 0, 0, 0, time.UTC)
	at := func() time.Time {
		return base.Add(time.Duration(rng.Int64N(int64(72 * time.Hour)))).Truncate(time.Microsecond)
	}
	for range 8 {
		d := newDeployment(t, db)
		var spans []span
		for range 1 + rng.IntN(12) {
			a, b := at(), at()
			if b.Before(a) {
				a, b = b, a
			}
			spans = append(spans, span{a, b, rng.IntN(4)})
		}
		writeIntervals(t, db, d, spans)
		for range 5 {
			start, end := at(), at()
			if end.Before(start) {
				start, end = end, start
			}
			var wantReplica, wantGPU float64
			for _, s := range spans {
				from, to := maxTime(s.from, start), minTime(s.to, end)
				if to.After(from) {
					wantReplica += to.Sub(from).Seconds()
					wantGPU += to.Sub(from).Seconds() * float64(s.gpus)
				}
			}
			for _, g := range []store.UsageGrouping{store.UsageByModel, store.UsageByDeployment, store.UsageByGPUType} {
				rows, err := store.UsageReport(ctx, db, store.UsageQuery{WorkspaceID: d.WorkspaceID, Start: start, End: end, GroupBy: g})
				require.NoError(t, err)
				var gotReplica, gotGPU float64
				for i, r := range rows {
					require.False(t, r.Hour.Before(start.Truncate(time.Hour)) || !r.Hour.Before(end), "hour %v outside [%v, %v)", r.Hour, start, end)
					require.LessOrEqual(t, r.ReplicaSeconds, 3600*float64(len(spans)))
					if i > 0 {
						require.False(t, r.Hour.Before(rows[i-1].Hour), "rows ordered by hour")
					}
					gotReplica += r.ReplicaSeconds
					gotGPU += r.GPUSeconds
				}
				require.InDelta(t, wantReplica, gotReplica, 1e-3, "replica-seconds of %v in [%v, %v) by %s", spans, start, end, g)
				require.InDelta(t, wantGPU, gotGPU, 1e-3, "GPU-seconds of %v in [%v, %v) by %s", spans, start, end, g)
			}
		}
	}
}

func TestUsageReport_OpenIntervalCountsUpToNow(t *testing.T) {
	db := openDB(t)
	ctx := context.Background()
	d := newDeployment(t, db)
	r := placeOn(t, db, d.ID, "")
	backdate(t, db, r.ID, 90*time.Minute)
	now := time.Now()
	rows, err := store.UsageReport(ctx, db, store.UsageQuery{WorkspaceID: d.WorkspaceID,
		Start: now.Add(-24 * time.Hour), End: now.Add(24 * time.Hour), GroupBy: store.UsageByDeployment})
	require.NoError(t, err)
	var sum float64
	for _, row := range rows {
		sum += row.ReplicaSeconds
	}
	require.InDelta(t, 90*60, sum, 5, "an open interval counts up to now, not up to the range's end")
}

func maxTime(a, b time.Time) time.Time {
	if a.After(b) {
		return a
	}
	return b
}

func minTime(a, b time.Time) time.Time {
	if a.Before(b) {
		return a
	}
	return b
}

// TestReplicaSteps_CountLiveAndPlacedReplicasOfEachStepWithinTheSpans: the replicas chart's
// figures come from the usage record, in every past step, and a deployment counts only while
// its span lasts.
func TestReplicaSteps_CountLiveAndPlacedReplicasOfEachStepWithinTheSpans(t *testing.T) {
	db := openDB(t)
	ctx := context.Background()
	d, other := newDeployment(t, db), newDeployment(t, db)
	base := time.Date(2026, 3, 1, 10, 0, 0, 0, time.UTC)
	m := func(n int) time.Time { return base.Add(time.Duration(n) * time.Minute) }
	writeIntervals(t, db, d, []span{
		{m(-5), m(25), 1}, // live from before the window to the middle of the third step
		{m(12), m(40), 1}, // placed in the second step
		{m(21), m(22), 1}, // placed and gone within the third step
	})
	writeIntervals(t, db, other, []span{{m(5), m(50), 1}}) // counts only from 30 on
	spans := []store.SampleSpan{{DeploymentID: d.ID, From: m(0), To: m(60)}, {DeploymentID: other.ID, From: m(30), To: m(60)}}

	steps, err := store.ReplicaSteps(ctx, db, spans, m(0), m(50), 10*time.Minute, m(45))
	require.NoError(t, err)
	require.Equal(t, []store.ReplicaStep{
		{Live: 1, Placed: 0}, // 10:10: the first
		{Live: 2, Placed: 1}, // 10:20: the first and the second, placed 10:12
		{Live: 2, Placed: 1}, // 10:30: the second, and the other deployment from its span's start; the third came and went
		{Live: 1, Placed: 0}, // 10:40: the second ended at 10:40, the other runs on
		{Live: 1, Placed: 0}, // 10:45 (now): the other
	}, steps)

	later, err := store.ReplicaSteps(ctx, db, spans, m(0), m(50), 10*time.Minute, m(15))
	require.NoError(t, err)
	require.Equal(t, store.ReplicaStep{}, later[2], "a step that begins after now is left zero")
	require.Equal(t, store.ReplicaStep{Live: 2, Placed: 1}, later[1], "the step holding now counts at now")
}
