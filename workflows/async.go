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

// AsyncQueuePoll is how long a queued request waits for contract.SignalAsyncDispatch before it tries
// to leave the queue anyway: the signal is a hint that a lost message must not turn into a
// stuck request.
const AsyncQueuePoll = 30 * time.Second

// AsyncWebhookTimeout is how long a webhook is tried, backing off from a second to five
// minutes between tries, before it counts as failed.
const AsyncWebhookTimeout = 30 * time.Minute

// maxAsyncQueuePolls bounds how often one run tries to leave the queue (about four hours of
// polls); it then continues as new, so a request that waits for days keeps a small history.
const maxAsyncQueuePolls = 500

// AsyncRequest carries out one async inference request: it waits in its deployment's queue
// until the deployment has room (or the request expires, or is canceled), runs predict
// attempts with the request's retry config, records the outcome and delivers the webhook.
//
// Every step is an idempotent activity keyed by the request ID (and attempt number), so a
// worker that dies anywhere makes the step run again to the same effect: the request ends
// once and its webhook always carries the same delivery ID.
func AsyncRequest(ctx workflow.Context, in contract.AsyncRequestInput) (contract.AsyncRequestResult, error) {
	r := &asyncRequest{in: in}
	r.setup(ctx)
	res, err := r.run(ctx)
	// Dispatch signals that came after the request left the queue are hints nobody needs.
	for r.dispatch.ReceiveAsync(nil) {
	}
	var app *temporal.ApplicationError
	if errors.As(err, &app) && app.Type() == contract.ErrTypeAsyncRequestGone {
		workflow.GetLogger(ctx).Info("async request deleted while it was handled", "request_id", in.RequestID)
		return contract.AsyncRequestResult{Attempts: r.res.Attempts}, nil
	}
	return res, err
}

type asyncRequest struct {
	in       contract.AsyncRequestInput
	dispatch workflow.ReceiveChannel
	// deploymentID is the deployment last written to the search attributes.
	deploymentID string
	res          contract.AsyncRequestResult
}

func (r *asyncRequest) setup(ctx workflow.Context) {
	r.dispatch = workflow.GetSignalChannel(ctx, contract.SignalAsyncDispatch)
}

func (r *asyncRequest) run(ctx workflow.Context) (contract.AsyncRequestResult, error) {
	ctx = workflow.WithLocalActivityOptions(ctx, asyncLocalActivity)
	var st contract.AsyncRequestState
	if err := workflow.ExecuteLocalActivity(ctx, contract.ActivityLoadAsync, contract.LoadAsyncInput{RequestID: r.in.RequestID}).Get(ctx, &st); err != nil {
		return r.res, err
	}
	r.label(ctx, st)
	var err error
	if st.Status == modelplane.AsyncQueued {
		if st, err = r.queue(ctx, st); err != nil {
			return r.res, err
		}
	}
	if st.Status == modelplane.AsyncInProgress {
		if st, err = r.attempts(ctx, st); err != nil {
			return r.res, err
		}
	}
	return r.webhook(ctx, st)
}

// label writes the request's model, deployment and environment to the search attributes.
func (r *asyncRequest) label(ctx workflow.Context, st contract.AsyncRequestState) {
	r.deploymentID = st.DeploymentID
	attrs := []temporal.SearchAttributeUpdate{
		contract.ModelIDAttr.ValueSet(st.ModelID), contract.DeploymentIDAttr.ValueSet(st.DeploymentID),
	}
	if st.Environment != "" {
		attrs = append(attrs, contract.EnvironmentAttr.ValueSet(st.Environment))
	}
	_ = workflow.UpsertTypedSearchAttributes(ctx, attrs...)
	workflow.SetCurrentDetails(ctx, string(st.Status))
}

