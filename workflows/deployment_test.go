package workflows_test

import (
	"context"
	"fmt"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/mock"
	"github.com/stretchr/testify/require"
	"go.temporal.io/sdk/activity"
	"go.temporal.io/sdk/converter"
	"go.temporal.io/sdk/temporal"
	"go.temporal.io/sdk/testsuite"

	"github.com/modelplane/modelplane"
	"github.com/modelplane/modelplane/activities"
	"github.com/modelplane/modelplane/workflows"
	"github.com/modelplane/modelplane/workflows/contract"
)

// cluster is a fake of everything the Deployment workflow's activities touch.
type cluster struct {
	mu          sync.Mutex
	development bool // the deployment is the development one
	buildErr    error
	// pythonEnv is the spec's; envErrs are what the next environment builds fail with.
	pythonEnv bool
	envErrs   []error
	envBuilds int
	placeErr  error
	failReady int // how many replicas fail to become ready before the rest succeed
	// deployTimeout is the spec's; slow replicas never become ready, so a wait with a
	// timeout answers TimedOut.
	deployTimeout time.Duration
	slow          bool
	waitTimeouts  []time.Duration // the Timeout of each wait
	statuses      []string
	reasons       []string
	placed        []string
	started       []string
	stopped       []string
	deleted       bool
	// deaths are when the next watches report their replica FAILED, on the workflow's clock
	// from the watch's start; a watch beyond them lasts until it is cancelled.
	deaths    []time.Duration
	watched   []string          // replicas whose watch started, in order
	died      []string          // replicas whose watch reported them dead
	cancelled []string          // replicas whose watch was cancelled
	watchIDs  map[string]string // activity ID to replica ID
}

func (c *cluster) lastStatus() (string, string) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if len(c.statuses) == 0 {
		return "", ""
	}
	return c.statuses[len(c.statuses)-1], c.reasons[len(c.reasons)-1]
}

type harness struct {
	t   *testing.T
	env *testsuite.TestWorkflowEnvironment
	c   *cluster
	n   int
}

