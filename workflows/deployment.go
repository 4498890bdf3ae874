package workflows

import (
	"errors"
	"fmt"
	"time"

	"go.temporal.io/sdk/temporal"
	"go.temporal.io/sdk/workflow"

	"github.com/modelplane/modelplane"
	"github.com/modelplane/modelplane/workflows/contract"
)

// ReplicaStopGrace is how long a replica may take to exit after SIGTERM before it is killed.
const ReplicaStopGrace = 30 * time.Second

// Deployment runs one deployment's lifecycle: build, place and start its replicas, wait for
// them to be ready, then serve scale, activate, deactivate and delete requests until deleted.
func Deployment(ctx workflow.Context, in contract.DeploymentInput) error {
	d := &deployment{in: in, desired: in.Replicas}
	if err := d.setup(ctx); err != nil {
		return err
	}
	return d.run(ctx)
}

// replicaSlot is one of the desired replicas; its ID changes when a failed replica is
// replaced.
type replicaSlot struct {
	id       string
	nodeID   string
	state    modelplane.ReplicaState // PENDING, STARTING, READY, FAILED or STOPPING
	address  string
	err      string
	attempts int
	// replacing is set while a replica that died after it was READY is being replaced.
	replacing bool
	cancel    workflow.CancelFunc
	exited    bool
}

type deployment struct {
	in      contract.DeploymentInput
	root    workflow.Context
	desired int
	spec    *contract.DeploymentSpec
	slots   []*replicaSlot

	// fixed, when set, is the status regardless of the replicas (building, inactive...).
	fixed       modelplane.DeploymentStatus
	fixedReason string
	// failure is why a replica could not be brought up; it holds until a scale or activate.
	failure    string
	everActive bool
	inactive   bool
	deleted    bool
	// waking is set when the deployment leaves zero, until a replica is READY.
	waking bool

	status, written modelplane.DeploymentStatus
	reason, wreason string

	// mu keeps one update (or the initial deploy) acting at a time.
	mu       workflow.Mutex
	statusMu workflow.Mutex
}

func (d *deployment) setup(ctx workflow.Context) error {
	d.root = workflow.WithActivityOptions(ctx, shortActivity)
	d.mu = workflow.NewMutex(ctx)
	d.statusMu = workflow.NewMutex(ctx)
	if err := workflow.SetQueryHandler(ctx, contract.QueryStatus, func() (contract.DeploymentStatus, error) {
		return d.snapshot(), nil
	}); err != nil {
		return err
	}
	if err := workflow.SetUpdateHandlerWithOptions(ctx, contract.UpdateScale, d.scale,
		workflow.UpdateHandlerOptions{Validator: d.validateScale}); err != nil {
		return err
	}
	if err := workflow.SetUpdateHandlerWithOptions(ctx, contract.UpdateDeactivate, d.deactivate,
		workflow.UpdateHandlerOptions{Validator: d.validateLive}); err != nil {
		return err
	}
	if err := workflow.SetUpdateHandlerWithOptions(ctx, contract.UpdateActivate, d.activate,
		workflow.UpdateHandlerOptions{Validator: d.validateLive}); err != nil {
		return err
	}
	if err := workflow.SetUpdateHandlerWithOptions(ctx, contract.UpdateWake, d.wake,
		workflow.UpdateHandlerOptions{Validator: d.validateServing}); err != nil {
		return err
	}
	if err := workflow.SetUpdateHandlerWithOptions(ctx, contract.UpdateApplyPatch, d.applyPatch,
		workflow.UpdateHandlerOptions{Validator: d.validatePatch}); err != nil {
		return err
	}
	return workflow.SetUpdateHandlerWithOptions(ctx, contract.UpdateDelete, d.delete,
		workflow.UpdateHandlerOptions{Validator: d.validateLive})
}

