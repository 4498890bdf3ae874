// Package reconcile brings Temporal back in line with the database, which is the record:
// every deployment, promotion and async request whose row says a workflow carries it, but
// whose workflow does not exist in Temporal (a new or different history) or has closed, is
// restarted from its row, or ended with the reason when it cannot be.
//
// The pass runs at every worker start and on demand (`modelplane reconcile`). It is
// idempotent: what it restarts is running afterwards, what it ends has ended, so a second
// pass changes nothing. Passes are serialised by a PostgreSQL advisory lock, and every start
// relies on Temporal's workflow-ID uniqueness besides, so two workers at once start nothing
// twice.
package reconcile

import (
	"context"
	"errors"
	"fmt"
	"log/slog"

	"github.com/jmoiron/sqlx"
	enumspb "go.temporal.io/api/enums/v1"
	"go.temporal.io/api/serviceerror"
	"go.temporal.io/sdk/client"
	"go.temporal.io/sdk/converter"
	"go.temporal.io/sdk/temporal"

	"github.com/modelplane/modelplane"
	"github.com/modelplane/modelplane/store"
	"github.com/modelplane/modelplane/workflows/contract"
)

// LockKey is the PostgreSQL advisory lock that one reconcile pass holds at a time.
const LockKey int64 = 0x6d70_7265_636f_6e63 // "mpreconc"

// MaxAsyncRestarts is how often the pass restarts one async request's workflow; found gone
// again after that, the request fails with WORKFLOW_LOST.
const MaxAsyncRestarts = 1

// Report says what a pass did, by ID.
type Report struct {
	DeploymentsRestarted []string `json:"deployments_restarted"`
	// DeploymentsDeactivated were DEACTIVATING, a stop the lost workflow did not finish.
	DeploymentsDeactivated []string `json:"deployments_deactivated"`
	PromotionsCanceled     []string `json:"promotions_canceled"`
	AsyncRestarted         []string `json:"async_requests_restarted"`
	AsyncFailed            []string `json:"async_requests_failed"`
}

// Changed reports whether the pass changed anything.
func (r Report) Changed() bool {
	return len(r.DeploymentsRestarted)+len(r.DeploymentsDeactivated)+len(r.PromotionsCanceled)+
		len(r.AsyncRestarted)+len(r.AsyncFailed) > 0
}

// Run makes one pass over the database. It waits for a pass that another process is making
// to end first. An error stops the pass where it happened; what was done is in the report.
func Run(ctx context.Context, db *sqlx.DB, tc client.Client, log *slog.Logger) (Report, error) {
	out := Report{DeploymentsRestarted: []string{}, DeploymentsDeactivated: []string{}, PromotionsCanceled: []string{},
		AsyncRestarted: []string{}, AsyncFailed: []string{}}
	if log == nil {
		log = slog.Default()
	}
	conn, err := db.Conn(ctx)
	if err != nil {
		return out, err
	}
	defer conn.Close()
	if _, err := conn.ExecContext(ctx, `SELECT pg_advisory_lock($1)`, LockKey); err != nil {
		return out, fmt.Errorf("reconcile lock: %w", err)
	}
	defer func() { _, _ = conn.ExecContext(context.WithoutCancel(ctx), `SELECT pg_advisory_unlock($1)`, LockKey) }()

	p := pass{db: db, tc: tc, log: log, out: &out}
	// Promotions first: ending one clears its candidate before the deployments are taken up.
	for _, step := range []func(context.Context) error{p.promotions, p.deployments, p.asyncRequests} {
		if err := step(ctx); err != nil {
			return out, err
		}
	}
	if out.Changed() {
		log.Info("reconciled the database with Temporal",
			"deployments_restarted", len(out.DeploymentsRestarted), "deployments_deactivated", len(out.DeploymentsDeactivated),
			"promotions_canceled", len(out.PromotionsCanceled),
			"async_requests_restarted", len(out.AsyncRestarted), "async_requests_failed", len(out.AsyncFailed))
	}
	return out, nil
}

type pass struct {
	db  *sqlx.DB
	tc  client.Client
	log *slog.Logger
	out *Report
}

