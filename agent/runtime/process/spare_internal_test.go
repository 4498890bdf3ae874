package process

import (
	"log/slog"
	"os"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/modelplane/modelplane/agent/runtime"
)

// pool hands out user IDs from first on and remembers which it holds.
type pool struct {
	mu   sync.Mutex
	next int
	held map[int]bool
}

func (p *pool) Reserve() (int, error) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.next++
	p.held[p.next] = true
	return p.next, nil
}

func (p *pool) Release(uid int) {
	p.mu.Lock()
	defer p.mu.Unlock()
	delete(p.held, uid)
}

func (p *pool) Claim(uid int) error {
	p.Release(uid)
	return nil
}

func (p *pool) holds(uid int) bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.held[uid]
}

// A spare whose agent is gone (its end of the socket pair closed, as when the agent's
// process ends) ends by itself, before or after it is ready, and its user ID goes back; a
// spare that lacks a module the next replica wants is replaced by one that imports both
// lists.
func TestSpare_EndsWhenTheAgentsEndOfItsSocketCloses(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Fatal("warm spares run as replica users, which needs root; run the tests as root (CI does)")
	}
	ss := &spares{agentID: "agent-1", log: slog.Default(), byDir: map[string]*spare{}}
	t.Cleanup(func() { ss.stopAll(true) })
	users := &pool{next: 71900, held: map[int]bool{}}
	p := runtime.Prewarm{Dir: t.TempDir(), Users: users, Imports: []string{"json"}}
	python := "/usr/bin/python3"

	require.Nil(t, ss.take(python, p), "no spare is ready at first")
	first := ss.byDir[p.Dir]
	require.NotNil(t, first)
	require.Equal(t, []string{"json"}, first.imports)
	require.True(t, users.holds(first.uid))
	require.Eventually(t, first.isReady, 10*time.Second, 10*time.Millisecond)

	// Another deployment of the environment wants one more module: the spare is replaced.
	q := p
	q.Imports = []string{"csv"}
	require.Nil(t, ss.take(python, q))
	second := ss.byDir[p.Dir]
	require.Equal(t, []string{"csv", "json"}, second.imports)
	require.Eventually(t, first.gone, 10*time.Second, 10*time.Millisecond, "the replaced spare was stopped")
	require.Eventually(t, func() bool { return !users.holds(first.uid) }, 5*time.Second, 10*time.Millisecond)

	require.Eventually(t, second.isReady, 10*time.Second, 10*time.Millisecond)
	second.conn.Close()
	require.Eventually(t, second.gone, 10*time.Second, 10*time.Millisecond, "the spare ends without its agent")
	require.Eventually(t, func() bool { return !users.holds(second.uid) }, 5*time.Second, 10*time.Millisecond)

	// A spare that ended is replaced at the next start, which goes cold.
	require.Nil(t, ss.take(python, q))
	third := ss.byDir[p.Dir]
	require.NotSame(t, second, third)
	require.Eventually(t, third.isReady, 10*time.Second, 10*time.Millisecond)
	got := ss.take(python, q)
	require.Same(t, third, got, "a ready spare with the modules is taken")
	require.NotSame(t, third, ss.byDir[p.Dir], "and the next one is coming")
	third.kill()
	time.Sleep(100 * time.Millisecond)
	require.True(t, users.holds(third.uid), "a taken spare's user ID is its replica's: it is not given back")
}