func (d *deployment) run(ctx workflow.Context) error {
	ctx = workflow.WithActivityOptions(ctx, shortActivity)
	log := workflow.GetLogger(ctx)
	_ = workflow.UpsertTypedSearchAttributes(ctx,
		contract.DeploymentIDAttr.ValueSet(d.in.DeploymentID), contract.ModelIDAttr.ValueSet(d.in.ModelID))

	if err := d.mu.Lock(ctx); err != nil {
		return err
	}
	if c := d.in.Carried; c != nil {
		d.restore(ctx, *c)
	} else {
		if d.desired < 1 {
			d.desired = 1
		}
		d.fixed = modelplane.DeploymentBuilding
		d.refresh(ctx)
		if d.build(ctx) {
			d.reconcile(ctx)
		}
	}
	d.mu.Unlock()

	if err := workflow.Await(ctx, func() bool {
		return d.deleted || workflow.GetInfo(ctx).GetContinueAsNewSuggested()
	}); err != nil {
		return err
	}
	if err := workflow.Await(ctx, func() bool { return workflow.AllHandlersFinished(ctx) }); err != nil {
		return err
	}
	if d.deleted {
		log.Info("deployment deleted", "deployment_id", d.in.DeploymentID)
		return nil
	}
	next := d.in
	next.Replicas = d.desired
	next.Carried = &contract.DeploymentCarry{Status: d.status, Reason: d.reason, Inactive: d.inactive, EverActive: d.everActive, Waking: d.waking}
	for _, s := range d.slots {
		if s.state != modelplane.ReplicaFailed {
			next.Carried.Replicas = append(next.Carried.Replicas, contract.ReplicaInfo{
				ID: s.id, NodeID: s.nodeID, State: s.state, Address: s.address,
			})
		}
	}
	return workflow.NewContinueAsNewError(ctx, Deployment, next)
}

// restore takes up where the previous run left off: its replicas are placed and started
// again, which finds them where they are, since every activity is idempotent on the ID.
func (d *deployment) restore(ctx workflow.Context, c contract.DeploymentCarry) {
	d.status, d.reason = c.Status, c.Reason
	d.written, d.wreason = c.Status, c.Reason
	d.inactive, d.everActive, d.waking = c.Inactive, c.EverActive, c.Waking
	switch {
	case c.Status == modelplane.DeploymentBuildFailed:
		d.fixed, d.fixedReason = c.Status, c.Reason
		return
	case c.Inactive:
		d.fixed = modelplane.DeploymentInactive
		return
	}
	if !d.build(ctx) {
		return
	}
	// A replica keeps the state it had, so a READY one is not reported as deploying while
	// its slot confirms it with the agent.
	for _, r := range c.Replicas {
		d.launch(ctx, &replicaSlot{id: r.ID, nodeID: r.NodeID, state: r.State, address: r.Address})
	}
	d.reconcile(ctx)
}

// build loads the deployment's spec and, for a package with requirements or a
// python_version, has the nodes prepare its Python environment; it answers false, with status
// BUILD_FAILED, when the package cannot run.
func (d *deployment) build(ctx workflow.Context) bool {
	var spec contract.DeploymentSpec
	err := workflow.ExecuteActivity(ctx, contract.ActivityLoadDeploymentSpec, contract.LoadDeploymentSpecInput{
		DeploymentID: d.in.DeploymentID, ModelID: d.in.ModelID,
	}).Get(ctx, &spec)
	// Only a build the deployment is BUILDING for prepares the environment: a run that
	// continues as new has it on its nodes already, and a replica's node builds it anyway.
	// Histories of packages without one have no marker, so they replay as before.
	if err == nil && spec.PythonEnv && d.fixed == modelplane.DeploymentBuilding &&
		workflow.GetVersion(ctx, pythonEnvChange, workflow.DefaultVersion, 1) == 1 {
		err = workflow.ExecuteActivity(workflow.WithActivityOptions(ctx, envActivity), contract.ActivityBuildPythonEnv,
			contract.BuildPythonEnvInput{Spec: spec}).Get(ctx, nil)
	}
	if err != nil {
		workflow.GetLogger(ctx).Warn("build failed", "deployment_id", d.in.DeploymentID, "err", err)
		d.fixed, d.fixedReason = modelplane.DeploymentBuildFailed, reasonOf(err)
		d.refresh(ctx)
		return false
	}
	d.spec = &spec
	d.fixed, d.fixedReason = "", ""
	return true
}