// running describes the workflow with the ID and answers it when it is running; nil when it
// does not exist or has closed.
func (p pass) running(ctx context.Context, id string) (*client.WorkflowExecutionDescription, error) {
	desc, err := p.tc.DescribeWorkflow(ctx, id, "")
	var notFound *serviceerror.NotFound
	switch {
	case errors.As(err, &notFound):
		return nil, nil
	case err != nil:
		return nil, fmt.Errorf("describe workflow %s: %w", id, err)
	case desc.Status != enumspb.WORKFLOW_EXECUTION_STATUS_RUNNING:
		return nil, nil
	}
	return desc, nil
}

// promotions ends every promotion in progress whose workflow is gone, CANCELED with the
// reason: no traffic to its candidate, the environment left on the deployment that serves
// it. Its progress (candidate readiness, ramp stage) was in the lost history, so resuming it
// would be a guess.
func (p pass) promotions(ctx context.Context) error {
	proms, err := store.InProgressPromotions(ctx, p.db)
	if err != nil {
		return err
	}
	for _, pr := range proms {
		id := pr.WorkflowID
		if id == "" {
			id = contract.PromotionWorkflowID(pr.ModelID, pr.Environment)
		}
		desc, err := p.running(ctx, id)
		if err != nil {
			return err
		}
		if desc != nil && carriesPromotion(desc, pr.ID) {
			continue
		}
		reason := fmt.Sprintf("its workflow %s is no longer in Temporal (a new or different history); "+
			"canceled by the reconcile pass, traffic stays on the deployment that served the environment", id)
		got, err := store.ForceCancelPromotion(ctx, p.db, pr.ModelID, pr.Environment, reason)
		if errors.Is(err, store.ErrNotFound) {
			continue // it ended meanwhile
		}
		if err != nil {
			return fmt.Errorf("cancel promotion %s: %w", pr.ID, err)
		}
		if err := store.NotifyRoutes(ctx, p.db, "environment:"+pr.ModelID+":"+pr.Environment); err != nil {
			p.log.Warn("routes not notified", "err", err)
		}
		p.log.Warn("promotion canceled: its workflow is gone", "promotion_id", got.ID,
			"model_id", pr.ModelID, "environment", pr.Environment)
		p.out.PromotionsCanceled = append(p.out.PromotionsCanceled, got.ID)
	}
	return nil
}

// carriesPromotion reports whether the running promotion workflow is the one of promotion
// id; one started without the memo is taken to be.
func carriesPromotion(desc *client.WorkflowExecutionDescription, id string) bool {
	payload := desc.Memo.GetFields()[contract.PromotionIDMemo]
	if payload == nil {
		return true
	}
	var got string
	if converter.GetDefaultDataConverter().FromPayload(payload, &got) != nil {
		return true
	}
	return got == id
}

// deployments restarts the entity workflow of every deployment not deleted whose workflow is
// gone, handing it the deployment's status and live replicas as a run that continues as new
// does, so it takes the replicas over (every replica activity is idempotent on the replica's
// ID) instead of starting others beside them.
func (p pass) deployments(ctx context.Context) error {
	refs, err := store.LiveDeploymentRefs(ctx, p.db)
	if err != nil {
		return err
	}
	for _, ref := range refs {
		id := contract.DeploymentWorkflowID(ref.ID)
		desc, err := p.running(ctx, id)
		if err != nil {
			return err
		}
		if desc != nil {
			continue
		}
		d, err := store.DeploymentByID(ctx, p.db, ref.ModelID, ref.ID)
		if errors.Is(err, store.ErrNotFound) {
			continue // deleted meanwhile
		}
		if err != nil {
			return err
		}
		if d.Status == modelplane.DeploymentDeactivating {
			// The stop was the lost workflow's to finish: the deployment is inactive now, and
			// Cleanup stops the replicas of inactive deployments.
			if err := store.SetDeploymentStatus(ctx, p.db, d.ID, modelplane.DeploymentInactive, d.StatusReason); err != nil {
				return err
			}
			if err := store.NotifyRoutes(ctx, p.db, "deployment:"+d.ID); err != nil {
				p.log.Warn("routes not notified", "err", err)
			}
			d.Status = modelplane.DeploymentInactive
			p.out.DeploymentsDeactivated = append(p.out.DeploymentsDeactivated, d.ID)
		}
		live, err := store.ListLiveReplicas(ctx, p.db, d.ID)
		if err != nil {
			return err
		}
		in := DeploymentInput(d, live)
		_, err = p.tc.ExecuteWorkflow(ctx, client.StartWorkflowOptions{
			ID: id, TaskQueue: contract.TaskQueue,
			WorkflowIDConflictPolicy:                 enumspb.WORKFLOW_ID_CONFLICT_POLICY_FAIL,
			WorkflowExecutionErrorWhenAlreadyStarted: true,
			TypedSearchAttributes: temporal.NewSearchAttributes(
				contract.ModelIDAttr.ValueSet(d.ModelID), contract.DeploymentIDAttr.ValueSet(d.ID)),
		}, contract.DeploymentWorkflowType, in)
		if temporal.IsWorkflowExecutionAlreadyStartedError(err) {
			continue // another pass, or the API, started it meanwhile
		}
		if err != nil {
			return fmt.Errorf("restart the workflow of deployment %s: %w", d.ID, err)
		}
		p.log.Warn("deployment workflow restarted: it was gone", "deployment_id", d.ID, "model_id", d.ModelID,
			"status", d.Status, "replicas", len(live))
		p.out.DeploymentsRestarted = append(p.out.DeploymentsRestarted, d.ID)
	}
	return nil
}

