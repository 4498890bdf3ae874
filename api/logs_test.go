package api_test

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"net/http/httptest"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/modelplane/modelplane"
	"github.com/modelplane/modelplane/agent/agentproto"
	"github.com/modelplane/modelplane/nodeauth"
	"github.com/modelplane/modelplane/store"
)

// linesAgent answers the lines route for the replicas it holds, selecting by since, until,
// limit and direction as an agent does, and remembers the queries it was sent.
type linesAgent struct {
	*httptest.Server
	lines map[string][]agentproto.LogLine

	mu      sync.Mutex
	queries []string
}

func newLinesAgent(t *testing.T, lines map[string][]agentproto.LogLine) *linesAgent {
	a := &linesAgent{lines: lines}
	a.Server = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Header.Get("Authorization") != "Bearer "+nodeToken {
			w.WriteHeader(http.StatusUnauthorized)
			return
		}
		id, ok := strings.CutSuffix(strings.TrimPrefix(r.URL.Path, "/v1/replicas/"), "/lines")
		all, known := a.lines[id]
		if !ok || !known {
			w.WriteHeader(http.StatusNotFound)
			return
		}
		a.mu.Lock()
		a.queries = append(a.queries, r.URL.RawQuery)
		a.mu.Unlock()
		q := r.URL.Query()
		since, _ := time.Parse(time.RFC3339Nano, q.Get("since"))
		until, _ := time.Parse(time.RFC3339Nano, q.Get("until"))
		var limit int
		fmt.Sscan(q.Get("limit"), &limit)
		out := []agentproto.LogLine{}
		for _, l := range all {
			if !l.Time.Before(since) && l.Time.Before(until) {
				out = append(out, l)
			}
		}
		if q.Get("direction") == "desc" {
			slices.Reverse(out)
		}
		out = out[:min(limit, len(out))]
		_ = json.NewEncoder(w).Encode(agentproto.LinesResponse{ReplicaID: id, Lines: out})
	}))
	t.Cleanup(a.Close)
	return a
}

// logsFixture is a production deployment with a replica on each of two nodes whose agents
// answer and one on a node whose agent is gone.
type logsFixture struct {
	*routesFixture
	t0             time.Time
	a, b, down     string // replica IDs
	downNode       string
	agentA, agentB *linesAgent
}

func line(t time.Time, level, msg string) agentproto.LogLine {
	return agentproto.LogLine{Time: t, Stream: "stdout", Level: level, Message: msg}
}

func newLogsFixture(t *testing.T) *logsFixture {
	t.Helper()
	ctx := context.Background()
	f := &logsFixture{routesFixture: newRoutesFixture(t), t0: time.Now().UTC().Add(-10 * time.Minute).Truncate(time.Millisecond)}
	f.a, f.b, f.down = modelplane.NewID(12), modelplane.NewID(12), modelplane.NewID(12)
	at := func(s int) time.Time { return f.t0.Add(time.Duration(s) * time.Second) }
	f.agentA = newLinesAgent(t, map[string][]agentproto.LogLine{f.a: {
		line(at(0), "INFO", "a0"), line(at(2), "", "a2"), line(at(4), "ERROR", "a4")}})
	f.agentB = newLinesAgent(t, map[string][]agentproto.LogLine{f.b: {
		line(at(1), "INFO", "b1"), line(at(2).Add(time.Millisecond), "WARNING", "b2"), line(at(3), "", "b3")}})
	gone := httptest.NewServer(http.NotFoundHandler())
	gone.Close()
	for _, r := range []struct{ id, url string }{{f.a, f.agentA.URL}, {f.b, f.agentB.URL}, {f.down, gone.URL}} {
		name := "node-" + modelplane.NewID(6)
		n, err := store.RecordHeartbeat(ctx, f.db, store.NodeReport{Name: name, AgentID: "agent-" + name, AgentURL: r.url,
			GPUProfile: "fake", TokenSHA256: nodeauth.Sum(nodeToken)})
		require.NoError(t, err)
		_, _, err = store.CreateReplica(ctx, f.db, store.NewReplica{ID: r.id, DeploymentID: f.prod.ID, NodeID: n.ID})
		require.NoError(t, err)
		_, err = f.db.Exec(`UPDATE replicas SET created_at = $1 WHERE id = $2`, f.t0.Add(-time.Minute), r.id)
		require.NoError(t, err)
		if r.id == f.down {
			f.downNode = name
		}
	}
	return f
}

