package workflows_test

import (
	"fmt"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	"go.temporal.io/sdk/testsuite"

	"github.com/modelplane/modelplane"
	"github.com/modelplane/modelplane/workflows/contract"
)

// ramping is a begin result for a development source (so the candidate is a new deployment)
// replacing prev0001, with the canary ramp on over 600 s.
func ramping() *promoWorld {
	b := published()
	b.SourceIsDevelopment = true
	b.Settings.RampUpWhilePromoting = true
	b.Settings.RampUpDurationSeconds = 600
	return &promoWorld{begin: b}
}

// control sends a control Update at the given workflow time and records its answer.
type controlAnswer struct {
	done     bool
	rejected error
	result   contract.PromotionControlResult
}

func (h *promoHarness) control(at time.Duration, name string) *controlAnswer {
	a := &controlAnswer{}
	h.env.RegisterDelayedCallback(func() {
		h.env.UpdateWorkflow(name, fmt.Sprintf("%s-%s", name, at), &testsuite.TestUpdateCallback{
			OnAccept: func() {},
			OnReject: func(err error) { a.done, a.rejected = true, err },
			OnComplete: func(v any, err error) {
				a.done = true
				if r, ok := v.(contract.PromotionControlResult); ok {
					a.result = r
				}
				require.NoError(h.t, err)
			},
		})
	}, at)
	return a
}

func percents(p []progressRec) []int {
	out := []int{}
	for _, r := range p {
		out = append(out, r.percent)
	}
	return out
}

func TestPromotion_RampTakesTenStagesOverTheWindow(t *testing.T) {
	h := newPromoHarness(t, ramping())
	res, err := h.run(promoInput("devel001"))
	require.NoError(t, err)
	require.Equal(t, modelplane.PromotionSucceeded, res.Status)

	p := h.w.progress
	require.Equal(t, []int{10, 20, 30, 40, 50, 60, 70, 80, 90, 100}, percents(p))
	for i, r := range p {
		require.Equal(t, modelplane.PromotionRampingUp, r.status)
		require.Equal(t, p[0].at+time.Duration(i)*60*time.Second, r.at, "stage %d starts 60 s after the one before", i+1)
	}
	require.Equal(t, res.CandidateDeploymentID, h.w.switched, "the switch follows the last stage")
	require.GreaterOrEqual(t, h.w.switchedAt.Sub(h.w.envStarted), p[9].at)
}

func TestPromotion_CancelAtEveryStageRollsBack(t *testing.T) {
	for stage := 1; stage <= 9; stage++ {
		t.Run(fmt.Sprintf("stage %d", stage), func(t *testing.T) {
			h := newPromoHarness(t, ramping())
			ans := h.control(time.Duration(stage-1)*time.Minute+30*time.Second, contract.UpdatePromotionCancel)
			res, err := h.run(promoInput("devel001"))
			require.NoError(t, err)
			require.True(t, ans.done)
			require.NoError(t, ans.rejected)
			require.Equal(t, modelplane.PromotionCanceled, ans.result.Status)
			require.Equal(t, modelplane.PromotionCanceled, res.Status)
			require.Len(t, h.w.progress, stage, "no stage after the cancel")
			require.Empty(t, h.w.switched, "a cancelled promotion never switches")
			require.NotNil(t, h.w.finished)
			require.Equal(t, modelplane.PromotionCanceled, h.w.finished.Status)
			require.Equal(t, "prev0001", h.w.current, "traffic stays on the current deployment")
			last := h.w.updates[len(h.w.updates)-1]
			require.Equal(t, contract.DeploymentWorkflowID(res.CandidateDeploymentID), last.WorkflowID)
			require.Equal(t, contract.ScaleRequest{Replicas: 0}, decodeAs[contract.ScaleRequest](t, last.Request),
				"the candidate is scaled to zero and kept")
		})
	}
}

func TestPromotion_PauseHoldsThePercentageUntilResume(t *testing.T) {
	h := newPromoHarness(t, ramping())
	// Stage 3 (30%) runs from 120 s to 180 s; paused at 140 s for ten minutes.
	pause := h.control(140*time.Second, contract.UpdatePromotionPause)
	early := h.control(150*time.Second, contract.UpdatePromotionPause)
	resume := h.control(140*time.Second+10*time.Minute, contract.UpdatePromotionResume)
	res, err := h.run(promoInput("devel001"))
	require.NoError(t, err)
	require.Equal(t, modelplane.PromotionSucceeded, res.Status)
	require.Equal(t, modelplane.PromotionPaused, pause.result.Status)
	require.Error(t, early.rejected, "a paused promotion cannot be paused again")
	require.Equal(t, modelplane.PromotionRampingUp, resume.result.Status)

	p := h.w.progress
	require.Equal(t, []int{10, 20, 30, 30, 30, 40, 50, 60, 70, 80, 90, 100}, percents(p))
	require.Equal(t, modelplane.PromotionPaused, p[3].status)
	require.Equal(t, modelplane.PromotionRampingUp, p[4].status)
	// The stage goes on for the 40 s it had left when it was paused.
	require.Equal(t, p[4].at+40*time.Second, p[5].at)
}

func TestPromotion_ForceRollForwardFinishesAtOnce(t *testing.T) {
	for _, at := range []time.Duration{90 * time.Second, 330 * time.Second} {
		h := newPromoHarness(t, ramping())
		ans := h.control(at, contract.UpdatePromotionForceRollForward)
		res, err := h.run(promoInput("devel001"))
		require.NoError(t, err)
		require.True(t, ans.done)
		require.NoError(t, ans.rejected)
		require.Equal(t, modelplane.PromotionSucceeded, res.Status)
		p := h.w.progress
		require.Equal(t, 100, p[len(p)-1].percent)
		require.Equal(t, at, p[len(p)-1].at, "all traffic moves when forced, not at the next stage")
		require.Equal(t, res.CandidateDeploymentID, h.w.switched)
	}
}