// reconcile brings the number of replicas to the desired count: failed slots are dropped,
// missing ones launched and extra ones stopped.
func (d *deployment) reconcile(ctx workflow.Context) {
	d.failure = ""
	live := d.slots[:0]
	for _, s := range d.slots {
		if s.state != modelplane.ReplicaFailed {
			live = append(live, s)
		}
	}
	d.slots = live
	for len(d.slots) < d.desired {
		d.launch(ctx, &replicaSlot{id: newReplicaID(ctx), state: modelplane.ReplicaPending})
	}
	if extra := len(d.slots) - d.desired; extra > 0 {
		d.stop(ctx, d.victims(extra))
	}
	d.refresh(ctx)
}

// victims picks n slots to stop: those not serving yet first, then the newest.
func (d *deployment) victims(n int) []*replicaSlot {
	var out []*replicaSlot
	for pass := 0; pass < 2 && len(out) < n; pass++ {
		for i := len(d.slots) - 1; i >= 0 && len(out) < n; i-- {
			s := d.slots[i]
			if (pass == 0) == (s.state != modelplane.ReplicaReady) {
				out = append(out, s)
			}
		}
	}
	return out
}

// launch adds a slot and starts bringing its replica up in the background.
func (d *deployment) launch(ctx workflow.Context, s *replicaSlot) {
	d.slots = append(d.slots, s)
	// Slots outlive the update that launched them, so their context comes from the
	// workflow's own.
	sctx, cancel := workflow.WithCancel(d.root)
	s.cancel = cancel
	workflow.Go(sctx, func(sctx workflow.Context) {
		defer func() { s.exited = true }()
		d.runSlot(sctx, s)
	})
}

// runSlot places, starts and waits for the slot's replica, then watches it while it serves;
// a replica that fails to start or dies later is replaced, until contract.MaxReplicaAttempts in a
// row have failed.
func (d *deployment) runSlot(ctx workflow.Context, s *replicaSlot) {
	for {
		reason, retry := d.bringUp(ctx, s)
		if ctx.Err() != nil {
			return // stopped by a scale-down, deactivate or delete
		}
		if reason == "" {
			s.state, s.err, s.replacing = modelplane.ReplicaReady, "", false
			s.attempts = 0
			d.refresh(ctx)
			reason = d.watch(ctx, s)
			if ctx.Err() != nil {
				return
			}
			workflow.GetLogger(ctx).Warn("ready replica died", "deployment_id", d.in.DeploymentID,
				"replica_id", s.id, "reason", reason)
			s.replacing, retry = true, true
		}
		s.attempts++
		workflow.GetLogger(ctx).Warn("replica failed", "deployment_id", d.in.DeploymentID,
			"replica_id", s.id, "attempt", s.attempts, "reason", reason)
		if s.nodeID != "" {
			d.stopReplica(ctx, s.id)
		}
		if !retry || s.attempts >= contract.MaxReplicaAttempts {
			s.state, s.err, s.replacing = modelplane.ReplicaFailed, reason, false
			d.failure = reason
			d.refresh(ctx)
			return
		}
		s.id, s.nodeID, s.address, s.state = newReplicaID(ctx), "", "", modelplane.ReplicaPending
		if s.replacing {
			s.err = reason
			d.refresh(ctx)
		}
	}
}

