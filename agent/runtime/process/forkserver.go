package process

import (
	"bufio"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"sort"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/modelplane/modelplane/agent/runtime"
	"github.com/modelplane/modelplane/runtime/python"
)

// Files in a fork server's directory (runtime.Prewarm.Dir).
const (
	// LearnedImportsFile holds the modules the environment's replicas reported importing
	// (python.EnvImportsReport), a sorted JSON list: the next fork server imports them.
	LearnedImportsFile = "learned-imports.json"
	// ForkServerLog is the fork server's own output: what it imported, what failed.
	ForkServerLog = "forkserver.log"
	// importsReportFile is where, in its own directory, a replica reports its imports.
	importsReportFile = "imported-modules.json"
)

// replicaIDRoom is how long a replica ID may be for a forked replica to show it in
// /proc/PID/environ: the fork server's environment holds a placeholder of this length for
// EnvReplicaID, which each forked child writes its own ID over (forkserver.py).
const replicaIDRoom = 64

// forkTimeout bounds the exchange with a fork server that starts one replica.
const forkTimeout = 10 * time.Second

// forkServer is one fork server process: one generation of its directory's.
type forkServer struct {
	sock    string
	imports []string // what it was told to import, sorted
	stdin   io.Closer
	done    chan struct{}
}

// ready reports whether the server has done its imports and listens.
func (f *forkServer) ready() bool {
	if f.exited() {
		return false
	}
	_, err := os.Stat(f.sock)
	return err == nil
}

func (f *forkServer) exited() bool {
	select {
	case <-f.done:
		return true
	default:
		return false
	}
}

// retire makes the server stop accepting; it exits once its replicas have.
func (f *forkServer) retire() { _ = f.stdin.Close() }

// forkDir is the state of one fork server directory: the server in use and the one that
// takes over once it is ready.
type forkDir struct {
	current, next *forkServer
}

type forkServers struct {
	agentID string
	log     *slog.Logger

	mu   sync.Mutex
	dirs map[string]*forkDir
}

// server answers the ready fork server for p, or nil; it starts one when none is ready or
// coming, or when the one in use lacks modules learned since it started.
func (fs *forkServers) server(interpreter string, p runtime.Prewarm) *forkServer {
	fs.mu.Lock()
	defer fs.mu.Unlock()
	d := fs.dirs[p.Dir]
	if d == nil {
		d = &forkDir{}
		fs.dirs[p.Dir] = d
	}
	if d.next != nil && d.next.exited() {
		d.next = nil // it died importing: another is started below
	}
	if d.next != nil && d.next.ready() {
		if d.current != nil {
			d.current.retire()
		}
		d.current, d.next = d.next, nil
	}
	want := wantedImports(p)
	if d.current != nil {
		// Modules another deployment of the environment declared stay: servers are not
		// replaced back and forth between two lists.
		want = union(want, d.current.imports)
	}
	if d.next == nil && (d.current == nil || !d.current.ready() || !subset(want, d.current.imports)) {
		next, err := fs.launch(interpreter, p, want)
		if err != nil {
			fs.log.Warn("starting the fork server; replicas start cold", "dir", p.Dir, "err", err)
		}
		d.next = next
	}
	if d.current != nil && d.current.ready() {
		return d.current
	}
	return nil
}

// wantedImports are the declared modules and the learned ones, sorted.
func wantedImports(p runtime.Prewarm) []string {
	return union(readLearned(p.Dir), p.Imports)
}

// union answers the sorted, distinct names of a and b.
func union(a, b []string) []string {
	out := append(append([]string{}, a...), b...)
	sort.Strings(out)
	return slices.Compact(out)
}

func subset(a, b []string) bool {
	for _, m := range a {
		if _, found := slices.BinarySearch(b, m); !found {
			return false
		}
	}
	return true
}

