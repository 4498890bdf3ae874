package process_test

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io/fs"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/modelplane/modelplane/agent/runtime"
	"github.com/modelplane/modelplane/agent/runtime/process"
	"github.com/modelplane/modelplane/internal/proctest"
)

// users is a pool of replica user IDs for the tests, as the agent's is: Claim lays the
// replica's directory out for the spare's user (root:<gid>, group-readable; home its own).
type users struct {
	mu         sync.Mutex
	next       int
	held       map[int]bool
	claimed    []int
	reserveErr error
	claimErr   error
	dir        string // the directory of the replica being started
}

func newUsers(first int) *users { return &users{next: first, held: map[int]bool{}} }

func (u *users) Reserve() (int, error) {
	u.mu.Lock()
	defer u.mu.Unlock()
	if u.reserveErr != nil {
		return 0, u.reserveErr
	}
	uid := u.next
	u.next++
	u.held[uid] = true
	return uid, nil
}

func (u *users) Release(uid int) {
	u.mu.Lock()
	defer u.mu.Unlock()
	delete(u.held, uid)
}

func (u *users) Claim(uid int) error {
	u.mu.Lock()
	delete(u.held, uid)
	u.claimed = append(u.claimed, uid)
	dir, claimErr := u.dir, u.claimErr
	u.mu.Unlock()
	if claimErr != nil {
		return claimErr
	}
	err := filepath.WalkDir(dir, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if err := os.Lchown(p, 0, uid); err != nil {
			return err
		}
		info, err := d.Info()
		if err != nil {
			return err
		}
		m := info.Mode().Perm() & 0o700
		return os.Chmod(p, m|(m>>3)&^0o020)
	})
	if err != nil {
		return err
	}
	home := filepath.Join(dir, "home")
	if err := os.Mkdir(home, 0o700); err != nil {
		return err
	}
	return os.Chown(home, uid, uid)
}

func (u *users) heldNow() map[int]bool {
	u.mu.Lock()
	defer u.mu.Unlock()
	out := map[int]bool{}
	for k, v := range u.held {
		out[k] = v
	}
	return out
}

// asRoot fails a test that needs root to run processes as other users.
func asRoot(t *testing.T) {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Fatal("warm spares run as replica users, which needs root; run the tests as root (CI does)")
	}
}

// reachable lets other users pass through dir and its parent (a test's temporary
// directories), as a replica user passes through the agent's state directory.
func reachable(t *testing.T, dir string) {
	t.Helper()
	require.NoError(t, os.Chmod(filepath.Dir(dir), 0o711))
	require.NoError(t, os.Chmod(dir, 0o755))
}

// userPython is a python3 that every user can run: not one in root's home.
func userPython(t *testing.T) string {
	t.Helper()
	for _, p := range []string{"/usr/local/bin/python3", "/usr/bin/python3"} {
		if info, err := os.Stat(p); err == nil && info.Mode().Perm()&0o001 != 0 {
			return p
		}
	}
	t.Fatal("no python3 that other users can run in /usr/local/bin or /usr/bin")
	return ""
}

// userLib is pythonLib in a directory replica users can read.
func userLib(t *testing.T) {
	t.Helper()
	pythonLib(t)
	reachable(t, os.Getenv("PYTHONPATH"))
}

// userSpec is a python replica of a replica user, started from spares of pool.
func userSpec(t *testing.T, dir, deployment string, pool *users, secrets map[string]string, imports ...string) runtime.Spec {
	t.Helper()
	s := pySpec(t, dir, deployment, secrets, imports...)
	reachable(t, s.Dir)
	s.Command[0] = userPython(t)
	s.UID = 60000 // the ID drawn when the replica was placed; a spare's replaces it
	s.Prewarm.Users = pool
	pool.mu.Lock()
	pool.dir = s.Dir
	pool.mu.Unlock()
	return s
}

// spares are the warm spares waiting now: a spare that became a replica keeps its command
// line, but leads a session of its own.
func spares() []proctest.Process {
	return proctest.Where(func(p proctest.Process) bool {
		if p.PGID == p.PID {
			return false
		}
		cmdline, err := os.ReadFile(fmt.Sprintf("/proc/%d/cmdline", p.PID))
		return err == nil && bytes.Contains(cmdline, []byte("\x00--spare\x00"))
	})
}

func processIDs(t *testing.T, pid int) (uid, gid int, groups string) {
	t.Helper()
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	require.NoError(t, err)
	for _, line := range strings.Split(string(b), "\n") {
		k, v, _ := strings.Cut(line, ":")
		f := strings.Fields(v)
		switch k {
		case "Uid":
			uid, _ = strconv.Atoi(f[0])
		case "Gid":
			gid, _ = strconv.Atoi(f[0])
		case "Groups":
			groups = strings.Join(f, " ")
		}
	}
	return uid, gid, groups
}

