package api

import (
	"cmp"
	"context"
	"encoding/json"
	"errors"
	"net/http"
	"net/url"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/labstack/echo/v4"

	"github.com/modelplane/modelplane/agent/agentproto"
	"github.com/modelplane/modelplane/apiv1"
	"github.com/modelplane/modelplane/store"
)

// The logs routes answer the lines the nodes' agents keep of each replica's output (package
// agent/replicalog), asking every agent that ran a replica in the window, and the
// deployment's build output.

const (
	// defaultLogsWindow is the window when start_epoch_millis is not sent, as in Baseten's API.
	defaultLogsWindow = 30 * time.Minute
	// defaultLogsLimit and maxLogsLimit are the spec's bounds of limit.
	defaultLogsLimit = 500
	maxLogsLimit     = 1000
	// maxLogsFilter bounds replica, component and search_pattern; maxLogsSubstrings bounds
	// includes and excludes, as the spec does.
	maxLogsFilter     = 256
	maxLogsSubstrings = 8
	// agentLogsTimeout bounds how long one agent may take to answer; a node that takes longer
	// is named in unavailable.
	agentLogsTimeout = 5 * time.Second
	// agentLogsParallel bounds how many agents are asked at once.
	agentLogsParallel = 8
)

// logsParams are the parameters the logs routes take, by query or, for POST, in the body.
var logsParams = []string{"start_epoch_millis", "end_epoch_millis", "direction", "limit", "min_level", "replica",
	"request_id", "component", "search_pattern", "includes", "excludes"}

// logsRequest is a logs route's parameters, read and checked.
type logsRequest struct {
	start, end time.Time
	direction  apiv1.SortOrderV1
	limit      int
	minLevel   apiv1.LogLevelV1
	replica    string
	component  string
	search     string
	includes   []string
	excludes   []string
}

// readLogsRequest reads the parameters from v, each checked with a 400 naming it.
func readLogsRequest(v url.Values, now time.Time) (logsRequest, error) {
	r := logsRequest{direction: apiv1.SortAsc, limit: defaultLogsLimit, end: now}
	millis := func(name string) (*time.Time, error) {
		s := v.Get(name)
		if s == "" || s == "null" {
			return nil, nil
		}
		ms, err := strconv.ParseInt(s, 10, 64)
		if err != nil || ms < 0 {
			return nil, Errorf(http.StatusBadRequest, "%s: must be milliseconds since the epoch, not %q", name, s)
		}
		t := time.UnixMilli(ms).UTC()
		return &t, nil
	}
	start, err := millis("start_epoch_millis")
	if err != nil {
		return r, err
	}
	end, err := millis("end_epoch_millis")
	if err != nil {
		return r, err
	}
	if end != nil {
		r.end = *end
	}
	r.start = r.end.Add(-defaultLogsWindow)
	if start != nil {
		r.start = *start
	}
	switch {
	case !r.start.Before(r.end):
		return r, Errorf(http.StatusBadRequest, "start_epoch_millis: must be before end_epoch_millis")
	case r.end.Sub(r.start) > maxWindow:
		return r, Errorf(http.StatusBadRequest, "start_epoch_millis: the window may be at most 7 days, not %s",
			r.end.Sub(r.start).Round(time.Second))
	}
	if s := v.Get("direction"); s != "" && s != "null" {
		if !slices.Contains(apiv1.SortOrders(), apiv1.SortOrderV1(s)) {
			return r, Errorf(http.StatusBadRequest, "direction: must be one of %s, not %q", join(apiv1.SortOrders()), s)
		}
		r.direction = apiv1.SortOrderV1(s)
	}
	if s := v.Get("limit"); s != "" && s != "null" {
		n, err := strconv.Atoi(s)
		if err != nil || n < 1 || n > maxLogsLimit {
			return r, Errorf(http.StatusBadRequest, "limit: must be 1-%d, not %q", maxLogsLimit, s)
		}
		r.limit = n
	}
	if s := v.Get("min_level"); s != "" && s != "null" {
		if !slices.Contains(apiv1.LogLevels(), apiv1.LogLevelV1(s)) {
			return r, Errorf(http.StatusBadRequest, "min_level: must be one of %s, not %q", join(apiv1.LogLevels()), s)
		}
		r.minLevel = apiv1.LogLevelV1(s)
	}
	for _, name := range []string{"replica", "request_id", "component", "search_pattern"} {
		if len(v.Get(name)) > maxLogsFilter {
			return r, Errorf(http.StatusBadRequest, "%s: at most %d characters", name, maxLogsFilter)
		}
	}
	if s := v.Get("request_id"); s != "" && s != "null" {
		return r, Errorf(http.StatusBadRequest, "request_id: modelplane does not tag log lines with inference request IDs; use search_pattern to find a request's lines")
	}
	r.replica = strings.TrimSpace(v.Get("replica"))
	if r.replica == "null" {
		r.replica = ""
	}
	if s := v.Get("component"); s != "" && s != "null" {
		if !slices.Contains(apiv1.LogComponents(), s) {
			return r, Errorf(http.StatusBadRequest, "component: must be one of %s, not %q", strings.Join(apiv1.LogComponents(), ", "), s)
		}
		r.component = s
	}
	if s := v.Get("search_pattern"); s != "" && s != "null" {
		if _, err := regexp.Compile(s); err != nil {
			return r, Errorf(http.StatusBadRequest, "search_pattern: not an RE2 regular expression: %v", err)
		}
		r.search = s
	}
	r.includes, r.excludes = v["includes"], v["excludes"]
	for name, list := range map[string][]string{"includes": r.includes, "excludes": r.excludes} {
		if len(list) > maxLogsSubstrings {
			return r, Errorf(http.StatusBadRequest, "%s: at most %d items, not %d", name, maxLogsSubstrings, len(list))
		}
	}
	return r, nil
}