func (f *logsFixture) logs(t *testing.T, query string) response {
	t.Helper()
	return f.do(t, http.MethodGet, f.base+"/deployments/"+f.prod.ID+"/logs?"+query, f.auth)
}

// messages are the messages of an answer's logs, in order.
func messages(t *testing.T, r response) []string {
	t.Helper()
	require.Equal(t, http.StatusOK, r.Status, "%v", r.Body)
	var out []string
	for _, l := range r.Body["logs"].([]any) {
		out = append(out, l.(map[string]any)["message"].(string))
	}
	return out
}

func TestDeploymentLogs_MergesReplicasOfTwoNodesAndNamesTheOneWhoseNodeIsDown(t *testing.T) {
	f := newLogsFixture(t)
	r := f.logs(t, "")
	require.Equal(t, []string{"a0", "b1", "a2", "b2", "b3", "a4"}, messages(t, r), "merged by time, oldest first")
	first := r.Body["logs"].([]any)[0].(map[string]any)
	require.Equal(t, map[string]any{"timestamp": fmt.Sprint(f.t0.UnixNano()), "message": "a0", "replica": f.a,
		"request_id": nil, "level": "INFO", "component": "model", "deployment_id": f.prod.ID}, first)
	require.Nil(t, r.Body["logs"].([]any)[2].(map[string]any)["level"], "a line without a level has level null")

	unavailable := r.Body["unavailable"].([]any)
	require.Len(t, unavailable, 1, "%v", unavailable)
	u := unavailable[0].(map[string]any)
	require.Equal(t, f.down, u["replica"])
	require.Equal(t, f.downNode, u["node"])
	require.Contains(t, u["reason"], "cannot be reached")
}

func TestDeploymentLogs_WindowLimitDirectionAndFiltersReachTheAgents(t *testing.T) {
	f := newLogsFixture(t)
	ms := func(s int) int64 { return f.t0.Add(time.Duration(s) * time.Second).UnixMilli() }
	require.Equal(t, []string{"b1", "a2", "b2"}, messages(t, f.logs(t, fmt.Sprintf("start_epoch_millis=%d&end_epoch_millis=%d", ms(1), ms(3)))))
	require.Equal(t, []string{"a0", "b1"}, messages(t, f.logs(t, "limit=2")))
	require.Equal(t, []string{"a4", "b3"}, messages(t, f.logs(t, "limit=2&direction=desc")))
	require.Equal(t, []string{"b1", "b2", "b3"}, messages(t, f.logs(t, "replica="+f.b[:5])), "a prefix of the replica ID")

	f.agentA.mu.Lock()
	f.agentA.queries = nil
	f.agentA.mu.Unlock()
	f.logs(t, "min_level=WARNING&search_pattern=a%5B0-9%5D&includes=x&excludes=y")
	f.agentA.mu.Lock()
	defer f.agentA.mu.Unlock()
	require.Len(t, f.agentA.queries, 1)
	for _, want := range []string{"min_level=WARNING", "search=a%5B0-9%5D", "includes=x", "excludes=y"} {
		require.Contains(t, f.agentA.queries[0], want, "the agent filters before it limits")
	}
}

