package api

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"mime"
	"net/http"
	"os"
	"strconv"
	"strings"

	"github.com/labstack/echo/v4"

	"github.com/modelplane/modelplane/agent/agentproto"
	"github.com/modelplane/modelplane/apiv1"
	"github.com/modelplane/modelplane/blob"
	"github.com/modelplane/modelplane/modelpkg"
	"github.com/modelplane/modelplane/store"
)

// DefaultMaxArchiveBytes is the largest model package accepted by default: 2 GiB.
const DefaultMaxArchiveBytes = 2 << 30

// DefaultMaxUnpackedBytes is the most a model package may unpack to by default: 16 GiB.
const DefaultMaxUnpackedBytes = 16 << 30

// archiveTypes are the content types a package upload may carry.
var archiveTypes = map[string]bool{
	"application/gzip": true, "application/x-gzip": true, "application/octet-stream": true,
	"application/x-tar+gzip": true, "application/x-compressed-tar": true,
}

// createArchive stores a model package. The package is unpacked once into scratch space to
// check it (paths, links, config.yaml) the way an agent will, then thrown away; a package
// that would fail on an agent fails here, with the reason.
func (s *Server) createArchive(c echo.Context) error {
	a, isNew, err := s.storeArchive(c)
	if err != nil {
		return err
	}
	status := http.StatusOK
	if isNew {
		status = http.StatusCreated
	}
	return c.JSON(status, apiv1.ArchiveV1{ID: a.ID, Size: a.SizeBytes})
}

// storeArchive stores and records the package in the request's body for the key's
// workspace, as createArchive says; isNew is false when the workspace had it already.
func (s *Server) storeArchive(c echo.Context) (a store.Archive, isNew bool, err error) {
	ct, _, _ := mime.ParseMediaType(c.Request().Header.Get(echo.HeaderContentType))
	if !archiveTypes[ct] {
		return a, false, Errorf(http.StatusUnsupportedMediaType, "send the package as Content-Type: application/gzip (a tar.gz), not %q", ct)
	}
	return s.keepArchive(c.Request().Context(), principal(c).WorkspaceID, c.Request().Body, c.Request().ContentLength)
}

// keepArchive stores the package r yields (length bytes, -1 when unknown) by its digest,
// checks it and records it for the workspace. A package refused for its size, the quota or
// its content leaves no blob behind.
func (s *Server) keepArchive(ctx context.Context, ws string, r io.Reader, length int64) (a store.Archive, isNew bool, err error) {
	limit := s.deps.MaxArchiveBytes
	if length > limit {
		return a, false, Errorf(http.StatusRequestEntityTooLarge, "archive of %d bytes is over the %d-byte limit", length, limit)
	}
	room, err := s.archiveRoom(ctx, ws, length)
	if err != nil {
		return a, false, err
	}
	// Reading stops where the quota would be passed, so an archive over it is never stored
	// whole. One the workspace has already would fit whatever its size; its upload is
	// refused here only when it is larger than the room left, and is rare.
	digest, size, created, err := s.deps.Blobs.Put(ctx, r, min(limit, room.left))
	if errors.Is(err, blob.ErrTooLarge) {
		if room.left < limit {
			return a, false, room.refuse()
		}
		return a, false, Errorf(http.StatusRequestEntityTooLarge, "archive is over the %d-byte limit", limit)
	}
	if err != nil {
		return a, false, fmt.Errorf("storing archive: %w", err)
	}
	if created {
		// From here on, an upload that ends without its row takes its blob away again.
		defer func() {
			if err != nil {
				s.dropBlob(ctx, digest)
			}
		}()
	}
	cfg, err := s.checkPackage(ctx, digest)
	if err != nil {
		return a, false, err
	}
	cfgJSON, err := json.Marshal(cfg)
	if err != nil {
		return a, false, err
	}
	a, isNew, err = store.CreateArchiveInQuota(ctx, s.deps.DB, store.Archive{
		WorkspaceID: ws, ID: digest, SizeBytes: size, Config: cfgJSON,
	})
	return a, isNew, quotaError(err, "archive not stored")
}

// archiveQuotaRoom is what a workspace's archive_bytes quota leaves for one upload.
type archiveQuotaRoom struct {
	limit, stored, left int64
}

// refuse is the 422 for an upload that does not fit.
func (r archiveQuotaRoom) refuse() error {
	return Errorf(http.StatusUnprocessableEntity, "archive not stored: it is over the %d bytes left in the workspace's archive_bytes quota of %d (%d bytes stored)",
		r.left, r.limit, r.stored)
}