// watch waits while the slot's READY replica serves and answers why it died. It answers ""
// at once when the slot is stopped, which cancels the watch.
func (d *deployment) watch(ctx workflow.Context, s *replicaSlot) string {
	wctx := workflow.WithActivityOptions(ctx, watchActivity)
	for {
		var res contract.WatchReplicaResult
		err := workflow.ExecuteActivity(wctx, contract.ActivityWatchReplica, contract.WatchReplicaInput{ReplicaID: s.id}).Get(ctx, &res)
		if ctx.Err() != nil {
			return ""
		}
		if err == nil {
			if res.Reason == "" {
				res.Reason = "replica " + string(res.State)
			}
			return res.Reason
		}
		// The watch itself gave up (a lost worker, the database away, its time up), which says
		// nothing of the replica: it is watched again rather than replaced.
		workflow.GetLogger(ctx).Warn("replica watch ended; watching again", "deployment_id", d.in.DeploymentID,
			"replica_id", s.id, "err", err)
		if workflow.Sleep(ctx, time.Minute) != nil {
			return ""
		}
	}
}

// bringUp answers "" when the replica is READY, else why not and whether a new replica may
// do better.
func (d *deployment) bringUp(ctx workflow.Context, s *replicaSlot) (reason string, retry bool) {
	var placed contract.PlaceReplicaResult
	err := workflow.ExecuteActivity(ctx, contract.ActivityPlaceReplica, contract.PlaceReplicaInput{
		DeploymentID: d.in.DeploymentID, ReplicaID: s.id, GPU: d.spec.GPURequest(),
	}).Get(ctx, &placed)
	if err != nil {
		return reasonOf(err), false
	}
	s.nodeID = placed.NodeID

	err = workflow.ExecuteActivity(workflow.WithActivityOptions(ctx, startActivity), contract.ActivityStartReplica,
		contract.StartReplicaInput{ReplicaID: s.id, Spec: *d.spec}).Get(ctx, nil)
	if err != nil {
		return reasonOf(err), true
	}
	if ctx.Err() != nil {
		// Stopped while the start was landing: the slot is STOPPING and must stay so, or
		// stop() would keep a slot whose replica it stops.
		return "", false
	}
	// A replica carried over READY from the previous run stays READY while it is confirmed.
	if s.state != modelplane.ReplicaReady {
		s.state = modelplane.ReplicaStarting
		d.refresh(ctx)
	}

	var res contract.WaitReplicaReadyResult
	err = workflow.ExecuteActivity(workflow.WithActivityOptions(ctx, waitActivity), contract.ActivityWaitReplicaReady,
		contract.WaitReplicaReadyInput{ReplicaID: s.id, Timeout: d.spec.DeployTimeout}).Get(ctx, &res)
	if err != nil {
		return reasonOf(err), true
	}
	if res.State != modelplane.ReplicaReady {
		// A replica that outlived the deploy timeout fails the deployment: another would be
		// as slow. Histories from before the timeout never carry TimedOut, so they replay
		// the same commands.
		return res.Reason, !res.TimedOut
	}
	s.address = res.Address
	return "", false
}

// stop ends the slots' background work, stops their replicas in parallel and drops them.
func (d *deployment) stop(ctx workflow.Context, victims []*replicaSlot) {
	for _, s := range victims {
		s.cancel()
		s.state = modelplane.ReplicaStopping
	}
	// A start in flight could otherwise land after the stop and leave a replica running.
	_ = workflow.Await(ctx, func() bool {
		for _, s := range victims {
			if !s.exited {
				return false
			}
		}
		return true
	})
	var futures []workflow.Future
	for _, s := range victims {
		futures = append(futures, d.stopReplicaAsync(ctx, s.id))
	}
	for i, f := range futures {
		if err := f.Get(ctx, nil); err != nil {
			workflow.GetLogger(ctx).Error("replica not stopped; cleanup will reap it",
				"deployment_id", d.in.DeploymentID, "replica_id", victims[i].id, "err", err)
		}
	}
	kept := d.slots[:0]
	for _, s := range d.slots {
		if s.state != modelplane.ReplicaStopping {
			kept = append(kept, s)
		}
	}
	d.slots = kept
}

