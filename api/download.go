package api

import (
	"context"
	"crypto/rand"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"mime"
	"net/http"
	"strconv"
	"time"

	"github.com/labstack/echo/v4"

	"github.com/modelplane/modelplane/apiv1"
	"github.com/modelplane/modelplane/blob"
	"github.com/modelplane/modelplane/modelpkg"
	"github.com/modelplane/modelplane/patch"
	"github.com/modelplane/modelplane/store"
)

// downloadTTL is how long a download URL of a deployment's package works.
const downloadTTL = time.Hour

// DownloadPath is where presigned downloads of model packages are served, without an API key:
// the token in the path is the credential.
const DownloadPath = "/v1/downloads/"

// deploymentConfig answers GET .../deployments/{id}/config: the deployment's config.yaml
// (raw_config) and its parsed form with the defaults applied (config), each as
// ?output_format= (raw, parsed, both) asks.
func (s *Server) deploymentConfig(c echo.Context) error {
	format := c.QueryParam("output_format")
	if format == "" {
		format = apiv1.ConfigFormatBoth
	}
	if format != apiv1.ConfigFormatRaw && format != apiv1.ConfigFormatParsed && format != apiv1.ConfigFormatBoth {
		return Errorf(http.StatusBadRequest, "output_format: must be raw, parsed or both, got %q", format)
	}
	_, d, err := s.ownDeployment(c)
	if err != nil {
		return err
	}
	text, err := s.configText(c.Request().Context(), d)
	if err != nil {
		return err
	}
	var out apiv1.DeploymentConfigV1
	if format != apiv1.ConfigFormatParsed {
		out.RawConfig = &text
	}
	if format != apiv1.ConfigFormatRaw {
		cfg, err := modelpkg.ParseConfig([]byte(text))
		if err != nil {
			return Errorf(http.StatusUnprocessableEntity, "the config of deployment %s does not parse: %v", d.ID, err)
		}
		b, err := cfg.JSON()
		if err != nil {
			return err
		}
		if err := json.Unmarshal(b, &out.Config); err != nil {
			return err
		}
	}
	return c.JSON(http.StatusOK, out)
}

// configText is the config.yaml the deployment runs: the one its create request gave (its
// raw_config, or its config when it replaced the package's), else its package's; for the
// development deployment, the one its synced patches led to.
func (s *Server) configText(ctx context.Context, d store.DeploymentView) (string, error) {
	if d.IsDevelopment {
		st, err := store.PatchStateOf(ctx, s.deps.DB, d.ID)
		switch {
		case err == nil:
			return store.ConfigAt(ctx, s.deps.DB, st, st.AppliedSeq)
		case !errors.Is(err, store.ErrNotFound):
			return "", err
		}
	}
	if text, ok, err := ownConfigText(d.Deployment); ok || err != nil {
		return text, err
	}
	if d.ArchiveID == nil {
		return "", Errorf(http.StatusNotFound, "deployment %s has no model package", d.ID)
	}
	r, _, err := s.deps.Blobs.Open(ctx, *d.ArchiveID)
	if errors.Is(err, blob.ErrNotFound) {
		return "", Errorf(http.StatusNotFound, "the model package of deployment %s is missing", d.ID)
	}
	if err != nil {
		return "", err
	}
	defer r.Close()
	p, err := patch.FromArchive(r)
	if err != nil {
		return "", err
	}
	return p.Config, nil
}

// ownConfigText is the config.yaml text a deployment has of its own: the raw_config of its
// create request, or the config it runs instead of its package's written out as YAML. ok is
// false when it runs its package's config.yaml as it is.
func ownConfigText(d store.Deployment) (text string, ok bool, err error) {
	if d.RawConfig != nil {
		return *d.RawConfig, true, nil
	}
	if len(d.Config) == 0 {
		return "", false, nil
	}
	b, err := json.Marshal(d.Config)
	if err != nil {
		return "", false, err
	}
	cfg, err := modelpkg.ConfigFromJSON(b)
	if err != nil {
		return "", false, fmt.Errorf("the stored config of deployment %s does not parse: %w", d.ID, err)
	}
	return cfg.Raw, true, nil
}

// downloadDeployment answers GET .../deployments/{id}/download with a URL that serves the
// deployment's model package (the archive it was made from, tar.gz) for an hour, without an
// API key: the spec's presigned URL, served by modelplane.
func (s *Server) downloadDeployment(c echo.Context) error {
	m, d, err := s.ownDeployment(c)
	if err != nil {
		return err
	}
	if m.DisableArchiveDownload {
		return Errorf(http.StatusForbidden, "model %s was created with disable_archive_download: the packages of its deployments cannot be downloaded", m.ID)
	}
	if d.ArchiveID == nil {
		return Errorf(http.StatusNotFound, "deployment %s has no model package", d.ID)
	}
	ctx := c.Request().Context()
	token := rand.Text()
	err = store.CreateDownload(ctx, s.deps.DB, token, store.Download{
		WorkspaceID: m.WorkspaceID, ArchiveID: *d.ArchiveID, Filename: fmt.Sprintf("%s-%s.tar.gz", m.Name, d.Name),
		ExpiresAt: time.Now().Add(downloadTTL),
	})
	if err != nil {
		return err
	}
	if err := audit(ctx, s.deps.DB, c, m.ID, "deployment.download", d.ID, nil); err != nil {
		return err
	}
	url := c.Scheme() + "://" + c.Request().Host + DownloadPath + token
	return c.JSON(http.StatusOK, apiv1.DownloadDeploymentV1{DownloadURL: url})
}

// serveDownload serves the package a download token grants, while it has not expired.
func (s *Server) serveDownload(c echo.Context) error {
	ctx := c.Request().Context()
	dl, err := store.DownloadByToken(ctx, s.deps.DB, c.Param("token"))
	if errors.Is(err, store.ErrNotFound) {
		return Errorf(http.StatusNotFound, "download link unknown or expired; ask GET .../download for a new one")
	}
	if err != nil {
		return err
	}
	r, size, err := s.deps.Blobs.Open(ctx, dl.ArchiveID)
	if errors.Is(err, blob.ErrNotFound) {
		return Errorf(http.StatusNotFound, "the model package is no longer stored")
	}
	if err != nil {
		return err
	}
	defer r.Close()
	h := c.Response().Header()
	h.Set(echo.HeaderContentLength, strconv.FormatInt(size, 10))
	h.Set(echo.HeaderContentType, "application/gzip")
	h.Set(echo.HeaderContentDisposition, mime.FormatMediaType("attachment", map[string]string{"filename": dl.Filename}))
	c.Response().WriteHeader(http.StatusOK)
	_, err = io.Copy(c.Response(), r)
	return err
}
