package modelplane

import "slices"

// DeploymentStatus is where a deployment is in its life, as the deployments table, the
// Deployment workflow and DeploymentV1.status spell it.
type DeploymentStatus string

// Every deployment status the API documents.
const (
	DeploymentBuilding     DeploymentStatus = "BUILDING"
	DeploymentBuildFailed  DeploymentStatus = "BUILD_FAILED"
	DeploymentBuildStopped DeploymentStatus = "BUILD_STOPPED"
	DeploymentDeploying    DeploymentStatus = "DEPLOYING"
	DeploymentDeployFailed DeploymentStatus = "DEPLOY_FAILED"
	DeploymentLoadingModel DeploymentStatus = "LOADING_MODEL"
	DeploymentActive       DeploymentStatus = "ACTIVE"
	DeploymentUnhealthy    DeploymentStatus = "UNHEALTHY"
	DeploymentUpdating     DeploymentStatus = "UPDATING"
	DeploymentScaledToZero DeploymentStatus = "SCALED_TO_ZERO"
	DeploymentWakingUp     DeploymentStatus = "WAKING_UP"
	DeploymentDeactivating DeploymentStatus = "DEACTIVATING"
	DeploymentInactive     DeploymentStatus = "INACTIVE"
	DeploymentFailed       DeploymentStatus = "FAILED"
)

// DeploymentStatuses lists every deployment status, in the order the API documents them.
func DeploymentStatuses() []DeploymentStatus {
	return []DeploymentStatus{
		DeploymentBuilding, DeploymentDeploying, DeploymentDeployFailed, DeploymentLoadingModel,
		DeploymentActive, DeploymentUnhealthy, DeploymentBuildFailed, DeploymentBuildStopped,
		DeploymentDeactivating, DeploymentInactive, DeploymentFailed, DeploymentUpdating,
		DeploymentScaledToZero, DeploymentWakingUp,
	}
}

// FailedDeploymentStatuses are the statuses of a deployment that will not serve again
// without a new push: its build or its start failed for good.
func FailedDeploymentStatuses() []DeploymentStatus {
	return []DeploymentStatus{DeploymentBuildFailed, DeploymentBuildStopped, DeploymentDeployFailed, DeploymentFailed}
}

// AutoscaledDeploymentStatuses are the statuses in which the autoscaler scales a
// deployment. The others are on their way to or at a stop (DEACTIVATING, INACTIVE), not
// built yet (BUILDING) or failed, where a scale request would be refused.
func AutoscaledDeploymentStatuses() []DeploymentStatus {
	return []DeploymentStatus{
		DeploymentActive, DeploymentScaledToZero, DeploymentWakingUp, DeploymentLoadingModel,
		DeploymentDeploying, DeploymentUnhealthy, DeploymentUpdating,
	}
}

// Valid reports whether s is one of the documented statuses.
func (s DeploymentStatus) Valid() bool { return slices.Contains(DeploymentStatuses(), s) }

// Failed reports whether the deployment will not serve again without a new push.
func (s DeploymentStatus) Failed() bool { return slices.Contains(FailedDeploymentStatuses(), s) }

// Stuck reports whether the deployment will not become ACTIVE by itself: it failed, or its
// replicas keep dying (UNHEALTHY). Whoever waits for it to serve (a promotion, the CLI's
// --wait) stops waiting.
func (s DeploymentStatus) Stuck() bool { return s.Failed() || s == DeploymentUnhealthy }

// Deactivated reports whether the deployment was deactivated or is being deactivated;
// requests to it are refused at once.
func (s DeploymentStatus) Deactivated() bool {
	return s == DeploymentDeactivating || s == DeploymentInactive
}

// Autoscaled reports whether the autoscaler scales a deployment in this status.
func (s DeploymentStatus) Autoscaled() bool {
	return slices.Contains(AutoscaledDeploymentStatuses(), s)
}

// Wakes reports whether a request to a deployment in this status that has no READY replica
// waits for one. ACTIVE is included: a deployment on its way to zero has drained its last
// replica before its status says SCALED_TO_ZERO, and one replacing its only replica has none
// for a moment.
func (s DeploymentStatus) Wakes() bool {
	return s == DeploymentScaledToZero || s == DeploymentWakingUp || s == DeploymentActive
}

// ReplicaState is where one replica is, as the replicas table and the node agent spell it.
type ReplicaState string

// Every replica state. The node agent reports STARTING, READY, STOPPING, STOPPED and FAILED;
// PENDING (placed, not started yet) and DRAINING (taken out of the routes before a stop)
// are the control plane's own.
const (
	ReplicaPending  ReplicaState = "PENDING"
	ReplicaStarting ReplicaState = "STARTING"
	ReplicaReady    ReplicaState = "READY"
	ReplicaDraining ReplicaState = "DRAINING"
	ReplicaStopping ReplicaState = "STOPPING"
	ReplicaStopped  ReplicaState = "STOPPED"
	ReplicaFailed   ReplicaState = "FAILED"
)

// ReplicaStates lists every replica state, in the order a replica goes through them.
func ReplicaStates() []ReplicaState {
	return []ReplicaState{ReplicaPending, ReplicaStarting, ReplicaReady, ReplicaDraining, ReplicaStopping, ReplicaStopped, ReplicaFailed}
}

