package agentproto

import (
	"encoding/json"
	"time"

	"github.com/modelplane/modelplane"
	"github.com/modelplane/modelplane/patch"
)

// ArchivePath is where the control plane serves archives to agents, below its URL. An agent
// fetches an archive URL with this path from the API it reports to, whichever API host the
// URL names: every API serves every archive, and the node's token goes to its own API alone.
const ArchivePath = "/internal/v1/archives/"

// StartRequest is the body of POST /v1/replicas.
type StartRequest struct {
	ReplicaID    string `json:"replica_id"`
	DeploymentID string `json:"deployment_id"`
	Environment  string `json:"environment,omitempty"`
	// ArchiveURL (http, https or file) and ArchiveSHA256 name the model package to run.
	ArchiveURL    string `json:"archive_url,omitempty"`
	ArchiveSHA256 string `json:"archive_sha256,omitempty"`
	// Image runs a container image instead of an archive.
	Image string `json:"image,omitempty"`
	// Config holds config.yaml's keys as JSON. With an archive it overrides the package's own
	// config.yaml (the control plane's current config wins); without one it is required.
	Config json.RawMessage   `json:"config,omitempty"`
	Env    map[string]string `json:"env,omitempty"`
	// Secrets are the workspace's secret values; the model gets those its config names.
	Secrets map[string]string `json:"secrets,omitempty"`
	// Resources is what the replica needs of the node's GPUs; the zero value takes what the
	// config override asks for, or no GPU.
	Resources modelplane.GPURequest `json:"resources"`
	// Patch is applied to the unpacked package before the server starts: a replica of a
	// development deployment starts at the deployment's latest patch, not at its archive.
	Patch *ReplicaPatch `json:"patch,omitempty"`
}

// ReplicaPatch is the patch a replica starts with: the files that take its archive to the
// patched package, and the hash that names the result.
type ReplicaPatch struct {
	PatchHash string        `json:"patch_hash"`
	Files     patch.FileSet `json:"files"`
}

// Replica is one replica as the agent's API answers it.
type Replica struct {
	ID           string                  `json:"id"`
	DeploymentID string                  `json:"deployment_id"`
	Environment  string                  `json:"environment"`
	State        modelplane.ReplicaState `json:"state"`
	Error        string                  `json:"error,omitempty"`
	ExitCode     *int                    `json:"exit_code,omitempty"`
	LogTail      []string                `json:"log_tail,omitempty"`
	GPUUUIDs     []string                `json:"gpu_uuids"`
	// GPUUnhealthy is set when a GPU the replica holds is unhealthy now.
	GPUUnhealthy bool   `json:"gpu_unhealthy"`
	Runtime      string `json:"runtime"`
	// Address is the model server's host:port once it has started.
	Address     string `json:"address,omitempty"`
	HealthPath  string `json:"health_path,omitempty"`
	PredictPath string `json:"predict_path,omitempty"`
	// LivenessPath is probed to decide whether the server must be restarted.
	LivenessPath string `json:"liveness_path,omitempty"`
	// WebsocketPath takes the server's websocket connections.
	WebsocketPath string `json:"websocket_path,omitempty"`
	// Restarts counts how often the agent restarted the server because its liveness check
	// failed for longer than the restart threshold.
	Restarts  int        `json:"restarts"`
	CreatedAt time.Time  `json:"created_at"`
	ReadyAt   *time.Time `json:"ready_at,omitempty"`
	StoppedAt *time.Time `json:"stopped_at,omitempty"`
	// PatchHash names the patch the replica's package is at; empty while it runs its archive
	// as built.
	PatchHash string `json:"patch_hash,omitempty"`
	// ReloadError says why the last hot reload failed. The model server then answers every
	// prediction with that error, until a later patch reloads or restarts it.
	ReloadError string `json:"reload_error,omitempty"`
}
