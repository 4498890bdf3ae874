package store_test

import (
	"context"
	"encoding/json"
	"testing"
	"time"

	"github.com/jmoiron/sqlx"
	"github.com/stretchr/testify/require"

	"github.com/modelplane/modelplane"
	"github.com/modelplane/modelplane/store"
)

// noGateways removes every gateway report, before and after the test: the table is shared by
// the package's tests and every live row takes part in every drain.
func noGateways(t *testing.T, db *sqlx.DB) {
	t.Helper()
	wipe := func() {
		_, err := db.Exec(`DELETE FROM gateway_reports`)
		require.NoError(t, err)
	}
	wipe()
	t.Cleanup(wipe)
}

// replicaIn makes a replica on a fresh node and puts it in state.
func replicaIn(t *testing.T, db *sqlx.DB, state modelplane.ReplicaState) string {
	t.Helper()
	ctx := context.Background()
	n := newNode(t, db)
	d := newDeployment(t, db)
	id := modelplane.NewID(12)
	_, _, err := store.CreateReplica(ctx, db, store.NewReplica{ID: id, DeploymentID: d.ID, NodeID: n.ID})
	require.NoError(t, err)
	if state != modelplane.ReplicaPending {
		require.NoError(t, store.SetReplicaState(ctx, db, id, state, "10.0.0.1:9000", ""))
	}
	return id
}

// drainingReplica makes a READY replica and marks it DRAINING; it answers its draining_at.
func drainingReplica(t *testing.T, db *sqlx.DB) (string, time.Time) {
	t.Helper()
	ctx := context.Background()
	id := replicaIn(t, db, modelplane.ReplicaReady)
	ok, err := store.MarkReplicaDraining(ctx, db, id)
	require.NoError(t, err)
	require.True(t, ok, "a READY replica must become DRAINING")
	r, err := store.ReplicaByID(ctx, db, id)
	require.NoError(t, err)
	require.NotNil(t, r.DrainingAt, "a DRAINING replica must have draining_at")
	return id, *r.DrainingAt
}

func requireDrained(t *testing.T, db *sqlx.DB, id string, want bool, why string) {
	t.Helper()
	got, err := store.ReplicaDrained(context.Background(), db, id)
	require.NoError(t, err)
	require.Equal(t, want, got, why)
}

func TestReplicaDrained_NoLiveGatewayMeansDrained(t *testing.T) {
	db := openDB(t)
	noGateways(t, db)
	id, _ := drainingReplica(t, db)
	requireDrained(t, db, id, true, "with no gateway nothing can send the replica a request")
}

func TestReplicaDrained_WaitsForNewRoutesAndNoRequestInFlight(t *testing.T) {
	db := openDB(t)
	ctx := context.Background()
	noGateways(t, db)
	id, at := drainingReplica(t, db)
	other := modelplane.NewID(12)

	report := func(routesAt time.Time, inFlight map[string]int) {
		t.Helper()
		require.NoError(t, store.ReportGateway(ctx, db, store.GatewayReport{GatewayID: "gw-a", RoutesAt: routesAt, InFlight: inFlight}))
	}
	report(at.Add(-time.Second), nil)
	requireDrained(t, db, id, false, "a gateway whose routes predate the drain may still route to the replica")
	report(at, nil)
	requireDrained(t, db, id, false, "routes read at the very instant of the drain may still have the replica")
	report(at.Add(time.Millisecond), map[string]int{id: 2, other: 1})
	requireDrained(t, db, id, false, "requests in flight on the replica must finish first")
	report(at.Add(time.Millisecond), map[string]int{id: 0, other: 3})
	requireDrained(t, db, id, true, "new routes and nothing in flight on the replica: drained (others' requests do not count)")

	// A second, live gateway with old routes holds the drain up...
	require.NoError(t, store.ReportGateway(ctx, db, store.GatewayReport{GatewayID: "gw-b", RoutesAt: at.Add(-time.Minute),
		InFlight: map[string]int{id: 1}}))
	requireDrained(t, db, id, false, "every live gateway must have drained the replica")
	// ...until it stops reporting: a dead gateway is ignored.
	_, err := db.Exec(`UPDATE gateway_reports SET reported_at = now() - $1 * interval '1 second' WHERE gateway_id = 'gw-b'`,
		(store.GatewayDownAfter + time.Second).Seconds())
	require.NoError(t, err)
	requireDrained(t, db, id, true, "a gateway that has not reported within GatewayDownAfter is dead and ignored")
}

func TestReplicaDrained_ReplicaNotDrainingIsDrained(t *testing.T) {
	db := openDB(t)
	ctx := context.Background()
	noGateways(t, db)
	id := replicaIn(t, db, modelplane.ReplicaReady)
	require.NoError(t, store.ReportGateway(ctx, db, store.GatewayReport{GatewayID: "gw-a", RoutesAt: time.Unix(0, 0),
		InFlight: map[string]int{id: 5}}))
	requireDrained(t, db, id, true, "only a DRAINING replica is waited for")

	_, err := store.ReplicaDrained(ctx, db, modelplane.NewID(12))
	require.ErrorIs(t, err, store.ErrNotFound)
}

