package workflows_test

import (
	"fmt"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/modelplane/modelplane"
	"github.com/modelplane/modelplane/workflows/contract"
)

// rollingWorld replaces prev0001's four ready replicas with the published deployment
// pub00001 by a rolling deploy; each wait for readiness takes a minute.
func rollingWorld(surge, unavailable, stabilization int) *promoWorld {
	b := published()
	b.PreviousReady = 4
	b.Settings.RollingDeploy = true
	b.Settings.RollingDeployConfig.MaxSurgePercent = surge
	b.Settings.RollingDeployConfig.MaxUnavailablePercent = unavailable
	b.Settings.RollingDeployConfig.StabilizationTimeSeconds = stabilization
	return &promoWorld{begin: b, waitFor: time.Minute}
}

// scaleOrders are the scale requests sent, as "prev=3" and "cand=1", in order.
func scaleOrders(t *testing.T, w *promoWorld) []string {
	var out []string
	for _, u := range w.updates {
		if u.UpdateName != contract.UpdateScale {
			continue
		}
		who := "cand"
		if u.WorkflowID == contract.DeploymentWorkflowID("prev0001") {
			who = "prev"
		}
		out = append(out, fmt.Sprintf("%s=%d", who, decodeAs[contract.ScaleRequest](t, u.Request).Replicas))
	}
	return out
}

func TestPromotion_RollingDeployReplacesReplicasBatchByBatch(t *testing.T) {
	h := newPromoHarness(t, rollingWorld(25, 0, 30))
	res, err := h.run(promoInput("pub00001"))
	require.NoError(t, err)
	require.Equal(t, modelplane.PromotionSucceeded, res.Status)
	require.Zero(t, decodeAs[contract.DeploymentInput](t, h.w.started.Input).Replicas, "the candidate starts at zero")
	// One surge replica at a time: the candidate gains one, then the previous deployment
	// gives one up; the last order is the cleanup's.
	require.Equal(t, []string{"cand=1", "prev=3", "cand=2", "prev=2", "cand=3", "prev=1", "cand=4", "prev=0", "prev=0"},
		scaleOrders(t, h.w))
	require.Equal(t, []int{0, 25, 50, 75, 100}, percents(h.w.progress), "the traffic follows the ready replicas")
	for i := 2; i < len(h.w.progress); i++ {
		// A minute's wait for the replica, then 30 s of stabilization.
		require.Equal(t, 90*time.Second, h.w.progress[i].at-h.w.progress[i-1].at, "step %d", i)
	}
	require.Equal(t, "pub00001", h.w.switched)
}

func TestPromotion_RollingDeployWithoutSurgeFreesReplicasFirst(t *testing.T) {
	h := newPromoHarness(t, rollingWorld(0, 50, 0))
	res, err := h.run(promoInput("pub00001"))
	require.NoError(t, err)
	require.Equal(t, modelplane.PromotionSucceeded, res.Status)
	// Never more than the four replicas between both deployments.
	require.Equal(t, []string{"prev=2", "cand=2", "prev=0", "cand=4", "prev=0"}, scaleOrders(t, h.w))
	require.Equal(t, []int{0, 50, 100}, percents(h.w.progress))
}

func TestPromotion_RollingDeployCancelRestoresThePreviousDeploymentFirst(t *testing.T) {
	h := newPromoHarness(t, rollingWorld(25, 0, 0))
	// The second candidate replica is starting (the first was ready at 1 min).
	ans := h.control(90*time.Second, contract.UpdatePromotionCancel)
	res, err := h.run(promoInput("pub00001"))
	require.NoError(t, err)
	require.NoError(t, ans.rejected)
	require.Equal(t, modelplane.PromotionCanceled, res.Status)
	require.Equal(t, []string{"cand=1", "prev=3", "cand=2", "prev=4", "cand=0"}, scaleOrders(t, h.w),
		"the previous deployment gets its replicas back, then the candidate goes to zero")
	require.Equal(t, contract.DeploymentWorkflowID("prev0001"), h.w.waited.WorkflowID,
		"the traffic goes back only once the previous deployment is ready again")
	require.Equal(t, 4, h.w.waited.Target)
	require.Equal(t, modelplane.PromotionCanceled, h.w.finished.Status)
	require.Empty(t, h.w.switched)
	require.Equal(t, []int{0, 25}, percents(h.w.progress))
}

func TestPromotion_RollingDeployPauseHoldsBetweenSteps(t *testing.T) {
	h := newPromoHarness(t, rollingWorld(25, 0, 0))
	pause := h.control(90*time.Second, contract.UpdatePromotionPause)
	resume := h.control(30*time.Minute, contract.UpdatePromotionResume)
	res, err := h.run(promoInput("pub00001"))
	require.NoError(t, err)
	require.Equal(t, modelplane.PromotionSucceeded, res.Status)
	require.NoError(t, pause.rejected)
	require.NoError(t, resume.rejected)
	require.Equal(t, []int{0, 25, 50, 50, 50, 75, 100}, percents(h.w.progress))
	require.Equal(t, modelplane.PromotionPaused, h.w.progress[3].status, "paused once the step's replicas were ready")
	require.Equal(t, 2*time.Minute, h.w.progress[3].at)
	require.Equal(t, 30*time.Minute, h.w.progress[4].at)
}

func TestPromotion_RollingDeployForceRollForwardBringsAllReplicasAtOnce(t *testing.T) {
	h := newPromoHarness(t, rollingWorld(25, 0, 0))
	ans := h.control(90*time.Second, contract.UpdatePromotionForceRollForward)
	res, err := h.run(promoInput("pub00001"))
	require.NoError(t, err)
	require.NoError(t, ans.rejected)
	require.Equal(t, modelplane.PromotionSucceeded, res.Status)
	require.Equal(t, []string{"cand=1", "prev=3", "cand=2", "cand=4", "prev=0"}, scaleOrders(t, h.w))
	require.Equal(t, []int{0, 25, 100}, percents(h.w.progress))
	require.Equal(t, 4, h.w.waited.Target, "the switch waits for all the candidate's replicas")
	require.Equal(t, "pub00001", h.w.switched)
}

func TestPromotion_RollingDeployFailureRollsBack(t *testing.T) {
	w := rollingWorld(25, 0, 0)
	w.failAt = "wait"
	h := newPromoHarness(t, w)
	_, err := h.run(promoInput("pub00001"))
	require.Error(t, err)
	require.Equal(t, string(modelplane.PromotionFailed), w.attrs["PromotionStatus"])
	require.Equal(t, modelplane.PromotionFailed, w.finished.Status)
	require.Contains(t, w.finished.ErrorMessage, "wait broke")
	require.Equal(t, []string{"cand=1", "prev=4", "cand=0"}, scaleOrders(t, w))
	require.Empty(t, w.switched)
}

func TestPromotion_RollingDeployNeedsAPreviousDeploymentWithReplicas(t *testing.T) {
	w := rollingWorld(25, 0, 0)
	w.begin.PreviousReady = 0
	h := newPromoHarness(t, w)
	_, err := h.run(promoInput("pub00001"))
	require.NoError(t, err)
	require.Equal(t, []string{"cand=1", "prev=0"}, scaleOrders(t, w), "a previous deployment at zero is switched away from at once")
}
