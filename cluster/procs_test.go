//go:build cluster

package cluster_test

import (
	"bytes"
	"context"
	"fmt"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/modelplane/modelplane/internal/proctest"
)

// proc is one process of the fleet, started again with the same arguments after a kill.
type proc struct {
	t          *testing.T
	name, role string
	path       string
	args, env  []string
	logPath    string
	mu         sync.Mutex
	cmd        *exec.Cmd
	done       chan struct{}
	starts     int
}

// fleet is every process the test started, in start order.
type fleet struct {
	t     *testing.T
	dir   string
	mu    sync.Mutex
	procs []*proc
	kills []string // "what, when" of each SIGKILL and restart, in order
	t0    time.Time
}

func newFleet(t *testing.T, dir string) *fleet {
	f := &fleet{t: t, dir: dir, t0: time.Now()}
	t.Cleanup(func() {
		if t.Failed() {
			f.dumpLogs()
		}
		for i := len(f.procs) - 1; i >= 0; i-- {
			f.procs[i].stop()
		}
		// Model servers outlive their agent, as on a host; nothing of this run outlives it.
		// They run from the agents' state directories, dir/agent-NAME.
		proctest.KillRunningFrom(filepath.Join(dir, "agent-"))
	})
	return f
}

// start runs path with args as its own process group; its output goes to a log file that
// the test prints when it fails.
func (f *fleet) start(name, role, path string, env []string, args ...string) *proc {
	f.t.Helper()
	p := &proc{t: f.t, name: name, role: role, path: path, args: args, env: env,
		logPath: filepath.Join(f.dir, "logs", name+".log")}
	require.NoError(f.t, os.MkdirAll(filepath.Dir(p.logPath), 0o755))
	f.mu.Lock()
	f.procs = append(f.procs, p)
	f.mu.Unlock()
	p.start()
	return p
}

func (p *proc) start() {
	p.t.Helper()
	log, err := os.OpenFile(p.logPath, os.O_CREATE|os.O_APPEND|os.O_WRONLY, 0o644)
	require.NoError(p.t, err)
	fmt.Fprintf(log, "==== start %d: %s %s\n", p.starts+1, filepath.Base(p.path), strings.Join(p.args, " "))
	cmd := exec.Command(p.path, p.args...)
	cmd.Env = append(os.Environ(), p.env...)
	cmd.Stdout, cmd.Stderr = log, log
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	require.NoError(p.t, cmd.Start(), "starting %s", p.name)
	done := make(chan struct{})
	go func() {
		_ = cmd.Wait()
		log.Close()
		close(done)
	}()
	p.mu.Lock()
	p.cmd, p.done = cmd, done
	p.starts++
	p.mu.Unlock()
}

// kill9 sends SIGKILL to the process (only it: what it started, such as an agent's model
// servers, lives on as it would on a host whose agent crashed) and waits until it is gone.
func (p *proc) kill9() {
	p.mu.Lock()
	cmd, done := p.cmd, p.done
	p.mu.Unlock()
	if cmd == nil {
		return
	}
	_ = cmd.Process.Signal(syscall.SIGKILL)
	<-done
}

// stop ends the process and its whole group at the test's end.
func (p *proc) stop() {
	p.mu.Lock()
	cmd, done := p.cmd, p.done
	p.mu.Unlock()
	if cmd == nil {
		return
	}
	_ = syscall.Kill(-cmd.Process.Pid, syscall.SIGTERM)
	select {
	case <-done:
	case <-time.After(10 * time.Second):
		_ = syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL)
		<-done
	}
}

// exited says whether the process has ended on its own.
func (p *proc) exited() bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	select {
	case <-p.done:
		return true
	default:
		return false
	}
}

// kill records a SIGKILL of p; the caller restarts it with restart.
func (f *fleet) kill(p *proc, why string) {
	f.t.Helper()
	p.kill9()
	f.note("SIGKILL %s (%s)", p.name, why)
}

func (f *fleet) restart(p *proc) {
	f.t.Helper()
	p.start()
	f.note("restarted %s", p.name)
}

func (f *fleet) note(format string, args ...any) {
	line := fmt.Sprintf("%6.1fs  ", time.Since(f.t0).Seconds()) + fmt.Sprintf(format, args...)
	f.mu.Lock()
	f.kills = append(f.kills, line)
	f.mu.Unlock()
	f.t.Log(line)
}

// checkAlive fails the test when a process the test did not kill has exited.
func (f *fleet) checkAlive() {
	f.t.Helper()
	for _, p := range f.procs {
		require.False(f.t, p.exited(), "%s exited on its own; its log:\n%s", p.name, tail(p.logPath, 40))
	}
}

func (f *fleet) dumpLogs() {
	for _, p := range f.procs {
		f.t.Logf("---- %s (last lines of %s)\n%s", p.name, p.logPath, tail(p.logPath, 40))
	}
}

func tail(path string, n int) string {
	b, err := os.ReadFile(path)
	if err != nil {
		return err.Error()
	}
	lines := bytes.Split(bytes.TrimRight(b, "\n"), []byte("\n"))
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	for i, l := range lines {
		if len(l) > 400 {
			lines[i] = append(l[:400:400], "..."...)
		}
	}
	return string(bytes.Join(lines, []byte("\n")))
}

// waitOK polls url until it answers 200.
func waitOK(t *testing.T, url string, within time.Duration) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), within)
	defer cancel()
	var last string
	for ctx.Err() == nil {
		resp, err := http.Get(url)
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return
			}
			last = resp.Status
		} else {
			last = err.Error()
		}
		time.Sleep(100 * time.Millisecond)
	}
	t.Fatalf("%s did not answer 200 within %s: %s", url, within, last)
}
