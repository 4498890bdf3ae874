package agent

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/modelplane/modelplane"
	"github.com/modelplane/modelplane/agent/agentproto"
	"github.com/modelplane/modelplane/modelpkg"
	"github.com/modelplane/modelplane/patch"
	"github.com/modelplane/modelplane/runtime/python"
)

// validatePatch checks a patch request and returns the parsed config, if any.
func validatePatch(r *agentproto.PatchRequest) (*modelpkg.Config, error) {
	switch {
	case r.PatchHash == "":
		return nil, &fieldError{"patch_hash", "required: the hash of the patched package"}
	case r.How != patch.HowHotReload && r.How != patch.HowRestart:
		return nil, &fieldError{"how", fmt.Sprintf("must be %s or %s", patch.HowHotReload, patch.HowRestart)}
	}
	if err := r.Files.Check(); err != nil {
		return nil, &fieldError{"files", err.Error()}
	}
	cfg, err := parseConfig(r.Config)
	if cfg == nil || err != nil {
		return nil, err
	}
	if cfg.Runtime == modelpkg.RuntimeDocker {
		return nil, &fieldError{"config.runtime", "a process replica cannot become a docker one: deploy again"}
	}
	return cfg, nil
}

// Patch writes the request's files into the replica's package and has its model server take
// them: a hot reload asks the python server to import the model again, a restart replaces
// the server's process in place. Either way it answers once that is done (or failed), which
// can take up to the agent's StartTimeout. An unknown replica is agentproto.ErrUnknownReplica.
func (a *Agent) Patch(ctx context.Context, id string, req agentproto.PatchRequest) (agentproto.PatchResult, error) {
	started := time.Now()
	if _, err := validatePatch(&req); err != nil {
		return agentproto.PatchResult{}, err
	}
	lock, err := a.patchLock(id)
	if err != nil {
		return agentproto.PatchResult{}, err
	}
	lock.Lock()
	defer lock.Unlock()

	a.mu.Lock()
	r := a.replicas[id]
	if err := patchableLocked(r); err != nil {
		a.mu.Unlock()
		return agentproto.PatchResult{}, err
	}
	if req.How == patch.HowHotReload && r.PatchHash == req.PatchHash {
		a.mu.Unlock()
		return a.patchResult(id, agentproto.HowUnchanged, started), nil
	}
	a.mu.Unlock()

	log := a.log.With("replica_id", id, "deployment_id", r.DeploymentID, "patch_hash", req.PatchHash, "how", req.How)
	if req.How == patch.HowHotReload {
		err = a.hotReload(ctx, r, req)
	} else {
		err = a.restartInPlace(ctx, r, req)
	}
	if err != nil {
		log.Warn("patching the replica failed", "err", err)
		return agentproto.PatchResult{}, err
	}
	res := a.patchResult(id, req.How, started)
	if res.ReloadError != "" {
		log.Warn("replica patched, but its model failed to reload", "reload_error", res.ReloadError, "duration_ms", res.DurationMS)
	} else {
		log.Info("replica patched", "state", res.Replica.State, "duration_ms", res.DurationMS)
	}
	return res, nil
}

func (a *Agent) patchResult(id, how string, started time.Time) agentproto.PatchResult {
	r, _ := a.view(id)
	return agentproto.PatchResult{Replica: r, How: how, ReloadError: r.ReloadError, DurationMS: time.Since(started).Milliseconds()}
}

// patchLock is the lock that orders the patches of replica id.
func (a *Agent) patchLock(id string) (*sync.Mutex, error) {
	a.mu.Lock()
	defer a.mu.Unlock()
	if a.replicas[id] == nil {
		return nil, agentproto.ErrUnknownReplica
	}
	l := a.patchLocks[id]
	if l == nil {
		l = &sync.Mutex{}
		a.patchLocks[id] = l
	}
	return l, nil
}

// patchableLocked says why r cannot take a patch now, if it cannot; a.mu must be held.
func patchableLocked(r *record) error {
	switch {
	case r == nil:
		return agentproto.ErrUnknownReplica
	case !r.live() || r.State == modelplane.ReplicaStopping:
		return &errConflict{fmt.Sprintf("replica %s is %s", r.ID, r.State)}
	case r.Runtime != "process":
		return &errConflict{fmt.Sprintf("replica %s runs a container image, not its package's files: deploy again", r.ID)}
	case r.Handle == nil:
		// Its package is still being unpacked: a moment later the patch can be taken.
		return errorf(http.StatusServiceUnavailable, "replica %s is starting; try again", r.ID)
	}
	return nil
}

// hotReload writes the files and asks the model server to load the model again, in its own
// process; the answer, good or bad, is recorded on the replica.
func (a *Agent) hotReload(ctx context.Context, r *record, req agentproto.PatchRequest) error {
	a.mu.Lock()
	token, address, config := r.ControlToken, r.Address, r.Request.Config
	a.mu.Unlock()
	if token == "" {
		return &errConflict{fmt.Sprintf("replica %s was started without a control token, by an older agent: restart it to patch it", r.ID)}
	}
	pkgDir := a.packageDir(r.ID)
	cfg, err := runningConfig(pkgDir, config)
	if err != nil {
		return err
	}
	if cfg.Runtime != modelpkg.RuntimePython {
		return &errConflict{fmt.Sprintf("replica %s runs the %s runtime: only a python model reloads in place; restart it", r.ID, cfg.Runtime)}
	}
	if err := applyFileSet(pkgDir, req.Files); err != nil {
		return err
	}
	if err := a.shareWithReplica(r, pkgDir); err != nil {
		return err
	}
	// The files are in place whatever happens now: the reload runs to its end even when the
	// caller gives up, so that what the replica records is what its server did.
	reloadErr := a.reload(context.WithoutCancel(ctx), address, token)
	a.mu.Lock()
	r.PatchHash, r.ReloadError = req.PatchHash, reloadErr
	if err := a.persistLocked(); err != nil {
		a.log.Error("writing the state file", "err", err)
	}
	a.mu.Unlock()
	return nil
}

