package workflows_test

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/mock"
	"github.com/stretchr/testify/require"
	"go.temporal.io/sdk/activity"
	"go.temporal.io/sdk/converter"
	"go.temporal.io/sdk/temporal"
	"go.temporal.io/sdk/testsuite"
	"go.temporal.io/sdk/workflow"

	"github.com/modelplane/modelplane"
	"github.com/modelplane/modelplane/activities"
	"github.com/modelplane/modelplane/workflows"
	"github.com/modelplane/modelplane/workflows/contract"
)

var asyncStart = time.Date(2026, 3, 4, 5, 6, 7, 0, time.UTC)

// asyncWorld fakes the database behind the AsyncRequest workflow's activities and records
// what the workflow asked of it, with the workflow time of each call.
type asyncWorld struct {
	mu sync.Mutex

	load contract.AsyncRequestState
	// claim answers the nth ClaimAsync (from 1); nil claims at once.
	claim func(n int) contract.ClaimAsyncResult
	// attempt answers attempt n (from 1); nil succeeds.
	attempt func(n int) contract.RunAsyncAttemptResult
	// deliver answers the nth DeliverWebhook try (from 1); nil delivers.
	deliver func(n int) error
	loadErr error

	calls      []string
	claims     []time.Duration
	attempts   []time.Duration
	attemptIns []contract.RunAsyncAttemptInput
	expiredAt  []time.Duration
	finished   []contract.FinishAsyncInput
	dispatched []string
	deliveries []time.Duration
	hookResult []contract.SetAsyncWebhookResultInput
	attrs      map[string]string
	// options are the first call's timeouts, by activity type.
	options map[string]activity.Info
}

type asyncHarness struct {
	t   *testing.T
	env *testsuite.TestWorkflowEnvironment
	w   *asyncWorld
}

// queuedRequest is a request as LoadAsync first finds it: queued for ten minutes at most,
// with a webhook.
func queuedRequest() contract.AsyncRequestState {
	return contract.AsyncRequestState{
		RequestID: "req0000000000001", ModelID: "model001", DeploymentID: "dep00001", Environment: "production",
		Status: modelplane.AsyncQueued, WebhookStatus: modelplane.WebhookPending, RetryConfig: modelplane.DefaultRetryConfig(),
		CreatedAt: asyncStart, ExpiresAt: asyncStart.Add(10 * time.Minute),
	}
}