// logsBody reads the POST route's body (Baseten's GetDeploymentLogsRequestV1) as the query
// parameters it stands for, each checked for its JSON type.
func logsBody(c echo.Context) (url.Values, error) {
	obj, err := readObject(c, logsParams...)
	if err != nil {
		return nil, err
	}
	v := url.Values{}
	for name, raw := range obj {
		if string(raw) == "null" {
			continue
		}
		switch name {
		case "start_epoch_millis", "end_epoch_millis", "limit":
			var n int64
			if err := json.Unmarshal(raw, &n); err != nil {
				return nil, Errorf(http.StatusBadRequest, "%s: must be an integer", name)
			}
			v.Set(name, strconv.FormatInt(n, 10))
		case "includes", "excludes":
			var list []string
			if err := json.Unmarshal(raw, &list); err != nil {
				return nil, Errorf(http.StatusBadRequest, "%s: must be a list of strings", name)
			}
			v[name] = list
		default:
			var s string
			if err := json.Unmarshal(raw, &s); err != nil {
				return nil, Errorf(http.StatusBadRequest, "%s: must be a string", name)
			}
			v.Set(name, s)
		}
	}
	return v, nil
}

// deploymentLogs answers GET (query) and POST (body) .../deployments/{deployment_id}/logs.
func (s *Server) deploymentLogs(c echo.Context) error {
	_, d, err := s.ownDeployment(c)
	if err != nil {
		return err
	}
	v := c.QueryParams()
	if c.Request().Method == http.MethodPost {
		if v, err = logsBody(c); err != nil {
			return err
		}
	}
	r, err := readLogsRequest(v, time.Now().UTC())
	if err != nil {
		return err
	}
	out, err := s.logs(c.Request().Context(), r, []store.SampleSpan{{DeploymentID: d.ID, From: r.start, To: r.end}})
	if err != nil {
		return err
	}
	return c.JSON(http.StatusOK, out)
}

// environmentLogs answers GET .../environments/{env_name}/logs: the lines of every
// deployment while it served the environment in the window, as its promotions tell (the
// deployment it points at, a promotion's candidate from the promotion's start, the deployment
// a promotion replaced until it ended).
func (s *Server) environmentLogs(c echo.Context) error {
	m, e, err := s.pathEnvironment(c)
	if err != nil {
		return err
	}
	r, err := readLogsRequest(c.QueryParams(), time.Now().UTC())
	if err != nil {
		return err
	}
	spans, err := s.environmentSpans(c.Request().Context(), m, e, r.start, r.end)
	if err != nil {
		return err
	}
	out, err := s.logs(c.Request().Context(), r, spans)
	if err != nil {
		return err
	}
	return c.JSON(http.StatusOK, out)
}

// sourcedLine is a line with where it came from, for a stable merge.
type sourcedLine struct {
	apiv1.LogV1
	at time.Time
	// source (the replica; "" for the build) and idx (the line's place in its source's
	// answer) order lines of equal times.
	source string
	idx    int
}

