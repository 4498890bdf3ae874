package store

import (
	"context"
	"encoding/json"
	"errors"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/jmoiron/sqlx"
	"github.com/lib/pq"

	"github.com/modelplane/modelplane"
)

// AsyncQueuedPrefix starts the payload of an AsyncAttemptsChannel notification of requests
// queued, followed by their deployments' IDs, comma-separated.
const AsyncQueuedPrefix = "queued:"

// DefaultAsyncOutputRetention is how long a finished request's output is kept for reading
// with its status when nothing else is set.
const DefaultAsyncOutputRetention = 24 * time.Hour

// OpenAsyncCounts remembers, per workspace, its open async requests as last counted plus
// those recorded since through it, so that a batch well below its limit is written without
// counting them again. A count is trusted for openCountFor: requests that ended meanwhile
// make it high (a batch near the limit counts again), those other gateways recorded make it
// low, by what they recorded in that time.
type OpenAsyncCounts struct {
	mu sync.Mutex
	m  map[string]openCount
}

type openCount struct {
	n  int
	at time.Time
}

// openCountFor is how long an open count is trusted.
const openCountFor = time.Second

// estimate returns the workspace's open requests if a count younger than openCountFor is
// known.
func (c *OpenAsyncCounts) estimate(ws string, now time.Time) (int, bool) {
	if c == nil {
		return 0, false
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	o, ok := c.m[ws]
	return o.n, ok && now.Sub(o.at) < openCountFor
}

// counted records a count taken at at; added adds requests recorded since.
func (c *OpenAsyncCounts) counted(ws string, n int, at time.Time) {
	if c == nil {
		return
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.m == nil {
		c.m = map[string]openCount{}
	}
	c.m[ws] = openCount{n: n, at: at}
}

func (c *OpenAsyncCounts) added(ws string, n int) {
	if c == nil {
		return
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	if o, ok := c.m[ws]; ok {
		o.n += n
		c.m[ws] = o
	}
}

// AsyncAdmission is what became of one request of a batch given to InsertAsyncRequests.
type AsyncAdmission struct {
	// ID is the recorded request's; empty when a limit refused it.
	ID string
	// MaxOpen is the limit that applied, and ByQuota whether it was the workspace's
	// async_requests quota (else the gateway's own), for the refusal's message.
	MaxOpen int
	ByQuota bool
}

// InsertAsyncRequests records a batch of QUEUED requests in one transaction, each with a new ID
// and webhook delivery ID, and announces them to the gateways. A workspace may have at most
// the lower of gatewayMaxOpen and its async_requests quota queued or in progress; the requests
// past that are refused (empty ID). With counts, a workspace's open requests are counted only
// when the last count is old or the batch could reach the limit (OpenAsyncCounts). Batches
// written at the same moment (by several gateways,
// or one gateway's writers) each count what was committed before them, so together they may
// pass the limit by what they carry.
func InsertAsyncRequests(ctx context.Context, db *sqlx.DB, batch []NewAsyncRequest, gatewayMaxOpen int, counts *OpenAsyncCounts) ([]AsyncAdmission, error) {
	out := make([]AsyncAdmission, len(batch))
	recorded := map[string]int{}
	err := WithTx(ctx, db, func(tx *sqlx.Tx) error {
		room := map[string]*AsyncAdmission{}
		left := map[string]int{}
		asked := map[string]int{}
		workspaces := make([]string, 0, 1)
		for _, n := range batch {
			if _, ok := room[n.WorkspaceID]; !ok {
				room[n.WorkspaceID] = nil
				workspaces = append(workspaces, n.WorkspaceID)
			}
			asked[n.WorkspaceID]++
		}
		now := time.Now()
		for _, ws := range workspaces {
			q, err := WorkspaceQuotas(ctx, tx, ws)
			if err != nil {
				return err
			}
			limit := AsyncAdmission{MaxOpen: gatewayMaxOpen}
			if q.AsyncRequests <= gatewayMaxOpen {
				limit = AsyncAdmission{MaxOpen: q.AsyncRequests, ByQuota: true}
			}
			open, known := counts.estimate(ws, now)
			if !known || open+asked[ws] >= limit.MaxOpen {
				if err := get(ctx, tx, &open, `
					SELECT count(*) FROM (SELECT 1 FROM async_requests
					    WHERE workspace_id = $1 AND status IN `+sqlOpenAsyncStatuses+` LIMIT $2) o`,
					ws, limit.MaxOpen); err != nil {
					return err
				}
				counts.counted(ws, open, now)
			}
			room[ws], left[ws] = &limit, limit.MaxOpen-open
		}
		var cols asyncColumns
		for i, n := range batch {
			out[i] = *room[n.WorkspaceID]
			if left[n.WorkspaceID] <= 0 {
				continue
			}
			left[n.WorkspaceID]--
			recorded[n.WorkspaceID]++
			out[i].ID = modelplane.NewID(16)
			if err := cols.add(out[i].ID, n); err != nil {
				return err
			}
		}
		if len(cols.id) == 0 {
			return nil
		}
		if err := exec(ctx, tx, false, `
			INSERT INTO async_requests (id, workspace_id, model_id, deployment_id, environment,
			    webhook_status, webhook_endpoint, webhook_delivery_id, priority,
			    max_time_in_queue_seconds, retry_config, model_input, expires_at)
			SELECT id, ws, model, dep, env, hook_status, hook, delivery, prio, max_wait, retry::jsonb, input,
			       now() + max_wait * interval '1 second'
			FROM unnest($1::text[], $2::text[], $3::text[], $4::text[], $5::text[], $6::text[], $7::text[],
			            $8::text[], $9::int[], $10::int[], $11::text[], $12::bytea[])
			     AS u(id, ws, model, dep, env, hook_status, hook, delivery, prio, max_wait, retry, input)`,
			pq.Array(cols.id), pq.Array(cols.workspace), pq.Array(cols.model), pq.Array(cols.deployment),
			pq.Array(cols.environment), pq.Array(cols.webhookStatus), pq.Array(cols.webhook), pq.Array(cols.delivery),
			pq.Array(cols.priority), pq.Array(cols.maxWait), pq.Array(cols.retry), pq.Array(cols.input)); err != nil {
			return err
		}
		return exec(ctx, tx, false, `SELECT pg_notify($1, $2)`, AsyncAttemptsChannel, AsyncQueuedPrefix+strings.Join(cols.deployments(), ","))
	})
	if err != nil {
		return nil, err
	}
	for ws, n := range recorded {
		counts.added(ws, n)
	}
	return out, nil
}

// asyncColumns are the columns of a batch of new requests, one array each, for unnest.
type asyncColumns struct {
	id, workspace, model, deployment, environment, webhookStatus, webhook, delivery, retry []string
	priority, maxWait                                                                      []int64
	input                                                                                  [][]byte
}

// deployments lists the batch's deployments, each once.
func (c *asyncColumns) deployments() []string {
	var out []string
	for _, d := range c.deployment {
		if !slices.Contains(out, d) {
			out = append(out, d)
		}
	}
	return out
}

func (c *asyncColumns) add(id string, n NewAsyncRequest) error {
	retry, err := json.Marshal(n.RetryConfig)
	if err != nil {
		return err
	}
	hookStatus := modelplane.WebhookNone
	if n.WebhookEndpoint != "" {
		hookStatus = modelplane.WebhookPending
	}
	c.id = append(c.id, id)
	c.workspace = append(c.workspace, n.WorkspaceID)
	c.model = append(c.model, n.ModelID)
	c.deployment = append(c.deployment, n.DeploymentID)
	c.environment = append(c.environment, n.Environment)
	c.webhookStatus = append(c.webhookStatus, string(hookStatus))
	c.webhook = append(c.webhook, n.WebhookEndpoint)
	c.delivery = append(c.delivery, "whd_"+modelplane.NewID(24))
	c.priority = append(c.priority, int64(n.Priority))
	c.maxWait = append(c.maxWait, int64(n.MaxTimeInQueueSeconds))
	c.retry = append(c.retry, string(retry))
	c.input = append(c.input, n.ModelInput)
	return nil
}

// queuedDeploymentsSQL lists the deployments that have queued async requests, one index probe
// each (a skip scan of async_requests_queue), however long their queues are.
var queuedDeploymentsSQL = `
	WITH RECURSIVE q AS (
	    (SELECT deployment_id FROM async_requests WHERE status = ` + sqlAsyncQueued + `
	     ORDER BY deployment_id LIMIT 1)
	    UNION ALL
	    SELECT (SELECT a.deployment_id FROM async_requests a
	            WHERE a.status = ` + sqlAsyncQueued + ` AND a.deployment_id > q.deployment_id
	            ORDER BY a.deployment_id LIMIT 1)
	    FROM q WHERE q.deployment_id IS NOT NULL)
	SELECT deployment_id FROM q WHERE deployment_id IS NOT NULL`

// AsyncStarts says what StartAsyncHeads did.
type AsyncStarts struct {
	// Started counts the requests taken off their queues, each with its first attempt
	// recorded: for the gateways, or running on the gateway that started them (Claimed).
	Started int
	Claimed []ClaimedAttempt
	// Full names the deployments left with queued requests and no room for them.
	Full map[string]bool
	// Failed lists the requests ended FAILED because their deployment will not serve them,
	// and Wanted those of them that have a webhook to deliver, so need their workflow.
	Failed, Wanted []string
}

// StartAsyncHeads takes off their queues (deploymentID's alone, or every deployment's when it
// is empty), up to limit in all, the queued requests whose
// deployments have room for them (READY replicas × concurrency target, less those running),
// in queue order (priority, then arrival), and records their first attempts: PENDING and
// announced, for any gateway to claim, or, when gatewayID is given, RUNNING on that gateway
// and returned in Claimed, as ClaimAsyncAttempts would. A request past its max_time_in_queue is left for ExpireDueAsync. The queue of a
// deployment that will not serve (deleted, deactivated, failed) is ended FAILED with
// MODEL_UNAVAILABLE instead. Each deployment is handled under the advisory lock that
// ClaimAsyncRequest takes, so its bound holds with many callers.
func StartAsyncHeads(ctx context.Context, db *sqlx.DB, deploymentID string, limit int, gatewayID string) (AsyncStarts, error) {
	var out AsyncStarts
	deps := []string{deploymentID}
	if deploymentID == "" {
		if err := list(ctx, db, &deps, queuedDeploymentsSQL); err != nil {
			return out, err
		}
	}
	for _, dep := range deps {
		if out.Started >= limit {
			break
		}
		err := WithTx(ctx, db, func(tx *sqlx.Tx) error {
			return startHeads(ctx, tx, dep, limit-out.Started, gatewayID, true, &out)
		})
		if err != nil {
			return out, err
		}
	}
	return out, nil
}

// startHeads starts up to limit queued requests of deployment dep that it has room for, in
// tx (StartAsyncHeads), and adds what it did to out. With lock, it first takes the
// deployment's advisory lock; a slot handed from a request that ended in tx to the next needs
// none, since it adds no request to those running, unless the room shrank.
func startHeads(ctx context.Context, tx *sqlx.Tx, dep string, limit int, gatewayID string, lock bool, out *AsyncStarts) error {
	if lock {
		if err := lockAsyncQueue(ctx, tx, dep); err != nil {
			return err
		}
	}
	var c AsyncCapacity
	if err := get(ctx, tx, &c, asyncCapacitySQL+` WHERE d.id = $1`, dep); err != nil {
		return err
	}
	if why := c.Unavailable(); why != "" {
		return failUnserved(ctx, tx, dep, why, out)
	}
	n := min(c.Free(), limit)
	if c.Free() <= 0 {
		out.full(dep)
	}
	if n <= 0 {
		return nil
	}
	var started []ClaimedAttempt
	if err := list(ctx, tx, &started, `
		WITH h AS (
		    SELECT id FROM async_requests
		    WHERE deployment_id = $1 AND status = `+sqlAsyncQueued+` AND expires_at > now()
		    ORDER BY priority, created_at, id LIMIT $2 FOR UPDATE SKIP LOCKED),
		u AS (
		    UPDATE async_requests a SET status = `+sqlAsyncInProgress+`, status_at = now(),
		        started_at = now(), attempts = GREATEST(a.attempts, 1)
		    FROM h WHERE a.id = h.id
		    RETURNING a.id, a.model_id, a.model_input, a.created_at, a.started_at),
		i AS (
		    INSERT INTO async_attempts (request_id, attempt, deployment_id, state, gateway_id, started_at)
		    SELECT id, 1, $1, CASE WHEN $3 = '' THEN `+sqlAttemptPending+` ELSE `+sqlAttemptRunning+` END,
		           $3, CASE WHEN $3 = '' THEN NULL ELSE now() END
		    FROM u ON CONFLICT (request_id, attempt) DO NOTHING
		    RETURNING request_id)
		SELECT u.id AS request_id, 1 AS attempt, $1 AS deployment_id, u.model_id, u.model_input,
		       u.created_at, u.started_at
		FROM u JOIN i ON i.request_id = u.id`, dep, n, gatewayID); err != nil {
		return err
	}
	out.Started += len(started)
	if len(started) == c.Free() {
		out.full(dep) // whatever it has left waits for room
	}
	if gatewayID != "" {
		out.Claimed = append(out.Claimed, started...)
	}
	if len(started) == 0 || gatewayID != "" {
		return nil
	}
	return exec(ctx, tx, false, `SELECT pg_notify($1, '')`, AsyncAttemptsChannel)
}

func (s *AsyncStarts) full(dep string) {
	if s.Full == nil {
		s.Full = map[string]bool{}
	}
	s.Full[dep] = true
}

// failUnserved ends the queue of deployment dep, which will not serve (why), as FAILED.
func failUnserved(ctx context.Context, tx *sqlx.Tx, dep, why string, out *AsyncStarts) error {
	errs := modelplane.AsyncErrors{{Code: modelplane.CodeModelUnavailable, Message: why}}
	ended, wanted, err := endQueued(ctx, tx, modelplane.AsyncFailed, errs, `deployment_id = $3`, dep)
	out.Failed = append(out.Failed, ended...)
	out.Wanted = append(out.Wanted, wanted...)
	return err
}

// endQueued ends the queued requests that where picks (its arguments from $3 on) in status,
// adding errs to their errors, and returns them and those of them that want their workflow
// for a webhook to deliver, which it marks so.
func endQueued(ctx context.Context, db sqlx.QueryerContext, status modelplane.AsyncStatus, errs modelplane.AsyncErrors,
	where string, args ...any) (ended, wanted []string, err error) {
	var rows []struct {
		ID     string `db:"id"`
		Wanted bool   `db:"wanted"`
	}
	err = list(ctx, db, &rows, `
		UPDATE async_requests SET status = $1, status_at = now(), finished_at = now(),
		    errors = errors || $2::jsonb,
		    workflow_wanted_at = CASE WHEN webhook_status = `+sqlWebhookPending+` AND NOT workflow_started
		                              THEN now() ELSE workflow_wanted_at END
		WHERE status = `+sqlAsyncQueued+` AND `+where+`
		RETURNING id, webhook_status = `+sqlWebhookPending+` AND NOT workflow_started AS wanted`,
		append([]any{status, errs}, args...)...)
	for _, r := range rows {
		ended = append(ended, r.ID)
		if r.Wanted {
			wanted = append(wanted, r.ID)
		}
	}
	return ended, wanted, err
}

// ExpireDueAsync ends as EXPIRED, up to limit of them, the queued requests past their
// max_time_in_queue, and returns those that have a webhook to deliver (so need their
// workflow) and how many it ended.
func ExpireDueAsync(ctx context.Context, db sqlx.QueryerContext, limit int) (wanted []string, expired int, err error) {
	errs := modelplane.AsyncErrors{{Code: modelplane.CodeAsyncRequestExpired, Message: "the request waited longer than max_time_in_queue_seconds"}}
	ended, wanted, err := endQueued(ctx, db, modelplane.AsyncExpired, errs, `
		id IN (SELECT id FROM async_requests WHERE status = `+sqlAsyncQueued+` AND expires_at <= now()
		       ORDER BY expires_at LIMIT $3 FOR UPDATE SKIP LOCKED)`, limit)
	return wanted, len(ended), err
}

// WantWorkflowsForLostAttempts marks the requests without a workflow whose attempt runs on a
// gateway that stopped reporting (for GatewayDownAfter) as wanting one, which ends the attempt
// GATEWAY_LOST and retries it, and returns them.
func WantWorkflowsForLostAttempts(ctx context.Context, db sqlx.QueryerContext) ([]string, error) {
	out := []string{}
	err := list(ctx, db, &out, `
		UPDATE async_requests r SET workflow_wanted_at = now()
		FROM async_attempts a
		WHERE a.request_id = r.id AND a.state = `+sqlAttemptRunning+`
		  AND NOT r.workflow_started AND r.workflow_wanted_at IS NULL
		  AND NOT EXISTS (SELECT 1 FROM gateway_reports g WHERE g.gateway_id = a.gateway_id
		                  AND g.reported_at > now() - $1 * interval '1 second')
		RETURNING r.id`, GatewayDownAfter.Seconds())
	return out, err
}

// AttemptConclusion is what FinishAsyncAttempt made of an attempt.
type AttemptConclusion struct {
	// Recorded: the attempt was RUNNING on the gateway, and now is DONE.
	Recorded bool
	// Ended is the status the request ended in with it, when it did.
	Ended modelplane.AsyncStatus
	// WantsWorkflow: the request needs its workflow now (to retry the attempt or deliver its
	// webhook), and was marked so.
	WantsWorkflow bool
	// Next is the deployment's queued request started in the slot this attempt left, running
	// on the gateway, when it was asked for one and the deployment has room.
	Next *ClaimedAttempt
	// Wanted lists requests the deployment's queue ended that want their workflow (a
	// deployment that will not serve fails its queue).
	Wanted []string
}

// FinishAsyncAttempt records the result of attempt n, RUNNING on the gateway, and announces
// it. A request that has no workflow is concluded in the same transaction: a success or a
// failure no retry can mend (or its last attempt) ends it, keeping the output for keepOutput;
// a request with a retry due, or an end with a webhook to deliver, is marked as wanting its
// workflow. One that has a workflow is left to it. With next, when the request ended here,
// the deployment's next queued request is started in the same transaction, running on the
// gateway, so the slot it left passes on without a look at the queues. Recorded false means the attempt was
// not running there (given up on as lost, say) and nothing changed.
func FinishAsyncAttempt(ctx context.Context, db *sqlx.DB, requestID string, n int, gatewayID string, r AttemptResult, keepOutput time.Duration, next bool) (AttemptConclusion, error) {
	var out AttemptConclusion
	err := WithTx(ctx, db, func(tx *sqlx.Tx) error {
		dep, err := concludeAttempt(ctx, tx, requestID, n, gatewayID, r, keepOutput, &out)
		if err != nil || out.Ended == "" || !next {
			return err // a request that goes on keeps its slot
		}
		var s AsyncStarts
		if err := startHeads(ctx, tx, dep, 1, gatewayID, false, &s); err != nil {
			return err
		}
		out.Wanted = s.Wanted
		if len(s.Claimed) > 0 {
			out.Next = &s.Claimed[0]
		}
		return nil
	})
	return out, err
}

// concludeAttempt is FinishAsyncAttempt's record of the attempt and, for a request without a
// workflow, of its outcome; it returns the attempt's deployment.
func concludeAttempt(ctx context.Context, tx *sqlx.Tx, requestID string, n int, gatewayID string, r AttemptResult, keepOutput time.Duration, out *AttemptConclusion) (string, error) {
	var got struct {
		DeploymentID    string                 `db:"deployment_id"`
		Status          modelplane.AsyncStatus `db:"status"`
		WorkflowStarted bool                   `db:"workflow_started"`
		RetryConfig     modelplane.RetryConfig `db:"retry_config"`
	}
	err := get(ctx, tx, &got, `
		UPDATE async_attempts t SET state = `+sqlAttemptDone+`, status_code = $4, output = $5, content_type = $6,
		    error_code = $7, error = $8, finished_at = now()
		FROM async_requests r
		WHERE t.request_id = $1 AND t.attempt = $2 AND t.state = `+sqlAttemptRunning+` AND t.gateway_id = $3
		  AND r.id = t.request_id
		RETURNING t.deployment_id, r.status, r.workflow_started, r.retry_config`,
		requestID, n, gatewayID, r.StatusCode, r.Output, r.ContentType, r.ErrorCode, r.Error)
	if errors.Is(err, ErrNotFound) {
		return "", nil
	}
	if err != nil {
		return "", err
	}
	out.Recorded = true
	// The workflow's activity waits for this attempt; nobody else does.
	announce := func() error {
		return exec(ctx, tx, false, `SELECT pg_notify($1, $2)`, AsyncDoneChannel, requestID+"/"+strconv.Itoa(n))
	}
	if got.WorkflowStarted || got.Status != modelplane.AsyncInProgress {
		return got.DeploymentID, announce()
	}
	cfg := got.RetryConfig
	if cfg.MaxAttempts < 1 {
		cfg = modelplane.DefaultRetryConfig()
	}
	o := ClassifyAttempt(AsyncAttempt{Attempt: n, StatusCode: r.StatusCode, Output: r.Output, ContentType: r.ContentType,
		ErrorCode: r.ErrorCode, Error: r.Error})
	var end AsyncOutcome
	switch {
	case o.Succeeded:
		end = AsyncOutcome{Status: modelplane.AsyncSucceeded, Output: r.Output, ContentType: r.ContentType}
		if end.Output == nil {
			end.Output = []byte{} // an empty answer is still an answer
		}
	case !o.Retryable || n >= cfg.MaxAttempts:
		end = AsyncOutcome{Status: modelplane.AsyncFailed, Errors: modelplane.AsyncErrors{o.Error}}
	default:
		out.WantsWorkflow = true
		return got.DeploymentID, exec(ctx, tx, false, `
			UPDATE async_requests SET workflow_wanted_at = now() WHERE id = $1 AND NOT workflow_started`, requestID)
	}
	end.KeepOutput = keepOutput
	if end.KeepOutput <= 0 {
		end.KeepOutput = DefaultAsyncOutputRetention
	}
	// Ended only if no workflow took the request meanwhile (the row was not locked); a webhook
	// to deliver wants the workflow.
	var ended struct {
		Status        modelplane.AsyncStatus   `db:"status"`
		WebhookStatus modelplane.WebhookStatus `db:"webhook_status"`
	}
	err = get(ctx, tx, &ended, `
		UPDATE async_requests SET `+asyncEndSQL+`,
		    workflow_wanted_at = CASE WHEN webhook_status = `+sqlWebhookPending+` THEN now() ELSE workflow_wanted_at END
		WHERE id = $1 AND status = `+sqlAsyncInProgress+` AND NOT workflow_started
		RETURNING status, webhook_status`, requestID, end.Status, end.Output, end.ContentType, end.Errors, end.KeepOutput.Seconds())
	if errors.Is(err, ErrNotFound) {
		return got.DeploymentID, announce()
	}
	if err != nil {
		return got.DeploymentID, err
	}
	out.Ended = ended.Status
	out.WantsWorkflow = ended.WebhookStatus == modelplane.WebhookPending
	return got.DeploymentID, nil
}
