package agent

import (
	"crypto/subtle"
	"errors"
	"fmt"
	"net/http"
	"strconv"
	"strings"
	"time"

	"github.com/labstack/echo/v4"
	"github.com/labstack/echo/v4/middleware"

	"github.com/modelplane/modelplane/agent/agentproto"
	"github.com/modelplane/modelplane/agent/runtime/process"
	"github.com/modelplane/modelplane/internal/telemetry"
)

// Bounds of a request body. Most requests are small, and a package comes by URL; but a start
// and a patch carry the patched files of a development deployment.
const (
	maxBody      = 1 << 20
	maxPatchBody = 64 << 20
)

// bodyLimitKey is where a route's body limit is kept, for the error that says it was passed.
const bodyLimitKey = "agent.body_limit"

// bodyLimit bounds the request body at n bytes.
func bodyLimit(n int) echo.MiddlewareFunc {
	limit := middleware.BodyLimit(strconv.Itoa(n))
	return func(next echo.HandlerFunc) echo.HandlerFunc {
		limited := limit(next)
		return func(c echo.Context) error {
			c.Set(bodyLimitKey, n)
			return limited(c)
		}
	}
}

// Handler is the agent's HTTP API, behind the node token.
func (a *Agent) Handler() http.Handler {
	e := echo.New()
	e.HideBanner, e.HidePort = true, true
	e.HTTPErrorHandler = a.errorHandler
	e.Use(middleware.Recover())
	// The control plane's calls carry traceparent: the agent's work joins their trace.
	e.Use(telemetry.Echo(errorStatus))
	e.GET("/healthz", func(c echo.Context) error { return c.JSON(http.StatusOK, map[string]string{"status": "ok"}) })
	small, large := bodyLimit(maxBody), bodyLimit(maxPatchBody)
	v1 := e.Group("/v1", a.requireToken)
	v1.GET("/inventory", a.handleInventory, small)
	v1.POST("/replicas", a.handleStart, large)
	v1.GET("/replicas", a.handleList, small)
	v1.GET("/replicas/:id", a.handleGet, small)
	v1.DELETE("/replicas/:id", a.handleStop, small)
	v1.GET("/replicas/:id/logs", a.handleLogs, small)
	v1.GET("/replicas/:id/lines", a.handleLines, small)
	v1.POST("/replicas/:id/patch", a.handlePatch, large)
	v1.POST("/envs", a.handleBuildEnv, small)
	v1.GET("/envs/:key", a.handleEnv, small)
	return e
}

type httpError struct {
	status int
	msg    string
}

func (e *httpError) Error() string { return e.msg }

func errorf(status int, format string, args ...any) error {
	return &httpError{status: status, msg: fmt.Sprintf(format, args...)}
}

// errorHandler answers every failure as {"error": {"code", "message"}}, like the API.
func (a *Agent) errorHandler(err error, c echo.Context) {
	if c.Response().Committed {
		return
	}
	status, msg, unexpected := errorAnswer(err)
	if limit, ok := c.Get(bodyLimitKey).(int); ok && status == http.StatusRequestEntityTooLarge {
		msg = fmt.Sprintf("request body over %d bytes", limit)
	}
	if unexpected {
		a.log.ErrorContext(c.Request().Context(), "agent request failed", "path", c.Path(), "err", err)
	}
	code := strings.ToLower(strings.ReplaceAll(http.StatusText(status), " ", "_"))
	_ = c.JSON(status, map[string]any{"error": map[string]string{"code": code, "message": msg}})
}

// errorAnswer is the status and message a handler's error is answered with; unexpected is an
// error no handler meant, answered 500.
func errorAnswer(err error) (status int, msg string, unexpected bool) {
	var he *httpError
	var fe *fieldError
	var ce *errConflict
	var ee *echo.HTTPError
	switch {
	case errors.As(err, &he):
		return he.status, he.msg, false
	case errors.As(err, &fe):
		return http.StatusBadRequest, fe.Error(), false
	case errors.As(err, &ce):
		return http.StatusConflict, ce.msg, false
	case errors.Is(err, agentproto.ErrUnknownReplica):
		return http.StatusNotFound, "unknown replica", false
	case errors.As(err, &ee):
		msg = http.StatusText(ee.Code)
		if s, ok := ee.Message.(string); ok && s != "" {
			msg = s
		}
		return ee.Code, msg, false
	}
	return http.StatusInternalServerError, "internal error", true
}

// errorStatus is the status of errorAnswer, for the request's span.
func errorStatus(err error) int {
	status, _, _ := errorAnswer(err)
	return status
}

