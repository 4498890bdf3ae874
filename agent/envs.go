package agent

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"regexp"
	"strconv"

	"github.com/labstack/echo/v4"

	"github.com/modelplane/modelplane/agent/agentproto"
	"github.com/modelplane/modelplane/agent/pyenv"
	"github.com/modelplane/modelplane/modelpkg"
	"github.com/modelplane/modelplane/runtime/python"
)

// envKeyPattern is what the key of an environment looks like.
var envKeyPattern = regexp.MustCompile(`^[0-9a-f]{32}$`)

// pythonRequest is the environment a package's config asks for, with the package unpacked
// in pkgDir; false when it asks for none (no requirements). Its interpreter is one iso's
// replica users can run, as the environment's python links to it.
func pythonRequest(cfg modelpkg.Config, pkgDir string, iso isolation) (pyenv.Request, bool, error) {
	req := pyenv.Request{Interpreter: cfg.Interpreter(), PythonVersion: cfg.PythonVersion, PackageDir: pkgDir}
	if req.Interpreter == "" {
		req.Interpreter = python.Interpreter()
	}
	req.Interpreter = iso.resolve(req.Interpreter)
	switch {
	case cfg.RequirementsFile != "":
		path := filepath.Join(pkgDir, filepath.FromSlash(cfg.RequirementsFile))
		data, err := os.ReadFile(path)
		if err != nil {
			return req, false, fmt.Errorf("requirements_file %s: %w", cfg.RequirementsFile, errors.Unwrap(err))
		}
		req.RequirementsFile, req.Requirements = path, pyenv.Lines(string(data))
	case len(cfg.Requirements) > 0:
		req.Requirements = cfg.Requirements
	}
	return req, len(req.Requirements) > 0, nil
}

// replicaEnv builds, or finds, the environment of the replica's requirements before its
// server starts: the deployment's build has usually made it on this node already, but a
// node that joined since builds it here. It answers "" when the package has no requirements.
func (a *Agent) replicaEnv(ctx context.Context, r *record) (string, error) {
	cfg, err := replicaConfig(r.Request, a.packageDir(r.ID))
	if err != nil || cfg.Runtime == modelpkg.RuntimeDocker {
		return "", err
	}
	req, needed, err := pythonRequest(cfg, a.packageDir(r.ID), a.isolation)
	if err != nil || !needed {
		return "", err
	}
	st, err := a.envs.Ensure(ctx, req)
	if err != nil {
		return "", fmt.Errorf("building the Python environment: %w", err)
	}
	a.log.Info("replica's python environment", "replica_id", r.ID, "deployment_id", r.DeploymentID,
		"env", st.Key, "reused", st.Reused)
	return st.Dir, nil
}

func (a *Agent) handleBuildEnv(c echo.Context) error {
	var req agentproto.EnvRequest
	if err := decodeBody(c, &req); err != nil {
		return err
	}
	u, err := url.Parse(req.ArchiveURL)
	if err != nil || (u.Scheme != "http" && u.Scheme != "https" && u.Scheme != "file") {
		return &fieldError{"archive_url", "required: an http, https or file URL"}
	}
	if !sha256Pattern.MatchString(req.ArchiveSHA256) {
		return &fieldError{"archive_sha256", "required: 64 lowercase hex digits"}
	}
	override, err := parseConfig(req.Config)
	if err != nil {
		return err
	}
	st, err := a.BuildEnv(c.Request().Context(), req, override)
	if err != nil {
		return err
	}
	return c.JSON(http.StatusOK, st)
}

// BuildEnv starts, or joins, the build of the package's Python environment and answers
// where it stands. What stops the build (a package that does not unpack, an interpreter that
// is not installed) is answered as a failed build, not as an error.
func (a *Agent) BuildEnv(ctx context.Context, req agentproto.EnvRequest, override *modelpkg.Config) (agentproto.EnvStatus, error) {
	failed := func(err error) (agentproto.EnvStatus, error) {
		return agentproto.EnvStatus{State: agentproto.EnvFailed, Error: err.Error(), LogTail: []string{}}, nil
	}
	dir, err := os.MkdirTemp(filepath.Join(a.cfg.StateDir, "envs"), "pkg-")
	if err != nil {
		return agentproto.EnvStatus{}, err
	}
	keep := false
	defer func() {
		if !keep {
			_ = os.RemoveAll(dir)
		}
	}()
	body, err := a.openArchive(ctx, req.ArchiveURL)
	if err != nil {
		return agentproto.EnvStatus{}, fmt.Errorf("fetching the archive: %w", err)
	}
	_, err = modelpkg.Extract(body, req.ArchiveSHA256, dir)
	body.Close()
	if err != nil {
		return failed(fmt.Errorf("unpacking the archive: %w", err))
	}
	var cfg modelpkg.Config
	if override != nil {
		cfg = *override
	} else if cfg, err = modelpkg.ReadConfig(dir); err != nil {
		return failed(fmt.Errorf("reading the package's config: %w", err))
	}
	preq, needed, err := pythonRequest(cfg, dir, a.isolation)
	if err != nil {
		return failed(err)
	}
	if !needed {
		// python_version alone: the interpreter must be there, and that is all.
		if _, err := a.envs.Key(ctx, preq); err != nil {
			return failed(err)
		}
		return agentproto.EnvStatus{State: agentproto.EnvReady, LogTail: []string{}}, nil
	}
	st, err := a.envs.Start(a.ctx, preq)
	if err != nil {
		return failed(err)
	}
	if st.State == pyenv.Building {
		// pip runs in the unpacked package until the build ends.
		keep = true
		go func() {
			_, _ = a.envs.Ensure(a.ctx, preq)
			_ = os.RemoveAll(dir)
		}()
	}
	a.log.Info("python environment asked for", "env", st.Key, "state", st.State, "requirements", len(preq.Requirements))
	return a.envStatus(st, len(preq.Requirements), 20), nil
}

func (a *Agent) envStatus(st pyenv.Status, requirements, tail int) agentproto.EnvStatus {
	return agentproto.EnvStatus{
		Key: st.Key, State: string(st.State), Reused: st.Reused, Requirements: requirements,
		LogTail: a.envs.LogTail(st.Key, tail), Error: st.Error,
	}
}

func (a *Agent) handleEnv(c echo.Context) error {
	key := c.Param("key")
	if !envKeyPattern.MatchString(key) {
		return &fieldError{"key", "must be 32 lowercase hex digits"}
	}
	tail := 20
	if v := c.QueryParam("tail"); v != "" {
		n, err := strconv.Atoi(v)
		if err != nil || n < 1 || n > 10000 {
			return &fieldError{"tail", "must be 1-10000"}
		}
		tail = n
	}
	st, ok := a.envs.Status(key)
	if !ok {
		return errorf(http.StatusNotFound, "unknown environment %s", key)
	}
	return c.JSON(http.StatusOK, a.envStatus(st, 0, tail))
}
