package activities

import (
	"context"
	"encoding/json"
	"errors"
	"log/slog"
	"strconv"
	"sync"
	"time"

	"go.temporal.io/sdk/activity"
	"go.temporal.io/sdk/temporal"

	"github.com/modelplane/modelplane"
	"github.com/modelplane/modelplane/store"
	"github.com/modelplane/modelplane/webhook"
	"github.com/modelplane/modelplane/workflows/contract"
)

// AsyncPollInterval is how often RunAsyncAttempt reads its attempt besides being woken by a
// notification, which a dropped LISTEN connection can lose.
const AsyncPollInterval = 2 * time.Second

func asyncState(r store.AsyncRequest) contract.AsyncRequestState {
	return contract.AsyncRequestState{
		RequestID: r.ID, ModelID: r.ModelID, DeploymentID: r.DeploymentID, Environment: r.Environment,
		Status: r.Status, WebhookStatus: r.WebhookStatus, RetryConfig: r.RetryConfig,
		CreatedAt: r.CreatedAt, ExpiresAt: r.ExpiresAt, Attempts: r.Attempts,
	}
}

// asyncGone turns the store's "not found" for an async request into an error that ends the
// workflow's retries; other errors are returned as they are.
func asyncGone(requestID string, err error) error {
	if errors.Is(err, store.ErrNotFound) || errors.Is(err, store.ErrConflict) {
		return temporal.NewNonRetryableApplicationError(
			"async request "+requestID+" no longer exists", contract.ErrTypeAsyncRequestGone, err)
	}
	return err
}

// LoadAsync records that the request's workflow runs, so Cleanup does not start it again,
// and returns the request.
func (a *Activities) LoadAsync(ctx context.Context, in contract.LoadAsyncInput) (contract.AsyncRequestState, error) {
	r, err := store.MarkAsyncWorkflowStarted(ctx, a.DB, in.RequestID)
	if err != nil {
		return contract.AsyncRequestState{}, asyncGone(in.RequestID, err)
	}
	return asyncState(r), nil
}

// ClaimAsync moves the request from its queue to IN_PROGRESS if its deployment has room.
func (a *Activities) ClaimAsync(ctx context.Context, in contract.ClaimAsyncInput) (contract.ClaimAsyncResult, error) {
	c, err := store.ClaimAsyncRequest(ctx, a.DB, in.RequestID)
	if err != nil {
		return contract.ClaimAsyncResult{}, asyncGone(in.RequestID, err)
	}
	out := contract.ClaimAsyncResult{Status: c.Status, Claimed: c.Claimed, DeploymentID: c.DeploymentID}
	switch {
	case c.Status == modelplane.AsyncQueued:
		out.Ahead, out.Free, out.Unavailable = c.Ahead, c.Capacity.Free(), c.Capacity.Unavailable()
	case c.Status.Ended():
		r, err := store.GetAsyncRequest(ctx, a.DB, "", in.RequestID)
		if err != nil {
			return contract.ClaimAsyncResult{}, asyncGone(in.RequestID, err)
		}
		out.WebhookStatus = r.WebhookStatus
	}
	return out, nil
}

// ExpireAsync ends the request as EXPIRED if it is still queued, and returns it as it is then.
func (a *Activities) ExpireAsync(ctx context.Context, in contract.ExpireAsyncInput) (contract.AsyncRequestState, error) {
	r, err := store.ExpireAsyncRequest(ctx, a.DB, in.RequestID)
	if err != nil {
		return contract.AsyncRequestState{}, asyncGone(in.RequestID, err)
	}
	return asyncState(r), nil
}

// RunAsyncAttempt records the attempt for a gateway to run and waits until it is done. The
// model is called by the gateway, so a rerun of this activity (after a worker died, say)
// waits on the same attempt instead of calling the model again. An attempt whose gateway
// stops reporting ends with GATEWAY_LOST.
func (a *Activities) RunAsyncAttempt(ctx context.Context, in contract.RunAsyncAttemptInput) (contract.RunAsyncAttemptResult, error) {
	poll := in.PollInterval
	if poll <= 0 {
		poll = AsyncPollInterval
	}
	// Subscribed before the attempt exists, so no announcement of its end can be missed.
	woken, unsubscribe := a.asyncHub(slog.Default()).subscribe(attemptKey(in.RequestID, in.Attempt))
	defer unsubscribe()
	att, err := store.CreateAsyncAttempt(ctx, a.DB, in.RequestID, in.Attempt, in.DeploymentID)
	if err != nil {
		return contract.RunAsyncAttemptResult{}, asyncGone(in.RequestID, err)
	}
	tick := time.NewTicker(poll)
	defer tick.Stop()
	for att.State != modelplane.AttemptDone {
		activity.RecordHeartbeat(ctx, att.State)
		select {
		case <-ctx.Done():
			return contract.RunAsyncAttemptResult{}, ctx.Err()
		case <-woken:
		case <-tick.C:
			if att.State == modelplane.AttemptRunning {
				if _, err := store.AbandonAsyncAttempt(ctx, a.DB, in.RequestID, in.Attempt); err != nil {
					return contract.RunAsyncAttemptResult{}, err
				}
			}
		}
		if att, err = store.GetAsyncAttempt(ctx, a.DB, in.RequestID, in.Attempt); err != nil {
			return contract.RunAsyncAttemptResult{}, asyncGone(in.RequestID, err)
		}
	}
	return ClassifyAttempt(att), nil
}

