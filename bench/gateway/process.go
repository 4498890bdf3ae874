package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"strings"
	"syscall"
	"time"
)

// process is a server the benchmark started: the test model, nginx or the gateway. Its output
// goes to a file rather than through a pipe, so that copying it costs the load generator no CPU.
type process struct {
	name string
	cmd  *exec.Cmd
	log  string // the file holding its output
	done chan struct{}
	err  error // how it ended; read after done is closed
}

// startProcess starts path with args in a process group of its own, so that stop reaches
// every process it forks (nginx's workers) and a Ctrl-C reaches only the benchmark, which
// then stops it. Its stderr, and its stdout unless quietStdout, go to dir/name.log.
func startProcess(dir, name string, quietStdout bool, path string, args ...string) (*process, error) {
	logPath := dir + "/" + name + ".log"
	f, err := os.Create(logPath)
	if err != nil {
		return nil, err
	}
	defer f.Close() // the child holds its own copy
	cmd := exec.Command(path, args...)
	cmd.Stderr = f
	if !quietStdout {
		cmd.Stdout = f
	}
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	if err := cmd.Start(); err != nil {
		return nil, fmt.Errorf("start %s: %w", name, err)
	}
	p := &process{name: name, cmd: cmd, log: logPath, done: make(chan struct{})}
	go func() {
		p.err = cmd.Wait()
		close(p.done)
	}()
	return p, nil
}

// stop ends the process group: SIGTERM, then SIGKILL if it has not exited within 5 s.
func (p *process) stop() {
	if p.exited() {
		return
	}
	pgid := p.cmd.Process.Pid
	_ = syscall.Kill(-pgid, syscall.SIGTERM)
	select {
	case <-p.done:
	case <-time.After(5 * time.Second):
		_ = syscall.Kill(-pgid, syscall.SIGKILL)
		<-p.done
	}
}

// exited reports whether the process has ended.
func (p *process) exited() bool {
	select {
	case <-p.done:
		return true
	default:
		return false
	}
}

// check returns an error that says so if the process has ended.
func (p *process) check() error {
	if !p.exited() {
		return nil
	}
	return p.failure("exited", p.err)
}

// failure describes what went wrong with the process, with the end of its output.
func (p *process) failure(what string, err error) error {
	msg := fmt.Sprintf("%s %s", p.name, what)
	if err != nil {
		msg += ": " + err.Error()
	}
	if tail := p.tail(2048); tail != "" {
		msg += "\n--- last lines of " + p.log + " ---\n" + tail
	}
	return errors.New(msg)
}

// tail returns up to the last n bytes of the process's output, from a line start.
func (p *process) tail(n int64) string {
	f, err := os.Open(p.log)
	if err != nil {
		return ""
	}
	defer f.Close()
	st, err := f.Stat()
	if err != nil {
		return ""
	}
	off := max(st.Size()-n, 0)
	b, err := io.ReadAll(io.NewSectionReader(f, off, st.Size()-off))
	if err != nil {
		return ""
	}
	s := string(b)
	if off > 0 {
		if i := strings.IndexByte(s, '\n'); i >= 0 {
			s = s[i+1:]
		}
	}
	return strings.TrimRight(s, "\n")
}

// waitReady calls probe every 50 ms until it succeeds, the process exits, timeout passes or
// ctx ends.
func (p *process) waitReady(ctx context.Context, timeout time.Duration, probe func(context.Context) error) error {
	deadline := time.Now().Add(timeout)
	tick := time.NewTicker(50 * time.Millisecond)
	defer tick.Stop()
	for {
		pctx, cancel := context.WithTimeout(ctx, time.Second)
		err := probe(pctx)
		cancel()
		if err == nil {
			return nil
		}
		if perr := p.check(); perr != nil {
			return perr
		}
		if time.Now().After(deadline) {
			return p.failure(fmt.Sprintf("was not ready after %s", timeout), err)
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-p.done:
		case <-tick.C:
		}
	}
}

// freePort returns a loopback port that nothing listens on now. Another process may take it
// before the server does; the server then fails to start and says so.
func freePort() (int, error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, err
	}
	defer ln.Close()
	return ln.Addr().(*net.TCPAddr).Port, nil
}
