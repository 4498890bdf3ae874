package agent

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"maps"
	"net"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/modelplane/modelplane"
	"github.com/modelplane/modelplane/agent/agentproto"
	"github.com/modelplane/modelplane/agent/runtime"
	"github.com/modelplane/modelplane/internal/freeport"
	"github.com/modelplane/modelplane/modelpkg"
	"github.com/modelplane/modelplane/nvml"
	"github.com/modelplane/modelplane/runtime/python"
)

var (
	replicaIDPattern    = regexp.MustCompile(`^[a-z0-9][a-z0-9-]{0,63}$`)
	deploymentIDPattern = regexp.MustCompile(`^[a-z0-9]{1,64}$`)
	sha256Pattern       = regexp.MustCompile(`^(sha256:)?[0-9a-f]{64}$`)
	envNamePattern      = regexp.MustCompile(`^[A-Za-z_][A-Za-z0-9_]*$`)
)

// fieldError names the request field that is wrong.
type fieldError struct{ field, msg string }

func (e *fieldError) Error() string { return e.field + ": " + e.msg }

// validateStart checks a start request and returns the parsed config override, if any.
func validateStart(r *agentproto.StartRequest) (*modelpkg.Config, error) {
	switch {
	case !replicaIDPattern.MatchString(r.ReplicaID):
		return nil, &fieldError{"replica_id", "required: 1-64 lowercase letters, digits or -"}
	case !deploymentIDPattern.MatchString(r.DeploymentID):
		return nil, &fieldError{"deployment_id", "required: 1-64 lowercase letters or digits"}
	case r.ArchiveURL == "" && r.Image == "" && len(r.Config) == 0:
		return nil, &fieldError{"archive_url", "an archive_url, an image or a config with an image is required"}
	case r.ArchiveURL != "" && r.Image != "":
		return nil, &fieldError{"image", "give an archive_url or an image, not both"}
	case r.Resources.GPUCount < 0 || r.Resources.GPUCount > 16:
		return nil, &fieldError{"resources.gpu_count", "must be 0-16"}
	case r.Resources.GPUMemoryGiB < 0:
		return nil, &fieldError{"resources.gpu_memory_gib", "must not be negative"}
	case r.Resources.MIGProfile != "" && r.Resources.GPUCount > 1:
		return nil, &fieldError{"resources.mig_profile", "a MIG profile gives one slice: gpu_count must be 0 or 1"}
	}
	if r.ArchiveURL != "" {
		u, err := url.Parse(r.ArchiveURL)
		if err != nil || (u.Scheme != "http" && u.Scheme != "https" && u.Scheme != "file") {
			return nil, &fieldError{"archive_url", "must be an http, https or file URL"}
		}
		if !sha256Pattern.MatchString(r.ArchiveSHA256) {
			return nil, &fieldError{"archive_sha256", "required with archive_url: 64 lowercase hex digits"}
		}
	}
	for k := range r.Env {
		if !envNamePattern.MatchString(k) {
			return nil, &fieldError{"env", fmt.Sprintf("%q is not a valid variable name", k)}
		}
	}
	for name := range r.Secrets {
		if err := modelpkg.ValidateSecretName(name); err != nil {
			return nil, &fieldError{"secrets", err.Error()}
		}
	}
	if r.Patch != nil {
		switch {
		case r.ArchiveURL == "":
			return nil, &fieldError{"patch", "a patch changes a package's files: archive_url is required"}
		case r.Patch.PatchHash == "":
			return nil, &fieldError{"patch.patch_hash", "required: the hash of the patched package"}
		}
		if err := r.Patch.Files.Check(); err != nil {
			return nil, &fieldError{"patch.files", err.Error()}
		}
	}
	cfg, err := parseConfig(r.Config)
	if cfg == nil || err != nil {
		return nil, err
	}
	if r.ArchiveURL == "" && cfg.Runtime != "docker" {
		return nil, &fieldError{"config.runtime", "without an archive only a docker image can run"}
	}
	if r.Patch != nil && cfg.Runtime == "docker" {
		return nil, &fieldError{"patch", "a docker-runtime replica runs its image, not the package's files"}
	}
	return cfg, nil
}

