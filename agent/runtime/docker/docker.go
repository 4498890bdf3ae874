// Package docker runs replicas as containers, speaking the Docker Engine API (JSON over HTTP
// on the engine's unix socket) directly rather than through the Docker SDK.
//
// Every container is named mp-<replica id> and labelled with its replica, deployment, GPUs and
// the agent that started it: the name makes Start idempotent, the replica label lets Adopt
// recognise a container after an agent restart, and the agent label lets Orphans find what
// this agent started and no longer knows. GPUs are passed as CDI device requests
// (nvidia.com/gpu=<uuid>), which needs an engine with CDI enabled and a CDI spec on the host
// that names GPUs (and MIG instances) by UUID.
package docker

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"math"
	"net"
	"net/http"
	"net/url"
	"os"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/modelplane/modelplane/agent/runtime"
)

const (
	// DefaultSocket is where the engine listens unless Options.Socket says otherwise.
	DefaultSocket = "/var/run/docker.sock"
	// DefaultAPIVersion is the Engine API version requested unless Options.APIVersion says
	// otherwise: v1.41 is Docker 20.10, the engine Debian 12 ships, and every later engine
	// still serves it. Nothing the runtime asks for needs a newer one (device requests, CDI
	// included, are fields of v1.40).
	DefaultAPIVersion = "v1.41"
	// ContainerPort is the port the model server listens on inside the container unless
	// Spec.ContainerPort names another; it is passed as PORT and published on
	// <Spec.Host>:<Spec.Port> (127.0.0.1 unless the agent has a --replica-host).
	ContainerPort = 8080

	// Labels put on every container this runtime creates.
	LabelReplica    = "modelplane.replica"
	LabelDeployment = "modelplane.deployment"
	LabelGPUs       = "modelplane.gpus" // comma-joined GPU UUIDs, empty when none
	LabelAgent      = "modelplane.agent"

	// NamePrefix precedes the replica ID in container names.
	NamePrefix = "mp-"

	runtimeName = "docker"
)

// containerPort is the port spec's server listens on inside its container.
func containerPort(spec runtime.Spec) int {
	if spec.ContainerPort > 0 {
		return spec.ContainerPort
	}
	return ContainerPort
}

// portKey is a container port as the Engine API names it in port maps.
func portKey(port int) string { return strconv.Itoa(port) + "/tcp" }

// Options configure a Runtime. The zero value talks to the default socket.
type Options struct {
	// Socket is the engine's unix socket; DefaultSocket when empty.
	Socket string
	// APIVersion prefixes every request path; DefaultAPIVersion when empty.
	APIVersion string
	// AgentID is the value of the modelplane.agent label: it marks the containers this agent
	// owns, and Orphans refuses to run without it.
	AgentID string
	// Logger receives the runtime's logs; discarded when nil.
	Logger *slog.Logger
	// HTTPClient replaces the socket client (tests); when nil, requests dial Socket.
	HTTPClient *http.Client
	// BaseURL replaces the engine's address (tests, e.g. an httptest server's URL); when
	// empty, "http://docker", whose host part is ignored because the client dials Socket.
	BaseURL string
}

// Runtime runs replicas as Docker containers. It keeps no state of its own, so it is safe for
// concurrent use and survives agent restarts: the engine is the source of truth.
type Runtime struct {
	engine  *engine
	agentID string
	log     *slog.Logger
}

var _ runtime.Runtime = (*Runtime)(nil)

// New returns a Runtime talking to the engine described by opts. It does not contact the
// engine; see Available.
func New(opts Options) *Runtime {
	log := opts.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	return &Runtime{engine: newEngine(opts), agentID: opts.AgentID, log: log}
}

// Available reports whether socket (DefaultSocket when empty) is a unix socket whose engine
// answers GET /_ping, so that the agent can offer the docker runtime only where it works.
func Available(socket string) bool {
	if socket == "" {
		socket = DefaultSocket
	}
	fi, err := os.Stat(socket)
	if err != nil || fi.Mode()&os.ModeSocket == 0 {
		return false
	}
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Second)
	defer cancel()
	return newEngine(Options{Socket: socket}).ping(ctx) == nil
}