func newAsyncHarness(t *testing.T, w *asyncWorld) *asyncHarness {
	t.Helper()
	var s testsuite.WorkflowTestSuite
	env := s.NewTestWorkflowEnvironment()
	env.SetStartTime(asyncStart)
	w.attrs = map[string]string{}
	w.options = map[string]activity.Info{}
	record := func(info *activity.Info) {
		w.mu.Lock()
		defer w.mu.Unlock()
		if _, ok := w.options[info.ActivityType.Name]; !ok {
			w.options[info.ActivityType.Name] = *info
		}
	}
	env.SetOnActivityStartedListener(func(info *activity.Info, _ context.Context, _ converter.EncodedValues) { record(info) })
	env.SetOnLocalActivityStartedListener(func(info *activity.Info, _ context.Context, _ []any) { record(info) })
	if w.load.RequestID == "" {
		w.load = queuedRequest()
	}
	since := func() time.Duration { return env.Now().Sub(asyncStart) }
	var a *activities.Activities
	env.OnActivity(a.LoadAsync, mock.Anything, mock.Anything).Return(
		func(_ context.Context, in contract.LoadAsyncInput) (contract.AsyncRequestState, error) {
			w.mu.Lock()
			defer w.mu.Unlock()
			w.calls = append(w.calls, "load")
			if in.RequestID != w.load.RequestID {
				return contract.AsyncRequestState{}, errors.New("loaded " + in.RequestID)
			}
			return w.load, w.loadErr
		}).Maybe()
	env.OnActivity(a.ClaimAsync, mock.Anything, mock.Anything).Return(
		func(_ context.Context, in contract.ClaimAsyncInput) (contract.ClaimAsyncResult, error) {
			w.mu.Lock()
			defer w.mu.Unlock()
			w.calls = append(w.calls, "claim")
			w.claims = append(w.claims, since())
			if w.claim != nil {
				return w.claim(len(w.claims)), nil
			}
			return contract.ClaimAsyncResult{Status: modelplane.AsyncInProgress, Claimed: true, DeploymentID: w.load.DeploymentID}, nil
		}).Maybe()
	env.OnActivity(a.ExpireAsync, mock.Anything, mock.Anything).Return(
		func(_ context.Context, in contract.ExpireAsyncInput) (contract.AsyncRequestState, error) {
			w.mu.Lock()
			defer w.mu.Unlock()
			w.calls = append(w.calls, "expire")
			w.expiredAt = append(w.expiredAt, since())
			st := w.load
			st.Status = modelplane.AsyncExpired
			return st, nil
		}).Maybe()
	env.OnActivity(a.RunAsyncAttempt, mock.Anything, mock.Anything).Return(
		func(_ context.Context, in contract.RunAsyncAttemptInput) (contract.RunAsyncAttemptResult, error) {
			w.mu.Lock()
			defer w.mu.Unlock()
			w.calls = append(w.calls, fmt.Sprintf("attempt %d", in.Attempt))
			w.attempts = append(w.attempts, since())
			w.attemptIns = append(w.attemptIns, in)
			if w.attempt != nil {
				res := w.attempt(in.Attempt)
				res.Attempt = in.Attempt
				if !res.Succeeded {
					res.Error.Attempt = in.Attempt
				}
				return res, nil
			}
			return contract.RunAsyncAttemptResult{Attempt: in.Attempt, StatusCode: 200, Succeeded: true}, nil
		}).Maybe()
	env.OnActivity(a.FinishAsync, mock.Anything, mock.Anything).Return(
		func(_ context.Context, in contract.FinishAsyncInput) (contract.AsyncRequestState, error) {
			w.mu.Lock()
			defer w.mu.Unlock()
			w.calls = append(w.calls, "finish "+string(in.Status))
			w.finished = append(w.finished, in)
			st := w.load
			st.Status = in.Status
			return st, nil
		}).Maybe()
	env.OnActivity(a.DispatchAsyncNext, mock.Anything, mock.Anything).Return(
		func(_ context.Context, in contract.DispatchAsyncNextInput) (contract.DispatchAsyncNextResult, error) {
			w.mu.Lock()
			defer w.mu.Unlock()
			w.calls = append(w.calls, "dispatch")
			w.dispatched = append(w.dispatched, in.DeploymentID)
			return contract.DispatchAsyncNextResult{Started: 1}, nil
		}).Maybe()
	env.OnActivity(a.DeliverWebhook, mock.Anything, mock.Anything).Return(
		func(_ context.Context, in contract.DeliverWebhookInput) error {
			w.mu.Lock()
			defer w.mu.Unlock()
			w.calls = append(w.calls, "deliver")
			w.deliveries = append(w.deliveries, since())
			if w.deliver != nil {
				return w.deliver(len(w.deliveries))
			}
			return nil
		}).Maybe()
	env.OnActivity(a.SetAsyncWebhookResult, mock.Anything, mock.Anything).Return(
		func(_ context.Context, in contract.SetAsyncWebhookResultInput) (contract.AsyncRequestState, error) {
			w.mu.Lock()
			defer w.mu.Unlock()
			w.calls = append(w.calls, "webhook result")
			w.hookResult = append(w.hookResult, in)
			st := w.load
			st.Status, st.WebhookStatus = modelplane.AsyncSucceeded, modelplane.WebhookSucceeded
			if len(w.finished) > 0 {
				st.Status = w.finished[len(w.finished)-1].Status
			}
			if len(w.expiredAt) > 0 {
				st.Status = modelplane.AsyncExpired
			}
			if !in.Delivered {
				st.WebhookStatus = modelplane.WebhookFailed
				if st.Status == modelplane.AsyncSucceeded {
					st.Status = modelplane.AsyncWebhookFailed
				}
			}
			return st, nil
		}).Maybe()
	env.OnUpsertTypedSearchAttributes(mock.Anything).Run(func(args mock.Arguments) {
		sa := args.Get(0).(temporal.SearchAttributes)
		w.mu.Lock()
		defer w.mu.Unlock()
		for _, k := range []temporal.SearchAttributeKeyKeyword{contract.ModelIDAttr, contract.DeploymentIDAttr, contract.EnvironmentAttr} {
			if v, ok := sa.GetKeyword(k); ok {
				w.attrs[k.GetName()] = v
			}
		}
	}).Return().Maybe()
	return &asyncHarness{t: t, env: env, w: w}
}

