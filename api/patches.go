package api

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"time"

	"github.com/labstack/echo/v4"

	"github.com/modelplane/modelplane"
	"github.com/modelplane/modelplane/apiv1"
	"github.com/modelplane/modelplane/blob"
	"github.com/modelplane/modelplane/patch"
	"github.com/modelplane/modelplane/store"
	"github.com/modelplane/modelplane/workflows/contract"
)

// maxPatchBody bounds a patch request: it carries the source files that changed.
const maxPatchBody = 32 << 20

// Keep-awake leases, in seconds.
const (
	defaultKeepAwake = 60
	maxKeepAwake     = 3600
)

func patchStateV1(s store.PatchState) apiv1.PatchStateV1 {
	return apiv1.PatchStateV1{DeploymentID: s.DeploymentID, PatchHash: s.HeadHash, PatchPoint: pointWithHash(s.HeadPoint.Point),
		AppliedPatchHash: s.AppliedHash, PendingPatches: s.HeadSeq - s.AppliedSeq}
}

// developmentDeployment resolves the route's deployment and checks it is the development one.
func (s *Server) developmentDeployment(c echo.Context) (store.DeploymentView, error) {
	m, err := s.ownModel(c)
	if err != nil {
		return store.DeploymentView{}, err
	}
	d, err := s.deploymentRef(c, m.ID)
	if err != nil {
		return d, err
	}
	if !d.IsDevelopment {
		return d, Errorf(http.StatusUnprocessableEntity, "deployment %s is published and immutable; live reload patches the development deployment only", d.ID)
	}
	return d, nil
}

// patchState returns the deployment's live-reload state, making it from its archive on the
// first request.
func (s *Server) patchState(c echo.Context, d store.DeploymentView) (store.PatchState, error) {
	ctx := c.Request().Context()
	st, err := store.PatchStateOf(ctx, s.deps.DB, d.ID)
	if !errors.Is(err, store.ErrNotFound) {
		return st, err
	}
	if d.ArchiveID == nil {
		return st, Errorf(http.StatusUnprocessableEntity, "deployment %s has no model archive to patch", d.ID)
	}
	r, _, err := s.deps.Blobs.Open(ctx, *d.ArchiveID)
	if errors.Is(err, blob.ErrNotFound) {
		return st, Errorf(http.StatusUnprocessableEntity, "the archive of deployment %s is missing; push the development deployment again", d.ID)
	}
	if err != nil {
		return st, err
	}
	defer r.Close()
	base, err := patch.FromArchive(r)
	if err != nil {
		return st, err
	}
	// A deployment whose create request gave its config.yaml runs that one, so patches
	// start from it.
	text, ok, err := ownConfigText(d.Deployment)
	if err != nil {
		return st, err
	}
	if ok {
		base.Config = text
	}
	return store.EnsurePatchState(ctx, s.deps.DB, d.ID, base)
}

func (s *Server) getPatches(c echo.Context) error {
	d, err := s.developmentDeployment(c)
	if err != nil {
		return err
	}
	st, err := s.patchState(c, d)
	if err != nil {
		return err
	}
	return c.JSON(http.StatusOK, patchStateV1(st))
}

// getPatchesState answers GET .../deployments/development/patches/state: the point the
// deployment runs and, when staged patches wait to be synced, the point they lead to.
func (s *Server) getPatchesState(c echo.Context) error {
	d, err := s.developmentDeployment(c)
	if err != nil {
		return err
	}
	st, err := s.patchState(c, d)
	if err != nil {
		return err
	}
	running := st.HeadPoint.Point
	if st.AppliedSeq < st.HeadSeq {
		if running, err = s.pointAt(c, st, st.AppliedSeq); err != nil {
			return err
		}
	}
	out := apiv1.PatchesStateV1{RunningPatchPoint: pointWithHash(running)}
	if st.AppliedSeq < st.HeadSeq {
		pending := pointWithHash(st.HeadPoint.Point)
		out.PendingPatchPoint = &pending
	}
	return c.JSON(http.StatusOK, out)
}

// pointAt is the deployment's point at seq: its base with the staged patches up to seq
// carried out.
func (s *Server) pointAt(c echo.Context, st store.PatchState, seq int64) (patch.Point, error) {
	p := st.BasePoint.Point
	patches, err := store.PatchesBetween(c.Request().Context(), s.deps.DB, st.DeploymentID, 0, seq)
	if err != nil {
		return p, err
	}
	for _, sp := range patches {
		if p, err = patch.Next(p, sp.Ops); err != nil {
			return p, fmt.Errorf("replaying patch %d of deployment %s: %w", sp.Seq, st.DeploymentID, err)
		}
	}
	return p, nil
}

func pointWithHash(p patch.Point) apiv1.PatchPointWithHashV1 {
	hashes := p.ContentHashes
	if hashes == nil {
		hashes = map[string]*string{}
	}
	reqs := p.Requirements
	if reqs == nil {
		reqs = []string{}
	}
	return apiv1.PatchPointWithHashV1{ContentHashes: hashes, Config: p.Config, Requirements: reqs, Hash: p.Hash()}
}

