package store

import (
	"context"
	"errors"
	"time"

	"github.com/jmoiron/sqlx"
	"github.com/modelplane/modelplane"
)

// Channels on which async work is announced: new attempts for gateways to run, and finished
// attempts for the workers waiting on them (payload "request_id/attempt").
const (
	AsyncAttemptsChannel = "modelplane_async_attempts"
	AsyncDoneChannel     = "modelplane_async_done"
)

// ErrLimit means a limit refused the write: the workspace has too many open async requests.
var ErrLimit = errors.New("limit reached")

// AsyncRequest is one async inference request.
type AsyncRequest struct {
	ID                    string                   `db:"id"`
	WorkspaceID           string                   `db:"workspace_id"`
	ModelID               string                   `db:"model_id"`
	DeploymentID          string                   `db:"deployment_id"`
	Environment           string                   `db:"environment"`
	Status                modelplane.AsyncStatus   `db:"status"`
	WebhookStatus         modelplane.WebhookStatus `db:"webhook_status"`
	WebhookEndpoint       string                   `db:"webhook_endpoint"`
	WebhookDeliveryID     string                   `db:"webhook_delivery_id"`
	Priority              int                      `db:"priority"`
	MaxTimeInQueueSeconds int                      `db:"max_time_in_queue_seconds"`
	RetryConfig           modelplane.RetryConfig   `db:"retry_config"`
	ModelInput            []byte                   `db:"model_input"`
	Output                []byte                   `db:"output"`
	OutputContentType     string                   `db:"output_content_type"`
	Errors                modelplane.AsyncErrors   `db:"errors"`
	Attempts              int                      `db:"attempts"`
	WorkflowStarted       bool                     `db:"workflow_started"`
	// WorkflowWantedAt is when the request came to need its workflow (a retry, a webhook, a
	// lost gateway); nil while it needs none.
	WorkflowWantedAt *time.Time `db:"workflow_wanted_at"`
	// WorkflowRestarts counts the reconcile pass's restarts of the request's workflow.
	WorkflowRestarts int       `db:"workflow_restarts"`
	CreatedAt        time.Time `db:"created_at"`
	// ExpiresAt is when the request leaves the queue as EXPIRED if it has not started.
	ExpiresAt       time.Time  `db:"expires_at"`
	StatusAt        time.Time  `db:"status_at"`
	StartedAt       *time.Time `db:"started_at"`
	FinishedAt      *time.Time `db:"finished_at"`
	OutputExpiresAt *time.Time `db:"output_expires_at"`
}

// NewAsyncRequest is what a gateway accepted.
type NewAsyncRequest struct {
	WorkspaceID           string
	ModelID               string
	DeploymentID          string
	Environment           string
	WebhookEndpoint       string
	Priority              int
	MaxTimeInQueueSeconds int
	RetryConfig           modelplane.RetryConfig
	ModelInput            []byte
}

// InsertAsyncRequest records one QUEUED request (InsertAsyncRequests); ErrLimit when the
// workspace already has maxOpen requests queued or in progress.
func InsertAsyncRequest(ctx context.Context, db *sqlx.DB, n NewAsyncRequest, maxOpen int) (AsyncRequest, error) {
	got, err := InsertAsyncRequests(ctx, db, []NewAsyncRequest{n}, maxOpen, nil)
	if err != nil {
		return AsyncRequest{}, err
	}
	if got[0].ID == "" {
		return AsyncRequest{}, ErrLimit
	}
	return GetAsyncRequest(ctx, db, "", got[0].ID)
}

// GetAsyncRequest returns the request with this ID in the workspace; another workspace's
// request is ErrNotFound. An empty workspaceID finds any.
func GetAsyncRequest(ctx context.Context, db sqlx.QueryerContext, workspaceID, id string) (AsyncRequest, error) {
	var out AsyncRequest
	err := get(ctx, db, &out, `
		SELECT * FROM async_requests WHERE id = $1 AND ($2 = '' OR workspace_id = $2)`, id, workspaceID)
	return out, err
}