// ClassifyAttempt judges a finished attempt (store.ClassifyAttempt) for the workflow.
func ClassifyAttempt(att store.AsyncAttempt) contract.RunAsyncAttemptResult {
	o := store.ClassifyAttempt(att)
	return contract.RunAsyncAttemptResult{Attempt: att.Attempt, StatusCode: att.StatusCode,
		Succeeded: o.Succeeded, Retryable: o.Retryable, Error: o.Error}
}

// FinishAsync records how the request ended, with the output of in.OutputAttempt kept for
// AsyncOutputRetention, and returns the request. One that already ended is left as it is.
func (a *Activities) FinishAsync(ctx context.Context, in contract.FinishAsyncInput) (contract.AsyncRequestState, error) {
	o := store.AsyncOutcome{Status: in.Status, Errors: in.Errors, KeepOutput: a.AsyncOutputRetention}
	if o.KeepOutput <= 0 {
		o.KeepOutput = store.DefaultAsyncOutputRetention
	}
	if in.OutputAttempt > 0 {
		att, err := store.GetAsyncAttempt(ctx, a.DB, in.RequestID, in.OutputAttempt)
		if err != nil {
			return contract.AsyncRequestState{}, asyncGone(in.RequestID, err)
		}
		o.Output, o.ContentType = att.Output, att.ContentType
		if o.Output == nil {
			// An empty answer is still an answer: kept as empty, not as "no output".
			o.Output = []byte{}
		}
	}
	r, err := store.FinishAsyncRequest(ctx, a.DB, in.RequestID, o)
	if err != nil {
		return contract.AsyncRequestState{}, asyncGone(in.RequestID, err)
	}
	return asyncState(r), nil
}

// DispatchAsyncNext starts the queued requests of the deployment that a request ending on it
// made room for (store.StartAsyncHeads), so the slot is used without waiting for a gateway's
// next look at the queues.
func (a *Activities) DispatchAsyncNext(ctx context.Context, in contract.DispatchAsyncNextInput) (contract.DispatchAsyncNextResult, error) {
	s, err := store.StartAsyncHeads(ctx, a.DB, in.DeploymentID, maxDispatch, "")
	return contract.DispatchAsyncNextResult{Started: s.Started}, err
}

// maxDispatch bounds the requests one DispatchAsyncNext starts.
const maxDispatch = 64

// DeliverWebhook posts the request's outcome to its webhook endpoint, signed with the
// workspace's secret and carrying the request's delivery ID, which is the same on every try.
// A refused address or malformed URL fails with contract.ErrTypeWebhookRefused; other failures are
// retried. A request whose webhook is no longer pending is not sent.
func (a *Activities) DeliverWebhook(ctx context.Context, in contract.DeliverWebhookInput) error {
	r, err := store.GetAsyncRequest(ctx, a.DB, "", in.RequestID)
	if err != nil {
		return asyncGone(in.RequestID, err)
	}
	if r.WebhookEndpoint == "" || r.WebhookStatus != modelplane.WebhookPending || !r.Status.Ended() {
		return nil
	}
	secret, err := store.GetWebhookSecret(ctx, a.DB, r.WorkspaceID)
	if errors.Is(err, store.ErrNotFound) {
		return temporal.NewNonRetryableApplicationError("the workspace has no webhook secret to sign with",
			contract.ErrTypeWebhookRefused, err)
	}
	if err != nil {
		return err
	}
	body, err := json.Marshal(webhookPayload(r))
	if err != nil {
		return err
	}
	err = a.webhookSender().Send(ctx, webhook.Delivery{
		URL: r.WebhookEndpoint, Secret: secret.Secret, DeliveryID: r.WebhookDeliveryID, Body: body,
	})
	if err != nil && webhook.IsPermanent(err) {
		return temporal.NewNonRetryableApplicationError(err.Error(), contract.ErrTypeWebhookRefused, err)
	}
	if err != nil {
		activity.GetLogger(ctx).Info("webhook not delivered", "request_id", r.ID, "model_id", r.ModelID,
			"try", activity.GetInfo(ctx).Attempt, "err", err)
	}
	return err
}

// webhookPayload is the body of a finished request's webhook; the same on every try.
func webhookPayload(r store.AsyncRequest) webhook.Payload {
	p := webhook.Payload{
		RequestID: r.ID, ModelID: r.ModelID, DeploymentID: r.DeploymentID,
		Type: webhook.TypeAsyncRequestCompleted, Time: r.StatusAt,
		Errors: make([]webhook.ErrorEntry, 0, len(r.Errors)),
	}
	if r.FinishedAt != nil {
		p.Time = *r.FinishedAt
	}
	if r.Status == modelplane.AsyncSucceeded {
		p.Data = webhook.DataJSON(r.Output, r.OutputContentType)
	}
	for _, e := range r.Errors {
		p.Errors = append(p.Errors, webhook.ErrorEntry(e))
	}
	return p
}