func newHarness(t *testing.T, c *cluster) *harness {
	t.Helper()
	var s testsuite.WorkflowTestSuite
	env := s.NewTestWorkflowEnvironment()
	env.SetTestTimeout(30 * time.Second)
	var a *activities.Activities
	env.OnActivity(a.LoadDeploymentSpec, mock.Anything, mock.Anything).Return(
		func(_ context.Context, in contract.LoadDeploymentSpecInput) (contract.DeploymentSpec, error) {
			if c.buildErr != nil {
				return contract.DeploymentSpec{}, c.buildErr
			}
			return contract.DeploymentSpec{DeploymentID: in.DeploymentID, ModelID: in.ModelID, ArchiveID: "sha256:00",
				IsDevelopment: c.development, DeployTimeout: c.deployTimeout, PythonEnv: c.pythonEnv}, nil
		})
	env.OnActivity(a.BuildPythonEnv, mock.Anything, mock.Anything).Return(
		func(_ context.Context, in contract.BuildPythonEnvInput) (contract.BuildPythonEnvResult, error) {
			c.mu.Lock()
			defer c.mu.Unlock()
			c.envBuilds++
			if len(c.envErrs) > 0 {
				err := c.envErrs[0]
				c.envErrs = c.envErrs[1:]
				return contract.BuildPythonEnvResult{}, err
			}
			return contract.BuildPythonEnvResult{Nodes: []string{"node-a"}}, nil
		})
	env.OnActivity(a.SetDeploymentStatus, mock.Anything, mock.Anything).Return(
		func(_ context.Context, in contract.SetDeploymentStatusInput) error {
			c.mu.Lock()
			defer c.mu.Unlock()
			c.statuses = append(c.statuses, string(in.Status))
			c.reasons = append(c.reasons, in.Reason)
			return nil
		})
	env.OnActivity(a.PlaceReplica, mock.Anything, mock.Anything).Return(
		func(_ context.Context, in contract.PlaceReplicaInput) (contract.PlaceReplicaResult, error) {
			c.mu.Lock()
			defer c.mu.Unlock()
			if c.placeErr != nil {
				return contract.PlaceReplicaResult{}, c.placeErr
			}
			c.placed = append(c.placed, in.ReplicaID)
			return contract.PlaceReplicaResult{NodeID: "node-a"}, nil
		})
	env.OnActivity(a.StartReplica, mock.Anything, mock.Anything).Return(
		func(_ context.Context, in contract.StartReplicaInput) error {
			c.mu.Lock()
			defer c.mu.Unlock()
			c.started = append(c.started, in.ReplicaID)
			return nil
		})
	env.OnActivity(a.WaitReplicaReady, mock.Anything, mock.Anything).Return(
		func(_ context.Context, in contract.WaitReplicaReadyInput) (contract.WaitReplicaReadyResult, error) {
			c.mu.Lock()
			defer c.mu.Unlock()
			c.waitTimeouts = append(c.waitTimeouts, in.Timeout)
			if c.slow && in.Timeout > 0 {
				return contract.WaitReplicaReadyResult{State: modelplane.ReplicaFailed, TimedOut: true,
					Reason: "replica not ready within the deploy timeout (deploy_timeout_minutes: 15); it was still starting"}, nil
			}
			if c.failReady > 0 {
				c.failReady--
				return contract.WaitReplicaReadyResult{State: modelplane.ReplicaFailed, Reason: "model crashed"}, nil
			}
			return contract.WaitReplicaReadyResult{State: modelplane.ReplicaReady, Address: "10.0.0.1:9000"}, nil
		})
	env.OnActivity(a.WatchReplica, mock.Anything, mock.Anything).AfterFn(func() time.Duration {
		c.mu.Lock()
		defer c.mu.Unlock()
		if len(c.deaths) == 0 {
			return 1000 * time.Hour
		}
		d := c.deaths[0]
		c.deaths = c.deaths[1:]
		return d
	}).Return(
		func(_ context.Context, in contract.WatchReplicaInput) (contract.WatchReplicaResult, error) {
			c.mu.Lock()
			defer c.mu.Unlock()
			c.died = append(c.died, in.ReplicaID)
			return contract.WatchReplicaResult{State: modelplane.ReplicaFailed, Reason: "replica failed: CUDA error"}, nil
		})
	c.watchIDs = map[string]string{}
	env.SetOnActivityStartedListener(func(info *activity.Info, _ context.Context, args converter.EncodedValues) {
		if info.ActivityType.Name != "WatchReplica" {
			return
		}
		var in contract.WatchReplicaInput
		require.NoError(t, args.Get(&in))
		c.mu.Lock()
		defer c.mu.Unlock()
		c.watched = append(c.watched, in.ReplicaID)
		c.watchIDs[info.ActivityID] = in.ReplicaID
	})
	env.SetOnActivityCanceledListener(func(info *activity.Info) {
		c.mu.Lock()
		defer c.mu.Unlock()
		if id, ok := c.watchIDs[info.ActivityID]; ok && info.ActivityType.Name == "WatchReplica" {
			c.cancelled = append(c.cancelled, id)
		}
	})
	env.OnActivity(a.StopReplica, mock.Anything, mock.Anything).Return(
		func(_ context.Context, in contract.StopReplicaInput) error {
			c.mu.Lock()
			defer c.mu.Unlock()
			c.stopped = append(c.stopped, in.ReplicaID)
			return nil
		})
	env.OnActivity(a.MarkDeploymentDeleted, mock.Anything, mock.Anything).Return(
		func(_ context.Context, in contract.MarkDeploymentDeletedInput) error {
			c.mu.Lock()
			defer c.mu.Unlock()
			c.deleted = true
			return nil
		})
	return &harness{t: t, env: env, c: c}
}

// result is what an update answered.
type result struct {
	done     bool
	rejected error
	status   contract.DeploymentStatus
	err      error
}

// update sends the update at the given workflow time.
func (h *harness) update(at time.Duration, name string, args ...any) *result {
	h.n++
	id := fmt.Sprintf("%s-%d", name, h.n)
	r := &result{}
	h.env.RegisterDelayedCallback(func() {
		h.env.UpdateWorkflow(name, id, &testsuite.TestUpdateCallback{
			OnAccept: func() {},
			OnReject: func(err error) { r.done, r.rejected = true, err },
			OnComplete: func(v any, err error) {
				r.done, r.err = true, err
				if st, ok := v.(contract.DeploymentStatus); ok {
					r.status = st
				}
			},
		}, args...)
	}, at)
	return r
}