// CancelAsyncRequest cancels a QUEUED request of the workspace. canceled false means it was no
// longer queued; the returned request then says what it is.
func CancelAsyncRequest(ctx context.Context, db sqlx.QueryerContext, workspaceID, id string) (out AsyncRequest, canceled bool, err error) {
	err = get(ctx, db, &out, `
		UPDATE async_requests SET status = `+sqlAsyncCanceled+`, status_at = now(), finished_at = now(),
		    webhook_status = CASE WHEN webhook_status = `+sqlWebhookPending+` THEN `+sqlWebhookCanceled+` ELSE webhook_status END
		WHERE id = $1 AND workspace_id = $2 AND status = `+sqlAsyncQueued+`
		RETURNING *`, id, workspaceID)
	if err == nil {
		return out, true, nil
	}
	if !errors.Is(err, ErrNotFound) {
		return out, false, err
	}
	out, err = GetAsyncRequest(ctx, db, workspaceID, id)
	return out, false, err
}

// AsyncQueueCounts are a deployment's queued and running async requests.
type AsyncQueueCounts struct {
	Queued     int `db:"queued"`
	InProgress int `db:"in_progress"`
}

// CountAsyncQueue counts the deployment's queued and running async requests.
func CountAsyncQueue(ctx context.Context, db sqlx.QueryerContext, deploymentID string) (AsyncQueueCounts, error) {
	var out AsyncQueueCounts
	err := get(ctx, db, &out, `
		SELECT (SELECT count(*) FROM async_requests WHERE deployment_id = $1 AND status = `+sqlAsyncQueued+`) AS queued,
		       (SELECT count(*) FROM async_requests WHERE deployment_id = $1 AND status = `+sqlAsyncInProgress+`) AS in_progress`,
		deploymentID)
	return out, err
}

// AsyncQueueSize is how many async requests wait for one deployment.
type AsyncQueueSize struct {
	DeploymentID string `db:"deployment_id"`
	ModelID      string `db:"model_id"`
	Queued       int    `db:"queued"`
}

// AsyncQueueSizes counts the queued async requests of every deployment that has any.
func AsyncQueueSizes(ctx context.Context, db sqlx.QueryerContext) ([]AsyncQueueSize, error) {
	out := []AsyncQueueSize{}
	err := list(ctx, db, &out, `
		SELECT deployment_id, min(model_id) AS model_id, count(*) AS queued FROM async_requests
		WHERE status = `+sqlAsyncQueued+` GROUP BY deployment_id ORDER BY deployment_id`)
	return out, err
}

// MarkAsyncWorkflowStarted records that the request's workflow runs and returns the request.
func MarkAsyncWorkflowStarted(ctx context.Context, db sqlx.QueryerContext, id string) (AsyncRequest, error) {
	var out AsyncRequest
	err := get(ctx, db, &out, `
		UPDATE async_requests SET workflow_started = true WHERE id = $1 RETURNING *`, id)
	return out, err
}

// UnstartedAsyncRequests lists the requests that came to want their workflow before before and
// whose workflow has not run: the gateway that asked for it died, or Temporal refused.
func UnstartedAsyncRequests(ctx context.Context, db sqlx.QueryerContext, before time.Time, limit int) ([]string, error) {
	out := []string{}
	err := list(ctx, db, &out, `
		SELECT id FROM async_requests
		WHERE workflow_wanted_at IS NOT NULL AND NOT workflow_started AND workflow_wanted_at < $1
		ORDER BY workflow_wanted_at LIMIT $2`, before, limit)
	return out, err
}

// asyncCapacitySQL reads, for the deployment $1, what its queue may start (the schema's
// async_capacity, which async_finish_attempt reads too): its status, whether it was deleted,
// READY replicas, effective concurrency target and async requests in progress.
const asyncCapacitySQL = `SELECT * FROM async_capacity($1)`

// AsyncCapacity is what a deployment's async queue may start.
type AsyncCapacity struct {
	DeploymentStatus  modelplane.DeploymentStatus `db:"deployment_status"`
	DeploymentDeleted bool                        `db:"deployment_deleted"`
	ReadyReplicas     int                         `db:"ready_replicas"`
	ConcurrencyTarget int                         `db:"concurrency_target"`
	InProgress        int                         `db:"in_progress"`
}

