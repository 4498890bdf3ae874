package main

import (
	"encoding/json"
	"fmt"
	"net/http"
	"net/http/httptest"
	"os"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/modelplane/modelplane/apiv1"
)

// logsAPI answers the logs route of model "abcd1234" from lines that tests add as they go,
// selecting by start_epoch_millis, direction and limit as the API does.
type logsAPI struct {
	*httptest.Server
	mu    sync.Mutex
	lines []apiv1.LogV1 // oldest first
	paths []string
}

func newLogsAPI(t *testing.T) *logsAPI {
	a := &logsAPI{}
	a.Server = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		a.mu.Lock()
		defer a.mu.Unlock()
		a.paths = append(a.paths, r.URL.Path)
		q := r.URL.Query()
		startMs, _ := strconv.ParseInt(q.Get("start_epoch_millis"), 10, 64)
		limit, _ := strconv.Atoi(q.Get("limit"))
		out := []apiv1.LogV1{}
		for _, l := range a.lines {
			ns, _ := strconv.ParseInt(l.Timestamp, 10, 64)
			if ns >= startMs*int64(time.Millisecond) {
				out = append(out, l)
			}
		}
		if q.Get("direction") == "desc" {
			slices.Reverse(out)
		}
		out = out[:min(len(out), limit)]
		w.Header().Set("Content-Type", "application/json")
		_ = json.NewEncoder(w).Encode(apiv1.GetLogsResponseV1{Logs: out,
			Unavailable: []apiv1.UnavailableLogsV1{{Replica: "rdown0000000", Node: "node-b", Reason: "the node's agent cannot be reached"}}})
	}))
	t.Cleanup(a.Close)
	return a
}

func (a *logsAPI) add(at time.Time, replica, level, msg string) {
	a.mu.Lock()
	defer a.mu.Unlock()
	l := apiv1.LogV1{Timestamp: fmt.Sprint(at.UnixNano()), Message: msg, Replica: &replica, Component: "model"}
	if level != "" {
		lv := apiv1.LogLevelV1(level)
		l.Level = &lv
	}
	a.lines = append(a.lines, l)
}

func TestLogsCmd_PrintsTheLastLinesOldestFirstAndSaysWhichReplicasCannotBeRead(t *testing.T) {
	api := newLogsAPI(t)
	t0 := time.Now().UTC().Add(-time.Minute).Truncate(time.Millisecond)
	api.add(t0, "ra0000000000", "INFO", "loading")
	api.add(t0.Add(time.Second), "rb0000000000", "", "ready")
	api.add(t0.Add(2*time.Second), "ra0000000000", "ERROR", "boom")
	r := runClient(t, "", nil, "logs", "abcd1234", "--limit", "2", "--url", api.URL, "--api-key", "k")
	require.Zero(t, r.exit, r.stderr)
	require.Equal(t, t0.Add(time.Second).Format("2006-01-02T15:04:05.000000Z")+" rb0000000000 - ready\n"+
		t0.Add(2*time.Second).Format("2006-01-02T15:04:05.000000Z")+" ra0000000000 ERROR boom\n", r.stdout)
	require.Contains(t, r.stderr, "replica rdown0000000 on node node-b cannot be read: the node's agent cannot be reached")
	require.Equal(t, "/v1/models/abcd1234/environments/production/logs", api.paths[0], "production unless told otherwise")

	r = runClient(t, "", nil, "logs", "abcd1234", "--deployment", "dep1", "--environment", "staging", "--url", api.URL, "--api-key", "k")
	require.NotZero(t, r.exit)
	require.Contains(t, r.stderr, "give one, not both")
	r = runClient(t, "", nil, "logs", "abcd1234", "--level", "loud", "--url", api.URL, "--api-key", "k")
	require.NotZero(t, r.exit)
	require.Contains(t, r.stderr, "--level")
}

// syncBuffer is a buffer a process writes while the test reads it.
type syncBuffer struct {
	mu sync.Mutex
	b  strings.Builder
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

func TestLogsCmd_FollowPrintsEachNewLineOnceEvenAtTheSameMillisecond(t *testing.T) {
	api := newLogsAPI(t)
	t0 := time.Now().UTC().Add(-time.Minute).Truncate(time.Millisecond)
	api.add(t0, "ra0000000000", "INFO", "first")
	api.add(t0.Add(500*time.Microsecond), "ra0000000000", "INFO", "second, same millisecond")

	cmd := modelplaneCmd("logs", "abcd1234", "--deployment", "dep1", "-f", "--url", api.URL, "--api-key", "k")
	cmd.Env = append(cmd.Env, "MODELPLANE_URL=", "MODELPLANE_API_KEY=")
	var stdout, stderr syncBuffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	require.NoError(t, cmd.Start())
	defer func() { _ = cmd.Process.Kill() }()
	require.Eventually(t, func() bool { return strings.Count(stdout.String(), "\n") == 2 }, 10*time.Second, 20*time.Millisecond)

	// New lines at the millisecond already shown, and after it.
	api.add(t0.Add(700*time.Microsecond), "rb0000000000", "", "third, same millisecond, another replica")
	api.add(t0.Add(3*time.Millisecond), "ra0000000000", "WARNING", "fourth")
	require.Eventually(t, func() bool { return strings.Count(stdout.String(), "\n") >= 4 }, 10*time.Second, 20*time.Millisecond)
	time.Sleep(2500 * time.Millisecond) // two more polls, which must print nothing again
	require.NoError(t, cmd.Process.Signal(os.Interrupt))
	require.NoError(t, cmd.Wait(), stderr.String())

	var msgs []string
	for _, l := range strings.Split(strings.TrimSpace(stdout.String()), "\n") {
		msgs = append(msgs, strings.SplitN(l, " ", 4)[3])
	}
	require.Equal(t, []string{"first", "second, same millisecond", "third, same millisecond, another replica", "fourth"}, msgs)
	require.Equal(t, 1, strings.Count(stderr.String(), "rdown0000000"), "an unreadable replica is told once:\n%s", stderr.String())
	api.mu.Lock()
	defer api.mu.Unlock()
	require.Equal(t, "/v1/models/abcd1234/deployments/dep1/logs", api.paths[len(api.paths)-1])
}
