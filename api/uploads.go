package api

import (
	"context"
	"crypto/rand"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"strings"
	"time"

	"github.com/labstack/echo/v4"

	"github.com/modelplane/modelplane"
	"github.com/modelplane/modelplane/apiv1"
	"github.com/modelplane/modelplane/blob"
	"github.com/modelplane/modelplane/modelpkg"
	"github.com/modelplane/modelplane/store"
)

// UploadPath is where an archive is PUT to the key POST /v1/prepare_model_upload answered.
const UploadPath = "/v1/uploads/"

// uploadKeyPrefix starts every upload key, which tells one from an archive ID in s3_key.
const uploadKeyPrefix = "upl_"

// uploadTTL is how long a prepared upload key takes an archive.
const uploadTTL = store.UploadTTL

// presignedUploadTTL is how long a presigned upload URL (an S3 store's) may be started: an
// upload under way when it passes still finishes.
const presignedUploadTTL = time.Hour

func isUploadKey(s string) bool { return strings.HasPrefix(s, uploadKeyPrefix) }

// prepareModelUpload answers POST /v1/prepare_model_upload: it checks the payload a push
// will send, as the create route will, and answers an upload key (s3_key) and the URL to PUT
// the archive to; a dry run only checks. The body is an apiv1.PrepareModelUploadRequest.
func (s *Server) prepareModelUpload(c echo.Context) error {
	obj, err := readObject(c, "deployment", "name", "team_id", "model_id", "dry_run")
	if err != nil {
		return err
	}
	raw, ok := obj["deployment"]
	if !ok || string(raw) == "null" {
		return Errorf(http.StatusBadRequest, "deployment: required: the deployment payload the push will send")
	}
	p, err := readPayload(raw, "deployment")
	if err != nil {
		return err
	}
	var name, teamID, modelID string
	for _, f := range []struct {
		name string
		dst  *string
	}{{"model_id", &modelID}, {"name", &name}, {"team_id", &teamID}} {
		if v, ok := obj[f.name]; ok && string(v) != "null" && json.Unmarshal(v, f.dst) != nil {
			return Errorf(http.StatusBadRequest, "%s: must be a string", f.name)
		}
	}
	dryRun, err := boolField(obj, "dry_run", false)
	if err != nil {
		return err
	}
	switch {
	case name != "" && modelID != "":
		return Errorf(http.StatusBadRequest, "name, model_id: send exactly one: name for a new model, model_id for a new deployment of a model")
	case name == "" && modelID == "":
		return Errorf(http.StatusBadRequest, "name, model_id: one is required: name for a new model, model_id for a new deployment of a model")
	}
	t, err := resolveTarget(p, nil, nil)
	if err != nil {
		return err
	}
	if _, err := p.checkConfig(); err != nil {
		return err
	}
	if name != "" {
		err = s.checkNewModel(c, name, teamID, t)
	} else {
		err = s.checkNewDeployment(c, modelID, teamID, p, t)
	}
	if err != nil {
		return err
	}
	// A workspace whose archives fill its quota gets no upload URL: any upload would be
	// refused. (The archive's size is not known yet; PUT checks it.)
	if room, err := s.archiveRoom(c.Request().Context(), principal(c).WorkspaceID, -1); err != nil {
		return err
	} else if room.left == 0 {
		return room.refuse()
	}
	if dryRun {
		return c.JSON(http.StatusOK, apiv1.PrepareModelUploadV1{})
	}
	key := uploadKeyPrefix + strings.ToLower(rand.Text())
	if err := store.CreateUpload(c.Request().Context(), s.deps.DB, key, principal(c).WorkspaceID, time.Now().Add(uploadTTL)); err != nil {
		return err
	}
	url := c.Scheme() + "://" + c.Request().Host + UploadPath + key
	if up, ok := s.deps.Blobs.(blob.Uploads); ok {
		// Straight to the bucket: the bytes do not pass through the API until the create
		// reads them back.
		if url, err = up.PresignUpload(c.Request().Context(), key, presignedUploadTTL); err != nil {
			return fmt.Errorf("presigning the upload: %w", err)
		}
	}
	return c.JSON(http.StatusOK, apiv1.PrepareModelUploadV1{S3Key: &key, UploadURL: &url})
}

// checkNewModel checks a prepared push that will create a model, as createModel would.
func (s *Server) checkNewModel(c echo.Context, name, teamID string, t target) error {
	if err := modelpkg.ValidateModelName(name); err != nil {
		return Errorf(http.StatusBadRequest, "name: %v", err)
	}
	if teamID != "" {
		ws, err := store.WorkspaceByID(c.Request().Context(), s.deps.DB, principal(c).WorkspaceID)
		if err != nil {
			return err
		}
		if teamID != ws.ID && teamID != ws.Name {
			return Errorf(http.StatusNotFound, "team_id: team %q not found; a workspace is one team, %s (%s)", teamID, ws.Name, ws.ID)
		}
	}
	if t.environment != "" && t.environment != modelplane.ProductionEnvironment {
		return Errorf(http.StatusNotFound, "environment %q not found: a new model has only production", t.environment)
	}
	return nil
}

