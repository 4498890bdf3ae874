package store

import (
	"context"
	"encoding/json"
	"slices"
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

// OpenAsyncCounts remembers, per workspace, the limit on its open async requests and their
// number as last counted plus those recorded since through it, so that a batch well below the
// limit is written in one statement, without reading the quota or counting again. Both are
// trusted for openCountFor: a quota changed meanwhile applies from the next count; requests
// that ended meanwhile make the count high (a batch near the limit counts again), those other
// gateways recorded make it low, by what they recorded in that time.
type OpenAsyncCounts struct {
	mu sync.Mutex
	m  map[string]openCount
}

type openCount struct {
	n     int
	limit AsyncAdmission
	at    time.Time
}

// openCountFor is how long a count, and the limit read with it, is trusted.
const openCountFor = time.Second

// estimate returns the workspace's limit and open requests if a count younger than
// openCountFor is known.
func (c *OpenAsyncCounts) estimate(ws string, now time.Time) (openCount, bool) {
	if c == nil {
		return openCount{}, false
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	o, ok := c.m[ws]
	return o, ok && now.Sub(o.at) < openCountFor
}

// counted records a count taken at o.at; added adds requests recorded since.
func (c *OpenAsyncCounts) counted(ws string, o openCount) {
	if c == nil {
		return
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.m == nil {
		c.m = map[string]openCount{}
	}
	c.m[ws] = o
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

// InsertAsyncRequests records a batch of QUEUED requests in one statement, each with a new ID
// and webhook delivery ID, and announces them to the gateways. A workspace may have at most
// the lower of gatewayMaxOpen and its async_requests quota queued or in progress; the requests
// past that are refused (empty ID). With counts, a workspace's quota is read and its open
// requests counted only when the last count is old or the batch could reach the limit
// (OpenAsyncCounts); a batch far from its limit costs one round trip. Batches written at the
// same moment (by several gateways, or one gateway's writers) each count what was committed
// before them, so together they may pass the limit by what they carry.
func InsertAsyncRequests(ctx context.Context, db *sqlx.DB, batch []NewAsyncRequest, gatewayMaxOpen int, counts *OpenAsyncCounts) ([]AsyncAdmission, error) {
	out := make([]AsyncAdmission, len(batch))
	room := map[string]*openCount{}
	asked := map[string]int{}
	for _, n := range batch {
		room[n.WorkspaceID] = nil
		asked[n.WorkspaceID]++
	}
	now := time.Now()
	for ws := range room {
		o, known := counts.estimate(ws, now)
		if !known || o.n+asked[ws] >= o.limit.MaxOpen {
			var err error
			if o, err = countOpenAsync(ctx, db, ws, gatewayMaxOpen, now); err != nil {
				return nil, err
			}
			counts.counted(ws, o)
		}
		room[ws] = &o
	}
	var cols asyncColumns
	recorded := map[string]int{}
	for i, n := range batch {
		o := room[n.WorkspaceID]
		out[i] = o.limit
		if o.n >= o.limit.MaxOpen {
			continue
		}
		o.n++
		recorded[n.WorkspaceID]++
		out[i].ID = modelplane.NewID(16)
		if err := cols.add(out[i].ID, n); err != nil {
			return nil, err
		}
	}
	if len(cols.id) == 0 {
		return out, nil
	}
	insert, err := prepared(ctx, db, insertAsyncSQL)
	if err != nil {
		return nil, err
	}
	if _, err := insert.ExecContext(ctx,
		pq.Array(cols.id), pq.Array(cols.workspace), pq.Array(cols.model), pq.Array(cols.deployment),
		pq.Array(cols.environment), pq.Array(cols.webhookStatus), pq.Array(cols.webhook), pq.Array(cols.delivery),
		pq.Array(cols.priority), pq.Array(cols.maxWait), pq.Array(cols.retry), pq.Array(cols.input),
		AsyncAttemptsChannel, AsyncQueuedPrefix+strings.Join(cols.deployments(), ",")); err != nil {
		return nil, translate(err)
	}
	for ws, n := range recorded {
		counts.added(ws, n)
	}
	return out, nil
}

// insertAsyncSQL records a batch of requests, a column an array, and announces them.
const insertAsyncSQL = `
		WITH i AS (
		    INSERT INTO async_requests (id, workspace_id, model_id, deployment_id, environment,
		        webhook_status, webhook_endpoint, webhook_delivery_id, priority,
		        max_time_in_queue_seconds, retry_config, model_input, expires_at)
		    SELECT id, ws, model, dep, env, hook_status, hook, delivery, prio, max_wait, retry::jsonb, input,
		           now() + max_wait * interval '1 second'
		    FROM unnest($1::text[], $2::text[], $3::text[], $4::text[], $5::text[], $6::text[], $7::text[],
		                $8::text[], $9::int[], $10::int[], $11::text[], $12::bytea[])
		         AS u(id, ws, model, dep, env, hook_status, hook, delivery, prio, max_wait, retry, input))
		SELECT pg_notify($13, $14)`

// countOpenAsync reads workspace ws's limit on open async requests (the lower of
// gatewayMaxOpen and its async_requests quota) and counts its open requests, up to the limit.
func countOpenAsync(ctx context.Context, db sqlx.QueryerContext, ws string, gatewayMaxOpen int, now time.Time) (openCount, error) {
	q, err := WorkspaceQuotas(ctx, db, ws)
	if err != nil {
		return openCount{}, err
	}
	o := openCount{limit: AsyncAdmission{MaxOpen: gatewayMaxOpen}, at: now}
	if q.AsyncRequests <= gatewayMaxOpen {
		o.limit = AsyncAdmission{MaxOpen: q.AsyncRequests, ByQuota: true}
	}
	err = get(ctx, db, &o.n, `
		SELECT count(*) FROM (SELECT 1 FROM async_requests
		    WHERE workspace_id = $1 AND status IN `+sqlOpenAsyncStatuses+` LIMIT $2) o`,
		ws, o.limit.MaxOpen)
	return o, err
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
			return startHeads(ctx, tx, dep, limit-out.Started, gatewayID, &out)
		})
		if err != nil {
			return out, err
		}
	}
	return out, nil
}

// startHeads starts up to limit queued requests of deployment dep that it has room for, in
// tx (StartAsyncHeads, under the deployment's advisory lock; the schema's async_start_heads
// takes them off the queue), and adds what it did to out.
func startHeads(ctx context.Context, tx *sqlx.Tx, dep string, limit int, gatewayID string, out *AsyncStarts) error {
	if err := lockAsyncQueue(ctx, tx, dep); err != nil {
		return err
	}
	var c AsyncCapacity
	if err := get(ctx, tx, &c, asyncCapacitySQL, dep); err != nil {
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
		SELECT request_id, 1 AS attempt, $1 AS deployment_id, model_id, model_input, created_at, started_at
		FROM async_start_heads($1, $2, $3)`, dep, n, gatewayID); err != nil {
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

// FinishAsyncAttempt records the result of attempt n, RUNNING on the gateway, in one statement
// (the schema's async_finish_attempt). A request that has no workflow is concluded with it: a
// success or a failure no retry can mend (or its last attempt) ends it, keeping the output for
// keepOutput; a request with a retry due, or an end with a webhook to deliver, is marked as
// wanting its workflow. One that has a workflow is left to it, and told. With next, when the
// request ended here, the deployment's next queued request is started in the same
// transaction, running on the gateway, so the slot it left passes on without a look at the
// queues; a deployment that will not serve has its queue ended instead. Recorded false means
// the attempt was not running there (given up on as lost, say) and nothing changed.
//
// The transaction is committed before FinishAsyncAttempt returns, except when it started a
// next request: then it returns once the statement has run, with the commit under way, so the
// gateway can send that request to its model while the commit is made durable. Until the
// commit, nobody else sees this attempt's end or the next request's start (the next request
// stays locked, so no other gateway takes it); the next attempt's result is recorded only
// after Next.Committed reported success. A commit that fails undoes both: the next request
// is still queued and runs again.
func FinishAsyncAttempt(ctx context.Context, db *sqlx.DB, requestID string, n int, gatewayID string, r AttemptResult, keepOutput time.Duration, next bool) (AttemptConclusion, error) {
	o := ClassifyAttempt(AsyncAttempt{Attempt: n, StatusCode: r.StatusCode, Output: r.Output, ContentType: r.ContentType,
		ErrorCode: r.ErrorCode, Error: r.Error})
	if keepOutput <= 0 {
		keepOutput = DefaultAsyncOutputRetention
	}
	var row struct {
		Recorded      bool                    `db:"attempt_recorded"`
		DeploymentID  *string                 `db:"attempt_deployment"`
		Ended         *modelplane.AsyncStatus `db:"request_ended"`
		WantsWorkflow bool                    `db:"wants_workflow"`
		Unserved      bool                    `db:"queue_unserved"`
		NextID        *string                 `db:"next_request"`
		NextModel     *string                 `db:"next_model"`
		NextInput     []byte                  `db:"next_input"`
		NextCreated   *time.Time              `db:"next_created"`
		NextStarted   *time.Time              `db:"next_started"`
	}
	var out AttemptConclusion
	finish, err := prepared(ctx, db, `SELECT * FROM async_finish_attempt($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15)`)
	if err != nil {
		return out, err
	}
	// The transaction outlives ctx by as long as its commit takes.
	txCtx, cancel := context.WithTimeout(context.WithoutCancel(ctx), finishCommitWithin)
	tx, err := db.BeginTxx(txCtx, nil)
	if err != nil {
		cancel()
		return out, translate(err)
	}
	if err := translate(tx.StmtxContext(txCtx, finish).GetContext(ctx, &row,
		requestID, n, gatewayID, r.StatusCode, r.Output, r.ContentType, r.ErrorCode, r.Error,
		o.Succeeded, o.Retryable, modelplane.AsyncErrors{o.Error}, modelplane.DefaultRetryConfig().MaxAttempts,
		keepOutput.Seconds(), next, unservedStatuses)); err != nil {
		_ = tx.Rollback()
		cancel()
		return out, err
	}
	out.Recorded, out.WantsWorkflow = row.Recorded, row.WantsWorkflow
	if row.Ended != nil {
		out.Ended = *row.Ended
	}
	if row.NextID != nil {
		committed := make(chan error, 1)
		go func() {
			defer cancel()
			committed <- translate(tx.Commit())
		}()
		out.Next = &ClaimedAttempt{RequestID: *row.NextID, Attempt: 1, DeploymentID: *row.DeploymentID,
			ModelID: *row.NextModel, ModelInput: row.NextInput, CreatedAt: *row.NextCreated, StartedAt: row.NextStarted,
			Committed: committed}
		return out, nil
	}
	err = translate(tx.Commit())
	cancel()
	if err != nil {
		return AttemptConclusion{}, err
	}
	if row.Unserved {
		// Rare: the deployment stopped serving while this attempt ran. Its queue is ended
		// under the queue's lock, as any look at it would.
		s, err := StartAsyncHeads(ctx, db, *row.DeploymentID, 1, gatewayID)
		if err != nil {
			return out, err
		}
		out.Wanted = s.Wanted
	}
	return out, nil
}

// finishCommitWithin bounds FinishAsyncAttempt's transaction, its commit included.
const finishCommitWithin = 30 * time.Second

// unservedStatuses are the deployment statuses in which its async queue is not served
// (AsyncCapacity.Unavailable), for async_finish_attempt.
var unservedStatuses = sqlArray(slices.DeleteFunc(modelplane.DeploymentStatuses(), func(s modelplane.DeploymentStatus) bool {
	return !s.Deactivated() && !s.Failed()
}))