// SetAsyncWebhookResult records how the webhook delivery ended and returns the request.
func (a *Activities) SetAsyncWebhookResult(ctx context.Context, in contract.SetAsyncWebhookResultInput) (contract.AsyncRequestState, error) {
	r, err := store.SetAsyncWebhookResult(ctx, a.DB, in.RequestID, in.Delivered, in.Failure)
	if err != nil {
		return contract.AsyncRequestState{}, asyncGone(in.RequestID, err)
	}
	return asyncState(r), nil
}

// webhookSender is the sender of webhooks, made at first use.
func (a *Activities) webhookSender() *webhook.Sender {
	a.senderOnce.Do(func() { a.sender = webhook.NewSender(a.WebhookAllowPrivate, 0) })
	return a.sender
}

// StartAsyncListener starts listening for finished attempts on a.DatabaseURL, so that
// RunAsyncAttempt returns as soon as its attempt is done rather than at its next poll. It
// returns at once; RunAsyncAttempt starts it too when it has not been, and later calls do
// nothing. Without a DatabaseURL attempts are noticed by polling alone. (This and
// StopAsyncListener are functions, not methods, so that the worker does not take them for
// activities.)
func StartAsyncListener(a *Activities, log *slog.Logger) {
	a.asyncHub(log)
}

// StopAsyncListener stops the listener StartAsyncListener started; attempts still waiting go
// on polling, and a later start listens anew.
func StopAsyncListener(a *Activities) {
	a.hubMu.Lock()
	h := a.hub
	a.hub = nil
	a.hubMu.Unlock()
	if h != nil {
		h.close()
	}
}

func (a *Activities) asyncHub(log *slog.Logger) *asyncHub {
	a.hubMu.Lock()
	defer a.hubMu.Unlock()
	if a.hub == nil {
		a.hub = newAsyncHub()
		if a.DatabaseURL != "" {
			go a.hub.listen(a.DatabaseURL, log)
		}
	}
	return a.hub
}

func attemptKey(requestID string, attempt int) string {
	return requestID + "/" + strconv.Itoa(attempt)
}

// asyncHub wakes the RunAsyncAttempt calls of this process when their attempt is announced
// done on store.AsyncDoneChannel, so one LISTEN connection serves them all.
type asyncHub struct {
	mu      sync.Mutex
	waiters map[string]map[chan struct{}]struct{}
	closed  bool
	l       *store.Listener
}

func newAsyncHub() *asyncHub {
	return &asyncHub{waiters: map[string]map[chan struct{}]struct{}{}}
}

// subscribe returns a channel that receives when key ("request_id/attempt") is announced,
// and a function that ends the subscription.
func (h *asyncHub) subscribe(key string) (<-chan struct{}, func()) {
	ch := make(chan struct{}, 1)
	h.mu.Lock()
	defer h.mu.Unlock()
	if h.waiters[key] == nil {
		h.waiters[key] = map[chan struct{}]struct{}{}
	}
	h.waiters[key][ch] = struct{}{}
	return ch, func() {
		h.mu.Lock()
		defer h.mu.Unlock()
		delete(h.waiters[key], ch)
		if len(h.waiters[key]) == 0 {
			delete(h.waiters, key)
		}
	}
}

// wake wakes the waiters of key, or every waiter when key is empty (after a reconnect, when
// announcements may have been missed).
func (h *asyncHub) wake(key string) {
	h.mu.Lock()
	defer h.mu.Unlock()
	signal := func(chans map[chan struct{}]struct{}) {
		for ch := range chans {
			select {
			case ch <- struct{}{}:
			default: // already woken, not yet awake
			}
		}
	}
	if key != "" {
		signal(h.waiters[key])
		return
	}
	for _, chans := range h.waiters {
		signal(chans)
	}
}

// listen delivers announcements until the hub is closed. Connecting waits for the database
// as long as it takes; until then waiters poll.
func (h *asyncHub) listen(url string, log *slog.Logger) {
	l, err := store.Listen(url, store.AsyncDoneChannel, time.Second, 30*time.Second, log)
	if err != nil {
		log.Error("async attempts are noticed by polling only: cannot listen", "channel", store.AsyncDoneChannel, "err", err)
		return
	}
	h.mu.Lock()
	if h.closed {
		h.mu.Unlock()
		_ = l.Close()
		return
	}
	h.l = l
	h.mu.Unlock()
	// Attempts that ended before LISTEN took effect were announced to no one.
	h.wake("")
	for key := range l.C {
		h.wake(key)
	}
}

func (h *asyncHub) close() {
	h.mu.Lock()
	defer h.mu.Unlock()
	h.closed = true
	if h.l != nil {
		_ = h.l.Close()
		h.l = nil
	}
}
