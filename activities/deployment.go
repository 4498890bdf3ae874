package activities

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"maps"
	"strings"
	"time"

	"go.temporal.io/sdk/activity"
	"go.temporal.io/sdk/temporal"

	"github.com/modelplane/modelplane"
	"github.com/modelplane/modelplane/agent/agentproto"
	"github.com/modelplane/modelplane/modelpkg"
	"github.com/modelplane/modelplane/nvml"
	"github.com/modelplane/modelplane/placement"
	"github.com/modelplane/modelplane/store"
	"github.com/modelplane/modelplane/workflows/contract"
)

// LoadDeploymentSpec reads the deployment and the config it runs: its archive's, or the one
// its create request gave in its place. A deployment without an archive, or with a config
// that does not parse, fails non-retryably with type
// contract.ErrTypeBuildFailed and the reason as its message.
func (a *Activities) LoadDeploymentSpec(ctx context.Context, in contract.LoadDeploymentSpecInput) (contract.DeploymentSpec, error) {
	v, arch, cfg, err := a.deploymentConfig(ctx, in.ModelID, in.DeploymentID)
	if err != nil {
		return contract.DeploymentSpec{}, err
	}
	cfgJSON, err := cfg.JSON()
	if err != nil {
		return contract.DeploymentSpec{}, buildFailed("invalid config: %v", err)
	}
	spec := contract.DeploymentSpec{
		DeploymentID: v.ID, ModelID: v.ModelID, WorkspaceID: v.WorkspaceID, ArchiveID: arch.ID,
		IsDevelopment: v.IsDevelopment, Config: cfgJSON, Resources: cfg.Resources.GPURequest,
		PythonEnv: cfg.Runtime != modelpkg.RuntimeDocker &&
			(len(cfg.Requirements) > 0 || cfg.RequirementsFile != "" || cfg.PythonVersion != ""),
	}
	if v.DeployTimeoutMinutes != nil {
		spec.DeployTimeout = time.Duration(*v.DeployTimeoutMinutes) * time.Minute
	}
	// A candidate of a promotion already runs as the environment it is promoted into.
	if spec.Environment, err = store.EnvironmentFor(ctx, a.DB, v.ModelID, v.ID); err != nil {
		return contract.DeploymentSpec{}, err
	}
	return spec, nil
}

// deploymentConfig reads the deployment, its archive and the config it runs: the archive's,
// or the one its create request gave in its place. What cannot run fails non-retryably with
// type contract.ErrTypeBuildFailed.
func (a *Activities) deploymentConfig(ctx context.Context, modelID, deploymentID string) (store.DeploymentView, store.Archive, modelpkg.Config, error) {
	var cfg modelpkg.Config
	v, err := store.DeploymentViewByRef(ctx, a.DB, modelID, deploymentID)
	if errors.Is(err, store.ErrNotFound) {
		return v, store.Archive{}, cfg, buildFailed("deployment %s of model %s does not exist", deploymentID, modelID)
	}
	if err != nil {
		return v, store.Archive{}, cfg, err
	}
	if v.ArchiveID == nil || *v.ArchiveID == "" {
		return v, store.Archive{}, cfg, buildFailed("deployment has no model archive")
	}
	arch, err := store.ArchiveByID(ctx, a.DB, v.WorkspaceID, *v.ArchiveID)
	if errors.Is(err, store.ErrNotFound) {
		return v, arch, cfg, buildFailed("model archive %s is missing", *v.ArchiveID)
	}
	if err != nil {
		return v, arch, cfg, err
	}
	cfg, err = modelpkg.ParseConfig(arch.Config)
	if len(v.Config) > 0 {
		// The create request's config, which runs the model differently from the package's.
		var b []byte
		if b, err = json.Marshal(v.Config); err == nil {
			cfg, err = modelpkg.ConfigFromJSON(b)
		}
	}
	if err != nil {
		return v, arch, cfg, buildFailed("invalid config: %v", err)
	}
	return v, arch, cfg, nil
}

