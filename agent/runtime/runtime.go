// Package runtime is the narrow interface between the node agent and what actually runs a
// replica: a process group on the host (package process) or a container (package docker).
//
// A runtime starts a replica from a Spec and returns a Handle: everything needed to find the
// replica again. The agent persists handles in its state file, so after its own restart it
// re-adopts live replicas through Adopt instead of orphaning or duplicating them.
package runtime

import (
	"context"
	"errors"
	"time"
)

// Spec is what one replica runs.
type Spec struct {
	ReplicaID    string
	DeploymentID string
	// Environment is the environment the replica serves (MODELPLANE_ENVIRONMENT); empty for
	// a deployment reached only by ID.
	Environment string
	// Dir is the replica's own directory: the runtime may write only under it. The process
	// runtime runs the model package unpacked in PackageDir, which lies inside Dir.
	Dir        string
	PackageDir string
	// Command is the argv to run, relative paths resolved in PackageDir (process runtime).
	// The docker runtime runs it in place of the image's entrypoint and command; empty runs
	// the image's own.
	Command []string
	// Image is the container image (docker runtime).
	Image string
	// ContainerPort is the port the server listens on inside its container (docker
	// runtime; a Truss docker_server's server_port); 0 is the runtime's default.
	ContainerPort int
	// PackageMount, when set, is where the container sees PackageDir, read-only, and its
	// working directory (docker runtime): a Truss docker_server's image holds its package's
	// files in /app, which the agent, building no image, mounts instead.
	PackageMount string
	// User is the container's user, e.g. a run_as_user_id (docker runtime); empty is the
	// image's.
	User string
	// Env holds the package's environment variables and secrets; the runtime adds PORT,
	// CUDA_VISIBLE_DEVICES, NVIDIA_VISIBLE_DEVICES, MODELPLANE_ENVIRONMENT and
	// MODELPLANE_DEPLOYMENT_ID itself, and the process runtime MODELPLANE_BIND (EnvBind).
	Env map[string]string
	// SecretsDir, when set, holds one file per secret the package names, named as the secret.
	// The docker runtime mounts it read-only at /secrets (SecretsMountPath), as Truss does;
	// the process runtime gives its path in MODELPLANE_SECRETS_DIR (EnvSecretsDir).
	SecretsDir string
	// GPUUUIDs are the GPUs (or MIG instances) allocated to the replica.
	GPUUUIDs []string
	// Port is the host port the model server must be reachable on.
	Port int
	// Host is the host address the model server must be reachable on, and the host part of
	// the handle's Address, which gateways connect to: the agent's --replica-host.
	// DefaultHost when empty. The process runtime tells the server to listen on it
	// (MODELPLANE_BIND); the docker runtime publishes the container's port on it.
	Host string
	// HealthPath is probed with GET until it answers 200.
	HealthPath string
	// UID, when not 0, is the user and group ID the server runs as (process runtime): the
	// agent's replica user for it.
	UID int
	// Prewarm, when set, lets the process runtime start a Python replica from a warm
	// interpreter of its environment, its modules already imported, instead of running
	// Command cold: forked from the environment's fork server, or, with a UID, a warm spare
	// that already runs as a replica user of Prewarm.Users.
	Prewarm *Prewarm
}

// Prewarm is how a Python replica may be started by its environment's fork server.
type Prewarm struct {
	// Dir is the fork server's directory, private to the agent: one per Python environment,
	// holding its socket, its log and the modules learned from the environment's replicas.
	Dir string
	// Argv is what the forked interpreter runs as sys.argv, argv[0] the script: Command
	// without the interpreter and its options. The fork server runs Command[0].
	Argv []string
	// Env is what the fork server's environment holds besides the few variables of the
	// agent's own that every replica gets: the environment's VIRTUAL_ENV and PATH. Never a
	// secret or anything of one deployment's.
	Env map[string]string
	// Imports are the modules to import besides the learned ones (runtime.prewarm_imports).
	Imports []string
	// Users, set for a replica with a UID, hands out the replica user IDs warm spares run
	// as, and makes a spare's the replica's when it takes one. Without it, a replica with a
	// UID starts cold.
	Users ReplicaUsers
}

