package e2e

import (
	"context"
	"net/http"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/modelplane/modelplane/workflows/contract"
)

// readyReplicas counts the deployment's READY replicas on the agent.
func (h *harness) readyReplicas(deploymentID string) int {
	rs, err := h.agent.Replicas(context.Background())
	require.NoError(h.t, err)
	n := 0
	for _, r := range rs {
		if r.DeploymentID == deploymentID && r.State == "READY" {
			n++
		}
	}
	return n
}

// rollingModel makes canaryModel's two deployments, the first serving production with two
// replicas, the second with room for two (it has the one a new deployment starts with), and
// production's promotions rolling one replica at a time, each step held 5 s once its replicas
// are ready; it waits for the first's two replicas.
func rollingModel(t *testing.T, h *harness) (modelID, first, second string) {
	t.Helper()
	modelID, first, second = canaryModel(t, h, map[string]any{"rolling_deploy": true,
		"rolling_deploy_config": map[string]any{"max_surge_percent": 50, "stabilization_time_seconds": 5}})
	h.autoscale(modelID, first, map[string]any{"min_replica": 2, "max_replica": 2})
	h.autoscale(modelID, second, map[string]any{"min_replica": 0, "max_replica": 2})
	require.Eventually(t, func() bool { return h.readyReplicas(first) == 2 }, 2*time.Minute, 100*time.Millisecond,
		"the current deployment gets its two replicas")
	return modelID, first, second
}

// promoteToHalf promotes the second deployment and waits for the rolling deploy's first step
// to hold: half the traffic on one candidate replica.
func (h *harness) promoteToHalf(modelID, second string) {
	h.t.Helper()
	code, body := h.call(http.MethodPost, "/v1/models/"+modelID+"/deployments/"+second+"/promote", map[string]any{})
	require.Equal(h.t, http.StatusOK, code, "%v", body)
	require.Eventually(h.t, func() bool {
		e, err := h.api.Environment(context.Background(), modelID, "production")
		return err == nil && e.InProgressPromotion != nil && e.InProgressPromotion.PercentTrafficToNewVersion == 50 &&
			h.readyReplicas(second) == 1
	}, 2*time.Minute, 50*time.Millisecond, "the first step moves half the traffic to one candidate replica")
}

// A rolling deploy replaces two replicas one at a time under load: no request fails, the
// traffic follows the candidate's replicas (50%, then 100%), and the previous deployment
// ends at zero.
func TestRolling_DeployReplacesReplicasUnderLoadWithoutFailures(t *testing.T) {
	h := start(t)
	modelID, first, second := rollingModel(t, h)
	load := startLoadKeeping(t, h, modelID, 100, true)
	h.promoteToHalf(modelID, second)
	h.waitCurrent(modelID, "production", second, "")
	time.Sleep(time.Second)
	_, failures := load.stop()
	require.Empty(t, failures, "no request fails while the replicas are replaced")

	var percents []int
	for _, s := range h.stages(modelID) {
		percents = append(percents, s.percent)
	}
	require.Equal(t, []int{50, 100}, percents, "one step per replica")
	served := 0
	for _, s := range load.shots {
		if servedBySecond(s) {
			served++
		}
	}
	require.Positive(t, served, "the candidate served part of the load")
	h.waitStatus(modelID, first, "SCALED_TO_ZERO")
	require.Equal(t, 2, h.readyReplicas(second), "the candidate ends with the previous deployment's replicas")
}

// Cancelled half way, a rolling deploy gives the previous deployment its two replicas back
// before the traffic returns to it, without a failed request, and takes the candidate to zero.
func TestRolling_CancelHalfWayRestoresThePreviousDeployment(t *testing.T) {
	h := start(t)
	modelID, first, second := rollingModel(t, h)
	h.record("promotion-rolling-canceled", contract.PromotionWorkflowID(modelID, "production"))
	load := startLoadKeeping(t, h, modelID, 100, true)
	h.promoteToHalf(modelID, second)
	code, body := h.call(http.MethodPost, "/v1/models/"+modelID+"/environments/production/cancel_promotion", nil)
	require.Equal(t, http.StatusOK, code, "%v", body)
	h.waitPromotionOver(modelID, "production")
	require.Equal(t, 2, h.readyReplicas(first), "the traffic went back once both replicas were ready")
	canceled := time.Now()
	h.waitStatus(modelID, second, "SCALED_TO_ZERO")
	time.Sleep(time.Second)
	_, failures := load.stop()
	require.Empty(t, failures, "no request fails while the rolling deploy is undone")
	after, toSecond := sentAfter(load.shots, canceled)
	require.Positive(t, after)
	require.Zero(t, toSecond, "after the cancel every request goes to the current deployment")
	e, err := h.api.Environment(context.Background(), modelID, "production")
	require.NoError(t, err)
	require.NotNil(t, e.CurrentDeployment)
	require.Equal(t, first, e.CurrentDeployment.ID)
}