func (d *deployment) stopReplicaAsync(ctx workflow.Context, id string) workflow.Future {
	return workflow.ExecuteActivity(workflow.WithActivityOptions(ctx, stopActivity), contract.ActivityStopReplica,
		contract.StopReplicaInput{ReplicaID: id, Grace: ReplicaStopGrace})
}

func (d *deployment) stopReplica(ctx workflow.Context, id string) {
	// A failed replica is stopped even when its slot is being cancelled, so it does not
	// linger on the node.
	dctx, _ := workflow.NewDisconnectedContext(ctx)
	if err := d.stopReplicaAsync(dctx, id).Get(dctx, nil); err != nil {
		workflow.GetLogger(ctx).Error("failed replica not stopped", "replica_id", id, "err", err)
	}
}

func (d *deployment) validateScale(req contract.ScaleRequest) error {
	switch {
	case req.Replicas < 0:
		return fmt.Errorf("replicas must not be negative, got %d", req.Replicas)
	case req.Replicas > 1 && d.spec != nil && d.spec.IsDevelopment:
		return fmt.Errorf("the development deployment has at most one replica, not %d", req.Replicas)
	}
	return d.validateServing()
}

// validateServing refuses changes to the replicas of a deployment that cannot run any.
func (d *deployment) validateServing() error {
	switch {
	case d.deleted:
		return errors.New("deployment is deleted")
	case d.inactive:
		return errors.New("deployment is INACTIVE; activate it first")
	case d.fixed == modelplane.DeploymentBuildFailed:
		return errors.New("deployment failed to build; activate it to retry the build")
	}
	return nil
}

func (d *deployment) validateLive() error {
	if d.deleted {
		return errors.New("deployment is deleted")
	}
	return nil
}

func (d *deployment) scale(ctx workflow.Context, req contract.ScaleRequest) (contract.DeploymentStatus, error) {
	ctx = workflow.WithActivityOptions(ctx, shortActivity)
	if err := d.mu.Lock(ctx); err != nil {
		return contract.DeploymentStatus{}, err
	}
	defer d.mu.Unlock()
	// The state may have changed while this update waited for the lock.
	if err := d.validateScale(req); err != nil {
		return d.snapshot(), err
	}
	d.leaveZero(req.Replicas)
	d.desired = req.Replicas
	// Before the first build is over there is nothing to start yet; the build reconciles
	// to the count set here.
	if d.spec != nil {
		d.reconcile(ctx)
	}
	return d.snapshot(), nil
}

// leaveZero marks the deployment as waking when it goes from no replica to some.
func (d *deployment) leaveZero(desired int) {
	if d.desired == 0 && desired > 0 && len(d.slots) == 0 {
		d.waking = true
	}
}

// wake starts one replica of a deployment at zero; a deployment with replicas is left as it
// is, so a burst of wakes from gateways costs one start.
func (d *deployment) wake(ctx workflow.Context) (contract.DeploymentStatus, error) {
	ctx = workflow.WithActivityOptions(ctx, shortActivity)
	if err := d.mu.Lock(ctx); err != nil {
		return contract.DeploymentStatus{}, err
	}
	defer d.mu.Unlock()
	if err := d.validateServing(); err != nil {
		return d.snapshot(), err
	}
	if d.desired > 0 {
		return d.snapshot(), nil
	}
	d.leaveZero(1)
	d.desired = 1
	if d.spec != nil {
		d.reconcile(ctx)
	}
	return d.snapshot(), nil
}

// validatePatch refuses patches to a deployment other than the development deployment, and
// to one that cannot run.
func (d *deployment) validatePatch() error {
	if d.spec != nil && !d.spec.IsDevelopment {
		return errors.New("patches apply to the development deployment only")
	}
	return d.validateServing()
}

