package store

import (
	"context"
	"encoding/json"
	"time"

	"github.com/jmoiron/sqlx"
	"github.com/lib/pq"
	"github.com/modelplane/modelplane"
)

// NodeDownAfter is how long a node may go without a heartbeat before it counts as DOWN:
// three missed heartbeats (agents report every 5 seconds).
const NodeDownAfter = 15 * time.Second

// Node is a GPU host as its agent last reported it.
type Node struct {
	ID              string               `db:"id"`
	Name            string               `db:"name"`
	AgentURL        string               `db:"agent_url"`
	AgentID         string               `db:"agent_id"`
	GPUProfile      string               `db:"gpu_profile"`
	State           modelplane.NodeState `db:"state"` // READY, DRAINING, or DOWN when heartbeats stopped
	LastHeartbeatAt *time.Time           `db:"last_heartbeat_at"`
	Replicas        json.RawMessage      `db:"reported_replicas"`
	CreatedAt       time.Time            `db:"created_at"`
	GPUs            []GPU                `db:"-"`
	NodeIsolation
}

// NodeIsolation is how a node keeps model servers away from its agent and from each other:
// Mode "replica-users" (each process replica a user of its own, from UIDs) or "none", with a
// Warning saying why; "" when its agent does not report it.
type NodeIsolation struct {
	Mode    string `db:"isolation"`
	UIDs    string `db:"isolation_uids"`
	Warning string `db:"isolation_warning"`
}

// GPU is one whole GPU of a node, or one MIG instance of it.
type GPU struct {
	UUID               string  `db:"uuid"`
	NodeID             string  `db:"node_id"`
	Index              int     `db:"idx"`
	Name               string  `db:"name"`
	Architecture       string  `db:"architecture"`
	ComputeCapability  string  `db:"compute_capability"`
	PCIBusID           string  `db:"pci_bus_id"`
	MemoryTotalBytes   int64   `db:"memory_total_bytes"`
	MemoryUsedBytes    int64   `db:"memory_used_bytes"`
	MIGMode            bool    `db:"mig_mode"`
	Healthy            bool    `db:"healthy"`
	UnhealthyReason    string  `db:"unhealthy_reason"`
	UtilizationPercent int     `db:"utilization_percent"`
	TemperatureC       int     `db:"temperature_c"`
	AssignedReplicaID  *string `db:"assigned_replica_id"`
	// MIGProfile is a MIG instance's GPU-instance profile, e.g. "1g.18gb"; empty for a whole
	// GPU.
	MIGProfile string `db:"mig_profile"`
	// ParentUUID is the whole GPU a MIG instance lives on; empty for a whole GPU.
	ParentUUID string `db:"parent_uuid"`
	// MIGInstances are a whole GPU's MIG instances as the agent reported them (each with the
	// replica that holds it), whether or not MIG is on now.
	MIGInstances []GPU `db:"-"`
}

// Holders maps the GPU and each of its MIG instances that a replica holds to that replica.
// The agent reports a MIG instance's replica on its parent as well; that is left out, since
// it does not make the parent's other instances taken.
func (g GPU) Holders() map[string]string {
	out := map[string]string{}
	onInstance := map[string]bool{}
	for _, mi := range g.MIGInstances {
		if mi.AssignedReplicaID != nil {
			out[mi.UUID] = *mi.AssignedReplicaID
			onInstance[*mi.AssignedReplicaID] = true
		}
	}
	if g.AssignedReplicaID != nil && !onInstance[*g.AssignedReplicaID] {
		out[g.UUID] = *g.AssignedReplicaID
	}
	return out
}

// NodeReport is one heartbeat.
type NodeReport struct {
	Name, AgentID, AgentURL, GPUProfile string
	TokenSHA256                         []byte
	GPUs                                []GPU
	Replicas                            json.RawMessage
	Isolation                           NodeIsolation
}