// Free is how many more async requests may run: READY replicas times the concurrency target,
// less those already running.
func (c AsyncCapacity) Free() int { return c.ReadyReplicas*c.ConcurrencyTarget - c.InProgress }

// Unavailable says why the deployment will not serve without someone acting (deleted,
// deactivated, failed); empty when it serves or is on its way to.
func (c AsyncCapacity) Unavailable() string {
	if c.DeploymentDeleted {
		return "the deployment was deleted"
	}
	switch {
	case c.DeploymentStatus.Deactivated():
		return "the deployment is deactivated"
	case c.DeploymentStatus.Failed():
		return "the deployment is " + string(c.DeploymentStatus)
	}
	return ""
}

// AsyncClaim is the outcome of one try to take an async request off its queue.
type AsyncClaim struct {
	// Status is the request's status after the try: IN_PROGRESS when it was claimed (now or
	// before), QUEUED when it must wait, or the status it already ended in.
	Status       modelplane.AsyncStatus
	Claimed      bool
	DeploymentID string
	// Ahead counts the queued requests of the deployment that go first.
	Ahead    int
	Capacity AsyncCapacity
}

// lockAsyncQueue takes, until tx ends, the lock under which the queue of a deployment is
// started from, so that its room is counted once by one taker at a time.
func lockAsyncQueue(ctx context.Context, tx *sqlx.Tx, deploymentID string) error {
	return exec(ctx, tx, false, `SELECT pg_advisory_xact_lock(hashtextextended('modelplane.async.' || $1, 0))`, deploymentID)
}

// ClaimAsyncRequest moves a QUEUED request to IN_PROGRESS if its deployment has room for it:
// fewer requests are ahead of it in the queue (lower priority number first, then the older)
// than the deployment may still start. Claims of one deployment's queue are serialised by an
// advisory lock, so its limit holds with many workers. A queued request to an environment
// first follows the environment to its current deployment.
func ClaimAsyncRequest(ctx context.Context, db *sqlx.DB, id string) (AsyncClaim, error) {
	var c AsyncClaim
	err := WithTx(ctx, db, func(tx *sqlx.Tx) error {
		var r struct {
			DeploymentID string                 `db:"deployment_id"`
			Status       modelplane.AsyncStatus `db:"status"`
			Priority     int                    `db:"priority"`
			CreatedAt    time.Time              `db:"created_at"`
		}
		if err := get(ctx, tx, &r, `
			UPDATE async_requests a SET deployment_id = COALESCE((
			    SELECT e.current_deployment_id FROM environments e
			    WHERE a.environment <> '' AND a.status = `+sqlAsyncQueued+`
			      AND e.model_id = a.model_id AND e.name = a.environment), a.deployment_id)
			WHERE a.id = $1
			RETURNING a.deployment_id, a.status, a.priority, a.created_at`, id); err != nil {
			return err
		}
		c.Status, c.DeploymentID = r.Status, r.DeploymentID
		if r.Status != modelplane.AsyncQueued {
			c.Claimed = r.Status == modelplane.AsyncInProgress
			return nil
		}
		if err := lockAsyncQueue(ctx, tx, r.DeploymentID); err != nil {
			return err
		}
		if err := get(ctx, tx, &c.Capacity, asyncCapacitySQL, r.DeploymentID); err != nil {
			return err
		}
		if err := get(ctx, tx, &c.Ahead, `
			SELECT count(*) FROM async_requests
			WHERE deployment_id = $1 AND status = `+sqlAsyncQueued+` AND (priority, created_at, id) < ($2, $3, $4)`,
			r.DeploymentID, r.Priority, r.CreatedAt, id); err != nil {
			return err
		}
		if c.Capacity.Unavailable() != "" || c.Ahead >= c.Capacity.Free() {
			return nil
		}
		c.Status, c.Claimed = modelplane.AsyncInProgress, true
		return exec(ctx, tx, true, `
			UPDATE async_requests SET status = `+sqlAsyncInProgress+`, status_at = now(), started_at = now()
			WHERE id = $1`, id)
	})
	return c, err
}