func (h *asyncHarness) run() contract.AsyncRequestResult {
	h.t.Helper()
	h.env.ExecuteWorkflow(workflows.AsyncRequest, contract.AsyncRequestInput{RequestID: h.w.load.RequestID})
	require.True(h.t, h.env.IsWorkflowCompleted(), "the workflow did not complete")
	require.NoError(h.t, h.env.GetWorkflowError())
	var res contract.AsyncRequestResult
	require.NoError(h.t, h.env.GetWorkflowResult(&res))
	return res
}

// notYet is a ClaimAsync answer that leaves the request queued.
func notYet(ahead int) contract.ClaimAsyncResult {
	return contract.ClaimAsyncResult{Status: modelplane.AsyncQueued, DeploymentID: "dep00001", Ahead: ahead}
}

func failedAttempt(status int, retryable bool) contract.RunAsyncAttemptResult {
	code := modelplane.CodeModelPredictError
	if status < 500 {
		code = modelplane.CodeModelInvalidInput
	}
	return contract.RunAsyncAttemptResult{StatusCode: status, Retryable: retryable,
		Error: modelplane.AsyncError{Code: code, Message: fmt.Sprintf("the model answered %d", status)}}
}

func TestAsyncRequest_ClaimedAtOnceSucceedsAndDeliversTheWebhook(t *testing.T) {
	h := newAsyncHarness(t, &asyncWorld{})
	res := h.run()
	require.Equal(t, contract.AsyncRequestResult{Status: modelplane.AsyncSucceeded, WebhookStatus: modelplane.WebhookSucceeded, Attempts: 1}, res)
	require.Equal(t, []string{"load", "claim", "attempt 1", "finish SUCCEEDED", "dispatch", "deliver", "webhook result"}, h.w.calls)
	require.Equal(t, []time.Duration{0}, h.w.claims)
	require.Equal(t, contract.RunAsyncAttemptInput{RequestID: "req0000000000001", Attempt: 1, DeploymentID: "dep00001"}, h.w.attemptIns[0])
	require.Equal(t, []contract.FinishAsyncInput{{RequestID: "req0000000000001", Status: modelplane.AsyncSucceeded, OutputAttempt: 1}},
		h.w.finished, "the output is the successful attempt's, with no errors")
	require.Equal(t, []string{"dep00001"}, h.w.dispatched, "the next request in line is told at once")
	require.Equal(t, []contract.SetAsyncWebhookResultInput{{RequestID: "req0000000000001", Delivered: true}}, h.w.hookResult)
	require.Equal(t, map[string]string{"ModelId": "model001", "DeploymentId": "dep00001", "Environment": "production"}, h.w.attrs)
}

func TestAsyncRequest_ActivityTimeouts(t *testing.T) {
	h := newAsyncHarness(t, &asyncWorld{})
	h.run()
	run := h.w.options["RunAsyncAttempt"]
	require.Equal(t, 20*time.Minute, run.StartToCloseTimeout, "an attempt waits as long as a predict may take")
	require.Equal(t, 10*time.Second, run.HeartbeatTimeout, "a lost worker is noticed in seconds")
	hook := h.w.options["DeliverWebhook"]
	require.Equal(t, 30*time.Minute, hook.ScheduleToCloseTimeout, "a webhook is tried for half an hour")
	require.Positive(t, hook.StartToCloseTimeout)
	// The database steps are local activities retried for a week, so that a database outage
	// does not leave a request open with nothing to end it. (The test environment skips a
	// failing local activity's clock to its deadline, so the outage itself is not played here.)
	for _, name := range []string{"LoadAsync", "ClaimAsync", "FinishAsync", "DispatchAsyncNext", "SetAsyncWebhookResult"} {
		require.Equal(t, 30*time.Second, h.w.options[name].StartToCloseTimeout, name)
		require.Equal(t, 7*24*time.Hour, h.w.options[name].ScheduleToCloseTimeout, name)
		require.True(t, h.w.options[name].IsLocalActivity, name)
	}
}

