package process_test

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/modelplane/modelplane/agent/runtime"
	"github.com/modelplane/modelplane/agent/runtime/process"
	"github.com/modelplane/modelplane/internal/proctest"
	"github.com/modelplane/modelplane/runtime/python"
)

// heavyModule stands for a package's slow import (torch): the model tells whether it found
// it imported already.
const heavyModule = "mp_heavy_mod"

// prewarmModel answers its environment, whether heavyModule was imported before the model's
// module was, and what /proc/self/environ says; "crash" kills the server.
const prewarmModel = `
import os, signal, sys
PREWARMED = "` + heavyModule + `" in sys.modules
import ` + heavyModule + `

class Model:
    def predict(self, request):
        if request.get("crash"):
            os.kill(os.getpid(), signal.SIGKILL)
        with open("/proc/self/environ", "rb") as f:
            block = dict(kv.split(b"=", 1) for kv in f.read().split(b"\0") if b"=" in kv)
        return {"env": dict(os.environ), "prewarmed": PREWARMED,
                "proc_replica_id": block.get(b"MODELPLANE_REPLICA_ID", b"").decode()}
`

// pythonLib puts heavyModule on the PYTHONPATH the fork server and the replicas share, as a
// package installed in their environment would be.
func pythonLib(t *testing.T) {
	t.Helper()
	lib := t.TempDir()
	require.NoError(t, os.WriteFile(filepath.Join(lib, heavyModule+".py"), []byte("import time\nLOADED = time.time()\n"), 0o644))
	t.Setenv("PYTHONPATH", lib)
}

// forkDir is a fork server directory short enough for a Unix socket's path.
func forkDir(t *testing.T) string {
	t.Helper()
	dir, err := os.MkdirTemp("", "fs")
	require.NoError(t, err)
	t.Cleanup(func() { os.RemoveAll(dir) })
	return dir
}

func pySpec(t *testing.T, dir, deployment string, secrets map[string]string, imports ...string) runtime.Spec {
	t.Helper()
	s := spec(t, "")
	s.DeploymentID = deployment
	require.NoError(t, os.MkdirAll(filepath.Join(s.PackageDir, "model"), 0o755))
	require.NoError(t, os.WriteFile(filepath.Join(s.PackageDir, "model", "model.py"), []byte(prewarmModel), 0o644))
	server, err := python.WriteServer(s.Dir)
	require.NoError(t, err)
	s.Command = python.Command(server, s.PackageDir)
	// The interpreter itself, not a version manager's shim that adds its own variables.
	s.Command[0] = realPython(t)
	secretsJSON, err := json.Marshal(secrets)
	require.NoError(t, err)
	s.Env[python.EnvConfigJSON] = `{"model_name": "prewarm"}`
	s.Env[python.EnvSecretsJSON] = string(secretsJSON)
	s.Port = freePort(t)
	s.Prewarm = &runtime.Prewarm{
		Dir: dir, Argv: s.Command[2:], Imports: imports,
		Env: map[string]string{"FORKSERVER_ONLY": "set in the fork server"},
	}
	return s
}

func realPython(t *testing.T) string {
	t.Helper()
	out, err := exec.Command(python.Interpreter(), "-c", "import sys; print(sys.executable)").Output()
	require.NoError(t, err)
	return strings.TrimSpace(string(out))
}

func freePort(t *testing.T) int {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port
}

type answer struct {
	Env           map[string]string `json:"env"`
	Prewarmed     bool              `json:"prewarmed"`
	ProcReplicaID string            `json:"proc_replica_id"`
}

// predict waits for the replica's model and answers its prediction.
func predict(t *testing.T, h runtime.Handle, body string) answer {
	t.Helper()
	var out answer
	deadline := time.Now().Add(30 * time.Second)
	for {
		resp, err := http.Post("http://"+h.Address+"/v1/models/model:predict", "application/json", strings.NewReader(body))
		if err == nil {
			b, _ := io.ReadAll(resp.Body)
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				require.NoError(t, json.Unmarshal(b, &out), "prediction %s", b)
				return out
			}
		}
		require.True(t, time.Now().Before(deadline), "replica %s never answered: %v", h.Address, err)
		time.Sleep(50 * time.Millisecond)
	}
}

// startForked starts s until its fork server, starting or replaced meanwhile, forks it.
func startForked(t *testing.T, r *process.Runtime, s runtime.Spec) runtime.Handle {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for {
		h := start(t, r, s)
		if h.Forked {
			return h
		}
		require.NoError(t, r.Stop(context.Background(), h, 5*time.Second))
		require.True(t, time.Now().Before(deadline), "no replica was forked; fork server log:\n%s", forkLog(s))
		s.Port = freePort(t)
		time.Sleep(100 * time.Millisecond)
	}
}