// queue waits until the request leaves its queue: claimed (IN_PROGRESS), or ended (expired,
// canceled, or failed because its deployment will not serve it).
func (r *asyncRequest) queue(ctx workflow.Context, st contract.AsyncRequestState) (contract.AsyncRequestState, error) {
	log := workflow.GetLogger(ctx)
	for polls := 0; ; polls++ {
		if !workflow.Now(ctx).Before(st.ExpiresAt) {
			return r.expire(ctx, st)
		}
		var c contract.ClaimAsyncResult
		if err := workflow.ExecuteLocalActivity(ctx, contract.ActivityClaimAsync, contract.ClaimAsyncInput{RequestID: st.RequestID}).Get(ctx, &c); err != nil {
			return st, err
		}
		if c.DeploymentID != "" && c.DeploymentID != r.deploymentID {
			log.Info("queued async request follows its environment", "request_id", st.RequestID,
				"environment", st.Environment, "deployment_id", c.DeploymentID)
			st.DeploymentID = c.DeploymentID
			r.label(ctx, st)
		}
		switch {
		case c.Claimed:
			st.Status = modelplane.AsyncInProgress
			return st, nil
		case c.Status != modelplane.AsyncQueued:
			st.Status, st.WebhookStatus = c.Status, c.WebhookStatus
			return st, nil
		case c.Unavailable != "":
			log.Info("async request fails: its deployment will not serve", "request_id", st.RequestID,
				"deployment_id", st.DeploymentID, "reason", c.Unavailable)
			return r.finish(ctx, st, contract.FinishAsyncInput{
				RequestID: st.RequestID, Status: modelplane.AsyncFailed,
				Errors: modelplane.AsyncErrors{{Code: modelplane.CodeModelUnavailable, Message: c.Unavailable}},
			})
		}
		workflow.SetCurrentDetails(ctx, fmt.Sprintf("QUEUED for deployment %s: %d ahead, room for %d more; expires %s",
			st.DeploymentID, c.Ahead, max(c.Free, 0), st.ExpiresAt.UTC().Format(time.RFC3339)))
		if polls+1 >= maxAsyncQueuePolls || workflow.GetInfo(ctx).GetContinueAsNewSuggested() {
			// Signals not taken here are lost with this run; the next run claims first anyway.
			for r.dispatch.ReceiveAsync(nil) {
			}
			return st, workflow.NewContinueAsNewError(ctx, AsyncRequest, r.in)
		}
		r.wait(ctx, st.ExpiresAt)
	}
}

// wait returns on contract.SignalAsyncDispatch, after AsyncQueuePoll, or at expiresAt, whichever
// comes first.
func (r *asyncRequest) wait(ctx workflow.Context, expiresAt time.Time) {
	d := AsyncQueuePoll
	if left := expiresAt.Sub(workflow.Now(ctx)); left < d {
		d = left
	}
	if d <= 0 {
		return
	}
	tctx, cancel := workflow.WithCancel(ctx)
	defer cancel()
	sel := workflow.NewSelector(ctx)
	sel.AddReceive(r.dispatch, func(c workflow.ReceiveChannel, _ bool) { c.Receive(ctx, nil) })
	sel.AddFuture(workflow.NewTimer(tctx, d), func(workflow.Future) {})
	sel.Select(ctx)
	// Several signals in a row call for one claim.
	for r.dispatch.ReceiveAsync(nil) {
	}
}

// expire ends the request as EXPIRED, unless it ended otherwise meanwhile.
func (r *asyncRequest) expire(ctx workflow.Context, st contract.AsyncRequestState) (contract.AsyncRequestState, error) {
	var out contract.AsyncRequestState
	if err := workflow.ExecuteLocalActivity(ctx, contract.ActivityExpireAsync, contract.ExpireAsyncInput{RequestID: st.RequestID}).Get(ctx, &out); err != nil {
		return st, err
	}
	workflow.GetLogger(ctx).Info("async request left the queue", "request_id", st.RequestID,
		"deployment_id", out.DeploymentID, "status", out.Status)
	r.dispatchNext(ctx, out.DeploymentID)
	return out, nil
}