// asyncRequests restarts, once, the workflow of every request that its workflow still has
// work for (queued, in progress, or a webhook to deliver) and whose workflow is gone; the
// workflow reads the request from its row, so it goes on from where the row says, with the
// same webhook delivery ID. Gone again after that, the request fails with WORKFLOW_LOST.
// Requests whose workflow never ran are Cleanup's to start.
func (p pass) asyncRequests(ctx context.Context) error {
	reqs, err := store.StartedAsyncRequestsNeedingWorkflow(ctx, p.db)
	if err != nil {
		return err
	}
	for _, r := range reqs {
		id := contract.AsyncWorkflowID(r.ID)
		desc, err := p.running(ctx, id)
		if err != nil {
			return err
		}
		if desc != nil {
			continue
		}
		again, err := store.CountAsyncWorkflowRestart(ctx, p.db, r.ID, MaxAsyncRestarts)
		if err != nil {
			return err
		}
		if !again {
			if err := p.failAsync(ctx, r); err != nil {
				return err
			}
			continue
		}
		_, err = p.tc.ExecuteWorkflow(ctx, client.StartWorkflowOptions{
			ID: id, TaskQueue: contract.TaskQueue,
			WorkflowIDReusePolicy:                    enumspb.WORKFLOW_ID_REUSE_POLICY_ALLOW_DUPLICATE,
			WorkflowIDConflictPolicy:                 enumspb.WORKFLOW_ID_CONFLICT_POLICY_FAIL,
			WorkflowExecutionErrorWhenAlreadyStarted: true,
		}, contract.AsyncRequestWorkflowType, contract.AsyncRequestInput{RequestID: r.ID})
		if temporal.IsWorkflowExecutionAlreadyStartedError(err) {
			continue
		}
		if err != nil {
			return fmt.Errorf("restart the workflow of async request %s: %w", r.ID, err)
		}
		p.log.Warn("async request workflow restarted: it was gone", "request_id", r.ID,
			"deployment_id", r.DeploymentID, "status", r.Status)
		p.out.AsyncRestarted = append(p.out.AsyncRestarted, r.ID)
	}
	return nil
}

// failAsync ends a request whose workflow was lost again after its restart: FAILED with
// WORKFLOW_LOST when it was open, and its webhook, which nothing will deliver now, FAILED.
func (p pass) failAsync(ctx context.Context, r store.AsyncRequest) error {
	reason := fmt.Sprintf("its workflow %s was lost from Temporal again after the reconcile pass restarted it",
		contract.AsyncWorkflowID(r.ID))
	if r.Status.Open() {
		if _, err := store.FinishAsyncRequest(ctx, p.db, r.ID, store.AsyncOutcome{
			Status: modelplane.AsyncFailed,
			Errors: modelplane.AsyncErrors{{Code: modelplane.CodeWorkflowLost, Message: reason}},
		}); err != nil {
			return err
		}
	}
	if r.WebhookStatus == modelplane.WebhookPending {
		if _, err := store.SetAsyncWebhookResult(ctx, p.db, r.ID, false, reason); err != nil {
			return err
		}
	}
	p.log.Warn("async request failed: its workflow was lost again", "request_id", r.ID, "deployment_id", r.DeploymentID)
	p.out.AsyncFailed = append(p.out.AsyncFailed, r.ID)
	return nil
}