// startFromSpare starts specs made by next until one starts from a spare (the first ones
// start cold while the spare imports).
func startFromSpare(t *testing.T, r *process.Runtime, next func() runtime.Spec) (runtime.Handle, runtime.Spec) {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for {
		s := next()
		h := start(t, r, s)
		if h.Forked {
			return h, s
		}
		require.NoError(t, r.Stop(context.Background(), h, 5*time.Second))
		require.True(t, time.Now().Before(deadline), "no replica started from a spare; log:\n%s", forkLog(s))
		time.Sleep(100 * time.Millisecond)
	}
}

func TestSpare_ReplicaIsTheSpareRunningAsItsUserWithExactlyItsEnvironment(t *testing.T) {
	asRoot(t)
	userLib(t)
	r, dir, pool := newRuntime(t), forkDir(t), newUsers(71000)
	h, s := startFromSpare(t, r, func() runtime.Spec {
		return userSpec(t, dir, "dep-a", pool, map[string]string{"hf_token": "secret-of-a"}, heavyModule)
	})
	got := predict(t, h, `{}`)
	require.True(t, got.Prewarmed, "the spare imported %s before the model", heavyModule)
	uid, gid, groups := processIDs(t, h.PID)
	require.Equal(t, pool.claimed[len(pool.claimed)-1], uid, "the replica runs as the spare's user")
	require.GreaterOrEqual(t, uid, 71000)
	require.Equal(t, uid, gid)
	require.Empty(t, groups, "no supplementary group")
	require.Equal(t, s.ReplicaID, got.ProcReplicaID)
	require.Equal(t, s.ReplicaID, got.Env[process.EnvReplicaID])
	require.Contains(t, got.Env["MODELPLANE_SECRETS_JSON"], "secret-of-a")
	require.NotContains(t, got.Env, "FORKSERVER_ONLY")

	// Exactly a cold start's environment, as the same user.
	cold := s
	cold.Prewarm, cold.UID, cold.Port, cold.ReplicaID = nil, uid, freePort(t), s.ReplicaID+"-cold"
	hc := start(t, r, cold)
	require.False(t, hc.Forked)
	want := predict(t, hc, `{}`).Env
	want["PORT"], want[process.EnvReplicaID] = strconv.Itoa(s.Port), s.ReplicaID
	require.Equal(t, want, got.Env)

	// A restarted agent adopts it; an agent that does not know it finds it an orphan.
	adopted, err := process.New("agent-1").Adopt(context.Background(), h)
	require.NoError(t, err)
	require.True(t, adopted)
	orphans, err := process.New("agent-1").Orphans(context.Background(), map[string]bool{cold.ReplicaID: true})
	require.NoError(t, err)
	var ids []string
	for _, o := range orphans {
		ids = append(ids, o.ReplicaID)
	}
	require.Equal(t, []string{s.ReplicaID}, ids, "the waiting spare is no orphan; the replica it became is")
}

func TestSpare_StopAndCrashAreSeenAsWithAColdStart(t *testing.T) {
	asRoot(t)
	userLib(t)
	r, dir, pool := newRuntime(t), forkDir(t), newUsers(71100)
	next := func() runtime.Spec { return userSpec(t, dir, "dep-a", pool, nil) }
	h, _ := startFromSpare(t, r, next)
	predict(t, h, `{}`)
	require.NoError(t, r.Stop(context.Background(), h, 5*time.Second))
	st, err := r.Status(context.Background(), h)
	require.NoError(t, err)
	require.False(t, st.Running)
	stdout, err := process.TailLog(h.LogDir, "stdout", 5)
	require.NoError(t, err)
	require.Contains(t, strings.Join(stdout, "\n"), "drained; exiting", "the server saw SIGTERM and drained")

	h, _ = startFromSpare(t, r, next)
	predict(t, h, `{}`)
	_, _ = http.Post("http://"+h.Address+"/v1/models/model:predict", "application/json", strings.NewReader(`{"crash": true}`))
	require.Eventually(t, func() bool {
		st, err = r.Status(context.Background(), h)
		return err == nil && !st.Running
	}, 10*time.Second, 20*time.Millisecond)
	require.NotNil(t, st.ExitCode, "a spare is the agent's child: its exit code is known")
	require.Equal(t, 128+int(syscall.SIGKILL), *st.ExitCode)
}