func TestAsyncRequest_WithoutWebhookSendsNone(t *testing.T) {
	w := &asyncWorld{load: queuedRequest()}
	w.load.WebhookStatus, w.load.Environment = modelplane.WebhookNone, ""
	h := newAsyncHarness(t, w)
	res := h.run()
	require.Equal(t, contract.AsyncRequestResult{Status: modelplane.AsyncSucceeded, WebhookStatus: modelplane.WebhookNone, Attempts: 1}, res)
	require.Empty(t, h.w.deliveries)
	require.Empty(t, h.w.hookResult)
	require.NotContains(t, h.w.attrs, "Environment", "a request to a deployment has no environment")
}

func TestAsyncRequest_WaitsInTheQueueForTheDispatchSignal(t *testing.T) {
	h := newAsyncHarness(t, &asyncWorld{claim: func(n int) contract.ClaimAsyncResult {
		if n == 1 {
			return notYet(2)
		}
		return contract.ClaimAsyncResult{Status: modelplane.AsyncInProgress, Claimed: true, DeploymentID: "dep00001"}
	}})
	h.env.RegisterDelayedCallback(func() {
		h.env.SignalWorkflow(contract.SignalAsyncDispatch, nil)
	}, 5*time.Second)
	res := h.run()
	require.Equal(t, modelplane.AsyncSucceeded, res.Status)
	require.Equal(t, []time.Duration{0, 5 * time.Second}, h.w.claims, "the signal makes the request claim at once")
	require.Equal(t, []time.Duration{5 * time.Second}, h.w.attempts)
}

func TestAsyncRequest_PollsTheQueueWhenNoSignalComes(t *testing.T) {
	h := newAsyncHarness(t, &asyncWorld{claim: func(n int) contract.ClaimAsyncResult {
		if n < 3 {
			return notYet(0)
		}
		return contract.ClaimAsyncResult{Status: modelplane.AsyncInProgress, Claimed: true, DeploymentID: "dep00001"}
	}})
	h.run()
	require.Equal(t, []time.Duration{0, workflows.AsyncQueuePoll, 2 * workflows.AsyncQueuePoll}, h.w.claims)
}

func TestAsyncRequest_ExpiresInTheQueueAndStillSendsTheWebhook(t *testing.T) {
	w := &asyncWorld{load: queuedRequest(), claim: func(int) contract.ClaimAsyncResult { return notYet(4) }}
	w.load.ExpiresAt = asyncStart.Add(100 * time.Second)
	h := newAsyncHarness(t, w)
	res := h.run()
	require.Equal(t, contract.AsyncRequestResult{Status: modelplane.AsyncExpired, WebhookStatus: modelplane.WebhookSucceeded}, res)
	require.Equal(t, []time.Duration{0, 30 * time.Second, 60 * time.Second, 90 * time.Second}, h.w.claims)
	require.Equal(t, []time.Duration{100 * time.Second}, h.w.expiredAt, "expired at created_at + max_time_in_queue")
	require.Empty(t, h.w.attempts, "an expired request never runs")
	require.Empty(t, h.w.finished)
	require.Len(t, h.w.deliveries, 1, "the webhook tells of the expiry")
	require.Equal(t, []string{"dep00001"}, h.w.dispatched)
}

func TestAsyncRequest_ExpiredBeforeTheWorkflowRanIsNotClaimed(t *testing.T) {
	w := &asyncWorld{load: queuedRequest()}
	w.load.ExpiresAt = asyncStart.Add(-time.Second) // its gateway died; Cleanup started it late
	h := newAsyncHarness(t, w)
	res := h.run()
	require.Equal(t, modelplane.AsyncExpired, res.Status)
	require.Empty(t, h.w.claims)
}