// RecordHeartbeat registers the node on its first report and refreshes it on every later one:
// its address, GPUs (those it no longer reports are removed) and replicas. A draining node
// stays draining.
func RecordHeartbeat(ctx context.Context, db *sqlx.DB, rep NodeReport) (Node, error) {
	var n Node
	if len(rep.Replicas) == 0 {
		rep.Replicas = json.RawMessage("[]")
	}
	err := WithTx(ctx, db, func(tx *sqlx.Tx) error {
		if err := get(ctx, tx, &n, `
			INSERT INTO nodes (id, name, agent_url, token_sha256, agent_id, gpu_profile, reported_replicas,
			                   isolation, isolation_uids, isolation_warning, last_heartbeat_at)
			VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, now())
			ON CONFLICT (name) DO UPDATE SET
				agent_url = EXCLUDED.agent_url, token_sha256 = EXCLUDED.token_sha256,
				agent_id = EXCLUDED.agent_id, gpu_profile = EXCLUDED.gpu_profile,
				reported_replicas = EXCLUDED.reported_replicas, last_heartbeat_at = now(),
				isolation = EXCLUDED.isolation, isolation_uids = EXCLUDED.isolation_uids,
				isolation_warning = EXCLUDED.isolation_warning,
				state = CASE WHEN nodes.state = `+sqlNodeDraining+` THEN `+sqlNodeDraining+` ELSE `+sqlNodeReady+` END
			RETURNING id, name, agent_url, agent_id, gpu_profile, state, last_heartbeat_at, reported_replicas, created_at,
			          isolation, isolation_uids, isolation_warning`,
			modelplane.NewID(8), rep.Name, rep.AgentURL, rep.TokenSHA256, rep.AgentID, rep.GPUProfile, []byte(rep.Replicas),
			rep.Isolation.Mode, rep.Isolation.UIDs, rep.Isolation.Warning); err != nil {
			return err
		}
		uuids := make([]string, 0, len(rep.GPUs))
		for _, g := range rep.GPUs {
			uuids = append(uuids, g.UUID)
			if err := upsertGPU(ctx, tx, n.ID, "", g); err != nil {
				return err
			}
			// An instance shares its parent's index and health; its memory is its own.
			for _, mi := range g.MIGInstances {
				uuids = append(uuids, mi.UUID)
				mi.Index, mi.Name, mi.Architecture, mi.ComputeCapability = g.Index, g.Name, g.Architecture, g.ComputeCapability
				mi.Healthy, mi.UnhealthyReason, mi.MIGMode = g.Healthy, g.UnhealthyReason, true
				if err := upsertGPU(ctx, tx, n.ID, g.UUID, mi); err != nil {
					return err
				}
			}
		}
		return exec(ctx, tx, false, `DELETE FROM gpus WHERE node_id = $1 AND NOT (uuid = ANY($2))`, n.ID, pq.Array(uuids))
	})
	return n, err
}

// upsertGPU writes one reported GPU of the node, a MIG instance when parent is set.
func upsertGPU(ctx context.Context, tx *sqlx.Tx, nodeID, parent string, g GPU) error {
	var parentUUID *string
	if parent != "" {
		parentUUID = &parent
	}
	return exec(ctx, tx, false, `
		INSERT INTO gpus (uuid, node_id, parent_uuid, idx, name, architecture, compute_capability, pci_bus_id,
		                  memory_total_bytes, memory_used_bytes, mig_mode, mig_profile, healthy, unhealthy_reason,
		                  utilization_percent, temperature_c, assigned_replica_id, updated_at)
		VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15, $16, $17, now())
		ON CONFLICT (uuid) DO UPDATE SET
			node_id = EXCLUDED.node_id, parent_uuid = EXCLUDED.parent_uuid, idx = EXCLUDED.idx,
			name = EXCLUDED.name, architecture = EXCLUDED.architecture,
			compute_capability = EXCLUDED.compute_capability, pci_bus_id = EXCLUDED.pci_bus_id,
			memory_total_bytes = EXCLUDED.memory_total_bytes, memory_used_bytes = EXCLUDED.memory_used_bytes,
			mig_mode = EXCLUDED.mig_mode, mig_profile = EXCLUDED.mig_profile,
			healthy = EXCLUDED.healthy, unhealthy_reason = EXCLUDED.unhealthy_reason,
			utilization_percent = EXCLUDED.utilization_percent, temperature_c = EXCLUDED.temperature_c,
			assigned_replica_id = EXCLUDED.assigned_replica_id, updated_at = now()`,
		g.UUID, nodeID, parentUUID, g.Index, g.Name, g.Architecture, g.ComputeCapability, g.PCIBusID,
		g.MemoryTotalBytes, g.MemoryUsedBytes, g.MIGMode, g.MIGProfile, g.Healthy, g.UnhealthyReason,
		g.UtilizationPercent, g.TemperatureC, g.AssignedReplicaID)
}