// applyPatch brings the running replica to the staged head, or starts one with it when none
// runs (the deployment is at zero, or its replica failed).
func (d *deployment) applyPatch(ctx workflow.Context) (contract.PatchSyncResult, error) {
	ctx = workflow.WithActivityOptions(ctx, shortActivity)
	if err := d.mu.Lock(ctx); err != nil {
		return contract.PatchSyncResult{}, err
	}
	defer d.mu.Unlock()
	if err := d.validatePatch(); err != nil {
		return contract.PatchSyncResult{Status: d.snapshot()}, err
	}
	if d.spec == nil {
		return contract.PatchSyncResult{Status: d.snapshot()}, errors.New("the deployment is still building; sync again once it is")
	}
	var running []string
	for _, s := range d.slots {
		if s.nodeID != "" && (s.state == modelplane.ReplicaReady || s.state == modelplane.ReplicaStarting) {
			running = append(running, s.id)
		}
	}
	var res contract.ApplyPatchesResult
	if err := workflow.ExecuteActivity(workflow.WithActivityOptions(ctx, patchActivity), contract.ActivityApplyPatches,
		contract.ApplyPatchesInput{DeploymentID: d.in.DeploymentID, ReplicaIDs: running}).Get(ctx, &res); err != nil {
		return contract.PatchSyncResult{Status: d.snapshot()}, fmt.Errorf("applying patches: %s", reasonOf(err))
	}
	out := contract.PatchSyncResult{FullDeployReason: res.FullDeployReason, PatchHash: res.PatchHash, How: res.How, ReloadError: res.ReloadError}
	if res.Config != nil {
		d.spec.Config = res.Config
	}
	if res.FullDeployReason == "" && len(running) == 0 {
		d.leaveZero(1)
		d.desired = max(1, d.desired)
		d.reconcile(ctx)
		out.How = contract.HowWoken
	}
	out.Status = d.snapshot()
	return out, nil
}

func (d *deployment) deactivate(ctx workflow.Context) (contract.DeploymentStatus, error) {
	ctx = workflow.WithActivityOptions(ctx, shortActivity)
	if err := d.mu.Lock(ctx); err != nil {
		return contract.DeploymentStatus{}, err
	}
	defer d.mu.Unlock()
	if d.deleted || d.inactive {
		return d.snapshot(), nil
	}
	d.inactive = true
	d.stopAll(ctx)
	d.fixed, d.fixedReason = modelplane.DeploymentInactive, ""
	d.refresh(ctx)
	return d.snapshot(), nil
}

func (d *deployment) activate(ctx workflow.Context) (contract.DeploymentStatus, error) {
	ctx = workflow.WithActivityOptions(ctx, shortActivity)
	if err := d.mu.Lock(ctx); err != nil {
		return contract.DeploymentStatus{}, err
	}
	defer d.mu.Unlock()
	if d.deleted {
		return d.snapshot(), errors.New("deployment is deleted")
	}
	d.inactive = false
	if d.spec == nil {
		d.fixed, d.fixedReason = modelplane.DeploymentBuilding, ""
		d.refresh(ctx)
		if !d.build(ctx) {
			return d.snapshot(), nil
		}
	}
	d.fixed, d.fixedReason = "", ""
	d.desired = max(1, d.desired)
	d.reconcile(ctx)
	return d.snapshot(), nil
}

func (d *deployment) delete(ctx workflow.Context) (contract.DeploymentStatus, error) {
	ctx = workflow.WithActivityOptions(ctx, shortActivity)
	if err := d.mu.Lock(ctx); err != nil {
		return contract.DeploymentStatus{}, err
	}
	defer d.mu.Unlock()
	if d.deleted {
		return d.snapshot(), nil
	}
	// Nothing may scale the deployment up again while it is going away.
	d.inactive = true
	d.stopAll(ctx)
	d.fixed, d.fixedReason = modelplane.DeploymentInactive, "deleted"
	d.refresh(ctx)
	if err := workflow.ExecuteActivity(ctx, contract.ActivityMarkDeploymentDeleted, contract.MarkDeploymentDeletedInput{
		DeploymentID: d.in.DeploymentID, ModelID: d.in.ModelID,
	}).Get(ctx, nil); err != nil {
		return d.snapshot(), fmt.Errorf("mark deployment deleted: %w", err)
	}
	d.deleted = true
	return d.snapshot(), nil
}

