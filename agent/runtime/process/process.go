// Package process runs replicas as process groups on the host: each model server in its own
// session, with its output in files that outlive the agent, so an agent restart neither
// kills nor loses the replicas it started.
package process

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/modelplane/modelplane/agent/runtime"
	"github.com/modelplane/modelplane/runtime/python"
)

// Environment variables every replica process carries, so that the agent can find the
// processes it started after its own restart.
const (
	EnvAgentID   = "MODELPLANE_AGENT_ID"
	EnvReplicaID = "MODELPLANE_REPLICA_ID"
)

// Runtime starts replicas as child process groups.
type Runtime struct {
	agentID string
	log     *slog.Logger
	forks   *forkServers
	spares  *spares

	mu       sync.Mutex
	children map[int]*child // processes this agent process started, by PID
}

// child is a process started by this agent process, or forked for it by a fork server: it
// is reaped here, or its fork server reports its end, so its exit code is known.
type child struct {
	done     chan struct{}
	exitCode int
	// lost is closed when the fork server of a forked child went away before it: its end
	// is then seen as an adopted process's is.
	lost chan struct{}
}

// New returns a process runtime whose processes carry agentID.
func New(agentID string) *Runtime {
	log := slog.Default().With("runtime", "process")
	return &Runtime{
		agentID: agentID, log: log, children: map[int]*child{},
		forks:  &forkServers{agentID: agentID, log: log, dirs: map[string]*forkDir{}},
		spares: &spares{agentID: agentID, log: log, byDir: map[string]*spare{}},
	}
}

// Close retires the fork servers and stops the warm spares; the replicas they started go on
// running.
func (r *Runtime) Close() {
	r.forks.stopAll()
	r.spares.stopAll(true)
}

// StopSpares stops the warm spares no replica took: the agent stops. A later start of a
// replica user's replica starts cold, and a new spare for the next one.
func (r *Runtime) StopSpares() { r.spares.stopAll(false) }

// Name implements runtime.Runtime.
func (r *Runtime) Name() string { return "process" }

// Start implements runtime.Runtime.
func (r *Runtime) Start(_ context.Context, spec runtime.Spec) (runtime.Handle, error) {
	if len(spec.Command) == 0 {
		return runtime.Handle{}, errors.New("no command to run")
	}
	logDir := filepath.Join(spec.Dir, "logs")
	if err := os.MkdirAll(logDir, 0o755); err != nil {
		return runtime.Handle{}, err
	}
	// The files are opened in append mode and handed to the child directly: it keeps writing
	// to them when the agent is gone, and rotation by copy-and-truncate stays safe.
	stdout, err := os.OpenFile(filepath.Join(logDir, "stdout.log"), os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		return runtime.Handle{}, err
	}
	defer stdout.Close()
	stderr, err := os.OpenFile(filepath.Join(logDir, "stderr.log"), os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		return runtime.Handle{}, err
	}
	defer stderr.Close()

	argv := append([]string(nil), spec.Command...)
	if !filepath.IsAbs(argv[0]) && strings.ContainsRune(argv[0], '/') {
		argv[0] = filepath.Join(spec.PackageDir, argv[0])
	}
	env := r.environment(spec)
	p := spec.Prewarm
	if p != nil && spec.UID != 0 && p.Users != nil {
		// A replica user's: from a warm spare that already runs as a user of its own. It
		// does not report its imports: a replica user's list would steer what the spares of
		// other deployments import.
		h, _, cold, err := r.startFromSpare(&spec, argv[0], env, stdout, stderr)
		if err == nil || !cold {
			return h, err
		}
		if !errors.Is(err, errNoSpare) {
			r.log.Warn("starting the replica from a warm spare failed; starting it cold",
				"replica_id", spec.ReplicaID, "err", err)
		}
	}
	if p == nil || spec.UID != 0 {
		h, _, err := r.startCold(spec, argv, sortedEnv(env), stdout, stderr)
		return h, err
	}
	report := filepath.Join(spec.Dir, importsReportFile)
	_ = os.Remove(report)
	env[python.EnvImportsReport] = report
	h, c, err := r.startForked(spec, argv[0], env, stdout, stderr)
	if err != nil {
		h, c, err = r.startCold(spec, argv, sortedEnv(env), stdout, stderr)
	}
	if err == nil {
		go r.forks.collectReport(argv[0], *p, report, c.done, c.lost)
	}
	return h, err
}

// startForked starts the replica through its environment's fork server. It fails when no
// server is ready or the server did not start it; the replica then starts cold.
func (r *Runtime) startForked(spec runtime.Spec, interpreter string, env map[string]string, stdout, stderr *os.File) (runtime.Handle, *child, error) {
	srv := r.forks.server(interpreter, *spec.Prewarm)
	if srv == nil {
		return runtime.Handle{}, nil, errors.New("no fork server ready")
	}
	f, err := fork(srv, spec, env, stdout, stderr)
	if err != nil {
		r.log.Warn("starting the replica through its fork server failed; starting it cold",
			"replica_id", spec.ReplicaID, "err", err)
		return runtime.Handle{}, nil, err
	}
	c := &child{done: make(chan struct{}), lost: make(chan struct{})}
	r.mu.Lock()
	r.children[f.pid] = c
	r.mu.Unlock()
	go func() {
		ws, ok := f.wait()
		if !ok {
			r.forget(f.pid)
			close(c.lost)
			return
		}
		c.exitCode = waitStatusCode(ws)
		close(c.done)
	}()
	h := r.handle(spec, f.pid)
	h.Forked = true
	return h, c, nil
}

