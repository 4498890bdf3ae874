package agent

import (
	"context"
	"net/http"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"github.com/labstack/echo/v4"

	"github.com/modelplane/modelplane/agent/agentproto"
	"github.com/modelplane/modelplane/agent/replicalog"
	"github.com/modelplane/modelplane/agent/runtime"
)

// followInterval is how often the agent reads what replicas wrote.
const followInterval = 200 * time.Millisecond

func (a *Agent) linesDir(id string) string { return filepath.Join(a.replicaDir(id), "lines") }

// followLoop keeps every process replica's output as stamped lines (package replicalog),
// from its start until it has stopped and its last line is read; the lines stay until the
// replica is forgotten, an hour after it stopped.
func (a *Agent) followLoop(ctx context.Context) {
	books := map[string]*replicalog.Book{}
	drained := map[string]bool{}
	t := time.NewTicker(followInterval)
	defer t.Stop()
	for {
		a.followOnce(books, drained)
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
	}
}

// followOnce reads each replica's output once.
func (a *Agent) followOnce(books map[string]*replicalog.Book, drained map[string]bool) {
	type target struct {
		id, logDir string
		live       bool
	}
	a.mu.Lock()
	var targets []target
	known := map[string]bool{}
	for id, r := range a.replicas {
		known[id] = true
		if r.Handle != nil && r.Handle.LogDir != "" && !drained[id] {
			targets = append(targets, target{id, r.Handle.LogDir, r.live()})
		}
	}
	a.mu.Unlock()
	for id := range books {
		if !known[id] {
			delete(books, id)
			delete(drained, id)
		}
	}
	for _, tg := range targets {
		b := books[tg.id]
		if b == nil {
			var err error
			if b, err = replicalog.Open(a.linesDir(tg.id), tg.logDir); err != nil {
				a.log.Warn("opening the replica's log lines", "replica_id", tg.id, "err", err)
				continue
			}
			books[tg.id] = b
		}
		if err := b.Follow(!tg.live); err != nil {
			a.log.Warn("reading the replica's output", "replica_id", tg.id, "err", err)
			continue
		}
		if !tg.live {
			drained[tg.id] = true
		}
	}
}

// handleLines answers GET /v1/replicas/{id}/lines: the replica's stamped lines that
// since, until, limit, direction, min_level, search, includes and excludes select.
func (a *Agent) handleLines(c echo.Context) error {
	id := c.Param("id")
	a.mu.Lock()
	r, ok := a.replicas[id]
	var h *runtime.Handle
	if ok && r.Handle != nil {
		handle := *r.Handle
		h = &handle
	}
	a.mu.Unlock()
	if !ok {
		return agentproto.ErrUnknownReplica
	}
	q, err := readLinesQuery(c)
	if err != nil {
		return err
	}
	var lines []agentproto.LogLine
	// A container's output is kept, stamped, by its engine: the agent asks it.
	if reader, isReader := a.runtimeFor(r.Runtime).(runtime.LineReader); isReader && h != nil && h.ContainerID != "" {
		var raw []runtime.Line
		if raw, err = reader.Lines(c.Request().Context(), *h, q.Since, q.Until); err == nil {
			lines, err = replicalog.Select(replicalog.Leveled(raw), q)
		}
	} else {
		lines, err = replicalog.Query(a.linesDir(id), q)
	}
	if err != nil {
		if strings.HasPrefix(err.Error(), "search:") {
			return &fieldError{"search", strings.TrimPrefix(err.Error(), "search: ")}
		}
		return err
	}
	return c.JSON(http.StatusOK, agentproto.LinesResponse{ReplicaID: id, Lines: lines})
}

// maxLinesLimit bounds one answer of the lines route.
const maxLinesLimit = 10000

func readLinesQuery(c echo.Context) (agentproto.LinesQuery, error) {
	q := agentproto.LinesQuery{Limit: 1000, Direction: "asc", Search: c.QueryParam("search"),
		Includes: c.QueryParams()["includes"], Excludes: c.QueryParams()["excludes"]}
	var err error
	if q.Since, err = queryTime(c, "since"); err != nil {
		return q, err
	}
	if q.Until, err = queryTime(c, "until"); err != nil {
		return q, err
	}
	if v := c.QueryParam("limit"); v != "" {
		n, err := strconv.Atoi(v)
		if err != nil || n < 1 || n > maxLinesLimit {
			return q, &fieldError{"limit", "must be 1-" + strconv.Itoa(maxLinesLimit)}
		}
		q.Limit = n
	}
	switch d := c.QueryParam("direction"); d {
	case "", "asc", "desc":
		if d != "" {
			q.Direction = d
		}
	default:
		return q, &fieldError{"direction", "must be asc or desc"}
	}
	if v := c.QueryParam("min_level"); v != "" {
		if agentproto.LevelRank(v) < 0 {
			return q, &fieldError{"min_level", "must be one of " + strings.Join(agentproto.Levels(), ", ")}
		}
		q.MinLevel = v
	}
	return q, nil
}

// queryTime reads a time given as RFC 3339 (with nanoseconds or not) or as nanoseconds since
// the epoch; zero when not sent.
func queryTime(c echo.Context, name string) (time.Time, error) {
	v := c.QueryParam(name)
	if v == "" {
		return time.Time{}, nil
	}
	if ns, err := strconv.ParseInt(v, 10, 64); err == nil {
		return time.Unix(0, ns).UTC(), nil
	}
	t, err := time.Parse(time.RFC3339Nano, v)
	if err != nil {
		return t, &fieldError{name, "must be an RFC 3339 time or nanoseconds since the epoch"}
	}
	return t, nil
}