func TestAsyncRequest_RetriesWithBackoffUntilAnAttemptSucceeds(t *testing.T) {
	w := &asyncWorld{load: queuedRequest(), attempt: func(n int) contract.RunAsyncAttemptResult {
		switch n {
		case 1:
			return failedAttempt(503, true)
		case 2:
			return contract.RunAsyncAttemptResult{Retryable: true, Error: modelplane.AsyncError{Code: modelplane.CodeGatewayLost, Message: "lost"}}
		}
		return contract.RunAsyncAttemptResult{StatusCode: 200, Succeeded: true}
	}}
	w.load.RetryConfig = modelplane.RetryConfig{MaxAttempts: 4, InitialDelayMs: 1000, MaxDelayMs: 1500}
	h := newAsyncHarness(t, w)
	res := h.run()
	require.Equal(t, contract.AsyncRequestResult{Status: modelplane.AsyncSucceeded, WebhookStatus: modelplane.WebhookSucceeded, Attempts: 3}, res)
	require.Len(t, h.w.attempts, 3)
	require.Equal(t, time.Second, h.w.attempts[1]-h.w.attempts[0], "the first wait is the initial delay")
	require.Equal(t, 1500*time.Millisecond, h.w.attempts[2]-h.w.attempts[1], "the second, twice the initial delay, is capped by the maximum")
	require.Equal(t, []contract.FinishAsyncInput{{RequestID: "req0000000000001", Status: modelplane.AsyncSucceeded, OutputAttempt: 3,
		Errors: modelplane.AsyncErrors{
			{Code: modelplane.CodeModelPredictError, Message: "the model answered 503", Attempt: 1},
			{Code: modelplane.CodeGatewayLost, Message: "lost", Attempt: 2},
		}}}, h.w.finished, "the output of the attempt that succeeded, and the errors of those before it")
}

func TestAsyncRequest_FailsWithEveryAttemptsErrorWhenAttemptsRunOut(t *testing.T) {
	w := &asyncWorld{load: queuedRequest(), attempt: func(n int) contract.RunAsyncAttemptResult { return failedAttempt(500+n, true) }}
	w.load.RetryConfig = modelplane.RetryConfig{MaxAttempts: 3, InitialDelayMs: 1000, MaxDelayMs: 5000}
	h := newAsyncHarness(t, w)
	res := h.run()
	require.Equal(t, modelplane.AsyncFailed, res.Status)
	require.Equal(t, 3, res.Attempts)
	require.Equal(t, []time.Duration{0, time.Second, 3 * time.Second}, h.w.attempts, "waits of one, then two seconds")
	require.Len(t, h.w.finished, 1)
	require.Equal(t, modelplane.AsyncFailed, h.w.finished[0].Status)
	require.Zero(t, h.w.finished[0].OutputAttempt)
	require.Equal(t, modelplane.AsyncErrors{
		{Code: modelplane.CodeModelPredictError, Message: "the model answered 501", Attempt: 1},
		{Code: modelplane.CodeModelPredictError, Message: "the model answered 502", Attempt: 2},
		{Code: modelplane.CodeModelPredictError, Message: "the model answered 503", Attempt: 3},
	}, h.w.finished[0].Errors, "every attempt's error, in order")
	require.Len(t, h.w.deliveries, 1, "a failed request's webhook is sent")
}

func TestAsyncRequest_ClientErrorFailsAtOnceWithoutRetry(t *testing.T) {
	h := newAsyncHarness(t, &asyncWorld{attempt: func(int) contract.RunAsyncAttemptResult { return failedAttempt(422, false) }})
	res := h.run()
	require.Equal(t, modelplane.AsyncFailed, res.Status)
	require.Equal(t, 1, res.Attempts)
	require.Len(t, h.w.attempts, 1, "a 4xx is the input's fault: trying again cannot help")
	require.Equal(t, modelplane.AsyncErrors{{Code: modelplane.CodeModelInvalidInput, Message: "the model answered 422", Attempt: 1}}, h.w.finished[0].Errors)
}

func TestAsyncRequest_CanceledWhileQueuedSendsNothing(t *testing.T) {
	h := newAsyncHarness(t, &asyncWorld{claim: func(n int) contract.ClaimAsyncResult {
		if n == 1 {
			return notYet(1)
		}
		return contract.ClaimAsyncResult{Status: modelplane.AsyncCanceled, WebhookStatus: modelplane.WebhookCanceled, DeploymentID: "dep00001"}
	}})
	res := h.run()
	require.Equal(t, contract.AsyncRequestResult{Status: modelplane.AsyncCanceled, WebhookStatus: modelplane.WebhookCanceled}, res)
	require.Equal(t, []string{"load", "claim", "claim"}, h.w.calls, "no attempt, no outcome, no webhook")
}