// at runs fn at the given workflow time.
func (h *harness) at(at time.Duration, fn func()) {
	h.env.RegisterDelayedCallback(fn, at)
}

func (h *harness) query() contract.DeploymentStatus {
	h.t.Helper()
	v, err := h.env.QueryWorkflow(contract.QueryStatus)
	require.NoError(h.t, err)
	var st contract.DeploymentStatus
	require.NoError(h.t, v.Get(&st))
	return st
}

// run starts the workflow with a delete at the end, so it completes.
func (h *harness) run(replicas int, deleteAt time.Duration) *result {
	del := h.update(deleteAt, contract.UpdateDelete)
	h.env.ExecuteWorkflow(workflows.Deployment, contract.DeploymentInput{DeploymentID: "dep00001", ModelID: "mod00001", Replicas: replicas})
	require.True(h.t, h.env.IsWorkflowCompleted(), "workflow should complete after delete")
	require.NoError(h.t, h.env.GetWorkflowError())
	require.True(h.t, del.done, "delete update should have finished")
	require.NoError(h.t, del.err)
	return del
}

func TestDeployment_NewDeploymentBecomesActive(t *testing.T) {
	h := newHarness(t, &cluster{})
	var st contract.DeploymentStatus
	h.at(time.Minute, func() { st = h.query() })
	h.run(2, time.Hour)

	require.Equal(t, []string{"BUILDING", "DEPLOYING", "LOADING_MODEL", "ACTIVE"}, h.c.statuses[:4],
		"statuses before delete")
	require.Equal(t, modelplane.DeploymentActive, st.Status)
	require.Equal(t, 2, st.Desired)
	require.Equal(t, 2, st.Ready)
	require.Len(t, st.Replicas, 2)
	require.Len(t, h.c.placed, 2)
	require.Len(t, h.c.started, 2)
	for _, r := range st.Replicas {
		require.Regexp(t, `^[a-z0-9]{12}$`, r.ID)
		require.Equal(t, "node-a", r.NodeID)
	}
}

func TestDeployment_BuildFailureIsBuildFailed(t *testing.T) {
	h := newHarness(t, &cluster{
		buildErr: temporal.NewNonRetryableApplicationError("model archive sha256:00 is missing", contract.ErrTypeBuildFailed, nil),
	})
	var st contract.DeploymentStatus
	h.at(time.Minute, func() { st = h.query() })
	scale := h.update(2*time.Minute, contract.UpdateScale, contract.ScaleRequest{Replicas: 2})
	h.run(1, time.Hour)

	require.Equal(t, modelplane.DeploymentBuildFailed, st.Status)
	require.Equal(t, "model archive sha256:00 is missing", st.Reason)
	require.Equal(t, []string{"BUILDING", "BUILD_FAILED"}, h.c.statuses[:2])
	require.Equal(t, "model archive sha256:00 is missing", h.c.reasons[1])
	require.Error(t, scale.rejected, "scale of a deployment that failed to build must be rejected")
	require.Empty(t, h.c.placed)
	require.True(t, h.c.deleted)
}

func TestDeployment_UnplaceableIsDeployFailedWithReason(t *testing.T) {
	reason := "placed 0 of 1 replica: gpu-a: node is DOWN"
	h := newHarness(t, &cluster{
		placeErr: temporal.NewNonRetryableApplicationError(reason, contract.ErrTypeUnplaceable, nil),
	})
	var st contract.DeploymentStatus
	h.at(time.Minute, func() { st = h.query() })
	h.run(1, time.Hour)

	require.Equal(t, modelplane.DeploymentDeployFailed, st.Status)
	require.Equal(t, reason, st.Reason)
	require.Contains(t, h.c.statuses, "DEPLOY_FAILED")
	require.Empty(t, h.c.started, "nothing is started when nothing is placed")
}