// EndedReplicaStates are the states a replica ends in; it then holds no GPU and no slot.
func EndedReplicaStates() []ReplicaState { return []ReplicaState{ReplicaStopped, ReplicaFailed} }

// LiveReplicaStates are the states of a replica that holds its GPUs and its slot: every
// state but those it ends in.
func LiveReplicaStates() []ReplicaState {
	var live []ReplicaState
	for _, s := range ReplicaStates() {
		if !slices.Contains(EndedReplicaStates(), s) {
			live = append(live, s)
		}
	}
	return live
}

// StartingReplicaStates are the states of a replica on its way to READY.
func StartingReplicaStates() []ReplicaState { return []ReplicaState{ReplicaPending, ReplicaStarting} }

// Valid reports whether s is one of the replica states.
func (s ReplicaState) Valid() bool { return slices.Contains(ReplicaStates(), s) }

// Ended reports whether the replica stopped or failed.
func (s ReplicaState) Ended() bool { return slices.Contains(EndedReplicaStates(), s) }

// Live reports whether the replica holds its GPUs and its slot: it has not ended.
func (s ReplicaState) Live() bool { return slices.Contains(LiveReplicaStates(), s) }

// Serves reports whether the replica answers requests: READY, or DRAINING the requests it
// took before it left the routes. Stopping one waits for those to end.
func (s ReplicaState) Serves() bool { return s == ReplicaReady || s == ReplicaDraining }

// Starting reports whether the replica is on its way to READY.
func (s ReplicaState) Starting() bool { return slices.Contains(StartingReplicaStates(), s) }

// NodeState is whether a node takes new replicas, as the nodes table and GET /v1/nodes
// spell it.
type NodeState string

// Every node state.
const (
	// NodeReady takes new replicas.
	NodeReady NodeState = "READY"
	// NodeDraining keeps what it runs but takes nothing new; an operator set it.
	NodeDraining NodeState = "DRAINING"
	// NodeDown missed its heartbeats.
	NodeDown NodeState = "DOWN"
)

// PromotionStatus is where a promotion is, as the promotions table and
// in_progress_promotion.status spell it.
type PromotionStatus string

// Every promotion status the API documents.
const (
	PromotionReleasing   PromotionStatus = "RELEASING"
	PromotionRampingUp   PromotionStatus = "RAMPING_UP"
	PromotionRampingDown PromotionStatus = "RAMPING_DOWN"
	PromotionPaused      PromotionStatus = "PAUSED"
	PromotionSucceeded   PromotionStatus = "SUCCEEDED"
	PromotionFailed      PromotionStatus = "FAILED"
	PromotionCanceled    PromotionStatus = "CANCELED"
)

// PromotionStatuses lists every promotion status, in the order the API documents them.
func PromotionStatuses() []PromotionStatus {
	return []PromotionStatus{
		PromotionReleasing, PromotionRampingUp, PromotionRampingDown, PromotionPaused,
		PromotionSucceeded, PromotionFailed, PromotionCanceled,
	}
}

// InProgressPromotionStatuses are the statuses of a promotion that has not ended.
func InProgressPromotionStatuses() []PromotionStatus {
	return []PromotionStatus{PromotionReleasing, PromotionRampingUp, PromotionRampingDown, PromotionPaused}
}

// SplittingPromotionStatuses are the statuses in which a promotion's candidate takes its
// percentage of the environment's traffic.
func SplittingPromotionStatuses() []PromotionStatus {
	return []PromotionStatus{PromotionRampingUp, PromotionPaused}
}

// Valid reports whether s is one of the documented statuses.
func (s PromotionStatus) Valid() bool { return slices.Contains(PromotionStatuses(), s) }

// InProgress reports whether the promotion has not ended.
func (s PromotionStatus) InProgress() bool {
	return slices.Contains(InProgressPromotionStatuses(), s)
}

// Ended reports whether the promotion ended: it succeeded, failed or was canceled.
func (s PromotionStatus) Ended() bool { return s.Valid() && !s.InProgress() }

// SplitsTraffic reports whether the candidate takes its percentage of the traffic.
func (s PromotionStatus) SplitsTraffic() bool {
	return slices.Contains(SplittingPromotionStatuses(), s)
}

// CleanupStrategy is what a promotion does with the deployment it replaced.
type CleanupStrategy string

// Every cleanup strategy.
const (
	// CleanupScaleToZero scales it to zero, so it can be promoted back at no cost; the default.
	CleanupScaleToZero CleanupStrategy = "SCALE_TO_ZERO"
	// CleanupKeep leaves it at the replicas it has.
	CleanupKeep CleanupStrategy = "KEEP"
	// CleanupDeactivate deactivates it.
	CleanupDeactivate CleanupStrategy = "DEACTIVATE"
)

// CleanupStrategies lists every cleanup strategy, the default first.
func CleanupStrategies() []CleanupStrategy {
	return []CleanupStrategy{CleanupScaleToZero, CleanupKeep, CleanupDeactivate}
}

// Valid reports whether s is one of the strategies.
func (s CleanupStrategy) Valid() bool { return slices.Contains(CleanupStrategies(), s) }
