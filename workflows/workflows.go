// Package workflows holds modelplane's Temporal workflow definitions, their IDs, inputs,
// results and the search attributes they keep up to date.
//
// Workflow code here is deterministic: time comes from workflow.Now, waiting from timers and
// selectors, and every side effect from an activity.
package workflows

import (
	"time"

	enumspb "go.temporal.io/api/enums/v1"
	"go.temporal.io/sdk/temporal"
)

// activityRetry is how activities that talk to agents, the database or other workflows are
// retried: backing off from a second to half a minute, five tries in all.
var activityRetry = &temporal.RetryPolicy{
	InitialInterval: time.Second, MaximumInterval: 30 * time.Second, MaximumAttempts: 5,
}

// TaskQueue is the queue modelplane's workers poll for workflows and activities.
const TaskQueue = "modelplane"

// Search attributes that modelplane's workflows set, so that the Temporal UI answers "what is
// happening to model X" without reading logs.
var (
	ModelIDAttr          = temporal.NewSearchAttributeKeyKeyword("ModelId")
	DeploymentIDAttr     = temporal.NewSearchAttributeKeyKeyword("DeploymentId")
	EnvironmentAttr      = temporal.NewSearchAttributeKeyKeyword("Environment")
	PromotionStatusAttr  = temporal.NewSearchAttributeKeyKeyword("PromotionStatus")
	DeploymentStatusAttr = temporal.NewSearchAttributeKeyKeyword("DeploymentStatus")
	// PromotionPercentAttr is a ramping promotion's candidate share of the traffic.
	PromotionPercentAttr = temporal.NewSearchAttributeKeyInt64("PromotionPercent")
)

// SearchAttributes lists every custom search attribute by name and type, for registration
// on the namespace.
func SearchAttributes() map[string]enumspb.IndexedValueType {
	out := map[string]enumspb.IndexedValueType{}
	for _, k := range []temporal.SearchAttributeKeyKeyword{
		ModelIDAttr, DeploymentIDAttr, EnvironmentAttr, PromotionStatusAttr, DeploymentStatusAttr,
	} {
		out[k.GetName()] = k.GetValueType()
	}
	out[PromotionPercentAttr.GetName()] = PromotionPercentAttr.GetValueType()
	return out
}