func TestMarkReplicaDraining_ReadyReplicaLeavesRoutesAndGatewaysAreTold(t *testing.T) {
	db := openDB(t)
	ctx := context.Background()
	id := replicaIn(t, db, modelplane.ReplicaReady)
	l, err := store.Listen(dbURL, store.RoutesChannel, 10*time.Millisecond, time.Second, discardLogger())
	require.NoError(t, err)
	defer l.Close()

	ok, err := store.MarkReplicaDraining(ctx, db, id)
	require.NoError(t, err)
	require.True(t, ok)
	r, err := store.ReplicaByID(ctx, db, id)
	require.NoError(t, err)
	require.Equal(t, modelplane.ReplicaDraining, r.State)
	require.NotNil(t, r.DrainingAt, "draining_at must be stamped")
	// Triggers may announce the state change on its own first; what matters is that gateways
	// are told once draining_at is stamped, so that the routes they re-read are newer.
	for receive(t, l) != "replica:"+id {
	}

	// Marking again (a retried stop) keeps the first stamp.
	ok, err = store.MarkReplicaDraining(ctx, db, id)
	require.NoError(t, err)
	require.True(t, ok, "a DRAINING replica stays DRAINING")
	again, err := store.ReplicaByID(ctx, db, id)
	require.NoError(t, err)
	require.Equal(t, r.DrainingAt.UnixMicro(), again.DrainingAt.UnixMicro(), "draining_at must be kept on a second mark")
}

func TestMarkReplicaDraining_OnlyReadyReplicasDrain(t *testing.T) {
	db := openDB(t)
	ctx := context.Background()
	for _, state := range []modelplane.ReplicaState{modelplane.ReplicaPending, modelplane.ReplicaStarting, modelplane.ReplicaStopped, modelplane.ReplicaFailed} {
		id := replicaIn(t, db, state)
		ok, err := store.MarkReplicaDraining(ctx, db, id)
		require.NoError(t, err)
		require.False(t, ok, "a %s replica must not be drained", state)
		r, err := store.ReplicaByID(ctx, db, id)
		require.NoError(t, err)
		require.Equal(t, state, r.State, "a %s replica must keep its state", state)
		require.Nil(t, r.DrainingAt)
	}
	_, err := store.MarkReplicaDraining(ctx, db, modelplane.NewID(12))
	require.ErrorIs(t, err, store.ErrNotFound)
}

func TestSetReplicaState_DrainingReplicaIsNotPutBackIntoRoutes(t *testing.T) {
	db := openDB(t)
	ctx := context.Background()
	noGateways(t, db)
	id, _ := drainingReplica(t, db)

	for _, state := range []modelplane.ReplicaState{modelplane.ReplicaReady, modelplane.ReplicaStarting, modelplane.ReplicaPending} {
		require.NoError(t, store.SetReplicaState(ctx, db, id, state, "10.0.0.2:9000", ""))
		r, err := store.ReplicaByID(ctx, db, id)
		require.NoError(t, err)
		require.Equal(t, modelplane.ReplicaDraining, r.State, "a late %s from the agent must not undo the drain", state)
	}
	require.NoError(t, store.SetReplicaState(ctx, db, id, modelplane.ReplicaStopped, "", ""))
	r, err := store.ReplicaByID(ctx, db, id)
	require.NoError(t, err)
	require.Equal(t, modelplane.ReplicaStopped, r.State, "a DRAINING replica is stopped")
	require.ErrorIs(t, store.SetReplicaState(ctx, db, modelplane.NewID(12), modelplane.ReplicaStopped, "", ""), store.ErrNotFound)
}

func TestReportGateway_ReplacesRowAndDeletesGo(t *testing.T) {
	db := openDB(t)
	ctx := context.Background()
	noGateways(t, db)
	routes := time.Now().Add(-time.Second).Truncate(time.Microsecond)

	require.NoError(t, store.ReportGateway(ctx, db, store.GatewayReport{GatewayID: "gw-a", RoutesAt: routes.Add(-time.Second),
		InFlight: map[string]int{"aaaaaaaaaaaa": 1}}))
	require.NoError(t, store.ReportGateway(ctx, db, store.GatewayReport{GatewayID: "gw-a", RoutesAt: routes,
		InFlight: map[string]int{"aaaaaaaaaaaa": 0, "bbbbbbbbbbbb": 3}}))
	require.NoError(t, store.ReportGateway(ctx, db, store.GatewayReport{GatewayID: "gw-b", RoutesAt: routes}))

	var rows []struct {
		GatewayID string          `db:"gateway_id"`
		RoutesAt  time.Time       `db:"routes_at"`
		InFlight  json.RawMessage `db:"in_flight"`
	}
	require.NoError(t, db.Select(&rows, `SELECT gateway_id, routes_at, in_flight FROM gateway_reports ORDER BY gateway_id`))
	require.Len(t, rows, 2, "one row per gateway")
	require.True(t, routes.Equal(rows[0].RoutesAt), "routes_at: want %v, got %v", routes, rows[0].RoutesAt)
	require.JSONEq(t, `{"bbbbbbbbbbbb": 3}`, string(rows[0].InFlight), "the last report wins, without zero counts")
	require.JSONEq(t, `{}`, string(rows[1].InFlight))

	require.NoError(t, store.DeleteGatewayReport(ctx, db, "gw-b"))
	require.NoError(t, store.DeleteGatewayReport(ctx, db, "gw-b"), "deleting twice is fine")
	require.NoError(t, store.ReportGateway(ctx, db, store.GatewayReport{GatewayID: "gw-c", RoutesAt: routes}))
	_, err := db.Exec(`UPDATE gateway_reports SET reported_at = now() - interval '2 hours' WHERE gateway_id = 'gw-a'`)
	require.NoError(t, err)

	n, err := store.DeleteGatewayReportsBefore(ctx, db, time.Now().Add(-time.Hour))
	require.NoError(t, err)
	require.EqualValues(t, 1, n, "only the gateway silent for two hours goes")
	var left []string
	require.NoError(t, db.Select(&left, `SELECT gateway_id FROM gateway_reports ORDER BY gateway_id`))
	require.Equal(t, []string{"gw-c"}, left)
}