// stopAll stops every replica, with status DEACTIVATING while it does.
func (d *deployment) stopAll(ctx workflow.Context) {
	d.fixed, d.fixedReason = modelplane.DeploymentDeactivating, ""
	d.refresh(ctx)
	d.stop(ctx, append([]*replicaSlot(nil), d.slots...))
	d.failure = ""
}

// compute derives the status from the replicas and the mode the deployment is in.
func (d *deployment) compute() (modelplane.DeploymentStatus, string) {
	if d.fixed != "" {
		return d.fixed, d.fixedReason
	}
	if d.failure != "" {
		if d.everActive {
			return modelplane.DeploymentUnhealthy, d.failure
		}
		return modelplane.DeploymentDeployFailed, d.failure
	}
	if d.desired == 0 {
		if len(d.slots) == 0 {
			return modelplane.DeploymentScaledToZero, ""
		}
		return modelplane.DeploymentDeploying, ""
	}
	ready, starting, replacing := 0, 0, 0
	died := ""
	for _, s := range d.slots {
		switch {
		case s.state == modelplane.ReplicaReady:
			ready++
		case s.replacing:
			replacing++
			if died == "" {
				died = s.err
			}
		case s.state == modelplane.ReplicaStarting:
			starting++
		}
	}
	switch {
	case d.waking && ready == 0:
		return modelplane.DeploymentWakingUp, ""
	case ready >= d.desired:
		return modelplane.DeploymentActive, ""
	case ready > 0 && ready+replacing >= d.desired:
		// A replacement is under way while the other replicas serve.
		return modelplane.DeploymentActive, ""
	case ready == 0 && replacing > 0:
		return modelplane.DeploymentUnhealthy, died
	case starting > 0 || ready > 0:
		return modelplane.DeploymentLoadingModel, ""
	}
	return modelplane.DeploymentDeploying, ""
}

// refresh recomputes the status and records it when it changed. Writes go one at a time, each
// with the status current when it starts, so the database never ends on a stale one.
func (d *deployment) refresh(ctx workflow.Context) {
	d.status, d.reason = d.compute()
	if d.status == modelplane.DeploymentActive {
		d.everActive = true
	}
	if d.status != modelplane.DeploymentWakingUp {
		d.waking = false
	}
	// A write is not abandoned when the caller is cancelled half-way.
	ctx, _ = workflow.NewDisconnectedContext(ctx)
	if err := d.statusMu.Lock(ctx); err != nil {
		return
	}
	defer d.statusMu.Unlock()
	st, reason := d.status, d.reason
	if st == d.written && reason == d.wreason {
		return
	}
	if err := workflow.ExecuteActivity(ctx, contract.ActivitySetDeploymentStatus, contract.SetDeploymentStatusInput{
		DeploymentID: d.in.DeploymentID, Status: st, Reason: reason,
	}).Get(ctx, nil); err != nil {
		workflow.GetLogger(ctx).Error("deployment status not recorded", "deployment_id", d.in.DeploymentID,
			"status", st, "err", err)
		return
	}
	d.written, d.wreason = st, reason
	_ = workflow.UpsertTypedSearchAttributes(ctx, contract.DeploymentStatusAttr.ValueSet(string(st)))
	workflow.GetLogger(ctx).Info("deployment status", "deployment_id", d.in.DeploymentID, "status", st, "reason", reason)
}

func (d *deployment) snapshot() contract.DeploymentStatus {
	out := contract.DeploymentStatus{Status: d.status, Reason: d.reason, Desired: d.desired, Replicas: []contract.ReplicaInfo{}}
	for _, s := range d.slots {
		if s.state == modelplane.ReplicaReady {
			out.Ready++
		}
		out.Replicas = append(out.Replicas, contract.ReplicaInfo{ID: s.id, NodeID: s.nodeID, State: s.state, Address: s.address, Error: s.err})
	}
	return out
}