// attempts runs predict attempts until one succeeds, one fails for good, or the request's
// retry config allows no more, then records the outcome.
func (r *asyncRequest) attempts(ctx workflow.Context, st contract.AsyncRequestState) (contract.AsyncRequestState, error) {
	cfg := st.RetryConfig
	if cfg.MaxAttempts < 1 {
		cfg = modelplane.DefaultRetryConfig()
	}
	actx := workflow.WithActivityOptions(ctx, asyncAttemptActivity)
	var errs modelplane.AsyncErrors
	for n := 1; ; n++ {
		workflow.SetCurrentDetails(ctx, fmt.Sprintf("IN_PROGRESS on deployment %s: attempt %d of %d",
			st.DeploymentID, n, cfg.MaxAttempts))
		var res contract.RunAsyncAttemptResult
		if err := workflow.ExecuteActivity(actx, contract.ActivityRunAsyncAttempt, contract.RunAsyncAttemptInput{
			RequestID: st.RequestID, Attempt: n, DeploymentID: st.DeploymentID,
		}).Get(ctx, &res); err != nil {
			return st, err
		}
		r.res.Attempts = n
		if res.Succeeded {
			return r.finish(ctx, st, contract.FinishAsyncInput{
				// The attempts that failed before are kept: they say why it took so long.
				RequestID: st.RequestID, Status: modelplane.AsyncSucceeded, OutputAttempt: n, Errors: errs,
			})
		}
		errs = append(errs, res.Error)
		if !res.Retryable || n >= cfg.MaxAttempts {
			return r.finish(ctx, st, contract.FinishAsyncInput{
				RequestID: st.RequestID, Status: modelplane.AsyncFailed, Errors: errs,
			})
		}
		workflow.GetLogger(ctx).Info("async attempt failed; trying again", "request_id", st.RequestID,
			"deployment_id", st.DeploymentID, "attempt", n, "code", res.Error.Code, "status_code", res.StatusCode)
		if d := AsyncRetryDelay(cfg, n); d > 0 {
			if err := workflow.Sleep(ctx, d); err != nil {
				return st, err
			}
		}
	}
}

// AsyncRetryDelay is the wait after failed attempt n (from 1): the initial delay doubled
// n-1 times, at most the maximum delay.
func AsyncRetryDelay(cfg modelplane.RetryConfig, n int) time.Duration {
	d := time.Duration(max(cfg.InitialDelayMs, 0)) * time.Millisecond
	limit := time.Duration(max(cfg.MaxDelayMs, 0)) * time.Millisecond
	for i := 1; i < n && d < limit; i++ {
		d *= 2
	}
	return min(d, limit)
}

// finish records how the request ended and lets the next queued requests of its deployment
// go.
func (r *asyncRequest) finish(ctx workflow.Context, st contract.AsyncRequestState, in contract.FinishAsyncInput) (contract.AsyncRequestState, error) {
	var out contract.AsyncRequestState
	if err := workflow.ExecuteLocalActivity(ctx, contract.ActivityFinishAsync, in).Get(ctx, &out); err != nil {
		return st, err
	}
	workflow.GetLogger(ctx).Info("async request finished", "request_id", st.RequestID,
		"deployment_id", st.DeploymentID, "status", out.Status, "attempts", r.res.Attempts)
	r.dispatchNext(ctx, st.DeploymentID)
	return out, nil
}

// dispatchNext starts the deployment's queue heads that the request's end made room for. It
// only saves them the wait for a gateway's or the sweep's next look, so a failure is logged
// and the request goes on.
func (r *asyncRequest) dispatchNext(ctx workflow.Context, deploymentID string) {
	if deploymentID == "" {
		return
	}
	if err := workflow.ExecuteLocalActivity(ctx, contract.ActivityDispatchAsyncNext, contract.DispatchAsyncNextInput{
		DeploymentID: deploymentID,
	}).Get(ctx, nil); err != nil {
		workflow.GetLogger(ctx).Warn("next async requests not signaled", "deployment_id", deploymentID, "err", err)
	}
}

