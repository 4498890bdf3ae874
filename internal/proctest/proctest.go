// Package proctest helps tests that run processes: it lists the machine's processes from
// /proc, to check that nothing was left running, and collects a process's output safely.
package proctest

import (
	"bytes"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
)

// Buffer collects a process's output while a test reads it from another goroutine.
type Buffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

// Write implements io.Writer.
func (b *Buffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

// String returns everything written so far.
func (b *Buffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}

// Process is one live process.
type Process struct {
	PID, PPID, PGID int
	State           string // "R", "S", "Z", ...
	Cmdline         string // arguments joined by spaces
}

// List returns every process readable in /proc, zombies excluded.
func List() []Process {
	entries, _ := os.ReadDir("/proc")
	var out []Process
	for _, e := range entries {
		pid, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		stat, err := os.ReadFile(filepath.Join("/proc", e.Name(), "stat"))
		if err != nil {
			continue
		}
		// The fields after the command name, which is in parentheses and may hold spaces:
		// state, ppid, pgrp, ...
		rest := strings.Fields(string(stat[strings.LastIndexByte(string(stat), ')')+1:]))
		if len(rest) < 3 || rest[0] == "Z" {
			continue
		}
		ppid, _ := strconv.Atoi(rest[1])
		pgid, _ := strconv.Atoi(rest[2])
		cmd, _ := os.ReadFile(filepath.Join("/proc", e.Name(), "cmdline"))
		out = append(out, Process{PID: pid, PPID: ppid, PGID: pgid, State: rest[0],
			Cmdline: strings.TrimSpace(strings.ReplaceAll(string(cmd), "\x00", " "))})
	}
	return out
}

// Where returns the processes for which keep is true.
func Where(keep func(Process) bool) []Process {
	var out []Process
	for _, p := range List() {
		if keep(p) {
			out = append(out, p)
		}
	}
	return out
}

// KillRunningFrom sends SIGKILL to every process whose command line names a path under dir:
// model servers a test's agents started run from their state directories and outlive the
// agents, as they would on a host, so a test ends them itself.
func KillRunningFrom(dir string) {
	for _, p := range Where(func(p Process) bool { return strings.Contains(p.Cmdline, dir) }) {
		_ = syscall.Kill(p.PID, syscall.SIGKILL)
	}
}

// ReadableMemory is what can be read of pid's readable mappings (as root, or as its user):
// a test looks in it for what the process must not hold.
func ReadableMemory(pid int) ([]byte, error) {
	maps, err := os.ReadFile(fmt.Sprintf("/proc/%d/maps", pid))
	if err != nil {
		return nil, err
	}
	mem, err := os.Open(fmt.Sprintf("/proc/%d/mem", pid))
	if err != nil {
		return nil, err
	}
	defer mem.Close()
	var out []byte
	for _, line := range strings.Split(string(maps), "\n") {
		f := strings.Fields(line)
		if len(f) < 2 || !strings.HasPrefix(f[1], "r") {
			continue
		}
		lo, hi, _ := strings.Cut(f[0], "-")
		start, err1 := strconv.ParseUint(lo, 16, 64)
		end, err2 := strconv.ParseUint(hi, 16, 64)
		if err1 != nil || err2 != nil || end-start > 1<<30 {
			continue
		}
		buf := make([]byte, end-start)
		if n, err := mem.ReadAt(buf, int64(start)); err == nil || n > 0 {
			out = append(out, buf[:n]...)
		}
	}
	return out, nil
}