func TestDeploymentLogs_PostTakesTheParametersInItsBody(t *testing.T) {
	f := newLogsFixture(t)
	r := f.send(t, http.MethodPost, f.base+"/deployments/"+f.prod.ID+"/logs", f.auth,
		`{"limit": 2, "direction": "desc", "min_level": null, "replica": null}`)
	require.Equal(t, []string{"a4", "b3"}, messages(t, r))
	r = f.send(t, http.MethodPost, f.base+"/deployments/"+f.prod.ID+"/logs", f.auth, `{"lines": 2}`)
	require.Equal(t, http.StatusBadRequest, r.Status)
	require.Contains(t, message(r), "lines: unknown field")
	r = f.send(t, http.MethodPost, f.base+"/deployments/"+f.prod.ID+"/logs", f.auth, `{"limit": "2"}`)
	require.Equal(t, http.StatusBadRequest, r.Status)
	require.Contains(t, message(r), "limit: must be an integer")
}

func TestDeploymentLogs_BadParametersAre400NamingThem(t *testing.T) {
	f := newLogsFixture(t)
	now := time.Now().UnixMilli()
	for query, want := range map[string]string{
		fmt.Sprintf("start_epoch_millis=%d&end_epoch_millis=%d", now-8*24*3600*1000, now): "start_epoch_millis: the window may be at most 7 days",
		fmt.Sprintf("start_epoch_millis=%d&end_epoch_millis=%d", now, now-1000):           "start_epoch_millis: must be before end_epoch_millis",
		"start_epoch_millis=yesterday": "start_epoch_millis: must be milliseconds",
		"limit=0":                      "limit: must be 1-1000",
		"limit=1001":                   "limit: must be 1-1000",
		"direction=up":                 "direction: must be one of asc, desc",
		"min_level=LOUD":               "min_level: must be one of DEBUG, INFO, WARNING, ERROR",
		"request_id=abc":               "request_id: modelplane does not tag",
		"component=gateway":            "component: must be one of model, build",
		"search_pattern=(":             "search_pattern: not an RE2 regular expression",
		"includes=1&includes=2&includes=3&includes=4&includes=5&includes=6&includes=7&includes=8&includes=9": "includes: at most 8",
	} {
		r := f.logs(t, strings.ReplaceAll(query, "(", "%28"))
		require.Equal(t, http.StatusBadRequest, r.Status, "%s: %v", query, r.Body)
		require.Contains(t, message(r), want, query)
	}
}

func TestDeploymentLogs_AnotherWorkspacesModelIs404(t *testing.T) {
	f := newLogsFixture(t)
	_, _, otherKey := f.workspace(t)
	for _, path := range []string{f.base + "/deployments/" + f.prod.ID + "/logs", f.base + "/environments/production/logs"} {
		r := f.do(t, http.MethodGet, path, "Api-Key "+otherKey)
		require.Equal(t, http.StatusNotFound, r.Status, "%s: %v", path, r.Body)
	}
	r := f.do(t, http.MethodGet, f.base+"/environments/nosuchenv/logs", f.auth)
	require.Equal(t, http.StatusNotFound, r.Status)
}

func TestDeploymentLogs_BuildOutputComesAsBuildLines(t *testing.T) {
	f := newLogsFixture(t)
	require.NoError(t, store.AppendBuildLog(context.Background(), f.db, f.prod.ID, "installing 1 requirement\nSuccessfully installed a-1"))
	r := f.logs(t, "component=build")
	require.Equal(t, []string{"installing 1 requirement", "Successfully installed a-1"}, messages(t, r))
	l := r.Body["logs"].([]any)[0].(map[string]any)
	require.Equal(t, "build", l["component"])
	require.Nil(t, l["replica"])
	require.Len(t, messages(t, f.logs(t, "")), 8, "the six replica lines and the two of the build")
	require.Len(t, messages(t, f.logs(t, "component=model")), 6)
}

func TestEnvironmentLogs_AnswerTheLinesOfTheDeploymentItServes(t *testing.T) {
	f := newLogsFixture(t)
	r := f.do(t, http.MethodGet, f.base+"/environments/production/logs?limit=3", f.auth)
	require.Equal(t, []string{"a0", "b1", "a2"}, messages(t, r))
	require.Len(t, r.Body["unavailable"], 1)
}