// ListNodes returns every node with its GPUs, by name, each with its MIG instances. A node whose heartbeats stopped more
// than NodeDownAfter ago is reported DOWN.
func ListNodes(ctx context.Context, db sqlx.QueryerContext) ([]Node, error) {
	nodes := []Node{}
	if err := list(ctx, db, &nodes, `
		SELECT id, name, agent_url, agent_id, gpu_profile, last_heartbeat_at, reported_replicas, created_at,
		       isolation, isolation_uids, isolation_warning,
		       CASE WHEN last_heartbeat_at IS NULL OR last_heartbeat_at < now() - $1 * interval '1 second'
		            THEN `+sqlNodeDown+` ELSE state END AS state
		FROM nodes ORDER BY name`, NodeDownAfter.Seconds()); err != nil {
		return nil, err
	}
	var gpus []GPU
	if err := list(ctx, db, &gpus, `
		SELECT uuid, node_id, idx, name, architecture, compute_capability, pci_bus_id, memory_total_bytes,
		       memory_used_bytes, mig_mode, mig_profile, healthy, unhealthy_reason, utilization_percent,
		       temperature_c, assigned_replica_id, coalesce(parent_uuid, '') AS parent_uuid
		FROM gpus ORDER BY node_id, idx, parent_uuid NULLS FIRST, uuid`); err != nil {
		return nil, err
	}
	byNode := map[string]int{}
	for i := range nodes {
		byNode[nodes[i].ID] = i
		nodes[i].GPUs = []GPU{}
	}
	instances := map[string][]GPU{}
	for _, g := range gpus {
		if g.ParentUUID != "" {
			instances[g.ParentUUID] = append(instances[g.ParentUUID], g)
		}
	}
	for _, g := range gpus {
		if i, ok := byNode[g.NodeID]; ok && g.ParentUUID == "" {
			g.MIGInstances = instances[g.UUID]
			nodes[i].GPUs = append(nodes[i].GPUs, g)
		}
	}
	return nodes, nil
}

// NodeIsDown reports whether the node has missed its heartbeats (or never sent one).
func NodeIsDown(ctx context.Context, db sqlx.QueryerContext, id string) (bool, error) {
	var down bool
	err := get(ctx, db, &down, `
		SELECT last_heartbeat_at IS NULL OR last_heartbeat_at < now() - $2 * interval '1 second'
		FROM nodes WHERE id = $1`, id, NodeDownAfter.Seconds())
	return down, err
}

// DeploymentGPUs are the GPUs, or MIG instances, that the deployment's oldest live replica
// holding any holds: what its replicas run on. Empty when none holds a GPU (CPU-only, or not
// placed yet). A MIG instance's replica is also reported on its parent GPU; the parent
// comes first, so a caller looks for an instance before counting whole GPUs.
func DeploymentGPUs(ctx context.Context, db sqlx.QueryerContext, deploymentID string) ([]GPU, error) {
	held, err := DeploymentsGPUs(ctx, db, []string{deploymentID})
	if err != nil {
		return nil, err
	}
	if held[deploymentID] == nil {
		return []GPU{}, nil
	}
	return held[deploymentID], nil
}

// DeploymentsGPUs is DeploymentGPUs of each of the deployments, by deployment ID, in one
// query; a deployment whose replicas hold no GPU has no entry.
func DeploymentsGPUs(ctx context.Context, db sqlx.QueryerContext, deploymentIDs []string) (map[string][]GPU, error) {
	var rows []struct {
		DeploymentID string `db:"deployment_id"`
		GPU
	}
	err := list(ctx, db, &rows, `
		WITH first AS (
			SELECT DISTINCT ON (r.deployment_id) r.deployment_id, r.id FROM replicas r
			WHERE r.deployment_id = ANY($1) AND r.state IN `+sqlLiveReplicaStates+`
			  AND EXISTS (SELECT 1 FROM gpus g WHERE g.assigned_replica_id = r.id)
			ORDER BY r.deployment_id, r.created_at, r.id
		)
		SELECT first.deployment_id, g.uuid, g.node_id, g.idx, g.name, g.memory_total_bytes, g.mig_mode,
		       g.mig_profile, COALESCE(g.parent_uuid, '') AS parent_uuid, g.assigned_replica_id
		FROM gpus g JOIN first ON g.assigned_replica_id = first.id
		ORDER BY first.deployment_id, g.parent_uuid NULLS FIRST, g.idx, g.uuid`, pq.Array(deploymentIDs))
	if err != nil {
		return nil, err
	}
	out := map[string][]GPU{}
	for _, r := range rows {
		out[r.DeploymentID] = append(out[r.DeploymentID], r.GPU)
	}
	return out, nil
}