func TestDeployment_UnplaceableRetriedByActivate(t *testing.T) {
	c := &cluster{placeErr: temporal.NewNonRetryableApplicationError("full", contract.ErrTypeUnplaceable, nil)}
	h := newHarness(t, c)
	h.at(time.Minute, func() { c.mu.Lock(); c.placeErr = nil; c.mu.Unlock() })
	act := h.update(2*time.Minute, contract.UpdateActivate)
	var st contract.DeploymentStatus
	h.at(3*time.Minute, func() { st = h.query() })
	h.run(1, time.Hour)

	require.NoError(t, act.err)
	require.Equal(t, modelplane.DeploymentActive, st.Status)
	require.Equal(t, 1, st.Ready)
}

func TestDeployment_FailedReplicaIsReplaced(t *testing.T) {
	h := newHarness(t, &cluster{failReady: 1})
	var st contract.DeploymentStatus
	h.at(time.Minute, func() { st = h.query() })
	h.run(1, time.Hour)

	require.Equal(t, modelplane.DeploymentActive, st.Status)
	require.Len(t, h.c.placed, 2, "the failed replica is replaced by a new one")
	require.NotEqual(t, h.c.placed[0], h.c.placed[1])
	require.Equal(t, h.c.placed[0], h.c.stopped[0], "the failed replica is stopped first")
	require.Equal(t, h.c.placed[1], st.Replicas[0].ID)
}

func TestDeployment_ReplicaFailingEveryAttemptIsDeployFailed(t *testing.T) {
	h := newHarness(t, &cluster{failReady: contract.MaxReplicaAttempts})
	var st contract.DeploymentStatus
	h.at(time.Minute, func() { st = h.query() })
	h.run(1, time.Hour)

	require.Equal(t, modelplane.DeploymentDeployFailed, st.Status)
	require.Equal(t, "model crashed", st.Reason)
	require.Len(t, h.c.placed, contract.MaxReplicaAttempts)
}

func TestDeployment_ReplicaPastTheDeployTimeoutFailsTheDeploymentAtOnce(t *testing.T) {
	h := newHarness(t, &cluster{deployTimeout: 15 * time.Minute, slow: true})
	var st contract.DeploymentStatus
	h.at(time.Hour, func() { st = h.query() })
	h.run(1, 2*time.Hour)

	require.Equal(t, []time.Duration{15 * time.Minute}, h.c.waitTimeouts, "the wait is given the deploy timeout")
	require.Equal(t, modelplane.DeploymentDeployFailed, st.Status)
	require.Contains(t, st.Reason, "deploy_timeout_minutes: 15")
	require.Len(t, h.c.placed, 1, "a replica as slow as the last is not tried again")
	require.Equal(t, h.c.placed, h.c.stopped[:1], "the slow replica is stopped")
}

func TestDeployment_ScaleUpAndDown(t *testing.T) {
	h := newHarness(t, &cluster{})
	up := h.update(time.Minute, contract.UpdateScale, contract.ScaleRequest{Replicas: 4})
	var afterUp contract.DeploymentStatus
	var stoppedBeforeDown int
	h.at(2*time.Minute, func() { afterUp = h.query(); stoppedBeforeDown = len(h.c.stopped) })
	down := h.update(3*time.Minute, contract.UpdateScale, contract.ScaleRequest{Replicas: 1})
	var afterDown contract.DeploymentStatus
	var stoppedAfterDown []string
	h.at(4*time.Minute, func() { afterDown = h.query(); stoppedAfterDown = append([]string(nil), h.c.stopped...) })
	h.run(2, time.Hour)

	require.NoError(t, up.err)
	require.Equal(t, modelplane.DeploymentActive, afterUp.Status)
	require.Equal(t, 4, afterUp.Ready)
	require.Zero(t, stoppedBeforeDown)
	require.NoError(t, down.err)
	require.Equal(t, 1, down.status.Desired)
	require.Len(t, stoppedAfterDown, 3, "scaling 4 to 1 stops three replicas")
	require.Equal(t, modelplane.DeploymentActive, afterDown.Status)
	require.Len(t, afterDown.Replicas, 1)
	require.Equal(t, afterUp.Replicas[0].ID, afterDown.Replicas[0].ID, "the oldest replica is kept")
	require.NotContains(t, stoppedAfterDown, afterUp.Replicas[0].ID)
}