// runningConfig is the config a replica runs with: the request's override, else the package's.
func runningConfig(pkgDir string, override json.RawMessage) (modelpkg.Config, error) {
	if len(override) > 0 {
		return modelpkg.ParseConfig(override)
	}
	return modelpkg.ReadConfig(pkgDir)
}

// reload asks the python model server at address to load its model again and returns the
// reason it could not, or "" when it did.
func (a *Agent) reload(ctx context.Context, address, token string) string {
	ctx, cancel := context.WithTimeout(ctx, a.cfg.StartTimeout)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, "http://"+address+python.ReloadPath, nil)
	if err != nil {
		return err.Error()
	}
	req.Header.Set(python.ControlTokenHeader, token)
	// Loading a model can take minutes: the context above is the only bound.
	resp, err := (&http.Client{}).Do(req)
	if err != nil {
		return fmt.Sprintf("asking the model server to reload: %v", err)
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(io.LimitReader(resp.Body, 64<<10))
	if resp.StatusCode == http.StatusOK {
		return ""
	}
	var answer struct {
		Error string `json:"error"`
	}
	if (resp.StatusCode == http.StatusInternalServerError || resp.StatusCode == http.StatusConflict) &&
		json.Unmarshal(body, &answer) == nil && answer.Error != "" {
		return answer.Error
	}
	return fmt.Sprintf("the model server answered the reload with %s: %s", resp.Status, strings.TrimSpace(string(body)))
}

// restartInPlace writes the files and replaces the replica's server with a new process, on
// the same GPUs and the same port, then waits until the new one is READY or FAILED. A new
// server that does not come up fails the replica, as a failed start would.
func (a *Agent) restartInPlace(ctx context.Context, r *record, req agentproto.PatchRequest) error {
	a.mu.Lock()
	address, hasToken := r.Address, r.ControlToken != ""
	a.mu.Unlock()
	// A replica started by an agent that gave out no control tokens gets one now, so that
	// its next patch can be a hot reload.
	var newToken string
	if !hasToken {
		var err error
		if newToken, err = newControlToken(); err != nil {
			return err
		}
	}
	_, portText, err := net.SplitHostPort(address)
	if err != nil {
		return fmt.Errorf("replica %s: address %q: %w", r.ID, address, err)
	}
	port, err := strconv.Atoi(portText)
	if err != nil {
		return fmt.Errorf("replica %s: address %q: %w", r.ID, address, err)
	}
	if err := applyFileSet(a.packageDir(r.ID), req.Files); err != nil {
		return err
	}

	// The supervisor goes first, or it would see the old server go and fail the replica.
	a.halt(r.ID)
	a.mu.Lock()
	if !r.live() || r.State == modelplane.ReplicaStopping {
		// A stop came in meanwhile; it stops the old server.
		a.mu.Unlock()
		return &errConflict{fmt.Sprintf("replica %s is %s", r.ID, r.State)}
	}
	old := *r.Handle
	if len(req.Config) > 0 {
		r.Request.Config = req.Config
	}
	r.State, r.Error = modelplane.ReplicaStarting, ""
	r.PatchHash, r.ReloadError = req.PatchHash, ""
	if newToken != "" {
		r.ControlToken = newToken
	}
	if err := a.persistLocked(); err != nil {
		a.log.Error("writing the state file", "err", err)
	}
	// One goroutine stops the old server and starts the new one, so that a Stop, which waits
	// for it, always finds the process that runs.
	a.spawnLocked(r.ID, func(ctx context.Context) {
		rt := a.runtimeFor(r.Runtime)
		if err := rt.Stop(context.Background(), old, a.cfg.StopGrace); err != nil {
			a.fail(r, "stopping the server to restart it: "+err.Error(), nil)
			return
		}
		if ctx.Err() != nil {
			return
		}
		a.serve(ctx, r, port)
	})
	a.mu.Unlock()

	// The new server's supervisor gives up after StartTimeout; the deadline here only guards
	// against waiting forever.
	deadline := time.Now().Add(a.cfg.StopGrace + a.cfg.StartTimeout + 10*time.Second)
	for time.Now().Before(deadline) {
		a.mu.Lock()
		state := r.State
		a.mu.Unlock()
		if state != modelplane.ReplicaStarting {
			return nil
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(50 * time.Millisecond):
		}
	}
	return nil
}

// applyFileSet carries out s on the package in pkgDir; a path that is not a package path,
// or that leads outside it, is the request's fault.
func applyFileSet(pkgDir string, s patch.FileSet) error {
	err := patch.Apply(pkgDir, s)
	if errors.Is(err, patch.ErrRefused) {
		return &fieldError{"files", err.Error()}
	}
	return err
}

// newControlToken returns 32 random hex digits.
func newControlToken() (string, error) {
	var b [16]byte
	if _, err := rand.Read(b[:]); err != nil {
		return "", fmt.Errorf("making the control token: %w", err)
	}
	return hex.EncodeToString(b[:]), nil
}
