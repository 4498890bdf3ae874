// Package contract is what the rest of modelplane may know of its Temporal workflows: the
// task queue, the search attributes, the workflow type names, the workflow IDs, the names of
// their Updates, Queries and Signals, and every workflow input and result type.
//
// The API, the gateway, the autoscaler and the activities start, signal, update and query
// workflows through it, without importing the workflow code (package workflows) and,
// through that, the activities, the agent client and NVML. Its types are the payloads
// Temporal stores in histories: a change to one must keep decoding what running workflows
// already recorded.
package contract

import (
	enumspb "go.temporal.io/api/enums/v1"
	"go.temporal.io/sdk/temporal"
)

// The type names the workflows are registered under, and started by.
const (
	DeploymentWorkflowType   = "Deployment"
	PromotionWorkflowType    = "Promotion"
	AsyncRequestWorkflowType = "AsyncRequest"
	CleanupWorkflowType      = "Cleanup"
)

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
