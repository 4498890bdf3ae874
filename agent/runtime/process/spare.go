package process

import (
	"bufio"
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"

	"github.com/modelplane/modelplane/agent/runtime"
	"github.com/modelplane/modelplane/runtime/python"
)

// spareFD is the descriptor a warm spare finds its end of the agent's socket pair on.
const spareFD = 3

// spare is a warm interpreter of one Python environment that the runtime started as a
// replica user of its own, before it knew its replica (forkserver.py's spare mode). It is
// the agent's child: once it has become a replica, its end is reaped here as a cold start's.
type spare struct {
	uid     int
	imports []string // what it was told to import, sorted
	pid     int
	proc    *os.Process
	conn    *net.UnixConn
	rd      *bufio.Reader
	ready   chan struct{} // closed once it has imported and waits for its replica
	exited  chan struct{} // closed once it has ended and been reaped

	mu    sync.Mutex
	code  int  // its exit code, once exited
	taken bool // it is a replica's, or is becoming one: its user ID is no longer a spare's
}

func (s *spare) isReady() bool {
	select {
	case <-s.ready:
		return true
	default:
		return false
	}
}

func (s *spare) gone() bool {
	select {
	case <-s.exited:
		return true
	default:
		return false
	}
}

// take marks the spare as a replica's; false when it has ended already.
func (s *spare) take() bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.gone() || s.taken {
		return false
	}
	s.taken = true
	return true
}

// kill ends the spare and waits until it has been reaped.
func (s *spare) kill() {
	_ = s.proc.Kill()
	<-s.exited
}

// spares holds, per Python environment (a fork server directory), the one warm spare that
// the next replica of a replica user takes.
type spares struct {
	agentID string
	log     *slog.Logger

	mu     sync.Mutex
	byDir  map[string]*spare
	closed bool
}

// errNoSpare means no ready spare had imported what the replica's environment wants.
var errNoSpare = errors.New("no warm spare ready")

// take answers the ready spare of p's environment when it has imported every module p wants,
// or nil. Either way the environment has a spare coming for the next replica afterwards: a
// new one when this one was taken, has ended, or lacks a module (it is then stopped, and
// the new one imports its modules too).
func (ss *spares) take(interpreter string, p runtime.Prewarm) *spare {
	ss.mu.Lock()
	defer ss.mu.Unlock()
	if ss.closed {
		return nil
	}
	want := wantedImports(p)
	var got *spare
	if cur := ss.byDir[p.Dir]; cur != nil {
		fits := subset(want, cur.imports)
		switch {
		case fits && cur.isReady() && cur.take():
			got = cur
		case cur.gone():
		case fits:
			return nil // still importing: it serves a later replica
		default:
			go cur.kill() // its user ID goes back once it has ended
		}
		want = union(want, cur.imports)
		delete(ss.byDir, p.Dir)
	}
	next, err := ss.launch(interpreter, p, want)
	if err != nil {
		ss.log.Warn("starting a warm spare; replicas of its environment start cold", "dir", p.Dir, "err", err)
		return got
	}
	ss.byDir[p.Dir] = next
	return got
}

