package agent_test

import (
	"encoding/json"
	"fmt"
	"net/http"
	"net/url"
	"path/filepath"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/modelplane/modelplane/agent/agentproto"
	"github.com/modelplane/modelplane/agent/runtime/process"
)

// lines asks the agent's lines route.
func (n *node) lines(id string, q url.Values) []agentproto.LogLine {
	n.t.Helper()
	code, body := n.call(http.MethodGet, "/v1/replicas/"+id+"/lines?"+q.Encode(), nil, token)
	require.Equal(n.t, http.StatusOK, code, string(body))
	var out agentproto.LinesResponse
	require.NoError(n.t, json.Unmarshal(body, &out))
	return out.Lines
}

// counted waits until the replica has atLeast stamped stdout lines and returns them
// all, checking that they are the counter's lines in order, each once.
func (n *node) counted(id string, atLeast int) []agentproto.LogLine {
	n.t.Helper()
	var got []agentproto.LogLine
	require.Eventually(n.t, func() bool {
		got = nil
		for _, l := range n.lines(id, url.Values{"limit": {"10000"}}) {
			if l.Stream == "stdout" {
				got = append(got, l)
			}
		}
		return len(got) >= atLeast
	}, 20*time.Second, 50*time.Millisecond, "replica %s never had %d stdout lines", id, atLeast)
	for i, l := range got {
		require.Equal(n.t, fmt.Sprintf("line %d", i), l.Message, "stdout line %d: every line once, in order", i)
		if i > 0 {
			require.True(n.t, l.Time.After(got[i-1].Time), "stamps increase: %s then %s", got[i-1].Time, l.Time)
		}
	}
	return got
}

func TestAgent_ReplicaOutputIsStampedAndSurvivesAgentRestartAndRotation(t *testing.T) {
	dir := t.TempDir()
	defer stopAll(t, dir)
	n := startNode(t, dir, "h200")
	url0, sum := shellPackage(t, `i=0; while :; do echo "line $i"; if [ $((i % 10)) = 0 ]; then echo "ERROR:model:tick $i" >&2; fi; i=$((i+1)); sleep 0.02; done`)
	id := newID()
	started := time.Now()
	n.mustStart(startReq(id, url0, sum, 0))
	first := n.counted(id, 10)
	require.False(t, first[0].Time.Before(started.Add(-time.Second)), "stamped when read, not %s", first[0].Time)

	// The server writes on while no agent reads.
	n.shutdown()
	time.Sleep(300 * time.Millisecond)
	n = startNode(t, dir, "h200")
	second := n.counted(id, len(first)+30)

	// Rotated by copy-and-truncate while it writes.
	replicas, err := storedReplicas(dir)
	require.NoError(t, err)
	require.Len(t, replicas, 1)
	require.NoError(t, process.RotateLog(filepath.Join(replicas[0].Handle.LogDir, "stdout.log"), 3))
	n.counted(id, len(second)+20)

	errs := n.lines(id, url.Values{"min_level": {"ERROR"}})
	require.NotEmpty(t, errs)
	for _, l := range errs {
		require.Equal(t, agentproto.LevelError, l.Level)
		require.Equal(t, "stderr", l.Stream)
	}
}

func TestAgent_LinesRouteSelectsByTimeLimitAndDirection(t *testing.T) {
	dir := t.TempDir()
	defer stopAll(t, dir)
	n := startNode(t, dir, "h200")
	url0, sum := shellPackage(t, `i=0; while [ $i -lt 20 ]; do echo "line $i"; i=$((i+1)); done; echo "WARNING: done" >&2; sleep 600`)
	id := newID()
	n.mustStart(startReq(id, url0, sum, 0))
	all := n.counted(id, 20)

	ns := func(tm time.Time) string { return fmt.Sprint(tm.UnixNano()) }
	got := n.lines(id, url.Values{"since": {all[5].Time.Format(time.RFC3339Nano)}, "until": {ns(all[8].Time)}})
	require.Equal(t, []string{"line 5", "line 6", "line 7"}, msgs(got), "since is inclusive, until exclusive")
	got = n.lines(id, url.Values{"limit": {"2"}, "direction": {"desc"}, "until": {ns(all[19].Time.Add(time.Nanosecond))}})
	require.Equal(t, []string{"line 19", "line 18"}, msgs(got))
	got = n.lines(id, url.Values{"limit": {"2"}})
	require.Equal(t, []string{"line 0", "line 1"}, msgs(got))
	require.Eventually(t, func() bool {
		return len(n.lines(id, url.Values{"min_level": {"WARNING"}})) == 1
	}, 5*time.Second, 50*time.Millisecond, "the stderr warning is the one line at WARNING or above")

	for q, field := range map[string]string{"limit=0": "limit", "direction=up": "direction", "min_level=LOUD": "min_level",
		"since=yesterday": "since", "search=(": "search"} {
		code, body := n.call(http.MethodGet, "/v1/replicas/"+id+"/lines?"+q, nil, token)
		require.Equal(t, http.StatusBadRequest, code, "%s: %s", q, body)
		require.Contains(t, string(body), field, q)
	}
	code, _ := n.call(http.MethodGet, "/v1/replicas/nosuchreplica/lines", nil, token)
	require.Equal(t, http.StatusNotFound, code)
	code, _ = n.call(http.MethodGet, "/v1/replicas/"+id+"/lines", nil, "")
	require.Equal(t, http.StatusUnauthorized, code)
}

func msgs(lines []agentproto.LogLine) []string {
	out := make([]string, len(lines))
	for i, l := range lines {
		out[i] = l.Message
	}
	return out
}