// Name is "docker".
func (r *Runtime) Name() string { return runtimeName }

// ContainerName is the name of the container that runs a replica.
func ContainerName(replicaID string) string { return NamePrefix + replicaID }

// Start creates and starts the replica's container, pulling its image first if the engine
// lacks it. Starting a replica whose container already exists reuses that container.
func (r *Runtime) Start(ctx context.Context, spec runtime.Spec) (runtime.Handle, error) {
	switch {
	case spec.ReplicaID == "":
		return runtime.Handle{}, errors.New("docker: spec has no replica ID")
	case spec.Image == "":
		return runtime.Handle{}, fmt.Errorf("docker: replica %s: spec has no image", spec.ReplicaID)
	case spec.Port <= 0 || spec.Port > 65535:
		return runtime.Handle{}, fmt.Errorf("docker: replica %s: host port %d out of range", spec.ReplicaID, spec.Port)
	}
	log := r.log.With("replica_id", spec.ReplicaID, "deployment_id", spec.DeploymentID)
	name := ContainerName(spec.ReplicaID)
	id, created, err := r.create(ctx, log, name, spec)
	if err != nil {
		return runtime.Handle{}, err
	}
	path := "/containers/" + url.PathEscape(id) + "/start"
	if err := r.engine.do(ctx, http.MethodPost, path, nil, nil, nil); err != nil && statusCode(err) != http.StatusNotModified {
		if created {
			// A container that never started would block the name for the next attempt and
			// lingers unseen by Orphans, which lists running containers only.
			rctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 30*time.Second)
			_ = r.remove(rctx, log, id)
			cancel()
		}
		return runtime.Handle{}, fmt.Errorf("docker: start replica %s: %w", spec.ReplicaID, err)
	}
	log.Info("container started", "container_id", id, "image", spec.Image, "gpus", strings.Join(spec.GPUUUIDs, ","))
	return runtime.Handle{
		ReplicaID:   spec.ReplicaID,
		Runtime:     runtimeName,
		ContainerID: id,
		Address:     net.JoinHostPort(runtime.HostOf(spec), strconv.Itoa(spec.Port)),
	}, nil
}

// create creates the container, or finds the one a previous Start of the same replica left.
// created is false when an existing container is reused.
func (r *Runtime) create(ctx context.Context, log *slog.Logger, name string, spec runtime.Spec) (id string, created bool, err error) {
	body := r.createRequest(log, spec)
	q := url.Values{"name": {name}}
	var resp createResponse
	err = r.engine.do(ctx, http.MethodPost, "/containers/create", q, body, &resp)
	if statusCode(err) == http.StatusNotFound {
		// The only 404 of create is "No such image": pull, then try once more.
		log.Info("pulling image", "image", spec.Image)
		if perr := r.engine.pull(ctx, spec.Image); perr != nil {
			return "", false, fmt.Errorf("docker: replica %s: %w", spec.ReplicaID, perr)
		}
		err = r.engine.do(ctx, http.MethodPost, "/containers/create", q, body, &resp)
	}
	switch {
	case err == nil:
		for _, w := range resp.Warnings {
			log.Warn("engine warning on create", "container_id", resp.ID, "warning", w)
		}
		return resp.ID, true, nil
	case statusCode(err) == http.StatusConflict:
		return r.reuse(ctx, log, name, spec)
	default:
		return "", false, fmt.Errorf("docker: create replica %s: %w", spec.ReplicaID, err)
	}
}