func forkLog(s runtime.Spec) string {
	b, _ := os.ReadFile(filepath.Join(s.Prewarm.Dir, process.ForkServerLog))
	return string(b)
}

// forkServerPIDs are the fork servers running for dir.
func forkServerPIDs(t *testing.T, dir string) []int {
	t.Helper()
	entries, err := os.ReadDir("/proc")
	require.NoError(t, err)
	var pids []int
	for _, e := range entries {
		pid, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		if pgid, err := syscall.Getpgid(pid); err != nil || pgid == pid {
			continue // a forked replica, which leads a process group, shows the same command
		}
		cmdline, err := os.ReadFile(fmt.Sprintf("/proc/%d/cmdline", pid))
		if err == nil && bytes.Contains(cmdline, []byte(python.ForkServerFile)) && bytes.Contains(cmdline, []byte(dir)) {
			pids = append(pids, pid)
		}
	}
	return pids
}

func newRuntime(t *testing.T) *process.Runtime {
	r := process.New("agent-1")
	t.Cleanup(r.Close)
	return r
}

func TestForkServer_ReplicaGetsExactlyTheEnvironmentOfAColdStart(t *testing.T) {
	pythonLib(t)
	r, dir := newRuntime(t), forkDir(t)
	s := pySpec(t, dir, "dep-a", map[string]string{"hf_token": "secret-of-a"}, heavyModule)

	h := startForked(t, r, s)
	forked := predict(t, h, `{}`)
	require.True(t, forked.Prewarmed, "the fork server imported %s before the model", heavyModule)

	cold := s
	cold.Prewarm = nil
	cold.Port = freePort(t)
	hc := start(t, r, cold)
	require.False(t, hc.Forked)
	want := predict(t, hc, `{}`).Env
	want[python.EnvImportsReport] = filepath.Join(s.Dir, "imported-modules.json")
	_, port, _ := net.SplitHostPort(h.Address)
	want["PORT"] = port
	require.Equal(t, want, forked.Env, "a forked replica's environment is a cold one's, with the imports report")
	require.NotContains(t, forked.Env, "FORKSERVER_ONLY")
	require.Contains(t, forked.Env[python.EnvSecretsJSON], "secret-of-a")

	// The agent finds the forked replica as one it started, also after its own restart.
	require.Equal(t, s.ReplicaID, forked.ProcReplicaID)
	adopted, err := process.New("agent-1").Adopt(context.Background(), h)
	require.NoError(t, err)
	require.True(t, adopted, "a restarted agent adopts the forked replica")
}

func TestForkServer_HoldsNoSecretAndAReplicaSeesOnlyItsOwn(t *testing.T) {
	pythonLib(t)
	r, dir := newRuntime(t), forkDir(t)
	a := pySpec(t, dir, "dep-a", map[string]string{"hf_token": "secret-of-deployment-a"})
	b := pySpec(t, dir, "dep-b", map[string]string{"hf_token": "secret-of-deployment-b"})

	ha := startForked(t, r, a)
	hb := startForked(t, r, b)
	envA, envB := predict(t, ha, `{}`).Env, predict(t, hb, `{}`).Env
	require.Contains(t, envA[python.EnvSecretsJSON], "secret-of-deployment-a")
	require.Contains(t, envB[python.EnvSecretsJSON], "secret-of-deployment-b")
	for k, v := range envB {
		require.NotContains(t, v, "secret-of-deployment-a", "deployment b's replica sees a's secret in %s", k)
	}

	pids := forkServerPIDs(t, dir)
	require.NotEmpty(t, pids)
	for _, pid := range pids {
		mem := readableMemory(t, pid)
		require.NotEmpty(t, mem)
		for _, secret := range []string{"secret-of-deployment-a", "secret-of-deployment-b"} {
			require.False(t, bytes.Contains(mem, []byte(secret)), "fork server %d holds %q", pid, secret)
		}
	}
}

// readableMemory is what can be read of pid's writable and readable mappings.
func readableMemory(t *testing.T, pid int) []byte {
	t.Helper()
	mem, err := proctest.ReadableMemory(pid)
	require.NoError(t, err)
	return mem
}