// launch starts a spare for p, as a user drawn from p.Users, that imports imports.
func (ss *spares) launch(interpreter string, p runtime.Prewarm, imports []string) (*spare, error) {
	if p.Users == nil {
		return nil, errors.New("no replica users to run a spare as")
	}
	if err := os.MkdirAll(p.Dir, 0o700); err != nil {
		return nil, err
	}
	list, err := json.Marshal(imports)
	if err != nil {
		return nil, err
	}
	logFile, err := os.OpenFile(filepath.Join(p.Dir, ForkServerLog), os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o600)
	if err != nil {
		return nil, err
	}
	defer logFile.Close()
	pair, err := syscall.Socketpair(syscall.AF_UNIX, syscall.SOCK_STREAM|syscall.SOCK_CLOEXEC, 0)
	if err != nil {
		return nil, err
	}
	mine, theirs := os.NewFile(uintptr(pair[0]), "spare"), os.NewFile(uintptr(pair[1]), "spare-peer")
	defer theirs.Close()
	fc, err := net.FileConn(mine)
	mine.Close()
	if err != nil {
		return nil, err
	}
	conn := fc.(*net.UnixConn)
	uid, err := p.Users.Reserve()
	if err != nil {
		conn.Close()
		return nil, err
	}
	// The script comes on standard input: the spare's user cannot read the agent's copy.
	cmd := exec.Command(interpreter, "-u", "-", "--spare", fmt.Sprint(spareFD), "--imports-json", string(list))
	cmd.Dir = "/"
	cmd.Env = ss.environment(p)
	cmd.Stdin = bytes.NewReader(python.ForkServerSource())
	cmd.Stdout, cmd.Stderr = logFile, logFile
	cmd.ExtraFiles = []*os.File{theirs}
	// A cold start's credentials: the user's own group and no supplementary group. Not a
	// session leader until it becomes a replica, so that Orphans never takes it for one.
	id := uint32(uid)
	cmd.SysProcAttr = &syscall.SysProcAttr{Credential: &syscall.Credential{Uid: id, Gid: id, Groups: []uint32{}}}
	if err := cmd.Start(); err != nil {
		conn.Close()
		p.Users.Release(uid)
		return nil, fmt.Errorf("start %s: %w", interpreter, err)
	}
	s := &spare{
		uid: uid, imports: imports, pid: cmd.Process.Pid, proc: cmd.Process, conn: conn, rd: bufio.NewReader(conn),
		ready: make(chan struct{}), exited: make(chan struct{}),
	}
	go func() {
		var msg struct {
			Ready bool `json:"ready"`
		}
		if readMsg(s.rd, &msg) == nil && msg.Ready {
			close(s.ready)
		}
	}()
	go func() {
		err := cmd.Wait()
		s.mu.Lock()
		s.code = exitCode(cmd.ProcessState, err)
		taken := s.taken
		close(s.exited)
		s.mu.Unlock()
		conn.Close()
		if !taken {
			p.Users.Release(uid)
			ss.log.Info("warm spare exited", "dir", p.Dir, "pid", s.pid, "uid", uid, "err", err)
		}
	}()
	ss.log.Info("warm spare started", "dir", p.Dir, "pid", s.pid, "uid", uid, "imports", strings.Join(imports, ","))
	return s, nil
}

// environment is a spare's: a fork server's (the agent's few common variables, p.Env and
// the placeholder a replica writes its ID over), less a home and a scratch directory of the
// agent's, which its user could not write in. It holds no secret.
func (ss *spares) environment(p runtime.Prewarm) []string {
	env := baseEnvironment()
	delete(env, "HOME")
	delete(env, "TMPDIR")
	for k, v := range p.Env {
		env[k] = v
	}
	env[EnvAgentID] = ss.agentID
	env[EnvReplicaID] = strings.Repeat("-", replicaIDRoom)
	return sortedEnv(env)
}

// stopAll ends every spare that no replica took.
func (ss *spares) stopAll(closing bool) {
	ss.mu.Lock()
	all := ss.byDir
	ss.byDir = map[string]*spare{}
	ss.closed = ss.closed || closing
	ss.mu.Unlock()
	for _, s := range all {
		s.kill()
	}
}

// startFromSpare starts the replica of a replica user from a warm spare of its environment:
// the spare's user becomes the replica's (Prewarm.Users.Claim prepares its directory for
// it), then the spare receives the replica's output files, argv, working directory and
// environment, as a forked child does. spec.UID is the replica's user afterwards. cold
// says whether the replica may start cold instead after an error: not when its directory
// could not be prepared.
func (r *Runtime) startFromSpare(spec *runtime.Spec, interpreter string, env map[string]string, stdout, stderr *os.File) (h runtime.Handle, c *child, cold bool, err error) {
	p := spec.Prewarm
	s := r.spares.take(interpreter, *p)
	if s == nil {
		return h, nil, true, errNoSpare
	}
	if err := p.Users.Claim(s.uid); err != nil {
		// The user is the replica's already, whatever failed.
		spec.UID = s.uid
		s.kill()
		return h, nil, false, fmt.Errorf("preparing the replica's directory for its user: %w", err)
	}
	spec.UID = s.uid
	pid, err := assign(s.conn, s.rd, *spec, env, stdout, stderr)
	s.conn.Close()
	if err == nil && pid != s.pid {
		err = fmt.Errorf("the spare answered process %d, not %d", pid, s.pid)
	}
	if err != nil {
		s.kill()
		return h, nil, true, err
	}
	c = &child{done: make(chan struct{})}
	r.mu.Lock()
	r.children[s.pid] = c
	r.mu.Unlock()
	go func() {
		<-s.exited
		s.mu.Lock()
		c.exitCode = s.code
		s.mu.Unlock()
		close(c.done)
	}()
	h = r.handle(*spec, s.pid)
	h.Forked = true
	return h, c, false, nil
}