func TestDeployment_ScaleToZero(t *testing.T) {
	h := newHarness(t, &cluster{})
	sc := h.update(time.Minute, contract.UpdateScale, contract.ScaleRequest{Replicas: 0})
	h.run(2, time.Hour)

	require.NoError(t, sc.err)
	require.Equal(t, modelplane.DeploymentScaledToZero, sc.status.Status)
	require.Len(t, h.c.stopped, 2)
	require.Contains(t, h.c.statuses, "SCALED_TO_ZERO")
}

func TestDeployment_WakeFromZeroIsWakingUpThenActive(t *testing.T) {
	h := newHarness(t, &cluster{})
	h.update(time.Minute, contract.UpdateScale, contract.ScaleRequest{Replicas: 0})
	wake := h.update(2*time.Minute, contract.UpdateWake)
	again := h.update(3*time.Minute, contract.UpdateWake)
	var afterWake contract.DeploymentStatus
	h.at(4*time.Minute, func() { afterWake = h.query() })
	h.run(1, time.Hour)

	require.NoError(t, wake.err)
	require.Equal(t, 1, wake.status.Desired)
	require.NoError(t, again.err)
	require.Equal(t, modelplane.DeploymentActive, afterWake.Status)
	require.Len(t, h.c.placed, 2, "one replica at start, one at the wake; the second wake starts nothing")
	i := slices.Index(h.c.statuses, "SCALED_TO_ZERO")
	require.GreaterOrEqual(t, i, 0)
	require.Equal(t, []string{"SCALED_TO_ZERO", "WAKING_UP", "ACTIVE"}, h.c.statuses[i:i+3])
}

func TestDeployment_WakeOfAnInactiveDeploymentIsRejected(t *testing.T) {
	h := newHarness(t, &cluster{})
	h.update(time.Minute, contract.UpdateDeactivate)
	wake := h.update(2*time.Minute, contract.UpdateWake)
	h.run(1, time.Hour)

	require.True(t, wake.done)
	require.ErrorContains(t, wake.rejected, "INACTIVE")
	require.Len(t, h.c.placed, 1)
}

func TestDeployment_ScaleRejectsNegative(t *testing.T) {
	h := newHarness(t, &cluster{})
	sc := h.update(time.Minute, contract.UpdateScale, contract.ScaleRequest{Replicas: -1})
	h.run(1, time.Hour)

	require.True(t, sc.done)
	require.ErrorContains(t, sc.rejected, "negative")
	require.Len(t, h.c.placed, 1, "a rejected scale changes nothing")
}

func TestDeployment_DevelopmentNeverScalesPastOne(t *testing.T) {
	h := newHarness(t, &cluster{development: true})
	sc := h.update(time.Minute, contract.UpdateScale, contract.ScaleRequest{Replicas: 2})
	h.run(1, time.Hour)

	require.True(t, sc.done)
	require.ErrorContains(t, sc.rejected, "at most one replica")
	require.Len(t, h.c.placed, 1)
}

func TestDeployment_DeactivateStopsEveryReplicaAndActivateBringsItBack(t *testing.T) {
	h := newHarness(t, &cluster{})
	deact := h.update(time.Minute, contract.UpdateDeactivate)
	var stoppedAtDeactivate []string
	h.at(2*time.Minute, func() { stoppedAtDeactivate = append([]string(nil), h.c.stopped...) })
	scale := h.update(3*time.Minute, contract.UpdateScale, contract.ScaleRequest{Replicas: 3})
	act := h.update(4*time.Minute, contract.UpdateActivate)
	var st contract.DeploymentStatus
	h.at(5*time.Minute, func() { st = h.query() })
	h.run(2, time.Hour)

	require.NoError(t, deact.err)
	require.Equal(t, modelplane.DeploymentInactive, deact.status.Status)
	require.Empty(t, deact.status.Replicas)
	require.ElementsMatch(t, h.c.placed[:2], stoppedAtDeactivate, "every replica is stopped")
	require.Contains(t, h.c.statuses, "DEACTIVATING")
	require.ErrorContains(t, scale.rejected, "INACTIVE")
	require.NoError(t, act.err)
	require.Equal(t, modelplane.DeploymentActive, st.Status)
	require.Equal(t, 2, st.Ready, "activate restores the desired count")
	require.Len(t, h.c.placed, 4)
}

