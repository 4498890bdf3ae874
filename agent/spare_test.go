package agent_test

import (
	"bytes"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/modelplane/modelplane"
	"github.com/modelplane/modelplane/agent"
	"github.com/modelplane/modelplane/agent/agentproto"
	"github.com/modelplane/modelplane/internal/proctest"
	"github.com/modelplane/modelplane/patch"
)

// spareProcesses are the warm spares waiting now (forkserver.py's spare mode): a spare that
// became a replica keeps its command line, but leads a session of its own.
func spareProcesses() []proctest.Process {
	return proctest.Where(func(p proctest.Process) bool {
		if p.PGID == p.PID {
			return false
		}
		cmdline, err := os.ReadFile(fmt.Sprintf("/proc/%d/cmdline", p.PID))
		return err == nil && bytes.Contains(cmdline, []byte("\x00--spare\x00"))
	})
}

// processUID reads a process's real user ID from /proc.
func processUID(t *testing.T, pid int) int {
	t.Helper()
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	require.NoError(t, err)
	for _, line := range strings.Split(string(b), "\n") {
		if f := strings.Fields(line); len(f) > 1 && f[0] == "Uid:" {
			uid, err := strconv.Atoi(f[1])
			require.NoError(t, err)
			return uid
		}
	}
	t.Fatalf("no Uid line in /proc/%d/status", pid)
	return 0
}