// launch starts a fork server for p that imports imports. It is not a session leader: it is
// in the agent's process group, so that Orphans never takes it for a replica, and it ignores
// the terminal's signals; it ends when its standard input does.
func (fs *forkServers) launch(interpreter string, p runtime.Prewarm, imports []string) (*forkServer, error) {
	if err := os.MkdirAll(p.Dir, 0o700); err != nil {
		return nil, err
	}
	if err := os.Chmod(p.Dir, 0o700); err != nil {
		return nil, err
	}
	script, err := python.WriteForkServer(p.Dir)
	if err != nil {
		return nil, err
	}
	var b [6]byte
	if _, err := rand.Read(b[:]); err != nil {
		return nil, err
	}
	gen := hex.EncodeToString(b[:])
	// A socket path longer than sun_path (108 bytes) cannot be bound.
	sock := filepath.Join(p.Dir, gen+".sock")
	if len(sock) > 100 {
		return nil, fmt.Errorf("socket path %s is too long for a Unix socket", sock)
	}
	list, err := json.Marshal(imports)
	if err != nil {
		return nil, err
	}
	importsFile := filepath.Join(p.Dir, gen+".imports.json")
	if err := os.WriteFile(importsFile, list, 0o600); err != nil {
		return nil, err
	}
	logFile, err := os.OpenFile(filepath.Join(p.Dir, ForkServerLog), os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o600)
	if err != nil {
		return nil, err
	}
	defer logFile.Close()
	cmd := exec.Command(interpreter, "-u", script, "--socket", sock, "--imports", importsFile)
	cmd.Dir = p.Dir
	cmd.Env = fs.environment(p)
	cmd.Stdout, cmd.Stderr = logFile, logFile
	stdin, err := cmd.StdinPipe()
	if err != nil {
		return nil, err
	}
	if err := cmd.Start(); err != nil {
		return nil, fmt.Errorf("start %s: %w", interpreter, err)
	}
	f := &forkServer{sock: sock, imports: imports, stdin: stdin, done: make(chan struct{})}
	go func() {
		err := cmd.Wait()
		_ = os.Remove(importsFile)
		_ = os.Remove(sock)
		fs.log.Info("fork server exited", "dir", p.Dir, "pid", cmd.Process.Pid, "err", err)
		close(f.done)
	}()
	fs.log.Info("fork server started", "dir", p.Dir, "pid", cmd.Process.Pid, "imports", strings.Join(imports, ","))
	return f, nil
}

// environment is the fork server's: the agent's few common variables and p.Env, never a
// replica's. EnvReplicaID holds the placeholder each forked child overwrites.
func (fs *forkServers) environment(p runtime.Prewarm) []string {
	env := baseEnvironment()
	for k, v := range p.Env {
		env[k] = v
	}
	env[EnvAgentID] = fs.agentID
	env[EnvReplicaID] = strings.Repeat("-", replicaIDRoom)
	return sortedEnv(env)
}

// forked is a replica a fork server started: its PID and the connection its exit comes on.
type forked struct {
	pid  int
	conn *net.UnixConn
	rd   *bufio.Reader
}

// errForkRefused means the fork server answered, but did not start the replica.
var errForkRefused = errors.New("the fork server did not start the replica")

// fork asks srv to start spec's replica with the given output files and environment. The
// secrets in env go only to the forked child: the server's own process never reads them.
func fork(srv *forkServer, spec runtime.Spec, env map[string]string, stdout, stderr *os.File) (*forked, error) {
	c, err := net.DialTimeout("unix", srv.sock, time.Second)
	if err != nil {
		return nil, err
	}
	conn := c.(*net.UnixConn)
	rd := bufio.NewReader(conn)
	pid, err := assign(conn, rd, spec, env, stdout, stderr)
	if err != nil {
		conn.Close()
		return nil, err
	}
	return &forked{pid: pid, conn: conn, rd: rd}, nil
}

// assign is one start request on conn (forkserver.py's steps 1 and 2), to a fork server or
// a warm spare: it sends the output files, then, once the process that becomes the replica
// answers its PID, the replica's argv, working directory and environment, and answers that
// PID once the replica has taken them.
func assign(conn *net.UnixConn, rd *bufio.Reader, spec runtime.Spec, env map[string]string, stdout, stderr *os.File) (int, error) {
	_ = conn.SetDeadline(time.Now().Add(forkTimeout))
	rights := syscall.UnixRights(int(stdout.Fd()), int(stderr.Fd()))
	if _, _, err := conn.WriteMsgUnix([]byte(`{"start": true}`+"\n"), rights, nil); err != nil {
		return 0, err
	}
	var started struct {
		PID   int    `json:"pid"`
		Error string `json:"error"`
	}
	if err := readMsg(rd, &started); err != nil {
		return 0, err
	}
	if started.PID <= 0 {
		return 0, fmt.Errorf("%w: %s", errForkRefused, started.Error)
	}
	req, err := json.Marshal(map[string]any{"argv": spec.Prewarm.Argv, "cwd": spec.PackageDir, "env": env})
	if err != nil {
		return 0, err
	}
	if _, err := conn.Write(append(req, '\n')); err != nil {
		return 0, err
	}
	var child struct {
		Started bool   `json:"started"`
		Error   string `json:"error"`
	}
	if err := readMsg(rd, &child); err != nil {
		return 0, err
	}
	if !child.Started {
		return 0, fmt.Errorf("%w: process %d: %s", errForkRefused, started.PID, child.Error)
	}
	_ = conn.SetDeadline(time.Time{})
	return started.PID, nil
}