func TestForkServer_StopAndCrashAreSeenAsWithAColdStart(t *testing.T) {
	pythonLib(t)
	for _, prewarm := range []bool{false, true} {
		t.Run(fmt.Sprintf("prewarm=%v", prewarm), func(t *testing.T) {
			r, dir := newRuntime(t), forkDir(t)
			begin := func() runtime.Handle {
				s := pySpec(t, dir, "dep-a", nil)
				if !prewarm {
					s.Prewarm = nil
					return start(t, r, s)
				}
				return startForked(t, r, s)
			}

			h := begin()
			predict(t, h, `{}`)
			began := time.Now()
			require.NoError(t, r.Stop(context.Background(), h, 5*time.Second))
			require.Less(t, time.Since(began), 5*time.Second, "the server exits on SIGTERM, within the grace")
			st, err := r.Status(context.Background(), h)
			require.NoError(t, err)
			require.False(t, st.Running, "a stopped replica is not running")
			stdout, err := process.TailLog(h.LogDir, "stdout", 5)
			require.NoError(t, err)
			require.Contains(t, strings.Join(stdout, "\n"), "drained; exiting", "the server saw SIGTERM and drained")

			h = begin()
			predict(t, h, `{}`)
			_, _ = http.Post("http://"+h.Address+"/v1/models/model:predict", "application/json", strings.NewReader(`{"crash": true}`))
			require.Eventually(t, func() bool {
				st, err = r.Status(context.Background(), h)
				return err == nil && !st.Running
			}, 10*time.Second, 20*time.Millisecond)
			require.NotNil(t, st.ExitCode)
			require.Equal(t, 128+int(syscall.SIGKILL), *st.ExitCode, "a crashed replica's exit code: %s", st.Error)
			require.NotEmpty(t, st.LogTail, "a crashed replica's report carries its last lines")
		})
	}
}

func TestForkServer_LearnsTheImportsOfAReplicaForTheNextOne(t *testing.T) {
	pythonLib(t)
	r, dir := newRuntime(t), forkDir(t)
	first := start(t, r, pySpec(t, dir, "dep-a", nil))
	require.False(t, predict(t, first, `{}`).Prewarmed, "nothing declared, nothing learned yet")

	learned := filepath.Join(dir, process.LearnedImportsFile)
	require.Eventually(t, func() bool {
		_, err := os.Stat(learned)
		return err == nil
	}, 10*time.Second, 20*time.Millisecond, "the replica's imports are recorded")
	var mods []string
	b, err := os.ReadFile(learned)
	require.NoError(t, err)
	require.NoError(t, json.Unmarshal(b, &mods))
	require.Contains(t, mods, heavyModule)
	require.NotContains(t, mods, "model", "the package's own module is read afresh by each replica")
	require.NotContains(t, mods, "json", "the standard library is not learned")

	second := startForked(t, r, pySpec(t, dir, "dep-a", nil))
	deadline := time.Now().Add(20 * time.Second)
	for !predict(t, second, `{}`).Prewarmed {
		// The server with the learned modules may still be importing: the one before forked.
		require.True(t, time.Now().Before(deadline), "no fork server imported the learned %s:\n%s", heavyModule, forkLog(pySpec(t, dir, "x", nil)))
		require.NoError(t, r.Stop(context.Background(), second, 5*time.Second))
		time.Sleep(100 * time.Millisecond)
		second = startForked(t, r, pySpec(t, dir, "dep-a", nil))
	}
}

func TestForkServer_AModuleThatFailsToImportIsLeftOut(t *testing.T) {
	pythonLib(t)
	r, dir := newRuntime(t), forkDir(t)
	s := pySpec(t, dir, "dep-a", nil, "mp_no_such_module", heavyModule)
	h := startForked(t, r, s)
	require.True(t, predict(t, h, `{}`).Prewarmed, "the other modules are imported")
	require.Contains(t, forkLog(s), "import mp_no_such_module failed, left out")
}

func TestForkServer_ReplicaStartsColdWhenItsForkServerIsGone(t *testing.T) {
	pythonLib(t)
	r, dir := newRuntime(t), forkDir(t)
	predict(t, startForked(t, r, pySpec(t, dir, "dep-a", nil)), `{}`)
	// Every fork server of the directory dies: the first, and the one the first replica's
	// report may have started.
	require.Eventually(t, func() bool {
		for _, pid := range forkServerPIDs(t, dir) {
			require.NoError(t, syscall.Kill(pid, syscall.SIGKILL))
		}
		time.Sleep(300 * time.Millisecond)
		return len(forkServerPIDs(t, dir)) == 0
	}, 10*time.Second, 10*time.Millisecond)

	h := start(t, r, pySpec(t, dir, "dep-a", nil))
	require.False(t, h.Forked, "with its fork server gone the replica starts cold")
	predict(t, h, `{}`)
	// A new fork server takes over for the replicas after.
	predict(t, startForked(t, r, pySpec(t, dir, "dep-a", nil)), `{}`)
}