func buildFailed(format string, args ...any) error {
	return temporal.NewNonRetryableApplicationError(fmt.Sprintf(format, args...), contract.ErrTypeBuildFailed, nil)
}

// SetDeploymentStatus writes the deployment's status and reason and tells gateways.
func (a *Activities) SetDeploymentStatus(ctx context.Context, in contract.SetDeploymentStatusInput) error {
	return store.SetDeploymentStatus(ctx, a.DB, in.DeploymentID, in.Status, in.Reason)
}

// placementLock serialises placements across workers, so two replicas placed at once do not
// both take the same free GPU.
const placementLock = 7_405_112_001

// PlaceReplica picks a node for the replica and records it there. Placing a replica that is
// recorded already answers where it is. When no node can take it, it fails non-retryably
// with type contract.ErrTypeUnplaceable and placement's explanation as the message.
func (a *Activities) PlaceReplica(ctx context.Context, in contract.PlaceReplicaInput) (contract.PlaceReplicaResult, error) {
	if r, err := store.ReplicaByID(ctx, a.DB, in.ReplicaID); err == nil {
		return contract.PlaceReplicaResult{NodeID: deref(r.NodeID)}, nil
	} else if !errors.Is(err, store.ErrNotFound) {
		return contract.PlaceReplicaResult{}, err
	}
	// A secret the replica would lack fails the deployment here, before it holds a GPU.
	if err := a.checkDeploymentSecrets(ctx, in.DeploymentID); err != nil {
		return contract.PlaceReplicaResult{}, err
	}
	conn, err := a.DB.Connx(ctx)
	if err != nil {
		return contract.PlaceReplicaResult{}, err
	}
	defer conn.Close()
	if _, err := conn.ExecContext(ctx, `SELECT pg_advisory_lock($1)`, placementLock); err != nil {
		return contract.PlaceReplicaResult{}, err
	}
	defer func() {
		_, _ = conn.ExecContext(context.WithoutCancel(ctx), `SELECT pg_advisory_unlock($1)`, placementLock)
	}()

	nodes, err := store.ListNodes(ctx, a.DB)
	if err != nil {
		return contract.PlaceReplicaResult{}, err
	}
	all, mine, err := store.LiveReplicaCounts(ctx, a.DB, in.DeploymentID)
	if err != nil {
		return contract.PlaceReplicaResult{}, err
	}
	got, err := placement.Place(placement.Request{Count: 1, GPU: in.GPU, ExistingByNode: mine}, placementNodes(nodes, all))
	if err != nil || len(got) == 0 {
		if err == nil {
			err = errors.New("placement answered no node")
		}
		return contract.PlaceReplicaResult{}, temporal.NewNonRetryableApplicationError(err.Error(), contract.ErrTypeUnplaceable, err)
	}
	p := got[0]
	if _, _, err := store.CreateReplica(ctx, a.DB, store.NewReplica{
		ID: in.ReplicaID, DeploymentID: in.DeploymentID, NodeID: p.NodeID, GPUUUIDs: p.GPUUUIDs,
	}); err != nil {
		return contract.PlaceReplicaResult{}, err
	}
	activity.GetLogger(ctx).Info("replica placed", "deployment_id", in.DeploymentID, "replica_id", in.ReplicaID, "node", p.NodeID)
	return contract.PlaceReplicaResult{NodeID: p.NodeID, GPUUUIDs: p.GPUUUIDs}, nil
}