// ExpireAsyncRequest ends a request that is still QUEUED as EXPIRED and returns the request as
// it is after the try.
func ExpireAsyncRequest(ctx context.Context, db sqlx.QueryerContext, id string) (AsyncRequest, error) {
	var out AsyncRequest
	expired := modelplane.AsyncErrors{{Code: modelplane.CodeAsyncRequestExpired, Message: "the request waited longer than max_time_in_queue_seconds"}}
	err := get(ctx, db, &out, `
		UPDATE async_requests SET status = `+sqlAsyncExpired+`, status_at = now(), finished_at = now(),
		    errors = errors || $2::jsonb
		WHERE id = $1 AND status = `+sqlAsyncQueued+`
		RETURNING *`, id, expired)
	if errors.Is(err, ErrNotFound) {
		return GetAsyncRequest(ctx, db, "", id)
	}
	return out, err
}

// asyncEndSQL sets how a request ended: status $2, output $3 of content type $4 kept for $6
// seconds, errors $5 added to those it had.
const asyncEndSQL = `status = $2, status_at = now(), finished_at = now(),
	output = $3, output_content_type = $4, errors = errors || $5::jsonb,
	output_expires_at = CASE WHEN $3::bytea IS NULL THEN NULL ELSE now() + $6 * interval '1 second' END`

// AsyncOutcome is how an IN_PROGRESS request ended.
type AsyncOutcome struct {
	Status      modelplane.AsyncStatus // SUCCEEDED or FAILED
	Output      []byte
	ContentType string
	Errors      modelplane.AsyncErrors
	// KeepOutput is how long the output is kept for reading with the status.
	KeepOutput time.Duration
}

// FinishAsyncRequest records the outcome of a request that has not ended and returns the
// request: one IN_PROGRESS, or one still QUEUED for a deployment that will not serve it. A
// request that already ended (or was canceled meanwhile) is left as it is, so a retried call
// changes nothing.
func FinishAsyncRequest(ctx context.Context, db sqlx.QueryerContext, id string, o AsyncOutcome) (AsyncRequest, error) {
	var out AsyncRequest
	err := get(ctx, db, &out, `
		UPDATE async_requests SET `+asyncEndSQL+`
		WHERE id = $1 AND status IN `+sqlOpenAsyncStatuses+`
		RETURNING *`, id, o.Status, o.Output, o.ContentType, o.Errors, o.KeepOutput.Seconds())
	if errors.Is(err, ErrNotFound) {
		return GetAsyncRequest(ctx, db, "", id)
	}
	return out, err
}

// SetAsyncWebhookResult records how the webhook delivery ended. A delivered webhook carried
// the output, which is then dropped; a failed one leaves the output readable with the status
// (until it expires), a SUCCEEDED request becomes WEBHOOK_FAILED and the failure joins its
// errors.
func SetAsyncWebhookResult(ctx context.Context, db sqlx.QueryerContext, id string, delivered bool, failure string) (AsyncRequest, error) {
	var out AsyncRequest
	if delivered {
		err := get(ctx, db, &out, `
			UPDATE async_requests SET webhook_status = `+sqlWebhookSucceeded+`, output = NULL, output_expires_at = NULL
			WHERE id = $1 RETURNING *`, id)
		return out, err
	}
	failed := modelplane.AsyncErrors{{Code: modelplane.CodeWebhookDeliveryFailed, Message: failure}}
	err := get(ctx, db, &out, `
		UPDATE async_requests SET webhook_status = `+sqlWebhookFailed+`,
		    status = CASE WHEN status = `+sqlAsyncSucceeded+` THEN `+sqlAsyncWebhookFailed+` ELSE status END,
		    status_at = CASE WHEN status = `+sqlAsyncSucceeded+` THEN now() ELSE status_at END,
		    errors = CASE WHEN webhook_status = `+sqlWebhookFailed+` THEN errors ELSE errors || $2::jsonb END
		WHERE id = $1 RETURNING *`, id, failed)
	return out, err
}