func TestAsyncRequest_DeploymentThatWillNotServeFailsTheRequest(t *testing.T) {
	h := newAsyncHarness(t, &asyncWorld{claim: func(int) contract.ClaimAsyncResult {
		c := notYet(0)
		c.Unavailable = "the deployment is deactivated"
		return c
	}})
	res := h.run()
	require.Equal(t, modelplane.AsyncFailed, res.Status)
	require.Equal(t, []contract.FinishAsyncInput{{RequestID: "req0000000000001", Status: modelplane.AsyncFailed,
		Errors: modelplane.AsyncErrors{{Code: modelplane.CodeModelUnavailable, Message: "the deployment is deactivated"}}}}, h.w.finished)
	require.Empty(t, h.w.attempts)
	require.Len(t, h.w.deliveries, 1)
}

func TestAsyncRequest_QueuedRequestFollowsItsEnvironmentsDeployment(t *testing.T) {
	h := newAsyncHarness(t, &asyncWorld{claim: func(n int) contract.ClaimAsyncResult {
		if n == 1 {
			return contract.ClaimAsyncResult{Status: modelplane.AsyncQueued, DeploymentID: "dep00002"}
		}
		return contract.ClaimAsyncResult{Status: modelplane.AsyncInProgress, Claimed: true, DeploymentID: "dep00002"}
	}})
	h.run()
	require.Equal(t, "dep00002", h.w.attemptIns[0].DeploymentID, "the attempt goes to the deployment the environment moved to")
	require.Equal(t, "dep00002", h.w.attrs["DeploymentId"])
	require.Equal(t, []string{"dep00002"}, h.w.dispatched)
}

func TestAsyncRequest_WebhookFailureIsRecorded(t *testing.T) {
	h := newAsyncHarness(t, &asyncWorld{deliver: func(int) error {
		return temporal.NewNonRetryableApplicationError("webhook address 10.0.0.1 is refused", contract.ErrTypeWebhookRefused, nil)
	}})
	res := h.run()
	require.Equal(t, contract.AsyncRequestResult{Status: modelplane.AsyncWebhookFailed, WebhookStatus: modelplane.WebhookFailed, Attempts: 1}, res)
	require.Len(t, h.w.deliveries, 1, "a refused address is not tried again")
	require.Equal(t, []contract.SetAsyncWebhookResultInput{{RequestID: "req0000000000001",
		Failure: "webhook address 10.0.0.1 is refused"}}, h.w.hookResult)
}

func TestAsyncRequest_WebhookIsRetriedWithBackoff(t *testing.T) {
	h := newAsyncHarness(t, &asyncWorld{deliver: func(n int) error {
		if n < 3 {
			return errors.New("webhook answered 502")
		}
		return nil
	}})
	res := h.run()
	require.Equal(t, modelplane.WebhookSucceeded, res.WebhookStatus)
	require.Len(t, h.w.deliveries, 3)
	require.Equal(t, time.Second, h.w.deliveries[1]-h.w.deliveries[0])
	require.Equal(t, 2*time.Second, h.w.deliveries[2]-h.w.deliveries[1])
	require.Equal(t, []contract.SetAsyncWebhookResultInput{{RequestID: "req0000000000001", Delivered: true}}, h.w.hookResult)
}

func TestAsyncRequest_WebhookThatKeepsFailingIsRecordedFailed(t *testing.T) {
	h := newAsyncHarness(t, &asyncWorld{deliver: func(int) error { return errors.New("webhook answered 503") }})
	res := h.run()
	require.Equal(t, modelplane.AsyncWebhookFailed, res.Status)
	d := h.w.deliveries
	// The test environment stops unlimited retries after ten tries; the server goes on for
	// AsyncWebhookTimeout.
	require.GreaterOrEqual(t, len(d), 10, "tried again and again: %v", d)
	require.Equal(t, []time.Duration{time.Second, 2 * time.Second, 4 * time.Second, 8 * time.Second},
		[]time.Duration{d[1] - d[0], d[2] - d[1], d[3] - d[2], d[4] - d[3]}, "waits double from a second")
	require.LessOrEqual(t, d[len(d)-1]-d[0], workflows.AsyncWebhookTimeout)
	require.Len(t, h.w.hookResult, 1)
	require.False(t, h.w.hookResult[0].Delivered)
	require.Contains(t, h.w.hookResult[0].Failure, "webhook answered 503", "the failure says what the last try got")
}

