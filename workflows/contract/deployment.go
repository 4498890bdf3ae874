package contract

import "github.com/modelplane/modelplane"

// Names of the Deployment workflow's updates and queries.
const (
	// UpdateScale sets the desired replica count (ScaleRequest).
	UpdateScale = "scale"
	// UpdateDeactivate stops every replica and leaves the deployment INACTIVE.
	UpdateDeactivate = "deactivate"
	// UpdateActivate brings an inactive or failed deployment back to serving.
	UpdateActivate = "activate"
	// UpdateDelete stops every replica, marks the deployment deleted and ends the workflow.
	UpdateDelete = "delete"
	// UpdateWake brings a deployment at zero back to one replica (a no-op otherwise); its
	// status is WAKING_UP until the replica is READY.
	UpdateWake = "wake"
	// UpdateApplyPatch brings the development deployment to the head of its staged patches
	// (PatchSyncResult); a development deployment without a running replica is woken with
	// them.
	UpdateApplyPatch = "apply_patch"
	// QueryStatus answers the DeploymentStatus.
	QueryStatus = "status"
)

// HowWoken is PatchSyncResult.How when the development deployment had no running replica
// and one was started with the patches.
const HowWoken = "woken"

// PatchSyncResult is what UpdateApplyPatch answers.
type PatchSyncResult struct {
	// FullDeployReason says why the patches cannot be taken in place; nothing was applied.
	FullDeployReason string
	// PatchHash is the point the deployment runs (or will, once woken).
	PatchHash string
	// How the replica took the patches: hot_reload, restart, unchanged or woken.
	How string
	// ReloadError is the model server's error when its hot reload failed.
	ReloadError string
	Status      DeploymentStatus
}

// MaxReplicaAttempts bounds how many replicas in a row one slot may try before the
// deployment is marked failed: a model that crashes on start would otherwise loop forever.
const MaxReplicaAttempts = 3

// DeploymentWorkflowID is the ID of the deployment's entity workflow; there is one per
// deployment.
func DeploymentWorkflowID(deploymentID string) string { return "deployment:" + deploymentID }

// DeploymentInput starts the Deployment workflow.
type DeploymentInput struct {
	DeploymentID string
	ModelID      string
	// Replicas is the desired replica count; at least 1 for a new deployment.
	Replicas int
	// Carried is what a run hands to the next when it continues as new; nil on the first run.
	Carried *DeploymentCarry
}

// DeploymentCarry is the state one run of the Deployment workflow hands the next.
type DeploymentCarry struct {
	Status     modelplane.DeploymentStatus
	Reason     string
	Inactive   bool
	EverActive bool
	Waking     bool
	// Replicas are the live replicas by ID, with the state the previous run last saw.
	Replicas []ReplicaInfo
}

// ScaleRequest is the argument of UpdateScale.
type ScaleRequest struct {
	Replicas int
}

// ReplicaInfo is one replica as the workflow sees it.
type ReplicaInfo struct {
	ID      string
	NodeID  string
	State   modelplane.ReplicaState
	Address string
	Error   string
}

// DeploymentStatus is what QueryStatus and every update answer.
type DeploymentStatus struct {
	Status   modelplane.DeploymentStatus
	Reason   string
	Desired  int
	Ready    int
	Replicas []ReplicaInfo
}