func (a *Agent) requireToken(next echo.HandlerFunc) echo.HandlerFunc {
	return func(c echo.Context) error {
		h := c.Request().Header.Get(echo.HeaderAuthorization)
		token, ok := strings.CutPrefix(h, "Bearer ")
		if !ok || subtle.ConstantTimeCompare([]byte(token), []byte(a.cfg.Token)) != 1 {
			c.Response().Header().Set(echo.HeaderWWWAuthenticate, "Bearer")
			return errorf(http.StatusUnauthorized, "missing or wrong node token")
		}
		return next(c)
	}
}

// Inventory is the node's GPUs with their health and assignments.
func (a *Agent) Inventory() (agentproto.InventoryResponse, error) {
	inv, err := a.gpus.Inventory()
	if err != nil {
		return agentproto.InventoryResponse{}, err
	}
	a.mu.Lock()
	assigned := a.assignedLocked()
	a.mu.Unlock()
	out := agentproto.InventoryResponse{
		Node: a.cfg.Name, AgentID: a.agentID, GPUProfile: a.gpus.Profile(),
		DriverVersion: inv.DriverVersion, CUDADriverVersion: inv.CUDADriverVersion, GPUs: []agentproto.GPUInfo{},
		Isolation: a.isolation.report,
	}
	for _, g := range inv.GPUs {
		info := agentproto.GPUInfo{GPU: g, AssignedReplicaID: assigned[g.UUID]}
		for _, m := range g.MIGInstances {
			if id := assigned[m.UUID]; id != "" && info.AssignedReplicaID == "" {
				info.AssignedReplicaID = id
			}
		}
		out.GPUs = append(out.GPUs, info)
	}
	return out, nil
}

func (a *Agent) handleInventory(c echo.Context) error {
	inv, err := a.Inventory()
	if err != nil {
		return err
	}
	return c.JSON(http.StatusOK, inv)
}

func (a *Agent) handleStart(c echo.Context) error {
	var req agentproto.StartRequest
	if err := decodeBody(c, &req); err != nil {
		return err
	}
	r, created, err := a.Start(req)
	if err != nil {
		return err
	}
	status := http.StatusOK
	if created {
		status = http.StatusCreated
	}
	return c.JSON(status, r)
}

func (a *Agent) handlePatch(c echo.Context) error {
	var req agentproto.PatchRequest
	if err := decodeBody(c, &req); err != nil {
		return err
	}
	res, err := a.Patch(c.Request().Context(), c.Param("id"), req)
	if err != nil {
		return err
	}
	return c.JSON(http.StatusOK, res)
}

func (a *Agent) handleList(c echo.Context) error {
	return c.JSON(http.StatusOK, map[string]any{"replicas": a.views()})
}

func (a *Agent) handleGet(c echo.Context) error {
	r, ok := a.view(c.Param("id"))
	if !ok {
		return agentproto.ErrUnknownReplica
	}
	return c.JSON(http.StatusOK, r)
}

func (a *Agent) handleStop(c echo.Context) error {
	grace := a.cfg.StopGrace
	if v := c.QueryParam("grace_seconds"); v != "" {
		n, err := strconv.Atoi(v)
		if err != nil || n < 0 || n > 3600 {
			return &fieldError{"grace_seconds", "must be 0-3600"}
		}
		grace = time.Duration(n) * time.Second
	}
	r, err := a.Stop(c.Param("id"), grace)
	if err != nil {
		return err
	}
	return c.JSON(http.StatusOK, r)
}

func (a *Agent) handleLogs(c echo.Context) error {
	id := c.Param("id")
	a.mu.Lock()
	r, ok := a.replicas[id]
	var logDir string
	if ok && r.Handle != nil {
		logDir = r.Handle.LogDir
	}
	a.mu.Unlock()
	if !ok {
		return agentproto.ErrUnknownReplica
	}
	stream := c.QueryParam("stream")
	if stream == "" {
		stream = "stdout"
	}
	tail := 100
	if v := c.QueryParam("tail"); v != "" {
		n, err := strconv.Atoi(v)
		if err != nil || n < 1 || n > 10000 {
			return &fieldError{"tail", "must be 1-10000"}
		}
		tail = n
	}
	if logDir == "" {
		return errorf(http.StatusNotFound, "replica %s has no log files (not started, or not a process replica)", id)
	}
	lines, err := process.TailLog(logDir, stream, tail)
	if err != nil {
		return &fieldError{"stream", err.Error()}
	}
	return c.String(http.StatusOK, strings.Join(lines, "\n")+"\n")
}