func TestDeployment_DeleteStopsEverythingAndCompletes(t *testing.T) {
	h := newHarness(t, &cluster{})
	del := h.run(3, time.Minute)

	require.Empty(t, del.status.Replicas)
	require.ElementsMatch(t, h.c.placed, h.c.stopped, "every replica is stopped")
	require.ElementsMatch(t, h.c.placed, h.c.cancelled, "every replica's watch is cancelled")
	require.True(t, h.c.deleted, "the deployment is marked deleted")
}

func TestDeployment_ContinuedRunKeepsItsReplicas(t *testing.T) {
	h := newHarness(t, &cluster{})
	var st contract.DeploymentStatus
	h.at(time.Minute, func() { st = h.query() })
	del := h.update(time.Hour, contract.UpdateDelete)
	h.env.ExecuteWorkflow(workflows.Deployment, contract.DeploymentInput{
		DeploymentID: "dep00001", ModelID: "mod00001", Replicas: 2,
		Carried: &contract.DeploymentCarry{Status: "ACTIVE", EverActive: true, Replicas: []contract.ReplicaInfo{
			{ID: "aaaaaaaaaaaa", NodeID: "node-a", State: "READY", Address: "10.0.0.1:9000"},
			{ID: "bbbbbbbbbbbb", NodeID: "node-a", State: "READY", Address: "10.0.0.2:9000"},
		}},
	})
	require.True(t, h.env.IsWorkflowCompleted())
	require.NoError(t, h.env.GetWorkflowError())
	require.NoError(t, del.err)

	require.Equal(t, modelplane.DeploymentActive, st.Status)
	require.Equal(t, 2, st.Ready)
	require.ElementsMatch(t, []string{"aaaaaaaaaaaa", "bbbbbbbbbbbb"}, h.c.placed, "only the carried replicas are placed, idempotently")
	require.Equal(t, []string{"DEACTIVATING", "INACTIVE"}, h.c.statuses,
		"a continued run writes no status until something changes")
}

func TestDeployment_ReadyReplicaThatDiesIsReplaced(t *testing.T) {
	c := &cluster{deaths: []time.Duration{10 * time.Minute}}
	h := newHarness(t, c)
	var before, after contract.DeploymentStatus
	h.at(5*time.Minute, func() { before = h.query() })
	h.at(30*time.Minute, func() { after = h.query() })
	h.run(1, time.Hour)

	require.Equal(t, modelplane.DeploymentActive, before.Status)
	require.Equal(t, []string{before.Replicas[0].ID}, c.died, "the ready replica's watch reported it dead")
	require.Len(t, c.placed, 2, "the dead replica is replaced by a new one")
	require.Equal(t, before.Replicas[0].ID, c.stopped[0], "the dead replica is stopped first")
	require.Equal(t, modelplane.DeploymentActive, after.Status, "the deployment is ACTIVE again once the replacement is ready")
	require.Equal(t, 1, after.Desired)
	require.Equal(t, 1, after.Ready)
	require.Equal(t, c.placed[1], after.Replicas[0].ID)
	require.Equal(t, []string{"BUILDING", "DEPLOYING", "LOADING_MODEL", "ACTIVE", "UNHEALTHY", "ACTIVE"}, c.statuses[:6],
		"with no replica ready the deployment is UNHEALTHY until the replacement is")
	require.Equal(t, "replica failed: CUDA error", c.reasons[4])
	require.Equal(t, []string{c.placed[0], c.placed[1]}, c.watched, "the replacement is watched in turn")
}

func TestDeployment_ReplicaThatDiesWhileOthersServeStaysActive(t *testing.T) {
	c := &cluster{deaths: []time.Duration{10 * time.Minute}}
	h := newHarness(t, c)
	var after contract.DeploymentStatus
	h.at(30*time.Minute, func() { after = h.query() })
	h.run(2, time.Hour)

	require.Len(t, c.died, 1)
	require.Len(t, c.placed, 3, "one replacement is placed")
	require.Equal(t, modelplane.DeploymentActive, after.Status)
	require.Equal(t, 2, after.Desired)
	require.Equal(t, 2, after.Ready)
	first := slices.Index(c.statuses, "ACTIVE")
	require.Positive(t, first, "statuses %v", c.statuses)
	require.Equal(t, []string{"DEACTIVATING", "INACTIVE"}, c.statuses[first+1:],
		"the deployment stays ACTIVE while the other replica serves and its replacement starts")
}