// parseConfig parses a request's config override, naming the key at fault; nil when there is
// none.
func parseConfig(raw json.RawMessage) (*modelpkg.Config, error) {
	if len(raw) == 0 {
		return nil, nil
	}
	cfg, err := modelpkg.ParseConfig(raw)
	if err != nil {
		var fe *modelpkg.FieldError
		if errors.As(err, &fe) {
			return nil, &fieldError{"config." + fe.Field, fe.Message}
		}
		return nil, &fieldError{"config", err.Error()}
	}
	return &cfg, nil
}

// gpuRequest is what the replica asks of the node's GPUs: the request's resources, or a
// config override's when the request leaves them out.
func gpuRequest(r *agentproto.StartRequest, cfg *modelpkg.Config) modelplane.GPURequest {
	if r.Resources == (modelplane.GPURequest{}) && cfg != nil {
		return cfg.Resources.GPURequest
	}
	return r.Resources
}

// errConflict is a start that cannot be done: the ID is taken by another deployment, or the
// GPUs are not there.
type errConflict struct{ msg string }

func (e *errConflict) Error() string { return e.msg }

// Start registers the replica, allocates its GPUs at once (so an impossible request is
// answered at once), and starts it in the background. A second call with the same replica ID
// returns the replica as it is.
func (a *Agent) Start(req agentproto.StartRequest) (agentproto.Replica, bool, error) {
	override, err := validateStart(&req)
	if err != nil {
		return agentproto.Replica{}, false, err
	}
	runtimeName := "process"
	if req.Image != "" || (override != nil && override.Runtime == "docker") {
		runtimeName = "docker"
	}
	if a.runtimeFor(runtimeName) == nil {
		return agentproto.Replica{}, false, &fieldError{"image", "this agent runs no containers (start it with --runtime docker)"}
	}
	inv, err := a.gpus.Inventory()
	if err != nil {
		return agentproto.Replica{}, false, fmt.Errorf("reading the GPU inventory: %w", err)
	}
	var controlToken string
	if runtimeName == "process" {
		if controlToken, err = newControlToken(); err != nil {
			return agentproto.Replica{}, false, err
		}
	}

	a.mu.Lock()
	defer a.mu.Unlock()
	if r, ok := a.replicas[req.ReplicaID]; ok {
		if r.DeploymentID != req.DeploymentID {
			return agentproto.Replica{}, false, &errConflict{fmt.Sprintf("replica %s already exists for deployment %s", r.ID, r.DeploymentID)}
		}
		return r.wire(false), false, nil
	}
	uuids, err := nvml.Allocate(gpuRequest(&req, override), inv, a.assignedLocked())
	if err != nil {
		return agentproto.Replica{}, false, &errConflict{err.Error()}
	}
	var uid int
	if runtimeName == "process" && a.isolation.on() {
		if uid, err = a.allocateUIDLocked(); err != nil {
			return agentproto.Replica{}, false, &errConflict{err.Error()}
		}
	}
	// The patch's files are in the package once it is unpacked: the state file keeps only
	// its hash, or it would carry every patched file on each write.
	// Nor does it keep the secrets' values: they stay in memory.
	stored := req
	stored.Patch, stored.Secrets = nil, nil
	r := &record{
		ID: req.ReplicaID, DeploymentID: req.DeploymentID, Environment: req.Environment,
		State: modelplane.ReplicaStarting, GPUUUIDs: uuids, Runtime: runtimeName,
		CreatedAt: time.Now().UTC(), Request: stored, ControlToken: controlToken, UID: uid,
		secrets: maps.Clone(req.Secrets),
	}
	if req.Patch != nil {
		r.PatchHash = req.Patch.PatchHash
	}
	if r.GPUUUIDs == nil {
		r.GPUUUIDs = []string{}
	}
	a.replicas[r.ID] = r
	if err := a.persistLocked(); err != nil {
		delete(a.replicas, r.ID)
		return agentproto.Replica{}, false, err
	}
	a.spawnLocked(r.ID, func(ctx context.Context) { a.launch(ctx, r, req.Patch) })
	return r.wire(false), true, nil
}