// archiveRoom reads the workspace's archive_bytes quota and what it stores, and refuses at
// once an upload whose declared length (contentLength, -1 when unknown) is over what is left.
func (s *Server) archiveRoom(ctx context.Context, workspaceID string, contentLength int64) (archiveQuotaRoom, error) {
	q, err := store.WorkspaceQuotas(ctx, s.deps.DB, workspaceID)
	if err != nil {
		return archiveQuotaRoom{}, err
	}
	stored, err := store.ArchiveBytes(ctx, s.deps.DB, workspaceID)
	if err != nil {
		return archiveQuotaRoom{}, err
	}
	r := archiveQuotaRoom{limit: q.ArchiveBytes, stored: stored, left: max(q.ArchiveBytes-stored, 0)}
	if contentLength > r.left {
		return r, r.refuse()
	}
	return r, nil
}

// dropBlob removes the blob a failed upload stored, unless an archive row (of any workspace)
// or an upload key refers to it by now: blobs are shared by content. A blob this upload did
// not create was there before it and is left alone; one that cannot be removed now is left
// to the cleanup's sweep of blobs nothing refers to.
func (s *Server) dropBlob(ctx context.Context, digest string) {
	ctx = context.WithoutCancel(ctx) // the upload may have failed because its request ended
	referenced, err := store.ReferencedBlobs(ctx, s.deps.DB, []string{digest})
	if err == nil && !referenced[digest] {
		err = s.deps.Blobs.Delete(ctx, digest)
	}
	if err != nil {
		s.log.WarnContext(ctx, "removing the blob of a failed upload; the cleanup sweep will", "digest", digest, "err", err)
	}
}

// checkPackage unpacks the stored blob into scratch space and returns its config. A package
// that unpacks to more than Deps.MaxUnpackedBytes, or to more than modelpkg's expansion
// ratio allows, is 413 naming the limit.
func (s *Server) checkPackage(ctx context.Context, digest string) (modelpkg.Config, error) {
	r, _, err := s.deps.Blobs.Open(ctx, digest)
	if err != nil {
		return modelpkg.Config{}, err
	}
	defer r.Close()
	dir, err := os.MkdirTemp(s.deps.ScratchDir, "check-*")
	if err != nil {
		return modelpkg.Config{}, err
	}
	defer os.RemoveAll(dir)
	cfg, err := modelpkg.ExtractLimited(r, strings.TrimPrefix(digest, "sha256:"), dir+"/pkg",
		modelpkg.Limits{MaxUnpackedBytes: s.deps.MaxUnpackedBytes})
	if err != nil {
		var fe *modelpkg.FieldError
		switch {
		case errors.As(err, &fe):
			return cfg, Errorf(configStatus(fe), "%s", fe.Error())
		case errors.Is(err, modelpkg.ErrTooLarge):
			return cfg, Errorf(http.StatusRequestEntityTooLarge, "invalid model package: %v", err)
		}
		return cfg, Errorf(http.StatusBadRequest, "invalid model package: %v", err)
	}
	return cfg, nil
}

// configStatus is the answer to a config that breaks a rule: 422 for a valid Truss config
// that cannot run the way it asks, 400 otherwise.
func configStatus(fe *modelpkg.FieldError) int {
	if fe.Unsupported {
		return http.StatusUnprocessableEntity
	}
	return http.StatusBadRequest
}

// downloadArchive serves a package to an agent (node token), whichever workspace uploaded it.
func (s *Server) downloadArchive(c echo.Context) error {
	id := c.Param("id")
	ctx := c.Request().Context()
	// The node says which it is as its heartbeats do, and gets only the archives it has a
	// reason to run; a node's own token speaks for that node alone. Anything else is not
	// found, so that the answer reveals nothing of other nodes' or workspaces' archives.
	req := c.Request()
	node := req.Header.Get(agentproto.NodeNameHeader)
	may, err := s.nodeMayActAs(c, node)
	if err != nil {
		return err
	}
	ok := false
	if may {
		if ok, err = store.ArchiveServableToNode(ctx, s.deps.DB, id, node, req.Header.Get(agentproto.AgentIDHeader)); err != nil {
			return err
		}
	}
	if !ok {
		return Errorf(http.StatusNotFound, "archive %q not found for this node", id)
	}
	r, size, err := s.deps.Blobs.Open(ctx, id)
	if errors.Is(err, blob.ErrNotFound) {
		return Errorf(http.StatusNotFound, "archive %q is recorded but its blob is missing", id)
	}
	if err != nil {
		return err
	}
	defer r.Close()
	c.Response().Header().Set(echo.HeaderContentLength, strconv.FormatInt(size, 10))
	c.Response().Header().Set(echo.HeaderContentType, "application/gzip")
	c.Response().WriteHeader(http.StatusOK)
	_, err = io.Copy(c.Response(), r)
	return err
}