func TestAsyncRequest_EndedRequestOnlyFinishesItsWebhook(t *testing.T) {
	w := &asyncWorld{load: queuedRequest()}
	w.load.Status = modelplane.AsyncFailed // recorded by a run that stopped before the webhook
	h := newAsyncHarness(t, w)
	h.run()
	require.Equal(t, []string{"load", "deliver", "webhook result"}, h.w.calls)

	w = &asyncWorld{load: queuedRequest()}
	w.load.Status, w.load.WebhookStatus = modelplane.AsyncSucceeded, modelplane.WebhookSucceeded
	h = newAsyncHarness(t, w)
	res := h.run()
	require.Equal(t, []string{"load"}, h.w.calls, "nothing left to do")
	require.Equal(t, contract.AsyncRequestResult{Status: modelplane.AsyncSucceeded, WebhookStatus: modelplane.WebhookSucceeded}, res)
}

func TestAsyncRequest_DeletedRequestEndsQuietly(t *testing.T) {
	h := newAsyncHarness(t, &asyncWorld{loadErr: temporal.NewNonRetryableApplicationError(
		"async request req0000000000001 no longer exists", contract.ErrTypeAsyncRequestGone, nil)})
	res := h.run()
	require.Equal(t, contract.AsyncRequestResult{}, res)
	require.Equal(t, []string{"load"}, h.w.calls)
}

func TestAsyncRequest_LongWaitContinuesAsNew(t *testing.T) {
	w := &asyncWorld{load: queuedRequest(), claim: func(int) contract.ClaimAsyncResult { return notYet(100) }}
	w.load.ExpiresAt = asyncStart.Add(72 * time.Hour)
	h := newAsyncHarness(t, w)
	h.env.ExecuteWorkflow(workflows.AsyncRequest, contract.AsyncRequestInput{RequestID: w.load.RequestID})
	require.True(t, h.env.IsWorkflowCompleted())
	var can *workflow.ContinueAsNewError
	require.True(t, errors.As(h.env.GetWorkflowError(), &can), "want continue-as-new, got %v", h.env.GetWorkflowError())
	require.Equal(t, contract.AsyncRequestWorkflowType, can.WorkflowType.Name)
	require.Less(t, len(w.claims), 1000, "one run's history stays bounded")
	require.Empty(t, w.expiredAt)
}

func TestAsyncRetryDelay_DoublesUpToTheMaximum(t *testing.T) {
	for _, tc := range []struct {
		cfg  modelplane.RetryConfig
		n    int
		want time.Duration
	}{
		{modelplane.RetryConfig{InitialDelayMs: 1000, MaxDelayMs: 5000}, 1, time.Second},
		{modelplane.RetryConfig{InitialDelayMs: 1000, MaxDelayMs: 5000}, 2, 2 * time.Second},
		{modelplane.RetryConfig{InitialDelayMs: 1000, MaxDelayMs: 5000}, 3, 4 * time.Second},
		{modelplane.RetryConfig{InitialDelayMs: 1000, MaxDelayMs: 5000}, 4, 5 * time.Second},
		{modelplane.RetryConfig{InitialDelayMs: 1000, MaxDelayMs: 5000}, 60, 5 * time.Second},
		{modelplane.RetryConfig{InitialDelayMs: 0, MaxDelayMs: 5000}, 3, 0},
		{modelplane.RetryConfig{InitialDelayMs: 3000, MaxDelayMs: 1000}, 1, time.Second},
		{modelplane.RetryConfig{InitialDelayMs: 10000, MaxDelayMs: 60000}, 9, time.Minute},
	} {
		require.Equal(t, tc.want, workflows.AsyncRetryDelay(tc.cfg, tc.n), "%+v after attempt %d", tc.cfg, tc.n)
	}
}