// webhook delivers the webhook of a request that ended SUCCEEDED, FAILED or EXPIRED and has
// one pending, and records how that went. A canceled request's webhook was marked CANCELED
// with it and is not sent.
func (r *asyncRequest) webhook(ctx workflow.Context, st contract.AsyncRequestState) (contract.AsyncRequestResult, error) {
	r.res.Status, r.res.WebhookStatus = st.Status, st.WebhookStatus
	if !st.Status.Delivers() {
		workflow.SetCurrentDetails(ctx, string(st.Status))
		return r.res, nil
	}
	if st.WebhookStatus != modelplane.WebhookPending {
		workflow.SetCurrentDetails(ctx, string(st.Status))
		return r.res, nil
	}
	workflow.SetCurrentDetails(ctx, string(st.Status)+"; delivering the webhook")
	err := workflow.ExecuteActivity(workflow.WithActivityOptions(ctx, asyncWebhookActivity), contract.ActivityDeliverWebhook,
		contract.DeliverWebhookInput{RequestID: st.RequestID}).Get(ctx, nil)
	in := contract.SetAsyncWebhookResultInput{RequestID: st.RequestID, Delivered: err == nil}
	if err != nil {
		var app *temporal.ApplicationError
		if errors.As(err, &app) && app.Type() == contract.ErrTypeAsyncRequestGone {
			return r.res, err
		}
		in.Failure = webhookFailure(err)
		workflow.GetLogger(ctx).Warn("webhook not delivered", "request_id", st.RequestID, "err", err)
	}
	var out contract.AsyncRequestState
	if err := workflow.ExecuteLocalActivity(ctx, contract.ActivitySetAsyncWebhookResult, in).Get(ctx, &out); err != nil {
		return r.res, err
	}
	r.res.Status, r.res.WebhookStatus = out.Status, out.WebhookStatus
	workflow.SetCurrentDetails(ctx, fmt.Sprintf("%s; webhook %s", out.Status, out.WebhookStatus))
	return r.res, nil
}

// webhookFailure says why a webhook was not delivered: the last try's error, and that time
// ran out when it did.
func webhookFailure(err error) string {
	msg := err.Error()
	var app *temporal.ApplicationError
	if errors.As(err, &app) {
		msg = app.Message()
	}
	var timeout *temporal.TimeoutError
	if errors.As(err, &timeout) {
		out := fmt.Sprintf("not delivered within %s", AsyncWebhookTimeout)
		if app != nil {
			out += "; last try: " + msg
		}
		return out
	}
	return msg
}

var (
	// The database steps run as local activities, in the worker that runs the workflow: each
	// is one marker in the history instead of a task through the Temporal server, which a
	// request makes half a dozen of. They are retried for as long as it takes: a request
	// given up on here would stay open with nothing left to end it.
	asyncLocalActivity = workflow.LocalActivityOptions{
		StartToCloseTimeout: 30 * time.Second,
		// A local activity's retries end at its schedule-to-close timeout, which is its
		// start-to-close one unless set: a database outage of up to a week is waited out.
		ScheduleToCloseTimeout: 7 * 24 * time.Hour,
		RetryPolicy: &temporal.RetryPolicy{
			InitialInterval: activityRetry.InitialInterval, MaximumInterval: activityRetry.MaximumInterval,
			NonRetryableErrorTypes: []string{contract.ErrTypeAsyncRequestGone},
		},
	}
	// An attempt waits for the model as long as the gateway does; a rerun waits on the same
	// attempt, so it may be retried without limit. The heartbeat notices a lost worker.
	asyncAttemptActivity = workflow.ActivityOptions{
		StartToCloseTimeout: 20 * time.Minute,
		HeartbeatTimeout:    10 * time.Second,
		RetryPolicy: &temporal.RetryPolicy{
			InitialInterval: time.Second, MaximumInterval: 30 * time.Second,
			NonRetryableErrorTypes: []string{contract.ErrTypeAsyncRequestGone},
		},
	}
	asyncWebhookActivity = workflow.ActivityOptions{
		ScheduleToCloseTimeout: AsyncWebhookTimeout,
		StartToCloseTimeout:    time.Minute,
		RetryPolicy: &temporal.RetryPolicy{
			InitialInterval: time.Second, BackoffCoefficient: 2, MaximumInterval: 5 * time.Minute,
			NonRetryableErrorTypes: []string{contract.ErrTypeWebhookRefused, contract.ErrTypeAsyncRequestGone},
		},
	}
)
