package contract

import (
	"time"

	"github.com/modelplane/modelplane"
)

const (
	// ErrTypeAsyncRequestGone: the async request is no longer in the database (its model was
	// deleted); there is nothing left to do for it.
	ErrTypeAsyncRequestGone = "AsyncRequestGone"
	// ErrTypeWebhookRefused: the webhook cannot be delivered however often it is tried (an
	// address deliveries may not reach, a malformed URL, a workspace without a secret).
	ErrTypeWebhookRefused = "WebhookRefused"
)

// AsyncRequestState is what the AsyncRequest workflow knows of its request. The input and
// output stay in the database: they can be far larger than workflow history should hold.
type AsyncRequestState struct {
	RequestID     string
	ModelID       string
	DeploymentID  string
	Environment   string
	Status        modelplane.AsyncStatus
	WebhookStatus modelplane.WebhookStatus
	RetryConfig   modelplane.RetryConfig
	CreatedAt     time.Time
	// ExpiresAt is when the request leaves the queue as EXPIRED if it has not started.
	ExpiresAt time.Time
	Attempts  int
}

// LoadAsyncInput names the request whose workflow starts.
type LoadAsyncInput struct {
	RequestID string
}

// ClaimAsyncInput names the queued request that tries to start.
type ClaimAsyncInput struct {
	RequestID string
}

// ClaimAsyncResult is how a try to leave the queue went.
type ClaimAsyncResult struct {
	// Status is the request's status after the try: IN_PROGRESS when claimed, QUEUED when it
	// must wait, else the status it ended in (CANCELED, say).
	Status  modelplane.AsyncStatus
	Claimed bool
	// WebhookStatus is the request's webhook status when it has ended; empty otherwise.
	WebhookStatus modelplane.WebhookStatus
	// DeploymentID is the deployment the request is for now: a request to an environment
	// follows the environment to its current deployment while it waits.
	DeploymentID string
	// Ahead counts the queued requests that go first; Free is how many more the deployment
	// may run now.
	Ahead, Free int
	// Unavailable says why the deployment will not serve the request without someone acting;
	// empty when it serves or is on its way to.
	Unavailable string
}

// ExpireAsyncInput names the request whose time in the queue is up.
type ExpireAsyncInput struct {
	RequestID string
}

// RunAsyncAttemptInput names one attempt at an async request's predict.
type RunAsyncAttemptInput struct {
	RequestID    string
	Attempt      int
	DeploymentID string
	// PollInterval is how often the attempt is read while it runs; zero means
	// AsyncPollInterval.
	PollInterval time.Duration
}

// RunAsyncAttemptResult is how an attempt ended. A failed attempt is a result, not an
// error: the workflow decides whether to try again.
type RunAsyncAttemptResult struct {
	Attempt    int
	StatusCode int
	Succeeded  bool
	// Retryable says a later attempt may succeed where this one failed.
	Retryable bool
	// Error is what went wrong; zero when Succeeded.
	Error modelplane.AsyncError
}

// FinishAsyncInput is how the request ended.
type FinishAsyncInput struct {
	RequestID string
	// Status is SUCCEEDED or FAILED.
	Status modelplane.AsyncStatus
	// OutputAttempt is the attempt whose answer is the request's output; 0 for none.
	OutputAttempt int
	Errors        modelplane.AsyncErrors
}

// DispatchAsyncNextInput names the deployment whose queue may move.
type DispatchAsyncNextInput struct {
	DeploymentID string
}

// DispatchAsyncNextResult says how many queued requests were started.
type DispatchAsyncNextResult struct {
	Started int
}

// DeliverWebhookInput names the finished request whose webhook is sent.
type DeliverWebhookInput struct {
	RequestID string
}

// SetAsyncWebhookResultInput is how the webhook delivery ended.
type SetAsyncWebhookResultInput struct {
	RequestID string
	Delivered bool
	// Failure says why it was not delivered.
	Failure string
}