func TestPromotion_ControlsThatDoNotApplyAreRefused(t *testing.T) {
	w := ramping()
	w.waitFor = 5 * time.Minute // the candidate takes five minutes to be ready
	h := newPromoHarness(t, w)
	resume := h.control(time.Minute, contract.UpdatePromotionResume)
	forward := h.control(2*time.Minute, contract.UpdatePromotionForceRollForward)
	pause := h.control(3*time.Minute, contract.UpdatePromotionPause)
	after := h.control(time.Hour, contract.UpdatePromotionCancel)
	res, err := h.run(promoInput("devel001"))
	require.NoError(t, err)
	require.Equal(t, modelplane.PromotionSucceeded, res.Status)
	require.ErrorContains(t, resume.rejected, "only a paused promotion")
	require.ErrorContains(t, forward.rejected, "not ready yet")
	require.ErrorContains(t, pause.rejected, "only a ramping promotion")
	require.False(t, after.done, "the workflow has ended by then: nothing answers")
}

func TestPromotion_CancelWhileTheCandidateStartsEndsCanceled(t *testing.T) {
	w := ramping()
	w.waitFor = 10 * time.Minute
	h := newPromoHarness(t, w)
	ans := h.control(time.Minute, contract.UpdatePromotionForceCancel)
	res, err := h.run(promoInput("devel001"))
	require.NoError(t, err)
	require.NoError(t, ans.rejected)
	require.Equal(t, modelplane.PromotionCanceled, res.Status)
	require.Empty(t, h.w.progress, "the ramp never started")
	require.Empty(t, h.w.switched)
	require.Equal(t, modelplane.PromotionCanceled, h.w.finished.Status)
}

func analyzed() *promoWorld {
	w := ramping()
	w.begin.Settings.CanaryAnalysis.Enabled = true
	return w
}

func TestPromotion_AnalysisBreachAtStageThreeRollsBack(t *testing.T) {
	w := analyzed()
	w.breachAt = 3
	h := newPromoHarness(t, w)
	res, err := h.run(promoInput("devel001"))
	require.Error(t, err, "a rolled-back promotion fails")
	require.ErrorContains(t, err, "canary analysis at stage 3 (30%): error rate up 20.0 points")
	require.Equal(t, []int{10, 20, 30}, percents(h.w.progress), "no stage after the breach")
	require.Empty(t, h.w.switched)
	require.Equal(t, modelplane.PromotionFailed, h.w.finished.Status)
	require.Contains(t, h.w.finished.ErrorMessage, "error rate up 20.0 points", "the figures are in error_message")
	require.Equal(t, "prev0001", h.w.current)
	_ = res
	last := h.w.updates[len(h.w.updates)-1]
	require.Equal(t, contract.ScaleRequest{Replicas: 0}, decodeAs[contract.ScaleRequest](t, last.Request))
	// Each stage is judged over its own time range, the candidate against the current deployment.
	a := h.w.analyzed[2]
	require.Equal(t, "prev0001", a.CurrentID)
	require.Equal(t, time.Minute, a.To.Sub(a.From))
}

func TestPromotion_TooFewRequestsWaitOneMoreStageThenProceed(t *testing.T) {
	w := analyzed()
	w.thin = map[int]bool{2: true, 3: true} // stage 2: too few, and still too few after waiting
	h := newPromoHarness(t, w)
	res, err := h.run(promoInput("devel001"))
	require.NoError(t, err)
	require.Equal(t, modelplane.PromotionSucceeded, res.Status)
	p := h.w.progress
	require.Equal(t, []int{10, 20, 30, 40, 50, 60, 70, 80, 90, 100}, percents(p))
	require.Equal(t, 2*time.Minute, p[2].at-p[1].at, "stage 2 waited one more stage length")
	require.Equal(t, time.Minute, p[3].at-p[2].at)
	require.Equal(t, 10, h.w.analyses, "nine stages judged, one of them twice")
}

func TestPromotion_PauseAndForceAtEveryStage(t *testing.T) {
	for stage := 1; stage <= 9; stage++ {
		at := time.Duration(stage-1)*time.Minute + 10*time.Second
		t.Run(fmt.Sprintf("pause and resume at stage %d", stage), func(t *testing.T) {
			h := newPromoHarness(t, ramping())
			h.control(at, contract.UpdatePromotionPause)
			h.control(at+time.Hour, contract.UpdatePromotionResume)
			res, err := h.run(promoInput("devel001"))
			require.NoError(t, err)
			require.Equal(t, modelplane.PromotionSucceeded, res.Status)
			p := h.w.progress
			require.Len(t, p, 12, "ten stages plus the pause and the resume")
			require.Equal(t, modelplane.PromotionPaused, p[stage].status)
			require.Equal(t, stage*10, p[stage].percent, "paused at the stage's percentage")
			require.Equal(t, p[stage+1].at+50*time.Second, p[stage+2].at, "the stage keeps the 50 s it had left")
		})
		t.Run(fmt.Sprintf("force roll forward at stage %d", stage), func(t *testing.T) {
			h := newPromoHarness(t, ramping())
			h.control(at, contract.UpdatePromotionForceRollForward)
			res, err := h.run(promoInput("devel001"))
			require.NoError(t, err)
			require.Equal(t, modelplane.PromotionSucceeded, res.Status)
			require.Equal(t, append(tens(stage), 100), percents(h.w.progress))
		})
	}
}

// tens is 10, 20, ... up to stage×10.
func tens(stage int) []int {
	out := []int{}
	for i := 1; i <= stage; i++ {
		out = append(out, 10*i)
	}
	return out
}