// reuse accepts an existing container of the replica's name if it is that replica's.
func (r *Runtime) reuse(ctx context.Context, log *slog.Logger, name string, spec runtime.Spec) (string, bool, error) {
	c, err := r.inspect(ctx, name)
	if err != nil {
		return "", false, fmt.Errorf("docker: replica %s: container %s exists but cannot be inspected: %w", spec.ReplicaID, name, err)
	}
	if got := c.Config.Labels[LabelReplica]; got != spec.ReplicaID {
		return "", false, fmt.Errorf("docker: replica %s: container name %s is taken by container %s labelled %s=%q", spec.ReplicaID, name, shortID(c.ID), LabelReplica, got)
	}
	// A container from an earlier spec that publishes another port, or on another address
	// (an agent restarted with another --replica-host), would leave the agent probing an
	// address nothing listens on.
	want := net.JoinHostPort(runtime.HostOf(spec), strconv.Itoa(spec.Port))
	bindings := c.HostConfig.PortBindings[portKey(containerPort(spec))]
	if len(bindings) == 0 || bindings[0].HostPort != strconv.Itoa(spec.Port) {
		got := ""
		if len(bindings) > 0 {
			got = bindings[0].HostPort
		}
		return "", false, fmt.Errorf("docker: replica %s: existing container %s publishes port %q, spec asks for %d; stop it first", spec.ReplicaID, shortID(c.ID), got, spec.Port)
	}
	if got := net.JoinHostPort(publishedHost(bindings[0].HostIP), bindings[0].HostPort); got != want {
		return "", false, fmt.Errorf("docker: replica %s: existing container %s publishes %s, spec asks for %s; stop it first", spec.ReplicaID, shortID(c.ID), got, want)
	}
	log.Info("reusing existing container", "container_id", c.ID, "state", c.State.Status)
	return c.ID, false, nil
}

// reservedEnv are the variables the runtime sets itself; the spec's own values are dropped.
var reservedEnv = map[string]bool{
	"PORT":                     true,
	"MODELPLANE_ENVIRONMENT":   true,
	"MODELPLANE_DEPLOYMENT_ID": true,
	"NVIDIA_VISIBLE_DEVICES":   true,
	"CUDA_VISIBLE_DEVICES":     true,
}

// PidsLimit is how many processes and threads a model container may have at once.
const PidsLimit = 4096

func (r *Runtime) createRequest(log *slog.Logger, spec runtime.Spec) createRequest {
	keys := make([]string, 0, len(spec.Env))
	for k := range spec.Env {
		if reservedEnv[k] {
			log.Warn("package environment variable overridden by the runtime", "variable", k)
			continue
		}
		keys = append(keys, k)
	}
	sort.Strings(keys)
	env := make([]string, 0, len(keys)+5)
	for _, k := range keys {
		env = append(env, k+"="+spec.Env[k])
	}
	gpus := strings.Join(spec.GPUUUIDs, ",")
	env = append(env,
		"PORT="+strconv.Itoa(containerPort(spec)),
		"MODELPLANE_ENVIRONMENT="+spec.Environment,
		"MODELPLANE_DEPLOYMENT_ID="+spec.DeploymentID,
	)
	key := portKey(containerPort(spec))
	req := createRequest{
		Image: spec.Image,
		User:  spec.User,
		Labels: map[string]string{
			LabelReplica:    spec.ReplicaID,
			LabelDeployment: spec.DeploymentID,
			LabelGPUs:       gpus,
			LabelAgent:      r.agentID,
		},
		ExposedPorts: map[string]struct{}{key: {}},
		HostConfig: hostConfig{
			PortBindings: map[string][]portBinding{
				// Reached by gateways at this address only: never every address of the
				// host, which an empty HostIp would publish on.
				key: {{HostIP: runtime.HostOf(spec), HostPort: strconv.Itoa(spec.Port)}},
			},
			// The agent decides whether a dead replica comes back, not the engine.
			RestartPolicy: restartPolicy{Name: "no"},
			// Model code is not trusted: no capabilities, no gaining privileges through setuid
			// binaries, never privileged, and a bound on processes against fork bombs. The root
			// filesystem stays writable, since many images (vLLM's among them) write caches
			// into it; the only host paths mounted are the replica's own, read-only.
			CapDrop:     []string{"ALL"},
			SecurityOpt: []string{"no-new-privileges"},
			PidsLimit:   PidsLimit,
			Privileged:  false,
		},
	}
	if len(spec.GPUUUIDs) == 0 {
		// CUDA base images set NVIDIA_VISIBLE_DEVICES=all; on a host whose default runtime is
		// nvidia that would hand every GPU to a replica that was given none.
		env = append(env, "NVIDIA_VISIBLE_DEVICES=void")
	} else {
		env = append(env, "NVIDIA_VISIBLE_DEVICES="+gpus, "CUDA_VISIBLE_DEVICES="+gpus)
		ids := make([]string, len(spec.GPUUUIDs))
		for i, u := range spec.GPUUUIDs {
			ids[i] = "nvidia.com/gpu=" + u
		}
		req.HostConfig.DeviceRequests = []deviceRequest{{Driver: "cdi", DeviceIDs: ids}}
	}
	if spec.SecretsDir != "" {
		// As Truss and Baseten deliver them: one read-only file per secret under /secrets.
		req.HostConfig.Binds = []string{spec.SecretsDir + ":" + runtime.SecretsMountPath + ":ro"}
	}
	if spec.PackageMount != "" && spec.PackageDir != "" {
		req.HostConfig.Binds = append(req.HostConfig.Binds, spec.PackageDir+":"+spec.PackageMount+":ro")
		req.WorkingDir = spec.PackageMount
	}
	if len(spec.Command) > 0 {
		// The spec's command replaces the image's entrypoint and command both, as a Truss
		// docker_server's start_command does: an image whose entrypoint starts its own
		// server (vLLM's does) would otherwise take the command for its arguments.
		req.Entrypoint, req.Cmd = spec.Command[:1], spec.Command[1:]
	}
	req.Env = env
	return req
}