// TestAgent_ReplicaUsersStartFromWarmSpares runs a pre-warming root agent: each python
// replica of a replica user after the first starts from its environment's warm spare, which
// ran as a replica user of its own (never root) before it knew its replica and held no
// secret; two deployments' replicas from spares run as different users, in directories laid
// out as a cold start's, and cannot read each other's secrets or home. A restart in place
// keeps the replica's user. A restarted agent
// adopts a replica that was a spare, and the spare it had waiting ends with it.
func TestAgent_ReplicaUsersStartFromWarmSpares(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Fatal("this test checks replica users, which need the agent to run as root; run the tests as root (CI does)")
	}
	base := reachableTempDir(t)
	dir := filepath.Join(base, "agent")
	defer stopAll(t, dir)
	prewarm := func(c *agent.Config) { c.PythonPrewarm = true }
	n := startNode(t, dir, "none", prewarm)
	require.Equal(t, agentproto.IsolationReplicaUsers, n.inventory().Isolation.Mode)

	src := t.TempDir()
	require.NoError(t, os.MkdirAll(filepath.Join(src, "model"), 0o755))
	require.NoError(t, os.WriteFile(filepath.Join(src, "config.yaml"),
		[]byte("model_name: prober\nsecrets:\n  hf_token: null\nruntime:\n  prewarm_imports: [xml.dom.minidom]\n"), 0o644))
	require.NoError(t, os.WriteFile(filepath.Join(src, "model", "model.py"), proberSource("v1"), 0o644))
	url, sum := pkg(t, src)

	var secrets []string
	start := func(deployment string) (agentproto.Replica, bool) {
		req := startReq(newID(), url, sum, 0)
		req.DeploymentID = deployment
		req.Secrets = map[string]string{"hf_token": "hf-secret-" + req.ReplicaID}
		secrets = append(secrets, req.Secrets["hf_token"])
		n.mustStart(req)
		r := n.waitState(req.ReplicaID, modelplane.ReplicaReady)
		return r, handleOf(t, dir, r.ID, pidOf(t, dir, r.ID)).Forked
	}
	// The first replica starts cold while the environment's spare imports; a later one takes
	// the spare.
	fromSpare := func(deployment string) agentproto.Replica {
		deadline := time.Now().Add(60 * time.Second)
		for {
			r, warm := start(deployment)
			if warm {
				return r
			}
			require.True(t, time.Now().Before(deadline), "no replica started from a warm spare")
			_, _ = n.call(http.MethodDelete, "/v1/replicas/"+r.ID, nil, token)
			time.Sleep(200 * time.Millisecond)
		}
	}
	// The spare waiting for the next replica: its own user, never root, and no secret of the
	// replicas started so far.
	checkSpare := func(taken ...int) {
		t.Helper()
		var spares []proctest.Process
		require.Eventually(t, func() bool { spares = spareProcesses(); return len(spares) == 1 }, 30*time.Second, 50*time.Millisecond)
		uid := processUID(t, spares[0].PID)
		require.NotZero(t, uid, "a spare never runs as root")
		require.GreaterOrEqual(t, uid, 70000)
		require.LessOrEqual(t, uid, 79999)
		require.NotContains(t, taken, uid, "a waiting spare's user is no replica's")
		mem, err := proctest.ReadableMemory(spares[0].PID)
		require.NoError(t, err)
		require.NotEmpty(t, mem)
		for _, secret := range secrets {
			require.False(t, bytes.Contains(mem, []byte(secret)), "spare %d holds %q", spares[0].PID, secret)
		}
	}
	a := fromSpare("dep0000a")
	checkSpare(processUID(t, pidOf(t, dir, a.ID)))
	b := fromSpare("dep0000b")
	checkSpare(processUID(t, pidOf(t, dir, a.ID)), processUID(t, pidOf(t, dir, b.ID)))

	pa, pb := runProbe(t, a), runProbe(t, b)
	for _, p := range []probe{pa, pb} {
		require.GreaterOrEqual(t, p.UID, 70000)
		require.LessOrEqual(t, p.UID, 79999)
		require.Equal(t, p.UID, p.GID)
		require.Empty(t, p.Groups, "no supplementary group")
		require.True(t, p.SecretSeen)
	}
	require.NotEqual(t, pa.UID, pb.UID, "each replica from a spare runs as a user of its own")
	require.Equal(t, pa.UID, processUID(t, pidOf(t, dir, a.ID)))

	// The directory is laid out for the spare's user, as for a cold start's.
	own := filepath.Join(dir, "replicas", a.ID)
	for path, want := range map[string]struct {
		uid, gid int
		mode     os.FileMode
	}{
		own: {0, pa.UID, 0o750}, filepath.Join(own, "home"): {pa.UID, pa.UID, 0o700}, filepath.Join(own, "tmp"): {pa.UID, pa.UID, 0o700},
		filepath.Join(own, "secrets", "hf_token"): {0, pa.UID, 0o640}, filepath.Join(own, "server.py"): {0, pa.UID, 0o640},
	} {
		info, err := os.Lstat(path)
		require.NoError(t, err)
		st := info.Sys().(*syscall.Stat_t)
		require.Equal(t, want, struct {
			uid, gid int
			mode     os.FileMode
		}{int(st.Uid), int(st.Gid), info.Mode().Perm()}, path)
	}

	other := filepath.Join(dir, "replicas", b.ID)
	forbidden := []string{other, filepath.Join(other, "secrets", "hf_token"), filepath.Join(other, "home"),
		fmt.Sprintf("/proc/%d/environ", pb.PID), filepath.Join(dir, "state.json")}
	allowed := []string{filepath.Join(own, "secrets", "hf_token"), filepath.Join(own, "home"), filepath.Join(own, "pkg")}
	probed := runProbe(t, a, append(forbidden, allowed...)...)
	for _, path := range forbidden {
		require.Equal(t, "PermissionError", probed.Results[path], "reading %s", path)
	}
	for _, path := range allowed {
		require.Equal(t, "read", probed.Results[path], "reading %s", path)
	}
	require.Equal(t, map[string]string{"HOME": "wrote", "TMPDIR": "wrote"}, probed.Wrote)

	// A restart in place keeps the replica's user, whose home holds what it wrote: it starts
	// cold, not from a spare.
	code, body := n.call(http.MethodPost, "/v1/replicas/"+a.ID+"/patch",
		agentproto.PatchRequest{PatchHash: "hash-v2", Files: patch.FileSet{Files: []patch.File{
			{Path: "model/model.py", Content: proberSource("v2")}}}, How: patch.HowRestart}, token)
	require.Equal(t, http.StatusOK, code, string(body))
	a = n.waitState(a.ID, modelplane.ReplicaReady)
	restarted := runProbe(t, a)
	require.Equal(t, "v2", restarted.Version)
	require.Equal(t, pa.UID, restarted.UID)
	require.False(t, handleOf(t, dir, a.ID, pidOf(t, dir, a.ID)).Forked)

	// After a restart the agent adopts the replica that was a spare; the spare that waited
	// ends with the agent that started it and is not taken for a replica.
	pids := replicaProcesses(a.ID)
	require.Len(t, pids, 1, "the replica shows its own ID in /proc/PID/environ")
	n.shutdown()
	require.Eventually(t, func() bool { return len(spareProcesses()) == 0 }, 10*time.Second, 50*time.Millisecond,
		"the agent's spares end when it stops")
	n2 := startNode(t, dir, "none", prewarm)
	after := n2.waitState(a.ID, modelplane.ReplicaReady)
	require.Equal(t, pids, replicaProcesses(a.ID), "the replica is adopted, not started again")
	require.Equal(t, pa.UID, runProbe(t, after).UID)
}
