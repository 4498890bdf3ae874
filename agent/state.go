package agent

import (
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"time"

	"github.com/modelplane/modelplane/agent/runtime"
)

// Replica states, as the control plane's replicas table names them.
const (
	StateStarting = "STARTING"
	StateReady    = "READY"
	StateStopping = "STOPPING"
	StateStopped  = "STOPPED"
	StateFailed   = "FAILED"
)

// Replica is one replica as the agent knows it; it is both the API's answer and what the
// state file keeps.
type Replica struct {
	ID           string     `json:"id"`
	DeploymentID string     `json:"deployment_id"`
	Environment  string     `json:"environment"`
	State        string     `json:"state"`
	Error        string     `json:"error,omitempty"`
	ExitCode     *int       `json:"exit_code,omitempty"`
	LogTail      []string   `json:"log_tail,omitempty"`
	GPUUUIDs     []string   `json:"gpu_uuids"`
	GPUUnhealthy bool       `json:"gpu_unhealthy"`
	Runtime      string     `json:"runtime"`
	Address      string     `json:"address,omitempty"`
	HealthPath   string     `json:"health_path,omitempty"`
	PredictPath  string     `json:"predict_path,omitempty"`
	CreatedAt    time.Time  `json:"created_at"`
	ReadyAt      *time.Time `json:"ready_at,omitempty"`
	StoppedAt    *time.Time `json:"stopped_at,omitempty"`
	// PatchHash names the patch the replica's package is at; empty while it runs its archive
	// as built.
	PatchHash string `json:"patch_hash,omitempty"`
	// ReloadError says why the last hot reload failed. The model server then answers every
	// prediction with that error, until a later patch reloads or restarts it.
	ReloadError string `json:"reload_error,omitempty"`
	// ControlToken lets the agent, and nothing else on the host, use the model server's
	// control routes. Only the state file keeps it, so that it outlives an agent restart.
	ControlToken string `json:"control_token,omitempty"`

	// Handle finds the process or container again after an agent restart.
	Handle *runtime.Handle `json:"handle,omitempty"`
	// Request is what the replica was started with, so a retried POST can be compared.
	Request StartRequest `json:"request"`
}

// live reports whether the replica holds its GPUs: it is neither stopped nor failed.
func (r *Replica) live() bool { return r.State != StateStopped && r.State != StateFailed }

// stateFile is the agent's record on disk.
type stateFile struct {
	AgentID  string     `json:"agent_id"`
	Replicas []*Replica `json:"replicas"`
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
