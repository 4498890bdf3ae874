package store_test

import (
	"context"
	"testing"
	"time"

	"github.com/jmoiron/sqlx"
	"github.com/stretchr/testify/require"

	"github.com/modelplane/modelplane"
	"github.com/modelplane/modelplane/store"
)

// buckets returns latency counts, n requests at each given latency.
func buckets(counts map[time.Duration]int64) []int64 {
	b := make([]int64, len(store.LatencyBounds)+1)
	for d, n := range counts {
		b[store.LatencyBucket(d)] += n
	}
	return b
}

func newFiguresDeployment(t *testing.T, db *sqlx.DB, m store.Model) string {
	t.Helper()
	d, err := store.CreateDeployment(context.Background(), db, store.NewDeployment{ModelID: m.ID, WorkspaceID: m.WorkspaceID})
	require.NoError(t, err)
	return d.ID
}

func TestLatencyBucket(t *testing.T) {
	last := len(store.LatencyBounds) - 1
	require.Equal(t, 0, store.LatencyBucket(0))
	require.Equal(t, 0, store.LatencyBucket(store.LatencyBounds[0]), "bounds are inclusive")
	require.Equal(t, 1, store.LatencyBucket(store.LatencyBounds[0]+1))
	require.Equal(t, last, store.LatencyBucket(store.LatencyBounds[last]))
	require.Equal(t, last+1, store.LatencyBucket(store.LatencyBounds[last]+1), "above the last bound")
	require.Equal(t, last+1, store.LatencyBucket(time.Hour))
	for i, b := range store.LatencyBounds {
		require.Equal(t, i, store.LatencyBucket(b))
		require.Equal(t, i+1, store.LatencyBucket(b+time.Nanosecond))
		if i > 0 {
			require.Less(t, store.LatencyBounds[i-1], b, "bounds must rise")
		}
	}
}

func TestDeploymentFigures_SumsGatewaysWithinTheRange(t *testing.T) {
	db := openDB(t)
	ctx := context.Background()
	m := newModel(t, db)
	d, other := newFiguresDeployment(t, db, m), newFiguresDeployment(t, db, m)
	to := time.Now().UTC().Truncate(time.Second)
	from := to.Add(-10 * time.Second)
	huge := buckets(map[time.Duration]int64{time.Hour: 1000})

	require.NoError(t, store.InsertLoadSamples(ctx, db, []store.LoadSample{
		{DeploymentID: d, GatewayID: "g1", At: from, Concurrency: 1, Requests: 60, Completed: 60, Errors: 3,
			LatencyBuckets: buckets(map[time.Duration]int64{10 * time.Millisecond: 50, 100 * time.Millisecond: 10})},
		{DeploymentID: d, GatewayID: "g2", At: from, Concurrency: 1, Requests: 40, Completed: 40, Errors: 2,
			LatencyBuckets: buckets(map[time.Duration]int64{8 * time.Millisecond: 39, 2 * time.Second: 1})},
		// Requests in flight, none ended: no buckets at all.
		{DeploymentID: d, GatewayID: "g1", At: to.Add(-time.Second), Concurrency: 3},
		// Outside the range on either side, and another deployment's.
		{DeploymentID: d, GatewayID: "g1", At: to, Concurrency: 1, Completed: 1000, Errors: 1000, LatencyBuckets: huge},
		{DeploymentID: d, GatewayID: "g2", At: from.Add(-time.Second), Concurrency: 1, Completed: 1000, Errors: 1000, LatencyBuckets: huge},
		{DeploymentID: other, GatewayID: "g1", At: from, Concurrency: 1, Completed: 1000, Errors: 1000, LatencyBuckets: huge},
	}))

	f, err := store.DeploymentFigures(ctx, db, d, from, to)
	require.NoError(t, err)
	require.Equal(t, 100, f.Completed, "both gateways' samples from <= at < to")
	require.Equal(t, 5, f.Errors)
	require.InDelta(t, 0.05, f.ErrorRate(), 1e-12)
	// 89 within 10 ms, 10 more within 100 ms, 1 at 2 s: the 99th of 100 is within 100 ms.
	require.Equal(t, 100*time.Millisecond, f.P99)

	// A retried sample replaces the one written before.
	require.NoError(t, store.InsertLoadSamples(ctx, db, []store.LoadSample{
		{DeploymentID: d, GatewayID: "g2", At: from, Concurrency: 1, Requests: 40, Completed: 40, Errors: 40,
			LatencyBuckets: buckets(map[time.Duration]int64{3 * time.Second: 40})},
	}))
	f, err = store.DeploymentFigures(ctx, db, d, from, to)
	require.NoError(t, err)
	require.Equal(t, modelplane.Figures{Completed: 100, Errors: 43, P99: 5 * time.Second}, f)

	// A range of one second holds the sample at its start only.
	f, err = store.DeploymentFigures(ctx, db, d, to, to.Add(time.Second))
	require.NoError(t, err)
	require.Equal(t, modelplane.Figures{Completed: 1000, Errors: 1000, P99: store.LatencyBounds[len(store.LatencyBounds)-1]}, f,
		"above the last bound reports the largest bound")
}