// PurgeAsyncOutputs drops outputs kept past their expiry (not while their webhook is being
// delivered) and deletes requests that ended before finishedBefore; it says how many of each.
func PurgeAsyncOutputs(ctx context.Context, db sqlx.ExecerContext, now, finishedBefore time.Time) (outputs, requests int64, err error) {
	// An output whose webhook is still being delivered stays until the delivery ends,
	// however short the retention.
	res, err := db.ExecContext(ctx, `
		UPDATE async_requests SET output = NULL, output_expires_at = NULL
		WHERE output_expires_at IS NOT NULL AND output_expires_at < $1 AND webhook_status <> `+sqlWebhookPending, now)
	if err != nil {
		return 0, 0, translate(err)
	}
	if outputs, err = res.RowsAffected(); err != nil {
		return 0, 0, err
	}
	res, err = db.ExecContext(ctx, `
		DELETE FROM async_requests
		WHERE status NOT IN `+sqlOpenAsyncStatuses+` AND finished_at < $1
		  AND (output_expires_at IS NULL OR output_expires_at < $2)`, finishedBefore, now)
	if err != nil {
		return 0, 0, translate(err)
	}
	requests, err = res.RowsAffected()
	return outputs, requests, err
}

// AsyncAttempt is one try at predict for an async request.
type AsyncAttempt struct {
	RequestID    string                  `db:"request_id"`
	Attempt      int                     `db:"attempt"`
	DeploymentID string                  `db:"deployment_id"`
	State        modelplane.AttemptState `db:"state"`
	GatewayID    string                  `db:"gateway_id"`
	StatusCode   int                     `db:"status_code"`
	Output       []byte                  `db:"output"`
	ContentType  string                  `db:"content_type"`
	ErrorCode    modelplane.ErrorCode    `db:"error_code"`
	Error        string                  `db:"error"`
	CreatedAt    time.Time               `db:"created_at"`
	StartedAt    *time.Time              `db:"started_at"`
	FinishedAt   *time.Time              `db:"finished_at"`
}

// CreateAsyncAttempt records attempt n of the request as PENDING for a gateway to run, and
// announces it; an attempt that exists already is left as it is. It returns the attempt.
func CreateAsyncAttempt(ctx context.Context, db *sqlx.DB, requestID string, n int, deploymentID string) (AsyncAttempt, error) {
	var out AsyncAttempt
	err := WithTx(ctx, db, func(tx *sqlx.Tx) error {
		err := get(ctx, tx, &out, `
			INSERT INTO async_attempts (request_id, attempt, deployment_id) VALUES ($1, $2, $3)
			ON CONFLICT (request_id, attempt) DO NOTHING RETURNING *`, requestID, n, deploymentID)
		if errors.Is(err, ErrNotFound) {
			return get(ctx, tx, &out, `SELECT * FROM async_attempts WHERE request_id = $1 AND attempt = $2`, requestID, n)
		}
		if err != nil {
			return err
		}
		if err := exec(ctx, tx, false, `UPDATE async_requests SET attempts = GREATEST(attempts, $2) WHERE id = $1`, requestID, n); err != nil {
			return err
		}
		return exec(ctx, tx, false, `SELECT pg_notify($1, $2)`, AsyncAttemptsChannel, requestID)
	})
	return out, err
}

// GetAsyncAttempt returns attempt n of the request.
func GetAsyncAttempt(ctx context.Context, db sqlx.QueryerContext, requestID string, n int) (AsyncAttempt, error) {
	var out AsyncAttempt
	err := get(ctx, db, &out, `SELECT * FROM async_attempts WHERE request_id = $1 AND attempt = $2`, requestID, n)
	return out, err
}

// ClaimedAttempt is an attempt a gateway took to run, with what it needs to run it.
type ClaimedAttempt struct {
	RequestID    string    `db:"request_id"`
	Attempt      int       `db:"attempt"`
	DeploymentID string    `db:"deployment_id"`
	ModelID      string    `db:"model_id"`
	ModelInput   []byte    `db:"model_input"`
	CreatedAt    time.Time `db:"created_at"`
	// StartedAt is when the request left the queue.
	StartedAt *time.Time `db:"started_at"`
	// Committed, when set, reports whether the transaction that started the attempt
	// committed (FinishAsyncAttempt's next request): its result is recorded only after it
	// did, and a failure means the attempt never was.
	Committed <-chan error `db:"-"`
}

