package agent

import (
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"time"

	"github.com/modelplane/modelplane"
	"github.com/modelplane/modelplane/agent/agentproto"
	"github.com/modelplane/modelplane/agent/runtime"
)

// record is one replica as the agent keeps it in its state file: what its API tells about
// the replica, and what must not leave the host (the start request, the control token, the
// runtime's handle). The API answers with record.wire, never the record. The secrets' values
// are held in memory only (secrets), never written to the state file.
type record struct {
	ID           string                  `json:"id"`
	DeploymentID string                  `json:"deployment_id"`
	Environment  string                  `json:"environment"`
	State        modelplane.ReplicaState `json:"state"`
	Error        string                  `json:"error,omitempty"`
	ExitCode     *int                    `json:"exit_code,omitempty"`
	LogTail      []string                `json:"log_tail,omitempty"`
	GPUUUIDs     []string                `json:"gpu_uuids"`
	Runtime      string                  `json:"runtime"`
	Address      string                  `json:"address,omitempty"`
	HealthPath   string                  `json:"health_path,omitempty"`
	PredictPath  string                  `json:"predict_path,omitempty"`
	// LivenessPath is probed to decide a restart; WebsocketPath takes websocket connections.
	LivenessPath  string `json:"liveness_path,omitempty"`
	WebsocketPath string `json:"websocket_path,omitempty"`
	// Checks are the health-check timings the replica's config asks for.
	Checks checks `json:"checks"`
	// Restarts counts the restarts of a failing liveness check.
	Restarts  int        `json:"restarts,omitempty"`
	CreatedAt time.Time  `json:"created_at"`
	ReadyAt   *time.Time `json:"ready_at,omitempty"`
	StoppedAt *time.Time `json:"stopped_at,omitempty"`
	// PatchHash names the patch the replica's package is at; empty while it runs its archive
	// as built.
	PatchHash string `json:"patch_hash,omitempty"`
	// ReloadError says why the last hot reload failed. The model server then answers every
	// prediction with that error, until a later patch reloads or restarts it.
	ReloadError string `json:"reload_error,omitempty"`
	// ControlToken lets the agent, and nothing else on the host, use the model server's
	// control routes. Only the state file keeps it, so that it outlives an agent restart.
	ControlToken string `json:"control_token,omitempty"`
	// EnvDir is the Python environment of the package's requirements, once the replica has
	// one; a restart in place runs in it again.
	EnvDir string `json:"env_dir,omitempty"`
	// UID is the user (and group) ID the replica's server runs as, with replica users; 0 runs
	// it as the agent's own user.
	UID int `json:"uid,omitempty"`

	// Handle finds the process or container again after an agent restart.
	Handle *runtime.Handle `json:"handle,omitempty"`
	// Request is what the replica was started with, less its patch's files and its secrets'
	// values, so a retried POST can be compared and a restart in place can run it again.
	Request agentproto.StartRequest `json:"request"`

	// secrets are the values of the secrets the start request carried. They live only in this
	// process: after an agent restart an adopted replica runs on with them in its process or
	// container, but a restart in place, which would need them again, fails the replica so
	// that the control plane replaces it with one started with the workspace's values.
	secrets map[string]string
}

// live reports whether the replica holds its GPUs: it is neither stopped nor failed.
func (r *record) live() bool { return r.State.Live() }

// wire is the replica as the agent's API and heartbeat tell it. It copies the fields it names
// and nothing else, so a field added to record stays on the host until it is named here.
func (r *record) wire(gpuUnhealthy bool) agentproto.Replica {
	return agentproto.Replica{
		ID:            r.ID,
		DeploymentID:  r.DeploymentID,
		Environment:   r.Environment,
		State:         r.State,
		Error:         r.Error,
		ExitCode:      r.ExitCode,
		LogTail:       slices.Clone(r.LogTail),
		GPUUUIDs:      slices.Clone(r.GPUUUIDs),
		GPUUnhealthy:  gpuUnhealthy,
		Runtime:       r.Runtime,
		Address:       r.Address,
		HealthPath:    r.HealthPath,
		PredictPath:   r.PredictPath,
		LivenessPath:  r.LivenessPath,
		WebsocketPath: r.WebsocketPath,
		Restarts:      r.Restarts,
		CreatedAt:     r.CreatedAt,
		ReadyAt:       r.ReadyAt,
		StoppedAt:     r.StoppedAt,
		PatchHash:     r.PatchHash,
		ReloadError:   r.ReloadError,
	}
}

// stateFile is the agent's record on disk.
type stateFile struct {
	AgentID  string    `json:"agent_id"`
	Replicas []*record `json:"replicas"`
	// NextUID is where the search for a free replica user ID starts.
	NextUID int `json:"next_uid,omitempty"`
}

func loadState(path string) (stateFile, error) {
	var s stateFile
	b, err := os.ReadFile(path)
	if errors.Is(err, os.ErrNotExist) {
		return s, nil
	}
	if err != nil {
		return s, err
	}
	if err := json.Unmarshal(b, &s); err != nil {
		return s, fmt.Errorf("state file %s is corrupt: %w", path, err)
	}
	return s, nil
}

// saveState writes the state atomically: a crash leaves either the old file or the new one.
func saveState(path string, s stateFile) error {
	b, err := json.MarshalIndent(s, "", "  ")
	if err != nil {
		return err
	}
	tmp, err := os.CreateTemp(filepath.Dir(path), ".state-*")
	if err != nil {
		return err
	}
	defer os.Remove(tmp.Name())
	if _, err := tmp.Write(b); err != nil {
		tmp.Close()
		return err
	}
	if err := tmp.Sync(); err != nil {
		tmp.Close()
		return err
	}
	if err := tmp.Close(); err != nil {
		return err
	}
	if err := os.Rename(tmp.Name(), path); err != nil {
		return err
	}
	// The rename is durable only once the directory is synced.
	if d, err := os.Open(filepath.Dir(path)); err == nil {
		_ = d.Sync()
		d.Close()
	}
	return nil
}
