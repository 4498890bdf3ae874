package contract

import (
	"encoding/json"
	"time"

	"github.com/modelplane/modelplane"
)

// Error types of the non-retryable failures the Deployment workflow tells apart.
const (
	// ErrTypeBuildFailed: the deployment's package cannot run as stored (no archive, bad config).
	ErrTypeBuildFailed = "BuildFailed"
	// ErrTypeUnplaceable: no node can take the replica now.
	ErrTypeUnplaceable = "Unplaceable"
	// ErrTypeAgentRefused: the agent refused the start for a reason retrying cannot fix.
	ErrTypeAgentRefused = "AgentRefused"
	// ErrTypeMissingSecret: the config names a secret the workspace does not have (or the
	// control plane has no key to open it); the message names it.
	ErrTypeMissingSecret = "MissingSecret"
)

// LoadDeploymentSpecInput names the deployment to build.
type LoadDeploymentSpecInput struct {
	DeploymentID string
	ModelID      string
}

// DeploymentSpec is what starting a replica of the deployment takes.
type DeploymentSpec struct {
	DeploymentID string
	ModelID      string
	WorkspaceID  string
	// Environment is the environment that points at the deployment, empty when none does.
	Environment string
	// IsDevelopment marks the development deployment, which never has more than one replica.
	IsDevelopment bool
	ArchiveID     string
	// Config is the config the agent runs the replica with, as JSON: the package's
	// config.yaml, or the config the create request gave in its place.
	Config    json.RawMessage
	Resources modelplane.GPURequest
	// DeployTimeout bounds how long a replica may take from its placement until it is
	// ready (the create request's deploy_timeout_minutes); zero is no bound.
	DeployTimeout time.Duration
	// PythonEnv says the config has requirements or a python_version, which the nodes that
	// could host the deployment prepare (ActivityBuildPythonEnv) while it is BUILDING.
	PythonEnv bool `json:",omitempty"`
}

// GPURequest is what one replica needs from a node, for placement.
func (s DeploymentSpec) GPURequest() modelplane.GPURequest { return s.Resources }

// BuildPythonEnvInput is the deployment whose Python environment the nodes that could host it
// build.
type BuildPythonEnvInput struct {
	Spec DeploymentSpec
	// PollInterval is how often the agents are asked how their builds stand; default one
	// second.
	PollInterval time.Duration
}

// BuildPythonEnvResult is where the environment was built. A build that failed is a
// non-retryable error of type ErrTypeBuildFailed instead, with pip's last lines.
type BuildPythonEnvResult struct {
	// Nodes are the names of the nodes that have the environment.
	Nodes []string
	// Reused says every one of them had it already.
	Reused bool
}

// SetDeploymentStatusInput is the status to record.
type SetDeploymentStatusInput struct {
	DeploymentID string
	Status       modelplane.DeploymentStatus
	Reason       string
}

// PlaceReplicaInput names the replica to place and what it needs.
type PlaceReplicaInput struct {
	DeploymentID string
	ReplicaID    string
	GPU          modelplane.GPURequest
}

// PlaceReplicaResult is where the replica went.
type PlaceReplicaResult struct {
	NodeID   string
	GPUUUIDs []string
}

// StartReplicaInput is the replica to start and the deployment it runs.
type StartReplicaInput struct {
	ReplicaID string
	Spec      DeploymentSpec
}

// WaitReplicaReadyInput names the replica to watch.
type WaitReplicaReadyInput struct {
	ReplicaID string
	// PollInterval is how often the agent is asked; default 100 ms, so a replica that is
	// ready serves soon after (a cold start waits on this).
	PollInterval time.Duration
	// Timeout, when not zero, is how long after its placement the replica may become ready;
	// past it the replica is FAILED and the result TimedOut.
	Timeout time.Duration
}

// WaitReplicaReadyResult is how the replica ended its start: READY with its address, or
// FAILED with the reason. TimedOut says it failed for not being ready within the input's
// Timeout, which another replica would not beat.
type WaitReplicaReadyResult struct {
	State    modelplane.ReplicaState
	Address  string
	Reason   string
	TimedOut bool
}

// WatchReplicaInput names the READY replica to watch.
type WatchReplicaInput struct {
	ReplicaID string
	// PollInterval is how often the agent is asked; default five seconds.
	PollInterval time.Duration
}

// WatchReplicaResult is how a READY replica died: State is what its row now says (FAILED,
// or STOPPED when something else stopped it) and Reason why.
type WatchReplicaResult struct {
	State  modelplane.ReplicaState
	Reason string
}

// DefaultDrainTimeout is how long a stop waits for gateways to drain a replica when its
// input does not say. It is the gateway's default upstream timeout: no request can outlive it.
const DefaultDrainTimeout = 5 * time.Minute

// StopReplicaInput names the replica to stop and how long it may take to exit.
type StopReplicaInput struct {
	ReplicaID string
	Grace     time.Duration
	// DrainTimeout bounds the wait for gateways to finish the requests of a READY replica
	// before it is stopped; zero means DefaultDrainTimeout.
	DrainTimeout time.Duration
}

// MarkDeploymentDeletedInput names the deployment to delete.
type MarkDeploymentDeletedInput struct {
	DeploymentID string
	ModelID      string
}