func TestDeploymentFigures_P99IsTheNearestRanksBucket(t *testing.T) {
	db := openDB(t)
	ctx := context.Background()
	m := newModel(t, db)
	at := time.Now().UTC().Truncate(time.Second).Add(-time.Minute)
	for _, c := range []struct {
		name   string
		counts map[time.Duration]int64
		want   time.Duration
	}{
		{"one request", map[time.Duration]int64{700 * time.Microsecond: 1}, time.Millisecond},
		{"the slowest 1% is above it", map[time.Duration]int64{10 * time.Millisecond: 99, 2 * time.Second: 1}, 10 * time.Millisecond},
		{"the slowest 2% reach it", map[time.Duration]int64{10 * time.Millisecond: 98, 2 * time.Second: 2}, 2 * time.Second},
		{"rank 198 of 200", map[time.Duration]int64{5 * time.Millisecond: 197, 50 * time.Millisecond: 1, 20 * time.Second: 2}, 50 * time.Millisecond},
		{"rank 100 of 101", map[time.Duration]int64{time.Millisecond: 99, 40 * time.Millisecond: 1, 90 * time.Second: 1}, 50 * time.Millisecond},
		{"all above the last bound", map[time.Duration]int64{time.Hour: 3}, 300 * time.Second},
	} {
		t.Run(c.name, func(t *testing.T) {
			d := newFiguresDeployment(t, db, m)
			var n int
			for _, k := range c.counts {
				n += int(k)
			}
			require.NoError(t, store.InsertLoadSamples(ctx, db, []store.LoadSample{
				{DeploymentID: d, GatewayID: "g1", At: at, Concurrency: 1, Completed: n, LatencyBuckets: buckets(c.counts)},
			}))
			f, err := store.DeploymentFigures(ctx, db, d, at, at.Add(time.Second))
			require.NoError(t, err)
			require.Equal(t, n, f.Completed)
			require.Equal(t, c.want, f.P99)
		})
	}
}

func TestDeploymentFigures_NoSamplesIsZero(t *testing.T) {
	db := openDB(t)
	ctx := context.Background()
	m := newModel(t, db)
	d := newFiguresDeployment(t, db, m)
	now := time.Now().UTC().Truncate(time.Second)

	f, err := store.DeploymentFigures(ctx, db, d, now.Add(-time.Minute), now)
	require.NoError(t, err)
	require.Equal(t, modelplane.Figures{}, f)
	require.Zero(t, f.ErrorRate())

	// Samples of load alone (nothing ended) are no figures either.
	require.NoError(t, store.InsertLoadSamples(ctx, db, []store.LoadSample{
		{DeploymentID: d, GatewayID: "g1", At: now.Add(-time.Second), Concurrency: 2, Requests: 2},
	}))
	f, err = store.DeploymentFigures(ctx, db, d, now.Add(-time.Minute), now)
	require.NoError(t, err)
	require.Equal(t, modelplane.Figures{}, f)
	require.Zero(t, f.ErrorRate())
}