func readMsg(rd *bufio.Reader, v any) error {
	line, err := rd.ReadBytes('\n')
	if err != nil {
		if errors.Is(err, io.EOF) {
			return errors.New("the fork server closed the connection")
		}
		return err
	}
	return json.Unmarshal(line, v)
}

// wait reads the replica's exit from its fork server: its wait status, as waitpid(2) gives
// it. ok is false when the server went away first: the replica is then no one's child here.
func (f *forked) wait() (ws syscall.WaitStatus, ok bool) {
	defer f.conn.Close()
	var end struct {
		WaitStatus *uint32 `json:"wait_status"`
	}
	if err := readMsg(f.rd, &end); err != nil || end.WaitStatus == nil {
		return 0, false
	}
	return syscall.WaitStatus(*end.WaitStatus), true
}

// readLearned answers the modules learned in dir; none when there is no readable list.
func readLearned(dir string) []string {
	b, err := os.ReadFile(filepath.Join(dir, LearnedImportsFile))
	if err != nil {
		return nil
	}
	var mods []string
	if json.Unmarshal(b, &mods) != nil {
		return nil
	}
	return mods
}

// learn adds the modules a replica reported to its fork server directory's list.
func (fs *forkServers) learn(dir string, report []string) (grew bool, err error) {
	fs.mu.Lock()
	defer fs.mu.Unlock()
	have := readLearned(dir)
	mods := union(have, report)
	if len(mods) == len(have) {
		return false, nil
	}
	b, err := json.Marshal(mods)
	if err != nil {
		return false, err
	}
	tmp := filepath.Join(dir, LearnedImportsFile+".tmp")
	if err := os.WriteFile(tmp, b, 0o600); err != nil {
		return false, err
	}
	return true, os.Rename(tmp, filepath.Join(dir, LearnedImportsFile))
}

// collectReport waits, while the replica runs, for the modules it reports once its model has
// loaded, records them, and has a fork server with them ready for the next replica.
// lost, closed when the replica's fork server went away before it, ends the wait too.
func (fs *forkServers) collectReport(interpreter string, p runtime.Prewarm, report string, done, lost <-chan struct{}) {
	tick := time.NewTicker(250 * time.Millisecond)
	defer tick.Stop()
	for ended := false; !ended; {
		select {
		case <-done:
			ended = true // what it wrote before it ended still counts
		case <-lost:
			ended = true
		case <-tick.C:
		}
		b, err := os.ReadFile(report)
		if err != nil {
			continue
		}
		var mods []string
		if err := json.Unmarshal(b, &mods); err != nil {
			fs.log.Warn("unreadable imports report", "file", report, "err", err)
			return
		}
		mods = slices.DeleteFunc(mods, func(m string) bool { return !validModule(m) })
		grew, err := fs.learn(p.Dir, mods)
		if err != nil {
			fs.log.Warn("recording the learned imports", "dir", p.Dir, "err", err)
			return
		}
		if grew {
			fs.server(interpreter, p)
		}
		return
	}
}

// validModule accepts a top-level module name, as a replica's report should hold.
func validModule(m string) bool {
	if m == "" || len(m) > 200 {
		return false
	}
	for i, r := range m {
		if !(r == '_' || r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || i > 0 && r >= '0' && r <= '9') {
			return false
		}
	}
	return true
}

// stopAll retires every fork server.
func (fs *forkServers) stopAll() {
	fs.mu.Lock()
	defer fs.mu.Unlock()
	for _, d := range fs.dirs {
		for _, f := range []*forkServer{d.current, d.next} {
			if f != nil {
				f.retire()
			}
		}
	}
	fs.dirs = map[string]*forkDir{}
}
