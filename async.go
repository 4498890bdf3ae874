package modelplane

import (
	"database/sql/driver"
	"encoding/json"
	"slices"
)

// AsyncStatus is where an async request is, as GET /async_request/{id} spells it.
type AsyncStatus string

// Every async request status the API documents.
const (
	AsyncQueued        AsyncStatus = "QUEUED"
	AsyncInProgress    AsyncStatus = "IN_PROGRESS"
	AsyncSucceeded     AsyncStatus = "SUCCEEDED"
	AsyncFailed        AsyncStatus = "FAILED"
	AsyncExpired       AsyncStatus = "EXPIRED"
	AsyncCanceled      AsyncStatus = "CANCELED"
	AsyncWebhookFailed AsyncStatus = "WEBHOOK_FAILED"
)

// AsyncStatuses lists every async request status, in the order the API documents them.
func AsyncStatuses() []AsyncStatus {
	return []AsyncStatus{
		AsyncQueued, AsyncInProgress, AsyncSucceeded, AsyncFailed, AsyncExpired, AsyncCanceled,
		AsyncWebhookFailed,
	}
}

// OpenAsyncStatuses are the statuses of a request that has not ended: queued or running.
func OpenAsyncStatuses() []AsyncStatus { return []AsyncStatus{AsyncQueued, AsyncInProgress} }

// Valid reports whether s is one of the documented statuses.
func (s AsyncStatus) Valid() bool { return slices.Contains(AsyncStatuses(), s) }

// Open reports whether the request is queued or running.
func (s AsyncStatus) Open() bool { return slices.Contains(OpenAsyncStatuses(), s) }

// Ended reports whether the request ended; only its webhook may still be delivered.
func (s AsyncStatus) Ended() bool { return s.Valid() && !s.Open() }

// Delivers reports whether a request that ended in this status has a webhook to deliver:
// it ran to an outcome the model gave (SUCCEEDED, FAILED) or the queue gave (EXPIRED). A
// canceled request's caller already knows.
func (s AsyncStatus) Delivers() bool {
	return s == AsyncSucceeded || s == AsyncFailed || s == AsyncExpired
}

// WebhookStatus is where the delivery of an async request's webhook is.
type WebhookStatus string

// Every webhook status the API documents.
const (
	WebhookPending   WebhookStatus = "PENDING"
	WebhookSucceeded WebhookStatus = "SUCCEEDED"
	WebhookFailed    WebhookStatus = "FAILED"
	WebhookCanceled  WebhookStatus = "CANCELED"
	WebhookNone      WebhookStatus = "NO_WEBHOOK_PROVIDED"
)

// WebhookStatuses lists every webhook status, in the order the API documents them.
func WebhookStatuses() []WebhookStatus {
	return []WebhookStatus{WebhookPending, WebhookSucceeded, WebhookFailed, WebhookCanceled, WebhookNone}
}

// Valid reports whether s is one of the documented statuses.
func (s WebhookStatus) Valid() bool { return slices.Contains(WebhookStatuses(), s) }

// AttemptState is where one try at calling the model for an async request is. The gateway
// that runs it claims it, so a worker that dies mid-call never makes a second call.
type AttemptState string

// Every attempt state.
const (
	// AttemptPending waits for a gateway to claim it.
	AttemptPending AttemptState = "PENDING"
	// AttemptRunning is claimed by a gateway, which is calling the model.
	AttemptRunning AttemptState = "RUNNING"
	// AttemptDone has its outcome recorded.
	AttemptDone AttemptState = "DONE"
)

// ErrorCode says why an async request, or one of its attempts, failed; it is the code of
// an errors[] entry.
type ErrorCode string

// Every error code an async request's errors[] can hold.
const (
	// CodeModelPredictError: the model answered with a server error (5xx).
	CodeModelPredictError ErrorCode = "MODEL_PREDICT_ERROR"
	// CodeModelInvalidInput: the model refused the input (4xx); retrying would not help.
	CodeModelInvalidInput ErrorCode = "MODEL_INVALID_INPUT"
	// CodeModelPredictTimeout: the model did not answer in time.
	CodeModelPredictTimeout ErrorCode = "MODEL_PREDICT_TIMEOUT"
	// CodeModelUnavailable: no replica could take the request (deactivated, deleted,
	// failed, or unreachable).
	CodeModelUnavailable ErrorCode = "MODEL_UNAVAILABLE"
	// CodeModelOutputTooLarge: the model's answer is larger than an async output may be.
	CodeModelOutputTooLarge ErrorCode = "MODEL_OUTPUT_TOO_LARGE"
	// CodeGatewayLost: the gateway running the attempt stopped reporting before it ended.
	CodeGatewayLost ErrorCode = "GATEWAY_LOST"
	// CodeAsyncRequestExpired: the request waited in the queue longer than it allowed.
	CodeAsyncRequestExpired ErrorCode = "ASYNC_REQUEST_EXPIRED"
	// CodeWebhookDeliveryFailed: every try to deliver the webhook failed.
	CodeWebhookDeliveryFailed ErrorCode = "WEBHOOK_DELIVERY_FAILED"
	// CodeWorkflowLost: the request's workflow was lost from Temporal a second time after
	// the reconcile pass had restarted it once.
	CodeWorkflowLost ErrorCode = "WORKFLOW_LOST"
)

// RetryConfig says how often and how patiently an async request's predict is tried.
type RetryConfig struct {
	MaxAttempts    int `json:"max_attempts"`
	InitialDelayMs int `json:"initial_delay_ms"`
	MaxDelayMs     int `json:"max_delay_ms"`
}

// DefaultRetryConfig is API.md's: three tries, backing off from one second to five.
func DefaultRetryConfig() RetryConfig {
	return RetryConfig{MaxAttempts: 3, InitialDelayMs: 1000, MaxDelayMs: 5000}
}

// Value stores the config as JSON.
func (r RetryConfig) Value() (driver.Value, error) { return json.Marshal(r) }

// Scan reads the config from JSON.
func (r *RetryConfig) Scan(src any) error { return ScanJSON(src, r) }

// AsyncError is one thing that went wrong with an async request.
type AsyncError struct {
	Code    ErrorCode `json:"code"`
	Message string    `json:"message"`
	// Attempt is the predict attempt it happened on; 0 when none.
	Attempt int `json:"attempt,omitempty"`
}

// AsyncErrors is a JSON array column of AsyncError.
type AsyncErrors []AsyncError

// Value stores the errors as JSON.
func (e AsyncErrors) Value() (driver.Value, error) {
	if e == nil {
		return []byte("[]"), nil
	}
	return json.Marshal([]AsyncError(e))
}

// Scan reads the errors from JSON.
func (e *AsyncErrors) Scan(src any) error { return ScanJSON(src, e) }
