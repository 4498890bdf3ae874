package store

import (
	"context"
	"time"

	"github.com/jmoiron/sqlx"
	"github.com/lib/pq"
	"github.com/modelplane/modelplane"
)

// Replica is one running copy of a deployment on a node.
type Replica struct {
	ID           string  `db:"id"`
	DeploymentID string  `db:"deployment_id"`
	NodeID       *string `db:"node_id"`
	// AgentURL is the URL of the node's agent, empty when the replica has no node.
	AgentURL string                  `db:"agent_url"`
	State    modelplane.ReplicaState `db:"state"`
	Address  string                  `db:"address"`
	// PredictPath is where the model server takes predictions, recorded when it is READY.
	PredictPath string `db:"predict_path"`
	// WebsocketPath is where the model server takes websocket connections, recorded with
	// PredictPath; empty is the gateway's default, /websocket.
	WebsocketPath string     `db:"websocket_path"`
	Error         string     `db:"error"`
	CreatedAt     time.Time  `db:"created_at"`
	UpdatedAt     time.Time  `db:"updated_at"`
	ReadyAt       *time.Time `db:"ready_at"`
	StoppedAt     *time.Time `db:"stopped_at"`
	// DrainingAt is the database time after which gateways no longer route to the replica;
	// set once it is DRAINING.
	DrainingAt *time.Time `db:"draining_at"`
}

// NewReplica says where a replica goes: its node and the GPUs placement gave it there.
type NewReplica struct {
	ID           string
	DeploymentID string
	NodeID       string
	GPUUUIDs     []string
}

const replicaSelect = `
	SELECT r.id, r.deployment_id, r.node_id, COALESCE(n.agent_url, '') AS agent_url, r.state, r.address, r.predict_path, r.websocket_path,
	       r.error, r.created_at, r.updated_at, r.ready_at, r.stopped_at, r.draining_at
	FROM replicas r LEFT JOIN nodes n ON n.id = r.node_id`

// CreateReplica records a placed replica in state PENDING and assigns it the GPUs it was
// given, so the next placement does not hand them out again before the agent reports them.
// Its usage interval opens in the same transaction. Creating a replica that exists already
// changes nothing and answers created false, which makes a retried placement idempotent.
func CreateReplica(ctx context.Context, db *sqlx.DB, r NewReplica) (Replica, bool, error) {
	created := false
	err := WithTx(ctx, db, func(tx *sqlx.Tx) error {
		res, err := tx.ExecContext(ctx, `
			INSERT INTO replicas (id, deployment_id, node_id) VALUES ($1, $2, NULLIF($3, ''))
			ON CONFLICT (id) DO NOTHING`, r.ID, r.DeploymentID, r.NodeID)
		if err != nil {
			return translate(err)
		}
		n, err := res.RowsAffected()
		if err != nil {
			return err
		}
		created = n == 1
		if !created {
			return nil
		}
		if len(r.GPUUUIDs) > 0 {
			if err := exec(ctx, tx, false, `
				UPDATE gpus SET assigned_replica_id = $1, updated_at = now()
				WHERE uuid = ANY($2) AND assigned_replica_id IS NULL`, r.ID, pq.Array(r.GPUUUIDs)); err != nil {
				return err
			}
		}
		// Usage counts from here: the replica holds its GPUs from its placement on.
		return openUsage(ctx, tx, r.ID)
	})
	if err != nil {
		return Replica{}, false, err
	}
	out, err := ReplicaByID(ctx, db, r.ID)
	return out, created, err
}

// ReplicaByID returns one replica, whatever its state.
func ReplicaByID(ctx context.Context, db sqlx.QueryerContext, id string) (Replica, error) {
	var r Replica
	err := get(ctx, db, &r, replicaSelect+` WHERE r.id = $1`, id)
	return r, err
}

// SetReplicaState records what the agent said of a replica. READY stamps ready_at; STOPPED
// and FAILED stamp stopped_at, give its GPUs back and end its usage interval. An unknown
// replica is ErrNotFound.
//
// A DRAINING replica only moves on to STOPPING, STOPPED or FAILED: any other state is
// ignored, so that an agent poll still in flight (a start being confirmed, say) cannot put
// it back into the gateways' routes while it is being drained.
func SetReplicaState(ctx context.Context, db *sqlx.DB, id string, state modelplane.ReplicaState, address, errText string) error {
	return WithTx(ctx, db, func(tx *sqlx.Tx) error { return setReplicaState(ctx, tx, id, state, address, errText) })
}

// MarkReplicaReady records that the replica is READY at address and takes predictions on
// predictPath and websocket connections on websocketPath (empty: the default), in one step,
// so gateways never route to it without knowing where to send.
func MarkReplicaReady(ctx context.Context, db *sqlx.DB, id, address, predictPath, websocketPath string) error {
	return WithTx(ctx, db, func(tx *sqlx.Tx) error {
		if err := exec(ctx, tx, true, `UPDATE replicas SET predict_path = $2, websocket_path = $3 WHERE id = $1`, id, predictPath, websocketPath); err != nil {
			return err
		}
		return setReplicaState(ctx, tx, id, modelplane.ReplicaReady, address, "")
	})
}