// checkNewDeployment checks a prepared push that will add a deployment to the model, as
// createDeployment would.
func (s *Server) checkNewDeployment(c echo.Context, modelID, teamID string, p payload, t target) error {
	if teamID != "" {
		return Errorf(http.StatusBadRequest, "team_id: must not be set with model_id: the model's team is its workspace")
	}
	ctx := c.Request().Context()
	m, err := store.ModelByID(ctx, s.deps.DB, principal(c).WorkspaceID, modelID)
	if errors.Is(err, store.ErrNotFound) {
		return Errorf(http.StatusNotFound, "model_id: model %q not found", modelID)
	}
	if err != nil {
		return err
	}
	if _, err := s.checkTargetEnvironment(c, m, t.environment); err != nil {
		return err
	}
	if p.name == "" || t.development {
		return nil
	}
	ds, err := store.ListDeployments(ctx, s.deps.DB, m.ID)
	if err != nil {
		return err
	}
	for _, d := range ds {
		if d.Name == p.name {
			return Errorf(http.StatusConflict, "model %s already has a deployment named %q", m.ID, p.name)
		}
	}
	return nil
}

// putUpload answers PUT /v1/uploads/{key}: the archive for a key prepare_model_upload made,
// stored and checked as POST /v1/archives does. A key takes one archive; another workspace's
// key is not found, as an unknown one is.
func (s *Server) putUpload(c echo.Context) error {
	key := c.Param("key")
	ctx := c.Request().Context()
	ws := principal(c).WorkspaceID
	u, err := store.UploadByKey(ctx, s.deps.DB, ws, key)
	if errors.Is(err, store.ErrNotFound) {
		return Errorf(http.StatusNotFound, "upload key %q not found; POST /v1/prepare_model_upload makes one", key)
	}
	if err != nil {
		return err
	}
	if u.ArchiveID != nil {
		return Errorf(http.StatusConflict, "an archive (%s) was uploaded to %q already; a key takes one upload, prepare another for another archive", *u.ArchiveID, key)
	}
	if time.Now().After(u.ExpiresAt) {
		return Errorf(http.StatusNotFound, "upload key %q expired at %s; POST /v1/prepare_model_upload makes another", key, u.ExpiresAt.UTC().Format(time.RFC3339))
	}
	a, _, err := s.storeArchive(c)
	if err != nil {
		return err
	}
	err = store.CompleteUpload(ctx, s.deps.DB, ws, key, a.ID)
	if errors.Is(err, store.ErrUploaded) {
		return Errorf(http.StatusConflict, "another archive was uploaded to %q first; a key takes one upload", key)
	}
	if err != nil {
		return err
	}
	return c.JSON(http.StatusOK, apiv1.ArchiveV1{ID: a.ID, Size: a.SizeBytes})
}

// takeUpload makes an archive of what a client PUT to the presigned URL of an upload key,
// when the store takes uploads directly: read back from the store, checked and limited as
// POST /v1/archives is, stored by digest and recorded on the key. The uploaded object goes
// once it is stored or refused; after a failure that is not the package's fault (the store
// or the database) it stays, for the create to be retried. field names the request's field.
func (s *Server) takeUpload(ctx context.Context, up blob.Uploads, u store.Upload, field string) (archiveID string, err error) {
	r, size, err := up.OpenUpload(ctx, u.Key)
	if errors.Is(err, blob.ErrNotFound) {
		// A create of the same key at once may have taken it first.
		if again, err := store.UploadByKey(ctx, s.deps.DB, u.WorkspaceID, u.Key); err == nil && again.ArchiveID != nil {
			return *again.ArchiveID, nil
		}
		return "", Errorf(http.StatusConflict, "%s: nothing was uploaded to %q yet; PUT the archive to the upload_url prepare_model_upload answered", field, u.Key)
	}
	if err != nil {
		return "", fmt.Errorf("reading upload %s: %w", u.Key, err)
	}
	defer r.Close()
	defer func() {
		var refused *Error
		if err == nil || (errors.As(err, &refused) && refused.Status < http.StatusInternalServerError) {
			if derr := up.DeleteUpload(context.WithoutCancel(ctx), u.Key); derr != nil {
				s.log.Warn("removing a presigned upload; the cleanup sweep will", "upload", u.Key, "err", derr)
			}
		}
	}()
	if time.Now().After(u.ExpiresAt) {
		return "", Errorf(http.StatusBadRequest, "%s: upload key %q expired at %s; POST /v1/prepare_model_upload makes another", field, u.Key, u.ExpiresAt.UTC().Format(time.RFC3339))
	}
	a, _, err := s.keepArchive(ctx, u.WorkspaceID, r, size)
	if err != nil {
		return "", err
	}
	err = store.CompleteUpload(ctx, s.deps.DB, u.WorkspaceID, u.Key, a.ID)
	if errors.Is(err, store.ErrUploaded) {
		again, err := store.UploadByKey(ctx, s.deps.DB, u.WorkspaceID, u.Key)
		if err != nil {
			return "", err
		}
		return *again.ArchiveID, nil
	}
	return a.ID, err
}