// ClaimAsyncAttempts takes up to limit PENDING attempts, oldest first, for the gateway to run:
// they become RUNNING there. Gateways claiming at once each get different ones.
func ClaimAsyncAttempts(ctx context.Context, db sqlx.QueryerContext, gatewayID string, limit int) ([]ClaimedAttempt, error) {
	out := []ClaimedAttempt{}
	if limit <= 0 {
		return out, nil
	}
	err := list(ctx, db, &out, `
		WITH p AS (
		    SELECT request_id, attempt FROM async_attempts WHERE state = `+sqlAttemptPending+`
		    ORDER BY created_at LIMIT $2 FOR UPDATE SKIP LOCKED)
		UPDATE async_attempts t SET state = `+sqlAttemptRunning+`, gateway_id = $1, started_at = now()
		FROM p, async_requests r
		WHERE t.request_id = p.request_id AND t.attempt = p.attempt AND r.id = t.request_id
		RETURNING t.request_id, t.attempt, t.deployment_id, r.model_id, r.model_input,
		          r.created_at, r.started_at`, gatewayID, limit)
	return out, err
}

// AttemptResult is what running an attempt came to: the model's answer (StatusCode > 0), or an
// error code and message when there was none to give.
type AttemptResult struct {
	StatusCode  int
	Output      []byte
	ContentType string
	ErrorCode   modelplane.ErrorCode
	Error       string
}

// AbandonAsyncAttempt ends an attempt RUNNING on a gateway that stopped reporting (dead for
// GatewayDownAfter) with error GATEWAY_LOST. ok says whether it did.
func AbandonAsyncAttempt(ctx context.Context, db sqlx.QueryerContext, requestID string, n int) (bool, error) {
	var done int
	err := get(ctx, db, &done, `
		WITH u AS (
		    UPDATE async_attempts a SET state = `+sqlAttemptDone+`, error_code = `+sqlCodeGatewayLost+`,
		        error = 'gateway ' || a.gateway_id || ' stopped while running the attempt', finished_at = now()
		    WHERE a.request_id = $1 AND a.attempt = $2 AND a.state = `+sqlAttemptRunning+`
		      AND NOT EXISTS (SELECT 1 FROM gateway_reports g WHERE g.gateway_id = a.gateway_id
		                      AND g.reported_at > now() - $3 * interval '1 second')
		    RETURNING request_id, attempt)
		SELECT count(pg_notify($4, u.request_id || '/' || u.attempt)) FROM u`,
		requestID, n, GatewayDownAfter.Seconds(), AsyncDoneChannel)
	return done == 1, err
}

// AttemptKey names one attempt of one async request.
type AttemptKey struct {
	RequestID string `db:"request_id"`
	Attempt   int    `db:"attempt"`
}

// RunningAsyncAttempts lists the attempts the database has RUNNING on the gateway.
func RunningAsyncAttempts(ctx context.Context, db sqlx.QueryerContext, gatewayID string) ([]AttemptKey, error) {
	out := []AttemptKey{}
	err := list(ctx, db, &out, `
		SELECT request_id, attempt FROM async_attempts WHERE state = `+sqlAttemptRunning+` AND gateway_id = $1`, gatewayID)
	return out, err
}

// ReleaseAsyncAttempts gives a stopping gateway's RUNNING attempts that never reached a model
// back to PENDING, for another gateway to run.
func ReleaseAsyncAttempts(ctx context.Context, db sqlx.ExecerContext, gatewayID string, attempts []ClaimedAttempt) error {
	for _, a := range attempts {
		if err := exec(ctx, db, false, `
			UPDATE async_attempts SET state = `+sqlAttemptPending+`, gateway_id = '', started_at = NULL
			WHERE request_id = $1 AND attempt = $2 AND state = `+sqlAttemptRunning+` AND gateway_id = $3`,
			a.RequestID, a.Attempt, gatewayID); err != nil {
			return err
		}
	}
	return exec(ctx, db, false, `SELECT pg_notify($1, '')`, AsyncAttemptsChannel)
}