// launch unpacks the replica's package, starts its server on a free port (or the fixed port
// of a custom server that picks its own), then supervises it.
func (a *Agent) launch(ctx context.Context, r *record, p *agentproto.ReplicaPatch) {
	fail := func(err error) {
		if ctx.Err() != nil {
			return
		}
		a.log.Warn("replica failed to start", "replica_id", r.ID, "deployment_id", r.DeploymentID, "err", err)
		a.fail(r, err.Error(), nil)
	}
	if err := a.unpack(ctx, r, p); err != nil {
		fail(err)
		return
	}
	cfg, err := a.config(r)
	if err != nil {
		fail(err)
		return
	}
	port, fixed := fixedPort(cfg)
	if fixed {
		err = a.claimPort(r, port)
	} else {
		port, err = a.freePort()
	}
	if err != nil {
		fail(err)
		return
	}
	a.serve(ctx, r, port)
}

// portVarPattern finds $PORT or ${PORT} in a start command.
var portVarPattern = regexp.MustCompile(`\$(PORT\b|\{PORT\})`)

// fixedPort reports the port a custom server on the host listens on by itself: a
// docker_server of the process runtime whose start_command does not take the agent's port
// from $PORT listens on its server_port. Every other replica gets a free port.
func fixedPort(cfg modelpkg.Config) (int, bool) {
	ds := cfg.DockerServer
	if ds == nil || cfg.Runtime != modelpkg.RuntimeProcess || portVarPattern.MatchString(ds.StartCommand) {
		return 0, false
	}
	return ds.ServerPort, true
}

// claimPort checks that a fixed port is free on this node, before the server is started, so
// that a second replica of a server with a fixed port fails at once with the reason instead
// of timing out on its health check (or, worse, passing it on the first replica's server).
func (a *Agent) claimPort(r *record, port int) error {
	addr := net.JoinHostPort(a.cfg.ReplicaHost, strconv.Itoa(port))
	hint := "write $PORT in docker_server.start_command so that the agent gives each replica a port of its own"
	a.mu.Lock()
	defer a.mu.Unlock()
	for _, o := range a.replicas {
		if o != r && o.live() && o.Address == addr {
			return fmt.Errorf("docker_server.server_port %d is taken on this node by replica %s: %s", port, o.ID, hint)
		}
	}
	// Listening on every address fails whichever address the other server bound.
	ln, err := net.Listen("tcp", fmt.Sprintf(":%d", port))
	if err != nil {
		return fmt.Errorf("docker_server.server_port %d is taken on this node: %s", port, hint)
	}
	ln.Close()
	// Held from now on, so that a replica started meanwhile sees it taken.
	r.Address = addr
	return nil
}

// freePort picks a port for a replica's server: free on the loopback, as freeport checks,
// and on the replica host, where the server listens.
func (a *Agent) freePort() (int, error) {
	for try := 0; ; try++ {
		port, err := freeport.One()
		if err != nil || a.cfg.ReplicaHost == runtime.DefaultHost {
			return port, err
		}
		ln, err := net.Listen("tcp", net.JoinHostPort(a.cfg.ReplicaHost, strconv.Itoa(port)))
		if err == nil {
			ln.Close()
			return port, nil
		}
		if try == 20 {
			return 0, fmt.Errorf("no free port found on the replica host %s: %w", a.cfg.ReplicaHost, err)
		}
	}
}