// Status reports the container's state; for a container that ran and ended, with its exit
// code and last log lines.
func (r *Runtime) Status(ctx context.Context, h runtime.Handle) (runtime.Status, error) {
	c, err := r.inspect(ctx, containerRef(h))
	if statusCode(err) == http.StatusNotFound {
		return runtime.Status{}, runtime.ErrNotFound
	}
	if err != nil {
		return runtime.Status{}, fmt.Errorf("docker: status of replica %s: %w", h.ReplicaID, err)
	}
	st := runtime.Status{Running: c.State.Running}
	if st.Running {
		return st, nil
	}
	var why []string
	if c.State.OOMKilled {
		why = append(why, "killed by the kernel: out of memory")
	}
	if c.State.Error != "" {
		why = append(why, c.State.Error)
	}
	switch c.State.Status {
	case "exited", "dead":
		code := c.State.ExitCode
		st.ExitCode = &code
		st.LogTail = r.logTail(ctx, c)
	case "created":
		why = append(why, "container was created but never started")
	case "removing":
		why = append(why, "container is being removed")
	}
	st.Error = strings.Join(why, "; ")
	return st, nil
}

// logTail fetches the last lines a dead container wrote. It is best effort: a log driver that
// cannot be read back (syslog, none) must not hide the exit code.
func (r *Runtime) logTail(ctx context.Context, c containerInspect) []string {
	q := url.Values{"stdout": {"1"}, "stderr": {"1"}, "tail": {strconv.Itoa(logTailLines)}}
	resp, err := r.engine.open(ctx, http.MethodGet, "/containers/"+url.PathEscape(c.ID)+"/logs", q, nil, true)
	if err != nil {
		r.log.Warn("cannot read container logs", "container_id", c.ID, "error", err)
		return nil
	}
	defer resp.Body.Close()
	var lines []string
	if c.Config.Tty {
		lines, err = rawTail(resp.Body, logTailLines)
	} else {
		lines, err = demuxTail(resp.Body, logTailLines)
	}
	if err != nil {
		r.log.Warn("container logs cut short", "container_id", c.ID, "error", err)
	}
	return lines
}

// Stop stops the container, letting the engine send its stop signal (SIGTERM unless the image
// says otherwise) and SIGKILL after grace, then removes it with its anonymous volumes.
func (r *Runtime) Stop(ctx context.Context, h runtime.Handle, grace time.Duration) error {
	ref := containerRef(h)
	secs := int(math.Ceil(grace.Seconds()))
	if secs < 0 {
		secs = 0
	}
	q := url.Values{"t": {strconv.Itoa(secs)}}
	err := r.engine.do(ctx, http.MethodPost, "/containers/"+url.PathEscape(ref)+"/stop", q, nil, nil)
	switch statusCode(err) {
	case http.StatusNotFound:
		return nil
	case http.StatusNotModified: // already stopped
	default:
		if err != nil {
			return fmt.Errorf("docker: stop replica %s: %w", h.ReplicaID, err)
		}
	}
	log := r.log.With("replica_id", h.ReplicaID, "container_id", ref)
	if err := r.remove(ctx, log, ref); err != nil {
		return fmt.Errorf("docker: remove replica %s: %w", h.ReplicaID, err)
	}
	log.Info("container stopped and removed", "grace_s", secs)
	return nil
}