// placementNodes are the nodes as placement sees them, with replicas counting the live
// replicas on each.
func placementNodes(nodes []store.Node, replicas map[string]int) []placement.Node {
	pnodes := make([]placement.Node, 0, len(nodes))
	for _, n := range nodes {
		pn := placement.Node{ID: n.ID, Name: n.Name, State: n.State, Assigned: map[string]string{}, Replicas: replicas[n.ID]}
		for _, g := range n.GPUs {
			ng := nvml.GPU{
				UUID: g.UUID, Index: g.Index, Name: g.Name, Architecture: g.Architecture,
				ComputeCapability: g.ComputeCapability, PCIBusID: g.PCIBusID,
				MemoryTotalBytes: uint64(max(g.MemoryTotalBytes, 0)), MemoryUsedBytes: uint64(max(g.MemoryUsedBytes, 0)),
				MIGMode: g.MIGMode, Healthy: g.Healthy, UnhealthyReason: g.UnhealthyReason,
				NUMANode: -1, NVLinkGroup: -1,
			}
			for _, mi := range g.MIGInstances {
				ng.MIGInstances = append(ng.MIGInstances, nvml.MIGInstance{UUID: mi.UUID, ParentUUID: g.UUID,
					Profile: mi.MIGProfile, MemoryBytes: uint64(max(mi.MemoryTotalBytes, 0))})
			}
			maps.Copy(pn.Assigned, g.Holders())
			pn.Inventory.GPUs = append(pn.Inventory.GPUs, ng)
		}
		pnodes = append(pnodes, pn)
	}
	return pnodes
}

// StartReplica asks the replica's node to start it; the agent answers a repeated start with
// the replica as it is. A refusal retrying cannot fix fails with type contract.ErrTypeAgentRefused.
func (a *Activities) StartReplica(ctx context.Context, in contract.StartReplicaInput) error {
	r, err := store.ReplicaByID(ctx, a.DB, in.ReplicaID)
	if err != nil {
		return err
	}
	if r.AgentURL == "" {
		return temporal.NewNonRetryableApplicationError("replica "+r.ID+" has no node", contract.ErrTypeAgentRefused, nil)
	}
	if r.State.Ended() {
		return temporal.NewNonRetryableApplicationError("replica "+r.ID+" is "+string(r.State), contract.ErrTypeAgentRefused, nil)
	}
	req := agentproto.StartRequest{
		ReplicaID:     in.ReplicaID,
		DeploymentID:  in.Spec.DeploymentID,
		Environment:   in.Spec.Environment,
		ArchiveURL:    strings.TrimSuffix(a.ArchiveBaseURL, "/") + agentproto.ArchivePath + in.Spec.ArchiveID,
		ArchiveSHA256: strings.TrimPrefix(in.Spec.ArchiveID, "sha256:"),
		Config:        in.Spec.Config,
		Resources:     in.Spec.Resources,
	}
	if in.Spec.IsDevelopment {
		// A development replica starts with the patches applied so far, whatever the spec
		// the workflow holds says: the database has the latest.
		p, cfg, err := a.appliedPatch(ctx, in.Spec.DeploymentID)
		if err != nil {
			return err
		}
		if p != nil {
			req.Patch, req.Config = p, cfg
		}
	}
	// The values travel on this call to the agent only: never in the activity's input or
	// result, so Temporal's history does not hold them.
	req.Secrets, err = a.replicaSecrets(ctx, in.Spec.WorkspaceID, req.Config)
	var appErr *temporal.ApplicationError
	switch {
	case err != nil && r.State != modelplane.ReplicaPending && errors.As(err, &appErr) && appErr.Type() == contract.ErrTypeMissingSecret:
		// A start the agent has had already (a retry, or a replica carried over by a new
		// run): the agent answers the replica as it runs, with the values it started with,
		// so a secret deleted since does not stop it. Were the agent to have lost it, the
		// start without values fails it there, naming the secret.
		req.Secrets = nil
	case err != nil:
		return err
	}
	agent, err := a.agent(ctx, r.NodeID, r.AgentURL)
	if err != nil {
		return err
	}
	_, err = agent.StartReplica(ctx, req)
	var apiErr *agentproto.APIError
	if errors.As(err, &apiErr) && !apiErr.Retryable() {
		return temporal.NewNonRetryableApplicationError(apiErr.Error(), contract.ErrTypeAgentRefused, err)
	}
	if err != nil && !errors.As(err, &apiErr) && a.nodeDown(ctx, r) {
		// The agent does not answer and has stopped reporting: retrying the same node only
		// delays the replica; failing lets the workflow place it on a live one.
		return temporal.NewNonRetryableApplicationError("the node's agent is down: "+err.Error(), contract.ErrTypeAgentRefused, err)
	}
	if err != nil {
		return err
	}
	return store.SetReplicaState(ctx, a.DB, in.ReplicaID, modelplane.ReplicaStarting, "", "")
}