// serve starts the replica's server from the package already in its directory, on port, then
// supervises it. A restart in place comes here too, with the port the replica had; so does a
// replica whose liveness check failed for longer than its restart threshold.
//
// The requirements' environment is found (or built) here rather than at the first start, so
// that a restart after a patch that changed the requirements runs on an environment of them.
func (a *Agent) serve(ctx context.Context, r *record, port int) {
	log := a.log.With("replica_id", r.ID, "deployment_id", r.DeploymentID)
	for {
		envDir, err := a.replicaEnv(ctx, r)
		if err != nil {
			if ctx.Err() == nil {
				log.Warn("replica failed to start", "err", err)
				a.fail(r, err.Error(), nil)
			}
			return
		}
		a.mu.Lock()
		r.EnvDir = envDir
		a.mu.Unlock()
		spec, cfg, err := a.spec(r, port)
		if err != nil {
			if ctx.Err() != nil {
				return
			}
			log.Warn("replica failed to start", "err", err)
			a.fail(r, err.Error(), nil)
			return
		}
		if err := a.prepareReplicaDir(r); err != nil {
			a.fail(r, "preparing the replica's directory: "+err.Error(), nil)
			return
		}
		if spec.Prewarm != nil && spec.UID != 0 {
			a.mu.Lock()
			first := r.Handle == nil
			a.mu.Unlock()
			if first {
				// A warm spare's user becomes the replica's.
				spec.Prewarm.Users = spareUsers{a: a, r: r}
			} else {
				// Its home holds what its user wrote: a restart runs as the same user.
				spec.Prewarm = nil
			}
		}
		rt := a.runtimeFor(r.Runtime)
		if ctx.Err() != nil {
			return
		}
		h, err := rt.Start(ctx, spec)
		if err != nil {
			a.fail(r, "starting the server: "+err.Error(), nil)
			return
		}
		// The handle is recorded even when a stop arrived meanwhile: the stop, which waits for
		// this goroutine, then finds the process to stop.
		a.mu.Lock()
		r.Handle, r.Address = &h, h.Address
		r.HealthPath, r.PredictPath = cfg.HealthPath, cfg.PredictPath
		r.LivenessPath, r.WebsocketPath = livenessPath(cfg), websocketPath(cfg)
		r.Checks = healthChecks(cfg)
		if err := a.persistLocked(); err != nil {
			log.Error("writing the state file", "err", err)
		}
		a.mu.Unlock()
		if ctx.Err() != nil {
			return
		}
		log.Info("replica server started", "address", h.Address, "gpus", strings.Join(r.GPUUUIDs, ","))
		if !a.supervise(ctx, r, false) || !a.restartUnhealthy(ctx, r) {
			return
		}
	}
}

// restartUnhealthy stops a replica whose liveness check failed for too long, so that serve
// starts it again on the same port and GPUs; false when it cannot go on.
func (a *Agent) restartUnhealthy(ctx context.Context, r *record) bool {
	a.mu.Lock()
	h, threshold := *r.Handle, r.Checks.RestartThreshold
	r.Restarts++
	count := r.Restarts
	a.mu.Unlock()
	a.setState(r, modelplane.ReplicaStarting, fmt.Sprintf("restarting: the liveness check failed for %s", threshold))
	a.log.Warn("restarting replica: liveness check failing", "replica_id", r.ID, "deployment_id", r.DeploymentID,
		"liveness_path", r.LivenessPath, "threshold", threshold, "restarts", count)
	if err := a.runtimeFor(r.Runtime).Stop(context.Background(), h, a.cfg.StopGrace); err != nil {
		a.fail(r, "stopping the server to restart it: "+err.Error(), nil)
		return false
	}
	return ctx.Err() == nil
}

func (a *Agent) replicaDir(id string) string { return filepath.Join(a.cfg.StateDir, "replicas", id) }
func (a *Agent) packageDir(id string) string { return filepath.Join(a.replicaDir(id), "pkg") }
func (a *Agent) secretsDir(id string) string { return filepath.Join(a.replicaDir(id), "secrets") }

// unpack fetches the replica's package into its package directory and applies the patch the
// replica starts with. An image replica has no package: its directory stays empty.
func (a *Agent) unpack(ctx context.Context, r *record, p *agentproto.ReplicaPatch) error {
	req := r.Request
	pkgDir := a.packageDir(r.ID)
	if err := os.RemoveAll(pkgDir); err != nil {
		return err
	}
	if err := os.MkdirAll(pkgDir, 0o755); err != nil {
		return err
	}
	if req.ArchiveURL == "" {
		return nil
	}
	body, err := a.openArchive(ctx, req.ArchiveURL)
	if err != nil {
		return fmt.Errorf("fetching the archive: %w", err)
	}
	_, err = modelpkg.Extract(body, req.ArchiveSHA256, pkgDir)
	body.Close()
	if err != nil {
		_ = os.RemoveAll(pkgDir)
		return fmt.Errorf("unpacking the archive: %w", err)
	}
	if p != nil {
		if err := applyFileSet(pkgDir, p.Files); err != nil {
			return fmt.Errorf("applying patch %s: %w", p.PatchHash, err)
		}
	}
	return nil
}

