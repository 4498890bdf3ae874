package process_test

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/modelplane/modelplane"
	"github.com/modelplane/modelplane/agent/runtime"
	"github.com/modelplane/modelplane/agent/runtime/process"
)

func spec(t *testing.T, script string) runtime.Spec {
	t.Helper()
	dir := t.TempDir()
	pkg := filepath.Join(dir, "pkg")
	require.NoError(t, os.MkdirAll(pkg, 0o755))
	return runtime.Spec{
		ReplicaID: "r" + modelplane.NewID(11), DeploymentID: "dep12345", Environment: "production",
		Dir: dir, PackageDir: pkg, Command: []string{"/bin/sh", "-c", script},
		Env: map[string]string{"GREETING": "hello"}, GPUUUIDs: []string{"GPU-a", "GPU-b"}, Port: 18080,
	}
}

func start(t *testing.T, r *process.Runtime, s runtime.Spec) runtime.Handle {
	t.Helper()
	h, err := r.Start(context.Background(), s)
	require.NoError(t, err)
	t.Cleanup(func() { _ = r.Stop(context.Background(), h, time.Second) })
	return h
}

func TestStart_SetsEnvironmentAndRunsInPackageDir(t *testing.T) {
	r := process.New("agent-1")
	s := spec(t, `env > env.txt; pwd > pwd.txt; sleep 30`)
	h := start(t, r, s)
	require.Equal(t, "127.0.0.1:18080", h.Address)
	// pwd.txt is written after env.txt: once it has a line, both are complete.
	require.Eventually(t, func() bool {
		b, err := os.ReadFile(filepath.Join(s.PackageDir, "pwd.txt"))
		return err == nil && strings.HasSuffix(string(b), "\n")
	}, 5*time.Second, 20*time.Millisecond)
	b, _ := os.ReadFile(filepath.Join(s.PackageDir, "env.txt"))
	env := string(b)
	for _, want := range []string{"PORT=18080", "CUDA_VISIBLE_DEVICES=GPU-a,GPU-b", "NVIDIA_VISIBLE_DEVICES=GPU-a,GPU-b",
		"MODELPLANE_ENVIRONMENT=production", "MODELPLANE_DEPLOYMENT_ID=dep12345", "GREETING=hello",
		"MODELPLANE_REPLICA_ID=" + s.ReplicaID, "MODELPLANE_BIND=127.0.0.1"} {
		require.Contains(t, env, want+"\n")
	}
	pwd, _ := os.ReadFile(filepath.Join(s.PackageDir, "pwd.txt"))
	require.Equal(t, s.PackageDir, strings.TrimSpace(string(pwd)))
}

func TestStart_ReplicaHostIsTheAddressAndTheServersMODELPLANE_BIND(t *testing.T) {
	r := process.New("agent-1")
	s := spec(t, `echo "$MODELPLANE_BIND" > bind.txt; sleep 30`)
	s.Host, s.Env["MODELPLANE_BIND"] = "127.0.0.2", "0.0.0.0"
	h := start(t, r, s)
	require.Equal(t, "127.0.0.2:18080", h.Address)
	require.Eventually(t, func() bool {
		b, err := os.ReadFile(filepath.Join(s.PackageDir, "bind.txt"))
		return err == nil && strings.TrimSpace(string(b)) == "127.0.0.2"
	}, 5*time.Second, 20*time.Millisecond, "the runtime's MODELPLANE_BIND overrides the package's")

	s = spec(t, `sleep 30`)
	s.Host = "fd00::7"
	require.Equal(t, "[fd00::7]:18080", start(t, r, s).Address)
}

func TestStatus_ReportsExitCodeAndLogTail(t *testing.T) {
	r := process.New("agent-1")
	h := start(t, r, spec(t, `echo starting; echo "model.py: boom" >&2; exit 3`))
	require.Eventually(t, func() bool {
		st, err := r.Status(context.Background(), h)
		return err == nil && !st.Running
	}, 5*time.Second, 20*time.Millisecond)
	st, err := r.Status(context.Background(), h)
	require.NoError(t, err)
	require.NotNil(t, st.ExitCode)
	require.Equal(t, 3, *st.ExitCode)
	require.Equal(t, []string{"model.py: boom"}, st.LogTail)
}

func TestStop_GracefulThenKill(t *testing.T) {
	r := process.New("agent-1")
	// Exits on SIGTERM: stops well within the grace period.
	s := spec(t, `trap 'echo term > got-term; exit 0' TERM; while true; do sleep 0.05; done`)
	h := start(t, r, s)
	time.Sleep(200 * time.Millisecond) // let the shell install its trap
	began := time.Now()
	require.NoError(t, r.Stop(context.Background(), h, 5*time.Second))
	require.Less(t, time.Since(began), 3*time.Second)
	_, err := os.Stat(filepath.Join(s.PackageDir, "got-term"))
	require.NoError(t, err, "the replica must have received SIGTERM")

	// Ignores SIGTERM: killed when the grace period ends.
	h2 := start(t, r, spec(t, `trap '' TERM; while true; do sleep 0.05; done`))
	time.Sleep(200 * time.Millisecond)
	began = time.Now()
	require.NoError(t, r.Stop(context.Background(), h2, 500*time.Millisecond))
	require.GreaterOrEqual(t, time.Since(began), 500*time.Millisecond)
	st, err := r.Status(context.Background(), h2)
	require.NoError(t, err)
	require.False(t, st.Running)

	// Stopping a replica that is gone is fine.
	require.NoError(t, r.Stop(context.Background(), h2, time.Second))
}