// createPatch stages a patch (an apiv1.PatchRequest) against the deployment's newest point.
func (s *Server) createPatch(c echo.Context) error {
	d, err := s.developmentDeployment(c)
	if err != nil {
		return err
	}
	obj, err := readObjectUpTo(c, maxPatchBody, "prev_patch_hash", "next_patch_point", "patch_ops")
	if err != nil {
		return err
	}
	prev, ok, err := stringField(obj, "prev_patch_hash")
	if err != nil || !ok || prev == "" {
		return Errorf(http.StatusBadRequest, "prev_patch_hash: required: the patch_hash the patch applies to")
	}
	var next patch.Point
	if err := strictJSON(obj["next_patch_point"], &next); err != nil || next.ContentHashes == nil {
		return Errorf(http.StatusBadRequest, "next_patch_point: required: {\"content_hashes\": {path: sha256|null}, \"config\": text, \"requirements\": [text]}%s", detail(err))
	}
	if err := next.Validate(); err != nil {
		return Errorf(http.StatusBadRequest, "next_patch_point.%v", err)
	}
	var ops []patch.Op
	if err := strictJSON(obj["patch_ops"], &ops); err != nil {
		return Errorf(http.StatusBadRequest, "patch_ops: must be a list of operations%s", detail(err))
	}
	st, err := s.patchState(c, d)
	if err != nil {
		return err
	}
	if prev != st.HeadHash {
		return Errorf(http.StatusConflict, "prev_patch_hash %s is not the development deployment's current point %s; compute the patch against it", prev, st.HeadHash)
	}
	got, err := patch.Next(st.HeadPoint.Point, ops)
	var pe *patch.Error
	if errors.As(err, &pe) {
		return Errorf(http.StatusBadRequest, "%s: %s", pe.Field, pe.Message)
	}
	if err != nil {
		return err
	}
	if got.Hash() == st.HeadHash {
		return Errorf(http.StatusBadRequest, "patch_ops: the patch changes nothing")
	}
	if got.Hash() != next.Hash() {
		return Errorf(http.StatusBadRequest, "next_patch_point: the operations lead to %s, not to the point given (%s)%s",
			got.Hash(), next.Hash(), firstDifference(got, next))
	}
	got.Requirements = next.Requirements
	st, err = store.StagePatch(c.Request().Context(), s.deps.DB, d.ID, prev, got, ops)
	if errors.Is(err, store.ErrStalePatch) {
		return Errorf(http.StatusConflict, "another patch was staged first; prev_patch_hash %s is no longer the current point", prev)
	}
	if err != nil {
		return err
	}
	return c.JSON(http.StatusOK, patchStateV1(st))
}

// syncPatches brings the development deployment's replica to its newest staged point.
func (s *Server) syncPatches(c echo.Context) error {
	start := time.Now()
	d, err := s.developmentDeployment(c)
	if err != nil {
		return err
	}
	if _, err := readOptionalObject(c); err != nil {
		return err
	}
	if _, err := s.patchState(c, d); err != nil {
		return err
	}
	var res contract.PatchSyncResult
	if err := s.updateDeploymentInto(c.Request().Context(), d.ID, contract.UpdateApplyPatch, nil, &res); err != nil {
		return err
	}
	out := apiv1.PatchSyncV1{PatchHash: res.PatchHash, How: res.How, ReloadError: res.ReloadError,
		Status: modelplane.DeploymentStatus(res.Status.Status), DurationMS: time.Since(start).Milliseconds()}
	if res.FullDeployReason != "" {
		out.NeedsFullDeployReason = &res.FullDeployReason
	}
	return c.JSON(http.StatusOK, out)
}

// keepAwake holds the development deployment at one replica at least for a while, waking it
// when it is at zero; the body, when there is one, is an apiv1.KeepAwakeRequest.
func (s *Server) keepAwake(c echo.Context) error {
	d, err := s.developmentDeployment(c)
	if err != nil {
		return err
	}
	obj, err := readOptionalObject(c, "seconds")
	if err != nil {
		return err
	}
	seconds := defaultKeepAwake
	if v, ok := obj["seconds"]; ok {
		if json.Unmarshal(v, &seconds) != nil || seconds < 10 || seconds > maxKeepAwake {
			return Errorf(http.StatusBadRequest, "seconds: must be a whole number from 10 to %d", maxKeepAwake)
		}
	}
	until := time.Now().Add(time.Duration(seconds) * time.Second).UTC()
	if err := store.KeepAwake(c.Request().Context(), s.deps.DB, d.ID, until); err != nil {
		return err
	}
	return c.JSON(http.StatusOK, apiv1.KeepAwakeV1{DeploymentID: d.ID, AwakeUntil: until})
}

// readOptionalObject is readObject for a body that may be empty.
func readOptionalObject(c echo.Context, known ...string) (map[string]json.RawMessage, error) {
	if c.Request().ContentLength == 0 {
		return map[string]json.RawMessage{}, nil
	}
	return readObject(c, known...)
}

// strictJSON decodes raw into v, refusing fields v does not have.
func strictJSON(raw json.RawMessage, v any) error {
	if len(raw) == 0 {
		return errors.New("missing")
	}
	dec := json.NewDecoder(bytes.NewReader(raw))
	dec.DisallowUnknownFields()
	return dec.Decode(v)
}

func detail(err error) string {
	if err == nil {
		return ""
	}
	return " (" + jsonProblem(err) + ")"
}

// firstDifference says where two points part, so a client can find its mistake.
func firstDifference(a, b patch.Point) string {
	if a.Config != b.Config {
		return ": config differs"
	}
	for _, p := range a.Sorted() {
		ah := a.ContentHashes[p]
		bh, ok := b.ContentHashes[p]
		if !ok {
			return ": " + p + " is missing from next_patch_point"
		}
		if (ah == nil) != (bh == nil) || (ah != nil && *ah != *bh) {
			return ": " + p + " differs"
		}
	}
	for _, p := range b.Sorted() {
		if !a.Has(p) {
			return ": " + p + " is not made by any operation"
		}
	}
	return ""
}