func TestDeployment_ScaleDownCancelsTheVictimsWatch(t *testing.T) {
	c := &cluster{}
	h := newHarness(t, c)
	var before contract.DeploymentStatus
	h.at(time.Minute, func() { before = h.query() })
	down := h.update(2*time.Minute, contract.UpdateScale, contract.ScaleRequest{Replicas: 1})
	var cancelled, stopped []string
	var after contract.DeploymentStatus
	h.at(30*time.Minute, func() {
		after = h.query()
		c.mu.Lock()
		cancelled, stopped = append([]string(nil), c.cancelled...), append([]string(nil), c.stopped...)
		c.mu.Unlock()
	})
	h.run(2, time.Hour)

	require.NoError(t, down.err)
	require.Len(t, before.Replicas, 2)
	require.Len(t, stopped, 1)
	require.Equal(t, stopped, cancelled, "the stopped replica's watch is cancelled, and only it")
	require.Len(t, c.placed, 2, "no replacement is made for a replica scaled away")
	require.Empty(t, c.died)
	require.Equal(t, modelplane.DeploymentActive, after.Status)
	require.Equal(t, 1, after.Ready)
	require.NotEqual(t, stopped[0], after.Replicas[0].ID)
}

func TestDeployment_DeactivateCancelsEveryWatch(t *testing.T) {
	c := &cluster{}
	h := newHarness(t, c)
	deact := h.update(time.Minute, contract.UpdateDeactivate)
	var cancelled []string
	h.at(2*time.Minute, func() { c.mu.Lock(); cancelled = append([]string(nil), c.cancelled...); c.mu.Unlock() })
	h.run(2, time.Hour)

	require.NoError(t, deact.err)
	require.Equal(t, modelplane.DeploymentInactive, deact.status.Status)
	require.ElementsMatch(t, c.placed, cancelled, "every watch is cancelled by deactivate")
	require.ElementsMatch(t, c.placed, c.watched)
	require.Len(t, c.placed, 2, "no replacement is made for a deactivated replica")
	require.Empty(t, c.died)
}

func TestDeployment_RequirementsAreInstalledWhileBuilding(t *testing.T) {
	h := newHarness(t, &cluster{pythonEnv: true})
	var st contract.DeploymentStatus
	h.at(time.Minute, func() { st = h.query() })
	h.run(1, time.Hour)

	require.Equal(t, 1, h.c.envBuilds)
	require.Equal(t, modelplane.DeploymentActive, st.Status)
	require.Equal(t, []string{"BUILDING", "DEPLOYING", "LOADING_MODEL", "ACTIVE"}, h.c.statuses[:4])
}

func TestDeployment_PackageWithoutRequirementsBuildsNoEnvironment(t *testing.T) {
	h := newHarness(t, &cluster{})
	h.run(1, time.Hour)
	require.Zero(t, h.c.envBuilds)
}

func TestDeployment_FailedRequirementsAreBuildFailedAndRetryBuildsAgain(t *testing.T) {
	reason := "node node-a could not prepare the Python environment: installing the requirements failed\nERROR: No matching distribution found for nosuchpkg==1.0"
	c := &cluster{pythonEnv: true, envErrs: []error{
		temporal.NewNonRetryableApplicationError(reason, contract.ErrTypeBuildFailed, nil),
	}}
	h := newHarness(t, c)
	var failed, retried contract.DeploymentStatus
	h.at(time.Minute, func() { failed = h.query() })
	act := h.update(2*time.Minute, contract.UpdateActivate)
	h.at(3*time.Minute, func() { retried = h.query() })
	h.run(1, time.Hour)

	require.Equal(t, modelplane.DeploymentBuildFailed, failed.Status)
	require.Equal(t, reason, failed.Reason)
	require.NoError(t, act.err)
	require.Equal(t, 2, c.envBuilds, "the retry builds the environment again")
	require.Equal(t, modelplane.DeploymentActive, retried.Status)
	require.Equal(t, []string{"BUILDING", "BUILD_FAILED", "BUILDING"}, c.statuses[:3])
}