// nodeDown reports whether the replica's node has missed its heartbeats.
func (a *Activities) nodeDown(ctx context.Context, r store.Replica) bool {
	if r.NodeID == nil {
		return false
	}
	down, err := store.NodeIsDown(ctx, a.DB, *r.NodeID)
	return err == nil && down
}

// WaitReplicaReady polls the replica's agent until the replica is READY or has failed,
// heartbeating on every poll. It records the outcome on the replica's row.
func (a *Activities) WaitReplicaReady(ctx context.Context, in contract.WaitReplicaReadyInput) (contract.WaitReplicaReadyResult, error) {
	every := in.PollInterval
	if every <= 0 {
		every = 100 * time.Millisecond
	}
	r, err := store.ReplicaByID(ctx, a.DB, in.ReplicaID)
	if err != nil {
		return contract.WaitReplicaReadyResult{}, err
	}
	c, err := a.agent(ctx, r.NodeID, r.AgentURL)
	if err != nil {
		return contract.WaitReplicaReadyResult{}, err
	}
	tick := time.NewTicker(every)
	defer tick.Stop()
	for {
		got, err := c.Replica(ctx, in.ReplicaID)
		switch {
		case errors.Is(err, agentproto.ErrUnknownReplica):
			return a.replicaFailed(ctx, in.ReplicaID, "the node's agent does not know the replica")
		case err != nil:
			// The agent may be restarting; the heartbeat timeout bounds how long that may last.
			activity.GetLogger(ctx).Warn("polling replica", "replica_id", in.ReplicaID, "err", err)
		case got.State == modelplane.ReplicaReady:
			if err := store.MarkReplicaReady(ctx, a.DB, in.ReplicaID, got.Address, got.PredictPath, got.WebsocketPath); err != nil {
				return contract.WaitReplicaReadyResult{}, err
			}
			return contract.WaitReplicaReadyResult{State: modelplane.ReplicaReady, Address: got.Address}, nil
		case got.State.Ended() || got.State == modelplane.ReplicaStopping:
			return a.replicaFailed(ctx, in.ReplicaID, fmt.Sprintf("replica %s: %s", strings.ToLower(string(got.State)), got.Error))
		case in.Timeout > 0 && time.Since(r.CreatedAt) > in.Timeout:
			// Measured from the placement, so a retried wait does not start the clock again.
			res, err := a.replicaFailed(ctx, in.ReplicaID, fmt.Sprintf(
				"replica not ready within the deploy timeout (deploy_timeout_minutes: %d); it was still %s",
				int(in.Timeout/time.Minute), strings.ToLower(string(got.State))))
			res.TimedOut = true
			return res, err
		default:
			activity.RecordHeartbeat(ctx, got.State)
		}
		select {
		case <-ctx.Done():
			return contract.WaitReplicaReadyResult{}, ctx.Err()
		case <-tick.C:
		}
	}
}

func (a *Activities) replicaFailed(ctx context.Context, id, reason string) (contract.WaitReplicaReadyResult, error) {
	if err := store.SetReplicaState(ctx, a.DB, id, modelplane.ReplicaFailed, "", reason); err != nil {
		return contract.WaitReplicaReadyResult{}, err
	}
	return contract.WaitReplicaReadyResult{State: modelplane.ReplicaFailed, Reason: reason}, nil
}

