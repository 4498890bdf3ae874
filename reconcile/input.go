package reconcile

import (
	"github.com/modelplane/modelplane"
	"github.com/modelplane/modelplane/store"
	"github.com/modelplane/modelplane/workflows/contract"
)

// DeploymentInput is what restarts a deployment's workflow from its row and its live
// replicas: the run that continues as new gets the same (contract.DeploymentCarry), so the
// workflow takes the replicas over by their IDs.
//
//   - BUILDING with no replica: no carry, so the workflow builds and deploys as a new one.
//   - INACTIVE: inactive, no replica wanted; Cleanup stops any left.
//   - BUILD_FAILED: stays failed with its reason.
//   - SCALED_TO_ZERO with no replica: zero wanted, as it was.
//   - otherwise: every live replica is handed over, and as many are wanted as were not being
//     drained or stopped, at least one; the workflow stops the extra ones. A deployment that
//     had failed to deploy tries again (at most contract.MaxReplicaAttempts per replica).
func DeploymentInput(d store.Deployment, live []store.Replica) contract.DeploymentInput {
	in := contract.DeploymentInput{DeploymentID: d.ID, ModelID: d.ModelID}
	if d.Status == modelplane.DeploymentBuilding && len(live) == 0 {
		in.Replicas = 1
		return in
	}
	c := &contract.DeploymentCarry{Status: d.Status, Reason: d.StatusReason, EverActive: everActive(d.Status)}
	in.Carried = c
	switch {
	case d.Status.Deactivated():
		c.Status, c.Inactive = modelplane.DeploymentInactive, true
		return in
	case d.Status == modelplane.DeploymentBuildFailed:
		return in
	}
	wanted := 0
	for _, r := range live {
		node := ""
		if r.NodeID != nil {
			node = *r.NodeID
		}
		c.Replicas = append(c.Replicas, contract.ReplicaInfo{ID: r.ID, NodeID: node, State: r.State, Address: r.Address})
		if r.State != modelplane.ReplicaDraining && r.State != modelplane.ReplicaStopping {
			wanted++
		}
	}
	in.Replicas = wanted
	if d.Status == modelplane.DeploymentScaledToZero && len(live) == 0 {
		return in
	}
	if d.Status == modelplane.DeploymentWakingUp {
		c.Waking = true
	}
	in.Replicas = max(in.Replicas, 1)
	return in
}

// everActive reports whether a deployment in the status has served: a replica that dies then
// makes it UNHEALTHY rather than DEPLOY_FAILED.
func everActive(s modelplane.DeploymentStatus) bool {
	switch s {
	case modelplane.DeploymentBuilding, modelplane.DeploymentDeploying, modelplane.DeploymentLoadingModel,
		modelplane.DeploymentDeployFailed, modelplane.DeploymentBuildFailed, modelplane.DeploymentBuildStopped:
		return false
	}
	return true
}