// startCold runs argv as a new process.
func (r *Runtime) startCold(spec runtime.Spec, argv, env []string, stdout, stderr *os.File) (runtime.Handle, *child, error) {
	cmd := exec.Command(argv[0], argv[1:]...)
	cmd.Dir = spec.PackageDir
	cmd.Env = env
	cmd.Stdin = nil
	cmd.Stdout, cmd.Stderr = stdout, stderr
	// A session of its own: the replica is its own process group (stopped as a whole) and
	// does not get the agent's terminal signals.
	cmd.SysProcAttr = &syscall.SysProcAttr{Setsid: true}
	if spec.UID != 0 {
		// The replica's own user and group, with no supplementary groups of the agent's.
		id := uint32(spec.UID)
		cmd.SysProcAttr.Credential = &syscall.Credential{Uid: id, Gid: id, Groups: []uint32{}}
	}
	if err := cmd.Start(); err != nil {
		return runtime.Handle{}, nil, fmt.Errorf("start %s: %w", argv[0], err)
	}
	pid := cmd.Process.Pid
	c := &child{done: make(chan struct{})}
	r.mu.Lock()
	r.children[pid] = c
	r.mu.Unlock()
	go func() {
		err := cmd.Wait()
		c.exitCode = exitCode(cmd.ProcessState, err)
		close(c.done)
	}()
	return r.handle(spec, pid), c, nil
}

func (r *Runtime) handle(spec runtime.Spec, pid int) runtime.Handle {
	start, err := startTime(pid)
	if err != nil {
		// The process died at once; its exit is reported through Status.
		start = 0
	}
	return runtime.Handle{
		ReplicaID: spec.ReplicaID, Runtime: r.Name(), PID: pid, StartTime: start,
		Address: net.JoinHostPort(runtime.HostOf(spec), strconv.Itoa(spec.Port)), LogDir: filepath.Join(spec.Dir, "logs"),
	}
}

// baseEnvironment is what every process the runtime starts takes from the agent's own
// environment: only what a server needs, not the agent's secrets.
func baseEnvironment() map[string]string {
	env := map[string]string{}
	for _, k := range []string{"PATH", "HOME", "LANG", "LC_ALL", "TZ", "TMPDIR", "PYTHONPATH", "LD_LIBRARY_PATH"} {
		if v, ok := os.LookupEnv(k); ok {
			env[k] = v
		}
	}
	return env
}

func sortedEnv(env map[string]string) []string {
	out := make([]string, 0, len(env))
	for k, v := range env {
		out = append(out, k+"="+v)
	}
	sort.Strings(out)
	return out
}

// environment is the replica's environment.
func (r *Runtime) environment(spec runtime.Spec) map[string]string {
	env := baseEnvironment()
	for k, v := range spec.Env {
		env[k] = v
	}
	gpus := strings.Join(spec.GPUUUIDs, ",")
	env["PORT"] = strconv.Itoa(spec.Port)
	// Where the server listens: the address gateways reach it at, and only that one.
	env[runtime.EnvBind] = runtime.HostOf(spec)
	env["CUDA_VISIBLE_DEVICES"] = gpus
	env["NVIDIA_VISIBLE_DEVICES"] = gpus
	if len(spec.GPUUUIDs) == 0 {
		env["NVIDIA_VISIBLE_DEVICES"] = "void"
	}
	env["MODELPLANE_ENVIRONMENT"] = spec.Environment
	env["MODELPLANE_DEPLOYMENT_ID"] = spec.DeploymentID
	if spec.SecretsDir != "" {
		env[runtime.EnvSecretsDir] = spec.SecretsDir
	}
	env[EnvReplicaID] = spec.ReplicaID
	env[EnvAgentID] = r.agentID
	return env
}

func exitCode(ps *os.ProcessState, err error) int {
	if ps == nil {
		return -1
	}
	if ws, ok := ps.Sys().(syscall.WaitStatus); ok {
		return waitStatusCode(ws)
	}
	return ps.ExitCode()
}

// waitStatusCode is a process's exit code, 128+N for one killed by signal N.
func waitStatusCode(ws syscall.WaitStatus) int {
	if ws.Signaled() {
		return 128 + int(ws.Signal())
	}
	return ws.ExitStatus()
}