func setReplicaState(ctx context.Context, tx *sqlx.Tx, id string, state modelplane.ReplicaState, address, errText string) error {
	var current modelplane.ReplicaState
	if err := get(ctx, tx, &current, `SELECT state FROM replicas WHERE id = $1 FOR UPDATE`, id); err != nil {
		return err
	}
	if current == modelplane.ReplicaDraining && !leavesDraining(state) {
		return nil
	}
	if err := exec(ctx, tx, true, `
		UPDATE replicas SET state = $2, address = $3, error = $4, updated_at = now(),
		       ready_at = CASE WHEN $2 = `+sqlReplicaReady+` THEN COALESCE(ready_at, now()) ELSE ready_at END,
		       stopped_at = CASE WHEN $2 IN `+sqlEndedReplicaStates+` THEN COALESCE(stopped_at, now()) ELSE stopped_at END
		WHERE id = $1`, id, state, address, errText); err != nil {
		return err
	}
	if state.Ended() {
		if err := exec(ctx, tx, false, `
			UPDATE gpus SET assigned_replica_id = NULL, updated_at = now() WHERE assigned_replica_id = $1`, id); err != nil {
			return err
		}
		if err := closeUsage(ctx, tx, id); err != nil {
			return err
		}
	} else if current.Ended() {
		// Not a path the control plane takes, but an interval is open exactly while its
		// replica is live, whatever brings it back.
		if err := openUsage(ctx, tx, id); err != nil {
			return err
		}
	}
	// Gateways route to READY replicas, so every change of state concerns them.
	return NotifyRoutes(ctx, tx, "replica:"+id)
}

// leavesDraining says whether a DRAINING replica may go to state.
func leavesDraining(state modelplane.ReplicaState) bool {
	switch state {
	case modelplane.ReplicaDraining, modelplane.ReplicaStopping, modelplane.ReplicaStopped, modelplane.ReplicaFailed:
		return true
	}
	return false
}

// ListLiveReplicas returns the deployment's replicas that are neither stopped nor failed,
// oldest first.
func ListLiveReplicas(ctx context.Context, db sqlx.QueryerContext, deploymentID string) ([]Replica, error) {
	out := []Replica{}
	err := list(ctx, db, &out, replicaSelect+`
		WHERE r.deployment_id = $1 AND r.state NOT IN `+sqlEndedReplicaStates+`
		ORDER BY r.created_at, r.id`, deploymentID)
	return out, err
}

// LiveReplicaCounts counts the live replicas on each node, of every deployment (all) and of
// one deployment (mine), for placement.
func LiveReplicaCounts(ctx context.Context, db sqlx.QueryerContext, deploymentID string) (all, mine map[string]int, err error) {
	var rows []struct {
		NodeID string `db:"node_id"`
		All    int    `db:"all_count"`
		Mine   int    `db:"mine_count"`
	}
	if err := list(ctx, db, &rows, `
		SELECT node_id, count(*) AS all_count, count(*) FILTER (WHERE deployment_id = $1) AS mine_count
		FROM replicas WHERE node_id IS NOT NULL AND state NOT IN `+sqlEndedReplicaStates+`
		GROUP BY node_id`, deploymentID); err != nil {
		return nil, nil, err
	}
	all, mine = map[string]int{}, map[string]int{}
	for _, r := range rows {
		all[r.NodeID] = r.All
		mine[r.NodeID] = r.Mine
	}
	return all, mine, nil
}

// SetDeploymentStatus records a deployment's status and why, and tells gateways, since the
// status decides whether a request is held, answered 404 or routed.
func SetDeploymentStatus(ctx context.Context, db *sqlx.DB, id string, status modelplane.DeploymentStatus, reason string) error {
	return WithTx(ctx, db, func(tx *sqlx.Tx) error {
		if err := exec(ctx, tx, true, `
			UPDATE deployments SET status = $2, status_reason = $3, updated_at = now() WHERE id = $1`,
			id, status, reason); err != nil {
			return err
		}
		return NotifyRoutes(ctx, tx, "deployment:"+id)
	})
}

// UnwantedReplicas lists live replicas whose deployment is deleted or inactive and that have
// not changed for quietFor, so that a workflow stopping them now is not raced.
func UnwantedReplicas(ctx context.Context, db sqlx.QueryerContext, quietFor time.Duration) ([]Replica, error) {
	out := []Replica{}
	err := list(ctx, db, &out, replicaSelect+`
		JOIN deployments d ON d.id = r.deployment_id
		WHERE r.state NOT IN `+sqlEndedReplicaStates+`
		  AND (d.deleted_at IS NOT NULL OR d.status = `+sqlDeploymentInactive+`)
		  AND r.updated_at < now() - $1 * interval '1 second'
		ORDER BY r.id`, quietFor.Seconds())
	return out, err
}

// ReplicaOnNode is a replica with the node it was placed on.
type ReplicaOnNode struct {
	ID           string    `db:"id"`
	DeploymentID string    `db:"deployment_id"`
	NodeID       string    `db:"node_id"`
	NodeName     string    `db:"node_name"`
	AgentURL     string    `db:"agent_url"`
	CreatedAt    time.Time `db:"created_at"`
}

// ReplicasWithin lists the deployment's replicas placed on a node that lived at some time in
// [from, to): created before to, and live or ended at from or later. Oldest first.
func ReplicasWithin(ctx context.Context, db sqlx.QueryerContext, deploymentID string, from, to time.Time) ([]ReplicaOnNode, error) {
	out := []ReplicaOnNode{}
	return out, list(ctx, db, &out, `
		SELECT r.id, r.deployment_id, n.id AS node_id, n.name AS node_name, n.agent_url, r.created_at
		FROM replicas r JOIN nodes n ON n.id = r.node_id
		WHERE r.deployment_id = $1 AND r.created_at < $3
		  AND (r.state NOT IN `+sqlEndedReplicaStates+` OR COALESCE(r.stopped_at, r.updated_at) >= $2)
		ORDER BY r.created_at, r.id`, deploymentID, from, to)
}