// spec builds the runtime spec from the package as it lies in the replica's directory, so that
// a restart in place sees the patched files without fetching anything. The package's
// config.yaml is read again for the same reason; the request's config overrides it.
func (a *Agent) spec(r *record, port int) (runtime.Spec, modelpkg.Config, error) {
	a.mu.Lock()
	req, gpus, controlToken, held, envDir, uid := r.Request, r.GPUUUIDs, r.ControlToken, r.secrets, r.EnvDir, r.UID
	a.mu.Unlock()
	dir, pkgDir := a.replicaDir(r.ID), a.packageDir(r.ID)
	cfg, err := a.config(r)
	if err != nil {
		return runtime.Spec{}, cfg, err
	}
	env := map[string]string{}
	for k, v := range cfg.EnvironmentVariables {
		env[k] = v
	}
	for k, v := range req.Env {
		env[k] = v
	}
	secrets, err := namedSecrets(cfg, held)
	if err != nil {
		return runtime.Spec{}, cfg, err
	}
	spec := runtime.Spec{
		ReplicaID: r.ID, DeploymentID: r.DeploymentID, Environment: r.Environment,
		Dir: dir, PackageDir: pkgDir, Image: cfg.Image, Env: env, GPUUUIDs: gpus,
		Port: port, Host: a.cfg.ReplicaHost, HealthPath: cfg.HealthPath, UID: uid,
	}
	if uid != 0 {
		// A replica user has no home of the agent's: it writes in its own directories only.
		env["HOME"], env["TMPDIR"] = filepath.Join(dir, "home"), filepath.Join(dir, "tmp")
	}
	if len(secrets) > 0 {
		if spec.SecretsDir, err = writeSecrets(a.secretsDir(r.ID), secrets, cfg.Runtime == "docker"); err != nil {
			return spec, cfg, fmt.Errorf("writing the secrets: %w", err)
		}
	}
	switch cfg.Runtime {
	case "python":
		server, err := python.WriteServer(dir)
		if err != nil {
			return spec, cfg, err
		}
		// The model's config dict and its secrets travel in the environment.
		pyEnv, err := python.Env(cfg, secrets)
		if err != nil {
			return spec, cfg, err
		}
		for k, v := range pyEnv {
			spec.Env[k] = v
		}
		spec.Command = python.Command(server, pkgDir)
		switch {
		case envDir != "":
			spec.Command[0] = filepath.Join(envDir, "bin", "python")
		case cfg.Interpreter() != "":
			spec.Command[0] = cfg.Interpreter()
		}
	case "process":
		spec.Command = cfg.Command
	}
	if ds := cfg.DockerServer; ds != nil {
		// A custom server: its start_command runs in the package directory (process
		// runtime) or in its base image, in place of the image's entrypoint (docker runtime).
		// no_build runs the image as it is.
		if ds.StartCommand != "" && !(ds.NoBuild && cfg.Runtime == modelpkg.RuntimeDocker) {
			spec.Command = []string{"/bin/sh", "-c", ds.StartCommand}
			if cfg.Runtime == modelpkg.RuntimeDocker {
				// Truss builds the package's files into the image at /app; nothing is built
				// here, so the package is mounted there.
				spec.PackageMount = TrussAppDir
			}
		}
		if cfg.Runtime == modelpkg.RuntimeDocker {
			spec.ContainerPort = ds.ServerPort
			if ds.RunAsUserID != nil {
				spec.User = strconv.Itoa(*ds.RunAsUserID)
			}
		}
	}
	path := os.Getenv("PATH")
	if uid != 0 {
		path = a.isolation.path
		spec.Env["PATH"] = path
		if len(spec.Command) > 0 {
			spec.Command[0] = a.isolation.resolve(spec.Command[0])
		}
	}
	if envDir != "" && cfg.Runtime != "docker" {
		// A process finds the environment's python and scripts first, as an activated
		// virtual environment would have it.
		spec.Env["VIRTUAL_ENV"] = envDir
		spec.Env["PATH"] = filepath.Join(envDir, "bin") + string(os.PathListSeparator) + path
	}
	if controlToken != "" {
		spec.Env[python.EnvControlToken] = controlToken
	}
	if cfg.Runtime == modelpkg.RuntimePython && a.cfg.PythonPrewarm && len(spec.Command) > 2 {
		spec.Prewarm = a.prewarm(spec, cfg)
	}
	return spec, cfg, nil
}