// WatchReplica polls the agent of a READY replica, heartbeating on every poll, and returns
// only when the replica has died: the agent reports it FAILED or STOPPED or does not know
// it, or the agent does not answer and its node is DOWN. It marks the replica's row FAILED
// with the reason. An agent that does not answer while its node is up is asked again.
func (a *Activities) WatchReplica(ctx context.Context, in contract.WatchReplicaInput) (contract.WatchReplicaResult, error) {
	every := in.PollInterval
	if every <= 0 {
		every = 5 * time.Second
	}
	r, err := store.ReplicaByID(ctx, a.DB, in.ReplicaID)
	if err != nil {
		return contract.WatchReplicaResult{}, err
	}
	c, err := a.agent(ctx, r.NodeID, r.AgentURL)
	if err != nil {
		return contract.WatchReplicaResult{}, err
	}
	tick := time.NewTicker(every)
	defer tick.Stop()
	for {
		got, err := c.Replica(ctx, in.ReplicaID)
		var apiErr *agentproto.APIError
		switch {
		case ctx.Err() != nil:
			return contract.WatchReplicaResult{}, ctx.Err()
		case errors.Is(err, agentproto.ErrUnknownReplica):
			return a.replicaDied(ctx, in.ReplicaID, "the node's agent no longer knows the replica")
		case err != nil && !errors.As(err, &apiErr) && a.nodeDown(ctx, r):
			return a.replicaDied(ctx, in.ReplicaID, "the replica's node is down: "+err.Error())
		case err != nil:
			// The agent may be restarting; the heartbeat below keeps the watch alive meanwhile.
			activity.GetLogger(ctx).Warn("watching replica", "replica_id", in.ReplicaID, "err", err)
		case got.State.Ended():
			return a.replicaDied(ctx, in.ReplicaID, fmt.Sprintf("replica %s: %s", strings.ToLower(string(got.State)), got.Error))
		}
		activity.RecordHeartbeat(ctx, got.State)
		select {
		case <-ctx.Done():
			return contract.WatchReplicaResult{}, ctx.Err()
		case <-tick.C:
		}
	}
}

// replicaDied marks a replica that died FAILED, unless it was stopped on purpose meanwhile:
// a deliberate stop must not read as a failure.
func (a *Activities) replicaDied(ctx context.Context, id, reason string) (contract.WatchReplicaResult, error) {
	r, err := store.ReplicaByID(ctx, a.DB, id)
	if err != nil {
		return contract.WatchReplicaResult{}, err
	}
	if r.State.Ended() || r.State == modelplane.ReplicaStopping {
		// STOPPING: someone stops it (a replica terminated through the API, say).
		return contract.WatchReplicaResult{State: r.State, Reason: reason}, nil
	}
	activity.GetLogger(ctx).Warn("replica died", "replica_id", id, "reason", reason)
	if err := store.SetReplicaState(ctx, a.DB, id, modelplane.ReplicaFailed, "", reason); err != nil {
		return contract.WatchReplicaResult{}, err
	}
	return contract.WatchReplicaResult{State: modelplane.ReplicaFailed, Reason: reason}, nil
}

// drainPollInterval is how often a stop asks whether gateways have drained the replica.
const drainPollInterval = 100 * time.Millisecond