// logs gathers the lines of the spans' deployments, each within its span: their replicas'
// from the agents, in parallel, and their build output. A replica whose agent cannot answer
// is named in Unavailable; the others' lines still come.
func (s *Server) logs(ctx context.Context, r logsRequest, spans []store.SampleSpan) (apiv1.GetLogsResponseV1, error) {
	out := apiv1.GetLogsResponseV1{Logs: []apiv1.LogV1{}, Unavailable: []apiv1.UnavailableLogsV1{}}
	var lines []sourcedLine
	type fetch struct {
		replica store.ReplicaOnNode
		span    store.SampleSpan
	}
	var fetches []fetch
	for _, sp := range spans {
		if r.component != apiv1.LogComponentBuild {
			replicas, err := store.ReplicasWithin(ctx, s.deps.DB, sp.DeploymentID, sp.From, sp.To)
			if err != nil {
				return out, err
			}
			for _, rep := range replicas {
				if strings.HasPrefix(rep.ID, r.replica) {
					fetches = append(fetches, fetch{rep, sp})
				}
			}
		}
		if r.component != apiv1.LogComponentModel && r.replica == "" {
			build, err := s.buildLines(ctx, r, sp)
			if err != nil {
				return out, err
			}
			lines = append(lines, build...)
		}
	}

	results := make([][]agentproto.LogLine, len(fetches))
	errs := make([]error, len(fetches))
	sem := make(chan struct{}, agentLogsParallel)
	var wg sync.WaitGroup
	for i, f := range fetches {
		wg.Add(1)
		go func() {
			defer wg.Done()
			sem <- struct{}{}
			defer func() { <-sem }()
			results[i], errs[i] = s.agentLines(ctx, f.replica, r, f.span)
		}()
	}
	wg.Wait()
	for i, f := range fetches {
		if errs[i] != nil {
			out.Unavailable = append(out.Unavailable, apiv1.UnavailableLogsV1{Replica: f.replica.ID, Node: f.replica.NodeName,
				Reason: unavailableReason(errs[i])})
			continue
		}
		for j, l := range results[i] {
			replica := f.replica.ID
			lines = append(lines, sourcedLine{LogV1: apiv1.LogV1{Timestamp: strconv.FormatInt(l.Time.UnixNano(), 10),
				Message: l.Message, Replica: &replica, Level: levelV1(l.Level), Component: apiv1.LogComponentModel,
				DeploymentID: f.replica.DeploymentID}, at: l.Time, source: replica, idx: j})
		}
	}
	// Each source's lines came in the request's direction; merge them by time in that
	// direction, each source's own order kept among equal times.
	slices.SortFunc(lines, func(a, b sourcedLine) int {
		byTime := a.at.Compare(b.at)
		if r.direction == apiv1.SortDesc {
			byTime = -byTime
		}
		return cmp.Or(byTime, cmp.Compare(a.source, b.source), cmp.Compare(a.idx, b.idx))
	})
	if len(lines) > r.limit {
		lines = lines[:r.limit]
	}
	for _, l := range lines {
		out.Logs = append(out.Logs, l.LogV1)
	}
	return out, nil
}

// agentLines asks the agent of the replica's node for its lines within the span.
func (s *Server) agentLines(ctx context.Context, rep store.ReplicaOnNode, r logsRequest, sp store.SampleSpan) ([]agentproto.LogLine, error) {
	if rep.AgentURL == "" {
		return nil, errors.New("the node has no agent URL")
	}
	ctx, cancel := context.WithTimeout(ctx, agentLogsTimeout)
	defer cancel()
	agent, err := s.agents().Client(ctx, rep.NodeID, rep.AgentURL)
	if err != nil {
		return nil, err
	}
	q := agentproto.LinesQuery{Since: sp.From, Until: sp.To, Limit: r.limit, Direction: string(r.direction),
		MinLevel: string(r.minLevel), Search: r.search, Includes: r.includes, Excludes: r.excludes}
	return agent.Lines(ctx, rep.ID, q)
}

// unavailableReason says in a sentence why a replica's lines could not be read.
func unavailableReason(err error) string {
	var apiErr *agentproto.APIError
	switch {
	case errors.Is(err, agentproto.ErrUnknownReplica):
		return "the node no longer keeps the replica's lines: its agent forgets a replica an hour after it stopped"
	case errors.Is(err, context.DeadlineExceeded):
		return "the node's agent did not answer within " + agentLogsTimeout.String()
	case errors.As(err, &apiErr):
		return apiErr.Error()
	}
	return "the node's agent cannot be reached: " + err.Error()
}

// buildLines are the deployment's build output as lines, when it was written within the span.
// The build log keeps no time per line: each line is stamped with the time the log was last
// written, a nanosecond apart so that they keep their order.
func (s *Server) buildLines(ctx context.Context, r logsRequest, sp store.SampleSpan) ([]sourcedLine, error) {
	text, at, err := store.BuildLogLinesAt(ctx, s.deps.DB, sp.DeploymentID)
	if err != nil || len(text) == 0 || at.Before(sp.From) || !at.Before(sp.To) || r.minLevel != "" {
		return nil, err
	}
	var re *regexp.Regexp
	if r.search != "" {
		re = regexp.MustCompile(r.search) // checked by readLogsRequest
	}
	var out []sourcedLine
	for i, msg := range text {
		if (re != nil && !re.MatchString(msg)) || !containsAll(msg, r.includes) || containsAny(msg, r.excludes) {
			continue
		}
		t := at.Add(-time.Duration(len(text)-1-i) * time.Nanosecond)
		out = append(out, sourcedLine{LogV1: apiv1.LogV1{Timestamp: strconv.FormatInt(t.UnixNano(), 10), Message: msg,
			Component: apiv1.LogComponentBuild, DeploymentID: sp.DeploymentID}, at: t, idx: i})
	}
	return out, nil
}

func containsAll(s string, subs []string) bool {
	for _, sub := range subs {
		if !strings.Contains(s, sub) {
			return false
		}
	}
	return true
}

func containsAny(s string, subs []string) bool {
	return slices.ContainsFunc(subs, func(sub string) bool { return strings.Contains(s, sub) })
}

// levelV1 is an agent's level in Baseten's words; nil for a line without one.
func levelV1(level string) *apiv1.LogLevelV1 {
	if level == "" {
		return nil
	}
	l := apiv1.LogLevelV1(level)
	return &l
}