// prewarm is how spec's Truss model may start from its Python environment's fork server:
// one per interpreter (an environment's own python, or the system's), in the agent's private
// prewarm directory. The fork server gets the environment's VIRTUAL_ENV and PATH, nothing of
// the replica's: the forked child receives the rest itself.
func (a *Agent) prewarm(spec runtime.Spec, cfg modelpkg.Config) *runtime.Prewarm {
	sum := sha256.Sum256([]byte(spec.Command[0]))
	env := map[string]string{}
	for _, k := range []string{"VIRTUAL_ENV", "PATH"} {
		if v, ok := spec.Env[k]; ok {
			env[k] = v
		}
	}
	return &runtime.Prewarm{
		Dir:  filepath.Join(a.cfg.StateDir, "prewarm", hex.EncodeToString(sum[:6])),
		Argv: spec.Command[2:], Env: env, Imports: cfg.RuntimeSettings.PrewarmImports,
	}
}

// config is the replica's config: its package's config.yaml as it lies in the replica's
// directory, or the request's config, which overrides it.
func (a *Agent) config(r *record) (modelpkg.Config, error) {
	a.mu.Lock()
	req := r.Request
	a.mu.Unlock()
	return replicaConfig(req, a.packageDir(r.ID))
}

// replicaConfig is the config a start request runs: the package's config.yaml in pkgDir, or
// the request's config in its place; an image request runs that image.
func replicaConfig(req agentproto.StartRequest, pkgDir string) (modelpkg.Config, error) {
	var cfg modelpkg.Config
	if req.ArchiveURL != "" {
		c, err := modelpkg.ReadConfig(pkgDir)
		if err != nil {
			return cfg, fmt.Errorf("reading the package's config: %w", err)
		}
		cfg = c
	}
	if len(req.Config) > 0 {
		c, err := modelpkg.ParseConfig(req.Config)
		if err != nil {
			return cfg, fmt.Errorf("config: %w", err)
		}
		cfg = c
	}
	if req.Image != "" {
		cfg.Runtime, cfg.Image = "docker", req.Image
		if cfg.HealthPath == "" {
			cfg.HealthPath, cfg.PredictPath = "/health", "/predict"
		}
	}
	return cfg, nil
}

// openArchive opens a package by URL. The node token goes only to the control plane.
func (a *Agent) openArchive(ctx context.Context, raw string) (io.ReadCloser, error) {
	u, err := url.Parse(raw)
	if err != nil {
		return nil, err
	}
	if u.Scheme == "file" {
		return os.Open(u.Path)
	}
	api := strings.TrimSuffix(a.cfg.APIURL, "/")
	if api != "" && strings.HasPrefix(u.Path, agentproto.ArchivePath) && (u.Scheme == "http" || u.Scheme == "https") {
		// A control-plane archive: from this node's own API, which serves them all.
		raw = api + u.EscapedPath()
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, raw, nil)
	if err != nil {
		return nil, err
	}
	if api != "" && strings.HasPrefix(raw, api+"/") {
		req.Header.Set("Authorization", "Bearer "+a.cfg.Token)
		req.Header.Set(agentproto.NodeNameHeader, a.cfg.Name)
		req.Header.Set(agentproto.AgentIDHeader, a.agentID)
	}
	resp, err := a.download.Do(req)
	if err != nil {
		return nil, err
	}
	if resp.StatusCode != http.StatusOK {
		resp.Body.Close()
		return nil, fmt.Errorf("GET %s: %s", raw, resp.Status)
	}
	return resp.Body, nil
}