// ReplicaUsers is the agent's pool of replica user IDs, as the process runtime's warm spares
// draw from it: a spare runs as a user of its own before it knows its replica.
type ReplicaUsers interface {
	// Reserve draws a user ID and holds it as a replica's is held, for a spare.
	Reserve() (int, error)
	// Release gives back the ID of a spare that ended without becoming a replica.
	Release(uid int)
	// Claim makes uid, a spare's, the replica's user, and prepares the replica's directory
	// for it; the ID the replica held before is given back.
	Claim(uid int) error
}

const (
	// SecretsMountPath is where a container finds its secrets' files.
	SecretsMountPath = "/secrets"
	// EnvSecretsDir names the directory of a process replica's secrets' files.
	EnvSecretsDir = "MODELPLANE_SECRETS_DIR"
	// EnvBind names the address a process replica's server must listen on: Spec.Host.
	EnvBind = "MODELPLANE_BIND"
	// DefaultHost is the replica host unless the agent is told another: the host's
	// loopback, which only clients on the same host reach.
	DefaultHost = "127.0.0.1"
)

// HostOf is the host address spec's server is reached at: spec.Host, else DefaultHost.
func HostOf(spec Spec) string {
	if spec.Host != "" {
		return spec.Host
	}
	return DefaultHost
}

// Handle finds a started replica again, also from another agent process.
type Handle struct {
	ReplicaID string `json:"replica_id"`
	Runtime   string `json:"runtime"` // "process" or "docker"
	// PID and StartTime identify a process: a PID alone may have been reused after the
	// replica died, the start time (clock ticks since boot, /proc/PID/stat field 22) may not.
	PID       int    `json:"pid,omitempty"`
	StartTime uint64 `json:"start_time,omitempty"`
	// ContainerID identifies a container.
	ContainerID string `json:"container_id,omitempty"`
	// Address is the model server's host:port.
	Address string `json:"address"`
	// LogDir holds stdout.log and stderr.log (process runtime).
	LogDir string `json:"log_dir,omitempty"`
	// Forked says the process started from a warm interpreter of its environment, forked by
	// its fork server or a warm spare, rather than cold (process runtime).
	Forked bool `json:"forked,omitempty"`
}

// Status is what a runtime knows about a replica's process or container.
type Status struct {
	Running bool
	// ExitCode is set once the replica has exited.
	ExitCode *int
	// Error says why the replica is not running, when the runtime knows.
	Error string
	// LogTail holds the last lines the replica wrote, for a replica that died.
	LogTail []string
}

// ErrNotFound means the runtime has no trace of the replica (its process or container is gone
// and nothing remains to report).
var ErrNotFound = errors.New("replica not found in runtime")

// Runtime runs replicas.
type Runtime interface {
	// Name is "process" or "docker".
	Name() string
	// Start starts the replica and returns at once; readiness is the agent's to probe.
	Start(ctx context.Context, spec Spec) (Handle, error)
	// Status reports whether the replica still runs and, if not, how it ended.
	Status(ctx context.Context, h Handle) (Status, error)
	// Stop asks the replica to stop (SIGTERM, or the container's stop signal), waits up to
	// grace, then kills it. Stopping a replica that is gone is not an error.
	Stop(ctx context.Context, h Handle, grace time.Duration) error
	// Adopt checks, after an agent restart, that h still designates the live replica this
	// agent started (same PID and start time, or the container with the replica's label).
	Adopt(ctx context.Context, h Handle) (bool, error)
	// Orphans lists what this runtime started on this host that is still running but belongs
	// to none of the known replica IDs, so the agent can stop it.
	Orphans(ctx context.Context, known map[string]bool) ([]Handle, error)
}

// Line is one line a replica wrote, with the time its runtime stamped it.
type Line struct {
	Time    time.Time
	Stream  string // "stdout" or "stderr"
	Message string
}

// LineReader is a runtime that keeps its replicas' output itself, stamped (the container
// engine): the agent asks it for the lines stamped in [since, until) instead of following
// files.
type LineReader interface {
	Lines(ctx context.Context, h Handle, since, until time.Time) ([]Line, error)
}