func TestStop_KillsTheWholeProcessGroup(t *testing.T) {
	r := process.New("agent-1")
	s := spec(t, `sleep 300 & echo $! > child.pid; wait`)
	h := start(t, r, s)
	var childPID string
	require.Eventually(t, func() bool {
		b, err := os.ReadFile(filepath.Join(s.PackageDir, "child.pid"))
		childPID = strings.TrimSpace(string(b))
		return err == nil && childPID != ""
	}, 5*time.Second, 20*time.Millisecond)
	require.NoError(t, r.Stop(context.Background(), h, 2*time.Second))
	require.Eventually(t, func() bool {
		_, err := os.Stat("/proc/" + childPID)
		return err != nil
	}, 5*time.Second, 20*time.Millisecond, "the replica's own child must be stopped too")
}

func TestAdopt_AfterRestartAndOrphans(t *testing.T) {
	first := process.New("agent-1")
	h := start(t, first, spec(t, `sleep 30`))

	// A new runtime instance is what a restarted agent has.
	again := process.New("agent-1")
	ok, err := again.Adopt(context.Background(), h)
	require.NoError(t, err)
	require.True(t, ok, "a live replica must be adopted")
	st, err := again.Status(context.Background(), h)
	require.NoError(t, err)
	require.True(t, st.Running)

	stale := h
	stale.StartTime++
	ok, err = again.Adopt(context.Background(), stale)
	require.NoError(t, err)
	require.False(t, ok, "a reused PID (other start time) must not be adopted")

	other := h
	other.ReplicaID = "somebody-else"
	ok, _ = again.Adopt(context.Background(), other)
	require.False(t, ok, "a process of another replica must not be adopted")
	ok, _ = process.New("agent-2").Adopt(context.Background(), h)
	require.False(t, ok, "another agent's process must not be adopted")

	orphans, err := again.Orphans(context.Background(), map[string]bool{})
	require.NoError(t, err)
	require.Len(t, orphans, 1)
	require.Equal(t, h.ReplicaID, orphans[0].ReplicaID)
	require.Equal(t, h.PID, orphans[0].PID)
	orphans, err = again.Orphans(context.Background(), map[string]bool{h.ReplicaID: true})
	require.NoError(t, err)
	require.Empty(t, orphans)

	require.NoError(t, again.Stop(context.Background(), h, time.Second))
	ok, _ = again.Adopt(context.Background(), h)
	require.False(t, ok, "a stopped replica must not be adopted")
}

func TestRotateLogs_KeepsWritingAfterTruncate(t *testing.T) {
	r := process.New("agent-1")
	s := spec(t, `i=0; while [ $i -lt 200 ]; do echo "line $i"; i=$((i+1)); sleep 0.005; done; sleep 30`)
	h := start(t, r, s)
	require.Eventually(t, func() bool {
		lines, _ := process.TailLog(h.LogDir, "stdout", 1)
		return len(lines) == 1 && lines[0] == "line 199"
	}, 10*time.Second, 20*time.Millisecond)
	require.NoError(t, process.RotateLogs(h.LogDir, 100, 3))
	old, err := process.TailLog(h.LogDir, "stdout", 1)
	require.NoError(t, err)
	require.Empty(t, old, "the live file is truncated")
	rotated, err := os.ReadFile(filepath.Join(h.LogDir, "stdout.log.1"))
	require.NoError(t, err)
	require.Contains(t, string(rotated), "line 199")
	_, err = process.TailLog(h.LogDir, "nope", 1)
	require.Error(t, err)
}

func TestStart_GivesTheSecretsDirectoryInMODELPLANE_SECRETS_DIR(t *testing.T) {
	r := process.New("agent-1")
	s := spec(t, `cat "$MODELPLANE_SECRETS_DIR/hf_token" > got.txt; sleep 30`)
	s.SecretsDir = filepath.Join(s.Dir, "secrets")
	require.NoError(t, os.MkdirAll(s.SecretsDir, 0o700))
	require.NoError(t, os.WriteFile(filepath.Join(s.SecretsDir, "hf_token"), []byte("tok-1"), 0o600))
	start(t, r, s)
	require.Eventually(t, func() bool {
		b, err := os.ReadFile(filepath.Join(s.PackageDir, "got.txt"))
		return err == nil && string(b) == "tok-1"
	}, 5*time.Second, 20*time.Millisecond, "the server reads its secret from the file the variable points to")
}