func TestSpare_ADeadSpareIsReplacedAndThatStartGoesCold(t *testing.T) {
	asRoot(t)
	userLib(t)
	r, dir, pool := newRuntime(t), forkDir(t), newUsers(71200)
	next := func() runtime.Spec { return userSpec(t, dir, "dep-a", pool, nil) }
	h, _ := startFromSpare(t, r, next)
	predict(t, h, `{}`)
	var waiting []proctest.Process
	require.Eventually(t, func() bool { waiting = spares(); return len(waiting) == 1 }, 10*time.Second, 20*time.Millisecond)
	uid, _, _ := processIDs(t, waiting[0].PID)
	require.NoError(t, syscall.Kill(waiting[0].PID, syscall.SIGKILL))
	require.Eventually(t, func() bool { return !pool.heldNow()[uid] }, 10*time.Second, 20*time.Millisecond,
		"a dead spare's user ID goes back")

	s := next()
	hc := start(t, r, s)
	require.False(t, hc.Forked, "with its spare dead the replica starts cold")
	predict(t, hc, `{}`)
	uid, _, _ = processIDs(t, hc.PID)
	require.Equal(t, s.UID, uid, "a cold start runs as the user it was placed with")
	h, _ = startFromSpare(t, r, next)
	predict(t, h, `{}`)
}

func TestSpare_WithoutAUserIDToRunAsTheReplicaStartsCold(t *testing.T) {
	asRoot(t)
	userLib(t)
	r, dir, pool := newRuntime(t), forkDir(t), newUsers(71300)
	pool.reserveErr = errors.New("every replica user ID is in use")
	s := userSpec(t, dir, "dep-a", pool, nil, heavyModule)
	h := start(t, r, s)
	require.False(t, h.Forked)
	require.False(t, predict(t, h, `{}`).Prewarmed)
	uid, _, _ := processIDs(t, h.PID)
	require.Equal(t, s.UID, uid)
	require.Empty(t, spares())
}

func TestSpare_AReplicaThatCannotTakeTheSpareStartsColdAsItsUser(t *testing.T) {
	asRoot(t)
	userLib(t)
	r, dir, pool := newRuntime(t), forkDir(t), newUsers(71400)
	first := userSpec(t, dir, "dep-a", pool, nil)
	predict(t, start(t, r, first), `{}`)
	require.Eventually(t, func() bool { return len(spares()) == 1 }, 10*time.Second, 20*time.Millisecond)
	waiting := spares()[0].PID
	// Ready once it has imported (nothing): the next start takes it.
	require.Eventually(t, func() bool { return strings.Contains(forkLog(first), fmt.Sprintf("spare %d ready", waiting)) },
		10*time.Second, 20*time.Millisecond)

	// Longer than the environment block has room for: the spare refuses it.
	s := userSpec(t, dir, "dep-a", pool, nil)
	s.ReplicaID = "r" + strings.Repeat("x", 70)
	h := start(t, r, s)
	require.False(t, h.Forked)
	predict(t, h, `{}`)
	uid, _, _ := processIDs(t, h.PID)
	require.Equal(t, pool.claimed[len(pool.claimed)-1], uid, "the cold start runs as the spare's user, whose directory it is now")
	require.NotEqual(t, waiting, h.PID)
	require.Eventually(t, func() bool {
		_, err := os.Stat(fmt.Sprintf("/proc/%d", waiting))
		return err != nil
	}, 10*time.Second, 20*time.Millisecond, "the spare that failed was stopped")
}

func TestSpare_AReplicaWhoseDirectoryCannotBePreparedFails(t *testing.T) {
	asRoot(t)
	userLib(t)
	r, dir, pool := newRuntime(t), forkDir(t), newUsers(71500)
	next := func() runtime.Spec { return userSpec(t, dir, "dep-a", pool, nil) }
	h, _ := startFromSpare(t, r, next) // a spare is waiting again afterwards
	predict(t, h, `{}`)
	var waiting []proctest.Process
	require.Eventually(t, func() bool { waiting = spares(); return len(waiting) == 1 }, 10*time.Second, 20*time.Millisecond)
	require.Eventually(t, func() bool {
		return strings.Contains(forkLog(next()), fmt.Sprintf("spare %d ready", waiting[0].PID))
	}, 10*time.Second, 20*time.Millisecond)

	pool.mu.Lock()
	pool.claimErr = errors.New("disk full")
	pool.mu.Unlock()
	_, err := r.Start(context.Background(), next())
	require.ErrorContains(t, err, "disk full")
	require.Eventually(t, func() bool {
		_, err := os.Stat(fmt.Sprintf("/proc/%d", waiting[0].PID))
		return err != nil
	}, 10*time.Second, 20*time.Millisecond, "the spare was stopped")
}

func TestSpare_StopSparesEndsTheWaitingSpares(t *testing.T) {
	asRoot(t)
	userLib(t)
	r, dir, pool := newRuntime(t), forkDir(t), newUsers(71600)
	predict(t, start(t, r, userSpec(t, dir, "dep-a", pool, nil)), `{}`)
	require.Eventually(t, func() bool { return len(spares()) == 1 }, 10*time.Second, 20*time.Millisecond)
	r.StopSpares()
	require.Empty(t, spares())
	require.Eventually(t, func() bool { return len(pool.heldNow()) == 0 }, 10*time.Second, 20*time.Millisecond)
}