// Status implements runtime.Runtime.
func (r *Runtime) Status(_ context.Context, h runtime.Handle) (runtime.Status, error) {
	r.mu.Lock()
	c := r.children[h.PID]
	r.mu.Unlock()
	if c != nil {
		select {
		case <-c.done:
			code := c.exitCode
			return runtime.Status{ExitCode: &code, Error: fmt.Sprintf("exited with code %d", code), LogTail: logTail(h.LogDir, 20)}, nil
		default:
			return runtime.Status{Running: true}, nil
		}
	}
	if alive(h) {
		return runtime.Status{Running: true}, nil
	}
	// An adopted process is not our child: its exit code went to init.
	return runtime.Status{Error: "exited while not supervised by this agent process", LogTail: logTail(h.LogDir, 20)}, nil
}

// alive reports whether h's process still runs: same PID and same start time, not a zombie.
func alive(h runtime.Handle) bool {
	if h.PID <= 0 {
		return false
	}
	st, state, err := stat(h.PID)
	if err != nil || state == "Z" || state == "X" {
		return false
	}
	return h.StartTime == 0 || st == h.StartTime
}

// Stop implements runtime.Runtime: SIGTERM to the process group, SIGKILL after grace.
func (r *Runtime) Stop(ctx context.Context, h runtime.Handle, grace time.Duration) error {
	if !alive(h) {
		r.forget(h.PID)
		return nil
	}
	_ = syscall.Kill(-h.PID, syscall.SIGTERM)
	if r.waitGone(ctx, h, grace) {
		r.forget(h.PID)
		return nil
	}
	_ = syscall.Kill(-h.PID, syscall.SIGKILL)
	if !r.waitGone(ctx, h, 5*time.Second) {
		return fmt.Errorf("process %d did not exit after SIGKILL", h.PID)
	}
	r.forget(h.PID)
	return nil
}

// waitGone waits up to d for the process group leader to exit.
func (r *Runtime) waitGone(ctx context.Context, h runtime.Handle, d time.Duration) bool {
	r.mu.Lock()
	c := r.children[h.PID]
	r.mu.Unlock()
	timer := time.NewTimer(d)
	defer timer.Stop()
	if c != nil {
		select {
		case <-c.done:
			return true
		case <-c.lost:
			// Its fork server is gone: watch the process itself.
		case <-timer.C:
			return false
		case <-ctx.Done():
			return false
		}
	}
	tick := time.NewTicker(50 * time.Millisecond)
	defer tick.Stop()
	for alive(h) {
		select {
		case <-tick.C:
		case <-timer.C:
			return !alive(h)
		case <-ctx.Done():
			return false
		}
	}
	return true
}

func (r *Runtime) forget(pid int) {
	r.mu.Lock()
	delete(r.children, pid)
	r.mu.Unlock()
}

// Adopt implements runtime.Runtime.
func (r *Runtime) Adopt(_ context.Context, h runtime.Handle) (bool, error) {
	// A process caught in the middle of an exec (a shell handing over to the server) briefly
	// shows no environment; look again before deciding it is not ours.
	for try := 0; try < 5; try++ {
		if !alive(h) {
			return false, nil
		}
		env, err := environ(h.PID)
		if err == nil && env[EnvAgentID] != "" {
			return env[EnvAgentID] == r.agentID && env[EnvReplicaID] == h.ReplicaID, nil
		}
		time.Sleep(20 * time.Millisecond)
	}
	return false, nil
}

// Orphans implements runtime.Runtime: process group leaders that carry this agent's ID and a
// replica ID the agent no longer knows.
func (r *Runtime) Orphans(_ context.Context, known map[string]bool) ([]runtime.Handle, error) {
	entries, err := os.ReadDir("/proc")
	if err != nil {
		return nil, err
	}
	var out []runtime.Handle
	for _, e := range entries {
		pid, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		pgid, err := syscall.Getpgid(pid)
		if err != nil || pgid != pid {
			continue
		}
		env, err := environ(pid)
		if err != nil || env[EnvAgentID] != r.agentID {
			continue
		}
		id := env[EnvReplicaID]
		if id == "" || known[id] {
			continue
		}
		st, state, err := stat(pid)
		if err != nil || state == "Z" {
			continue
		}
		out = append(out, runtime.Handle{ReplicaID: id, Runtime: r.Name(), PID: pid, StartTime: st})
	}
	return out, nil
}

// stat reads a process's start time (clock ticks since boot) and state letter.
func stat(pid int) (uint64, string, error) {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return 0, "", err
	}
	s := string(b)
	i := strings.LastIndexByte(s, ')')
	if i < 0 {
		return 0, "", errors.New("unreadable /proc stat")
	}
	// Fields after the command: state is field 3, starttime field 22 (1-based).
	f := strings.Fields(s[i+1:])
	if len(f) < 20 {
		return 0, "", errors.New("short /proc stat")
	}
	st, err := strconv.ParseUint(f[19], 10, 64)
	return st, f[0], err
}

func startTime(pid int) (uint64, error) {
	st, _, err := stat(pid)
	return st, err
}

func environ(pid int) (map[string]string, error) {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/environ", pid))
	if err != nil {
		return nil, err
	}
	env := map[string]string{}
	for _, kv := range strings.Split(string(b), "\x00") {
		if k, v, ok := strings.Cut(kv, "="); ok {
			env[k] = v
		}
	}
	return env, nil
}