// newReplicaID draws a replica ID once and replays it from history afterwards.
func newReplicaID(ctx workflow.Context) string {
	var id string
	_ = workflow.SideEffect(ctx, func(workflow.Context) any { return modelplane.NewID(12) }).Get(&id)
	return id
}

// reasonOf is the message of the application error behind err, without the activity
// wrapping, for status_reason.
func reasonOf(err error) string {
	var appErr *temporal.ApplicationError
	if errors.As(err, &appErr) {
		return appErr.Message()
	}
	return err.Error()
}

// pythonEnvChange marks the runs that build the Python environment while BUILDING.
const pythonEnvChange = "build-python-env"

var (
	// Installing requirements can take many minutes (large wheels); the heartbeat notices a
	// lost worker, and a retried build joins the one the agents have under way.
	envActivity = workflow.ActivityOptions{
		StartToCloseTimeout: 2 * time.Hour,
		HeartbeatTimeout:    30 * time.Second,
		RetryPolicy: &temporal.RetryPolicy{
			InitialInterval: time.Second, MaximumInterval: 30 * time.Second, MaximumAttempts: 10,
			NonRetryableErrorTypes: []string{contract.ErrTypeBuildFailed},
		},
	}
	shortActivity = workflow.ActivityOptions{
		StartToCloseTimeout: 30 * time.Second,
		RetryPolicy: &temporal.RetryPolicy{
			InitialInterval: time.Second, MaximumInterval: 30 * time.Second, MaximumAttempts: 10,
		},
	}
	startActivity = workflow.ActivityOptions{
		StartToCloseTimeout: 2 * time.Minute,
		// The start must be over before the replica is stopped, or it could land after.
		WaitForCancellation: true,
		RetryPolicy:         activityRetry,
	}
	// Loading a large model can take many minutes; the heartbeat notices a lost worker.
	waitActivity = workflow.ActivityOptions{
		StartToCloseTimeout: time.Hour,
		HeartbeatTimeout:    30 * time.Second,
		RetryPolicy:         activityRetry,
	}
	// A watch lasts as long as its replica serves; the heartbeat notices a lost worker, and a
	// new watch starts when one ends without a death. A stop does not wait for the watch to
	// acknowledge its cancellation (that waits for a heartbeat, up to half a minute): the
	// watch leaves a replica it finds stopped as it is, and the stop records STOPPED last.
	watchActivity = workflow.ActivityOptions{
		StartToCloseTimeout: 24 * time.Hour,
		HeartbeatTimeout:    30 * time.Second,
		RetryPolicy:         activityRetry,
	}
	// Applying patches waits for the model server to reload or restart, as long as loading the
	// model takes; the heartbeat notices a lost worker.
	patchActivity = workflow.ActivityOptions{
		StartToCloseTimeout: time.Hour,
		HeartbeatTimeout:    30 * time.Second,
		RetryPolicy: &temporal.RetryPolicy{
			InitialInterval: time.Second, MaximumInterval: 10 * time.Second, MaximumAttempts: 10,
			NonRetryableErrorTypes: []string{contract.ErrTypePatchRefused},
		},
	}
	// A stop first waits for gateways to drain the replica, heartbeating meanwhile, so a lost
	// worker's stop is retried within half a minute rather than after the whole drain.
	stopActivity = workflow.ActivityOptions{
		StartToCloseTimeout: contract.DefaultDrainTimeout + ReplicaStopGrace + time.Minute,
		HeartbeatTimeout:    30 * time.Second,
		RetryPolicy: &temporal.RetryPolicy{
			InitialInterval: time.Second, MaximumInterval: 30 * time.Second, MaximumAttempts: 10,
		},
	}
)
