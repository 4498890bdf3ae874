package store

import (
	"context"
	"encoding/json"
	"time"

	"github.com/jmoiron/sqlx"
	"github.com/modelplane/modelplane"
)

// GatewayDownAfter is how old a gateway's last report may be before the gateway counts as
// dead and is ignored: five missed reports (gateways report every second).
const GatewayDownAfter = 5 * time.Second

// GatewayReport is what one gateway process says of itself every second.
type GatewayReport struct {
	GatewayID string
	// RoutesAt is the database time at which the gateway read its current routing table.
	RoutesAt time.Time
	// InFlight maps a replica ID to the requests in flight there; only counts above zero
	// are kept.
	InFlight map[string]int
}

// ReportGateway writes the gateway's row, replacing the previous one, with reported_at the
// database's now().
func ReportGateway(ctx context.Context, db sqlx.ExtContext, r GatewayReport) error {
	inFlight := make(map[string]int, len(r.InFlight))
	for id, n := range r.InFlight {
		if n > 0 {
			inFlight[id] = n
		}
	}
	b, err := json.Marshal(inFlight)
	if err != nil {
		return err
	}
	return exec(ctx, db, false, `
		INSERT INTO gateway_reports (gateway_id, routes_at, reported_at, in_flight) VALUES ($1, $2, now(), $3)
		ON CONFLICT (gateway_id) DO UPDATE SET
			routes_at = EXCLUDED.routes_at, reported_at = now(), in_flight = EXCLUDED.in_flight`,
		r.GatewayID, r.RoutesAt, string(b))
}

// DeleteGatewayReport removes the gateway's row, as a gateway shutting down cleanly does so
// that drains do not wait for it.
func DeleteGatewayReport(ctx context.Context, db sqlx.ExecerContext, gatewayID string) error {
	return exec(ctx, db, false, `DELETE FROM gateway_reports WHERE gateway_id = $1`, gatewayID)
}

// MarkReplicaDraining takes a READY replica out of the gateways' routes: it becomes DRAINING,
// draining_at is stamped (an earlier stamp is kept) and gateways are notified. It answers
// whether the replica is DRAINING now, false for one in any other state (STARTING, STOPPED,
// ...). An unknown replica is ErrNotFound.
//
// draining_at is stamped in a transaction of its own, after the state change has committed:
// a gateway whose routing read began later than draining_at then surely saw the replica
// DRAINING, which a stamp taken inside the state change's transaction (before its commit)
// would not guarantee. The notification goes out with the stamp, so that the routes the
// gateways re-read on it are newer than draining_at.
func MarkReplicaDraining(ctx context.Context, db *sqlx.DB, id string) (bool, error) {
	var state modelplane.ReplicaState
	if err := WithTx(ctx, db, func(tx *sqlx.Tx) error {
		if err := get(ctx, tx, &state, `SELECT state FROM replicas WHERE id = $1 FOR UPDATE`, id); err != nil {
			return err
		}
		if state != modelplane.ReplicaReady {
			return nil
		}
		state = modelplane.ReplicaDraining
		return exec(ctx, tx, true, `UPDATE replicas SET state = `+sqlReplicaDraining+`, updated_at = now() WHERE id = $1`, id)
	}); err != nil {
		return false, err
	}
	if state != modelplane.ReplicaDraining {
		return false, nil
	}
	draining := false
	err := WithTx(ctx, db, func(tx *sqlx.Tx) error {
		res, err := tx.ExecContext(ctx, `
			UPDATE replicas SET draining_at = COALESCE(draining_at, now())
			WHERE id = $1 AND state = `+sqlReplicaDraining, id)
		if err != nil {
			return translate(err)
		}
		n, err := res.RowsAffected()
		if err != nil {
			return err
		}
		// Stopped meanwhile: nothing to drain any more.
		if draining = n == 1; !draining {
			return nil
		}
		return NotifyRoutes(ctx, tx, "replica:"+id)
	})
	return draining, err
}

// ReplicaDrained reports whether no gateway can send the DRAINING replica a request any
// more: every live gateway (one that reported within GatewayDownAfter, by database time) read
// its routes after the replica's draining_at and has no request in flight on it. With no
// live gateway it answers true, and so it does for a replica that is not DRAINING. An
// unknown replica is ErrNotFound.
func ReplicaDrained(ctx context.Context, db sqlx.QueryerContext, replicaID string) (bool, error) {
	var drained bool
	// A DRAINING replica not stamped yet counts as in every gateway's routes.
	err := get(ctx, db, &drained, `
		SELECT r.state <> `+sqlReplicaDraining+` OR NOT EXISTS (
			SELECT 1 FROM gateway_reports g
			WHERE g.reported_at > now() - $2 * interval '1 second'
			  AND (r.draining_at IS NULL OR g.routes_at <= r.draining_at
			       OR COALESCE((g.in_flight ->> r.id)::numeric, 0) > 0))
		FROM replicas r WHERE r.id = $1`, replicaID, GatewayDownAfter.Seconds())
	return drained, err
}

// DeleteGatewayReportsBefore removes the reports of gateways that have not reported since
// before (dead ones) and says how many went.
func DeleteGatewayReportsBefore(ctx context.Context, db sqlx.ExecerContext, before time.Time) (int64, error) {
	res, err := db.ExecContext(ctx, `DELETE FROM gateway_reports WHERE reported_at < $1`, before)
	if err != nil {
		return 0, translate(err)
	}
	return res.RowsAffected()
}