// probeHealth GETs the health URL and returns the status (0 when unreachable) and the start of
// the body, which a model server uses to say why it is not ready.
func probeHealth(ctx context.Context, c *http.Client, u string) (int, string) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, u, nil)
	if err != nil {
		return 0, ""
	}
	resp, err := c.Do(req)
	if err != nil {
		return 0, ""
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(io.LimitReader(resp.Body, 2048))
	_, _ = io.Copy(io.Discard, io.LimitReader(resp.Body, 64<<10))
	return resp.StatusCode, strings.TrimSpace(string(body))
}

// Stop stops a replica gracefully and frees its GPUs. Stopping a stopped replica answers it as
// it is; an unknown one is agentproto.ErrUnknownReplica.
func (a *Agent) Stop(id string, grace time.Duration) (agentproto.Replica, error) {
	a.mu.Lock()
	r, ok := a.replicas[id]
	if !ok {
		a.mu.Unlock()
		return agentproto.Replica{}, agentproto.ErrUnknownReplica
	}
	if !r.live() {
		c := r.wire(false)
		a.mu.Unlock()
		return c, nil
	}
	r.State = modelplane.ReplicaStopping
	if err := a.persistLocked(); err != nil {
		a.log.Error("writing the state file", "err", err)
	}
	a.mu.Unlock()
	a.halt(id)
	a.stop(r, grace)
	rep, _ := a.view(id)
	return rep, nil
}

func (a *Agent) goStop(r *record, grace time.Duration) {
	a.wg.Add(1)
	go func() {
		defer a.wg.Done()
		a.stop(r, grace)
	}()
}

func (a *Agent) stop(r *record, grace time.Duration) {
	a.mu.Lock()
	h := r.Handle
	a.mu.Unlock()
	if h != nil {
		if rt := a.runtimeFor(r.Runtime); rt != nil {
			if err := rt.Stop(context.Background(), *h, grace); err != nil {
				a.log.Error("stopping replica", "replica_id", r.ID, "err", err)
			}
		}
	}
	// The package and the secrets are not needed any more; the logs stay for inspection.
	_ = os.RemoveAll(a.packageDir(r.ID))
	_ = os.RemoveAll(a.secretsDir(r.ID))
	a.mu.Lock()
	now := time.Now().UTC()
	r.State, r.StoppedAt = modelplane.ReplicaStopped, &now
	if err := a.persistLocked(); err != nil {
		a.log.Error("writing the state file", "err", err)
	}
	a.mu.Unlock()
	a.log.Info("replica stopped", "replica_id", r.ID)
}

// rotateLoop forgets replicas stopped more than an hour ago, and their files with them. Their
// logs are rotated by followLoop, which reads them.
func (a *Agent) rotateLoop(ctx context.Context) {
	t := time.NewTicker(30 * time.Second)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		a.mu.Lock()
		changed := false
		for id, r := range a.replicas {
			if !r.live() && r.StoppedAt != nil && time.Since(*r.StoppedAt) > time.Hour {
				delete(a.replicas, id)
				delete(a.patchLocks, id)
				_ = os.RemoveAll(a.replicaDir(id))
				changed = true
			}
		}
		if changed {
			_ = a.persistLocked()
		}
		a.mu.Unlock()
	}
}

// StopAll stops every live replica, in parallel, each with grace. The agent does this only
// when its replicas must not outlive it (the dev stack); a production agent leaves them
// running across its own restarts.
func (a *Agent) StopAll(grace time.Duration) {
	a.mu.Lock()
	var ids []string
	for id, r := range a.replicas {
		if r.live() {
			ids = append(ids, id)
		}
	}
	a.mu.Unlock()
	var wg sync.WaitGroup
	for _, id := range ids {
		wg.Add(1)
		go func() {
			defer wg.Done()
			_, _ = a.Stop(id, grace)
		}()
	}
	wg.Wait()
}