// StopReplica stops the replica on its node and marks it STOPPED. A READY replica is drained
// first: it leaves the gateways' routes, and the stop waits (heartbeating) until no gateway
// has a request in flight on it, or until the drain timeout. A replica that was never
// recorded, or that its agent no longer knows, counts as stopped already.
func (a *Activities) StopReplica(ctx context.Context, in contract.StopReplicaInput) error {
	r, err := store.ReplicaByID(ctx, a.DB, in.ReplicaID)
	if errors.Is(err, store.ErrNotFound) {
		return nil
	}
	if err != nil {
		return err
	}
	if r.State == modelplane.ReplicaStopped {
		return nil
	}
	// A DRAINING replica is a retried stop's: it goes on waiting.
	if r.State.Serves() {
		if err := a.drain(ctx, in.ReplicaID, in.DrainTimeout); err != nil {
			return err
		}
	}
	errText := r.Error
	if r.AgentURL != "" {
		// The agent answers once the replica has exited, up to the grace period later. (A stop
		// retried after this point drains again, which a drained replica passes at once.)
		agent, err := a.agent(ctx, r.NodeID, r.AgentURL)
		if err != nil {
			return err
		}
		stopHeartbeats := heartbeatEvery(ctx, 5*time.Second)
		_, err = agent.StopReplica(ctx, in.ReplicaID, in.Grace)
		stopHeartbeats()
		var apiErr *agentproto.APIError
		switch {
		case err == nil, errors.Is(err, agentproto.ErrUnknownReplica):
		case !errors.As(err, &apiErr) && a.nodeDown(ctx, r):
			// A node that is down cannot be asked; its agent stops what belongs to no
			// replica when it comes back.
			errText = "stopped while its node was down: " + err.Error()
		default:
			return err
		}
	}
	return store.SetReplicaState(ctx, a.DB, in.ReplicaID, modelplane.ReplicaStopped, "", errText)
}

// drainProgress is a stop's heartbeat detail: a retried stop keeps the first try's deadline,
// so retries do not stretch the drain.
type drainProgress struct {
	ReplicaID string
	Until     time.Time
}

// drain takes a READY replica out of the gateways' routes and waits until they have drained
// it or timeout has passed; a timeout is logged and otherwise ignored, since the replica
// must stop all the same.
func (a *Activities) drain(ctx context.Context, id string, timeout time.Duration) error {
	if timeout <= 0 {
		timeout = contract.DefaultDrainTimeout
	}
	draining, err := store.MarkReplicaDraining(ctx, a.DB, id)
	if err != nil || !draining {
		return err
	}
	progress := drainProgress{ReplicaID: id, Until: time.Now().Add(timeout)}
	var prev drainProgress
	// A stop run by another activity (Cleanup's) sees that activity's details: only a
	// detail naming this replica counts.
	if activity.HasHeartbeatDetails(ctx) && activity.GetHeartbeatDetails(ctx, &prev) == nil &&
		prev.ReplicaID == id && prev.Until.Before(progress.Until) {
		progress.Until = prev.Until
	}
	logger := activity.GetLogger(ctx)
	start := time.Now()
	tick := time.NewTicker(drainPollInterval)
	defer tick.Stop()
	for {
		drained, err := store.ReplicaDrained(ctx, a.DB, id)
		if err != nil {
			return err
		}
		if drained {
			logger.Info("replica drained", "replica_id", id, "waited", time.Since(start))
			return nil
		}
		if !time.Now().Before(progress.Until) {
			logger.Warn("drain timed out; stopping the replica with requests possibly still in flight",
				"replica_id", id, "drain_timeout", timeout)
			return nil
		}
		activity.RecordHeartbeat(ctx, progress)
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-tick.C:
		}
	}
}

// MarkDeploymentDeleted turns the deployment into a tombstone; one already deleted is left
// as it is.
func (a *Activities) MarkDeploymentDeleted(ctx context.Context, in contract.MarkDeploymentDeletedInput) error {
	err := store.MarkDeploymentDeleted(ctx, a.DB, in.ModelID, in.DeploymentID)
	if errors.Is(err, store.ErrNotFound) {
		return nil
	}
	if err != nil {
		return err
	}
	return store.NotifyRoutes(ctx, a.DB, "deployment:"+in.DeploymentID)
}

func deref(s *string) string {
	if s == nil {
		return ""
	}
	return *s
}