// remove force-removes a container; one already gone, or already being removed, is fine.
func (r *Runtime) remove(ctx context.Context, log *slog.Logger, ref string) error {
	q := url.Values{"force": {"1"}, "v": {"1"}}
	err := r.engine.do(ctx, http.MethodDelete, "/containers/"+url.PathEscape(ref), q, nil, nil)
	switch code := statusCode(err); {
	case err == nil, code == http.StatusNotFound:
		return nil
	case code == http.StatusConflict && strings.Contains(err.Error(), "already in progress"):
		return nil
	default:
		log.Warn("cannot remove container", "container_id", ref, "error", err)
		return err
	}
}

// Adopt reports whether h's container still exists, runs, and is labelled as h's replica.
func (r *Runtime) Adopt(ctx context.Context, h runtime.Handle) (bool, error) {
	c, err := r.inspect(ctx, containerRef(h))
	if statusCode(err) == http.StatusNotFound {
		return false, nil
	}
	if err != nil {
		return false, fmt.Errorf("docker: adopt replica %s: %w", h.ReplicaID, err)
	}
	return c.State.Running && c.Config.Labels[LabelReplica] == h.ReplicaID, nil
}

// Orphans lists the running containers labelled with this agent's ID whose replica is not in
// known, sorted by replica ID.
func (r *Runtime) Orphans(ctx context.Context, known map[string]bool) ([]runtime.Handle, error) {
	if r.agentID == "" {
		// Without an agent label to filter on, every modelplane container on the host would
		// look like ours, including those of another agent sharing the engine.
		return nil, errors.New("docker: orphans: Options.AgentID is empty")
	}
	filters, err := json.Marshal(map[string][]string{"label": {LabelAgent + "=" + r.agentID}})
	if err != nil {
		return nil, fmt.Errorf("docker: orphans: %w", err)
	}
	var list []containerSummary
	if err := r.engine.do(ctx, http.MethodGet, "/containers/json", url.Values{"filters": {string(filters)}}, nil, &list); err != nil {
		return nil, fmt.Errorf("docker: list containers: %w", err)
	}
	var out []runtime.Handle
	for _, c := range list {
		id := c.Labels[LabelReplica]
		if known[id] {
			continue
		}
		h := runtime.Handle{ReplicaID: id, Runtime: runtimeName, ContainerID: c.ID}
		for _, p := range c.Ports {
			// The one port the runtime publishes, whichever container port it maps.
			if p.Type == "tcp" && p.PublicPort != 0 {
				h.Address = net.JoinHostPort(publishedHost(p.IP), strconv.Itoa(p.PublicPort))
				break
			}
		}
		out = append(out, h)
	}
	sort.Slice(out, func(i, j int) bool {
		if out[i].ReplicaID != out[j].ReplicaID {
			return out[i].ReplicaID < out[j].ReplicaID
		}
		return out[i].ContainerID < out[j].ContainerID
	})
	return out, nil
}

// publishedHost is the address a client reaches a port the engine published on ip at: ip
// itself, or the loopback for a port published on every address (empty, 0.0.0.0 or ::).
func publishedHost(ip string) string {
	switch ip {
	case "", "0.0.0.0", "::":
		return runtime.DefaultHost
	}
	return ip
}

func (r *Runtime) inspect(ctx context.Context, ref string) (containerInspect, error) {
	var c containerInspect
	err := r.engine.do(ctx, http.MethodGet, "/containers/"+url.PathEscape(ref)+"/json", nil, nil, &c)
	return c, err
}

// containerRef is how the engine finds h's container: its ID, or its name for a handle saved
// before the container ID was known.
func containerRef(h runtime.Handle) string {
	if h.ContainerID != "" {
		return h.ContainerID
	}
	return ContainerName(h.ReplicaID)
}

func shortID(id string) string {
	if len(id) > 12 {
		return id[:12]
	}
	return id
}
