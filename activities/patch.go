package activities

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"time"

	"go.temporal.io/sdk/activity"
	"go.temporal.io/sdk/temporal"

	"github.com/modelplane/modelplane"
	"github.com/modelplane/modelplane/agent/agentproto"
	"github.com/modelplane/modelplane/modelpkg"
	"github.com/modelplane/modelplane/patch"
	"github.com/modelplane/modelplane/store"
	"github.com/modelplane/modelplane/workflows/contract"
)

// ApplyPatches brings the development deployment to the head of its staged patches: it
// records the head as applied, so a replica started from now on runs it, and brings each
// running replica there, by hot reload when every operation on the way allows it and by a
// restart in place otherwise. A change that cannot be made in place (resources, runtime)
// applies nothing and answers the reason. A retried call brings each replica from wherever
// it is, so it never repeats what a replica has taken.
func (a *Activities) ApplyPatches(ctx context.Context, in contract.ApplyPatchesInput) (contract.ApplyPatchesResult, error) {
	s, err := store.PatchStateOf(ctx, a.DB, in.DeploymentID)
	if errors.Is(err, store.ErrNotFound) {
		return contract.ApplyPatchesResult{How: contract.HowUnchanged}, nil
	}
	if err != nil {
		return contract.ApplyPatchesResult{}, err
	}
	res := contract.ApplyPatchesResult{PatchHash: s.HeadHash, How: contract.HowUnchanged}
	if s.HeadSeq > s.AppliedSeq {
		from, err := a.configAt(ctx, s, s.AppliedSeq)
		if err != nil {
			return res, err
		}
		to, err := a.configAt(ctx, s, s.HeadSeq)
		if err != nil {
			return res, err
		}
		pending, err := store.PatchesBetween(ctx, a.DB, s.DeploymentID, s.AppliedSeq, s.HeadSeq)
		if err != nil {
			return res, err
		}
		if _, reason := patch.Decide(from, to, opsOf(pending)); reason != "" {
			return contract.ApplyPatchesResult{FullDeployReason: reason, PatchHash: s.AppliedHash}, nil
		}
		if err := store.MarkPatchesApplied(ctx, a.DB, s.DeploymentID, s.HeadSeq, s.HeadHash); err != nil {
			return res, err
		}
		if res.Config, err = to.JSON(); err != nil {
			return res, err
		}
		activity.GetLogger(ctx).Info("patches applied", "deployment_id", s.DeploymentID,
			"from_seq", s.AppliedSeq, "to_seq", s.HeadSeq)
		s.AppliedSeq, s.AppliedHash = s.HeadSeq, s.HeadHash
	}
	for _, id := range in.ReplicaIDs {
		how, reloadErr, err := a.patchReplica(ctx, s, id)
		if err != nil {
			return res, err
		}
		if how != contract.HowUnchanged {
			res.How, res.ReloadError = how, reloadErr
		}
	}
	return res, nil
}

// patchReplica brings one replica from the point it runs to the applied one.
func (a *Activities) patchReplica(ctx context.Context, s store.PatchState, replicaID string) (how, reloadErr string, err error) {
	r, err := store.ReplicaByID(ctx, a.DB, replicaID)
	if errors.Is(err, store.ErrNotFound) {
		return contract.HowUnchanged, "", nil
	}
	if err != nil {
		return "", "", err
	}
	if r.AgentURL == "" || r.State.Ended() {
		return contract.HowUnchanged, "", nil // a replica that does not run starts at the applied point
	}
	c, err := a.agent(ctx, r.NodeID, r.AgentURL)
	if err != nil {
		return "", "", err
	}
	got, err := c.Replica(ctx, replicaID)
	if errors.Is(err, agentproto.ErrUnknownReplica) {
		return contract.HowUnchanged, "", nil
	}
	if err != nil {
		return "", "", err
	}
	if got.PatchHash == s.AppliedHash || (got.PatchHash == "" && s.AppliedSeq == 0) {
		// A retry after a restart that went through: the replica goes back into the routes.
		if err := a.backInRoutes(ctx, r, got); err != nil {
			return "", "", err
		}
		return contract.HowUnchanged, got.ReloadError, nil
	}
	// The replica's point tells which patches it lacks; one the deployment does not know (it
	// cannot happen short of a lost record) takes them all and a restart.
	from, known, err := store.PatchSeqOf(ctx, a.DB, s, got.PatchHash)
	if err != nil {
		return "", "", err
	}
	how = patch.HowRestart
	if !known || from > s.AppliedSeq {
		from = 0
	}
	ops, err := store.PatchesBetween(ctx, a.DB, s.DeploymentID, from, s.AppliedSeq)
	if err != nil {
		return "", "", err
	}
	toCfg, err := a.configAt(ctx, s, s.AppliedSeq)
	if err != nil {
		return "", "", err
	}
	if known {
		fromCfg, err := a.configAt(ctx, s, from)
		if err != nil {
			return "", "", err
		}
		if decided, reason := patch.Decide(fromCfg, toCfg, opsOf(ops)); reason == "" {
			how = decided
		}
	}
	req := agentproto.PatchRequest{PatchHash: s.AppliedHash, Files: patch.Fold(opsOf(ops)), How: how}
	if how == patch.HowRestart {
		if req.Config, err = toCfg.JSON(); err != nil {
			return "", "", err
		}
	}
	if how == patch.HowRestart && r.State == modelplane.ReplicaReady {
		// Out of the gateways' routes while its server restarts: they hold the requests for it
		// (an ACTIVE deployment without a ready replica is waited for, as one waking up is)
		// instead of sending them to a port nobody listens on. The old server finishes what
		// it has before it exits.
		if err := store.SetReplicaState(ctx, a.DB, replicaID, modelplane.ReplicaStarting, r.Address, ""); err != nil {
			return "", "", err
		}
		r.State = modelplane.ReplicaStarting
	}
	// A restart or a reload lasts as long as the model takes to load: the heartbeat shows the
	// activity is alive meanwhile.
	stop := heartbeatEvery(ctx, 5*time.Second)
	out, err := c.PatchReplica(ctx, replicaID, req)
	stop()
	var apiErr *agentproto.APIError
	if errors.As(err, &apiErr) && !apiErr.Retryable() {
		return "", "", temporal.NewNonRetryableApplicationError(apiErr.Error(), contract.ErrTypePatchRefused, err)
	}
	if err != nil {
		return "", "", err
	}
	activity.GetLogger(ctx).Info("replica patched", "deployment_id", s.DeploymentID, "replica_id", replicaID,
		"how", out.How, "patch_hash", s.AppliedHash, "reload_error", out.ReloadError, "duration_ms", out.DurationMS)
	if out.Replica.State == modelplane.ReplicaFailed {
		// The deployment's workflow replaces a failed replica; the sync reports why it failed.
		return out.How, fmt.Sprintf("the model server failed after the restart: %s", out.Replica.Error), nil
	}
	if err := a.backInRoutes(ctx, r, out.Replica); err != nil {
		return "", "", err
	}
	return out.How, out.ReloadError, nil
}

// backInRoutes marks READY a replica that a restart in place took out of the routes, once
// its agent says it is READY again.
func (a *Activities) backInRoutes(ctx context.Context, r store.Replica, got agentproto.Replica) error {
	if r.State != modelplane.ReplicaStarting || got.State != modelplane.ReplicaReady {
		return nil
	}
	return store.MarkReplicaReady(ctx, a.DB, r.ID, got.Address, got.PredictPath, got.WebsocketPath)
}

// configAt parses the deployment's config.yaml at seq.
func (a *Activities) configAt(ctx context.Context, s store.PatchState, seq int64) (modelpkg.Config, error) {
	text, err := store.ConfigAt(ctx, a.DB, s, seq)
	if err != nil {
		return modelpkg.Config{}, err
	}
	return modelpkg.ParseConfig([]byte(text))
}

func opsOf(ps []store.StoredPatch) []patch.Op {
	var out []patch.Op
	for _, p := range ps {
		out = append(out, p.Ops...)
	}
	return out
}

// appliedPatch is what a new replica of a development deployment starts with: the files and
// config of the applied point, or nothing when it is the archive's own.
func (a *Activities) appliedPatch(ctx context.Context, deploymentID string) (*agentproto.ReplicaPatch, json.RawMessage, error) {
	s, err := store.PatchStateOf(ctx, a.DB, deploymentID)
	if errors.Is(err, store.ErrNotFound) {
		return nil, nil, nil
	}
	if err != nil || s.AppliedSeq == 0 {
		return nil, nil, err
	}
	ps, err := store.PatchesBetween(ctx, a.DB, deploymentID, 0, s.AppliedSeq)
	if err != nil {
		return nil, nil, err
	}
	cfg, err := a.configAt(ctx, s, s.AppliedSeq)
	if err != nil {
		return nil, nil, err
	}
	cfgJSON, err := cfg.JSON()
	if err != nil {
		return nil, nil, err
	}
	return &agentproto.ReplicaPatch{PatchHash: s.AppliedHash, Files: patch.Fold(opsOf(ps))}, cfgJSON, nil
}

// maxPatchedArchiveBytes bounds an archive made for a promotion from the development
// deployment; it is the API's default upload limit.
const maxPatchedArchiveBytes = 2 << 30

// patchedArchive returns the archive of what the development deployment runs: its own
// archive when no patch has been synced, else one made from it with the synced patches
// applied and recorded in the workspace, whose config.yaml is the one the patches led to
// (withConfig). The archive is content-addressed, so a retry makes the same one. A promotion
// from the development deployment copies this, so the code that was tried is the code that
// ships.
func (a *Activities) patchedArchive(ctx context.Context, dep store.Deployment) (id string, withConfig bool, err error) {
	id, err = a.makePatchedArchive(ctx, dep)
	return id, err == nil && id != *dep.ArchiveID, err
}

func (a *Activities) makePatchedArchive(ctx context.Context, dep store.Deployment) (string, error) {
	s, err := store.PatchStateOf(ctx, a.DB, dep.ID)
	if errors.Is(err, store.ErrNotFound) || (err == nil && s.AppliedSeq == 0) {
		return *dep.ArchiveID, nil
	}
	if err != nil {
		return "", err
	}
	ps, err := store.PatchesBetween(ctx, a.DB, dep.ID, 0, s.AppliedSeq)
	if err != nil {
		return "", err
	}
	// The patches start from the deployment's own config.yaml when its create request gave
	// one, which the package does not hold: the point's text goes into the archive.
	configText, err := store.ConfigAt(ctx, a.DB, s, s.AppliedSeq)
	if err != nil {
		return "", err
	}
	scratch, err := os.MkdirTemp("", "modelplane-patched-*")
	if err != nil {
		return "", err
	}
	defer os.RemoveAll(scratch)
	r, _, err := a.Blobs.Open(ctx, *dep.ArchiveID)
	if err != nil {
		return "", fmt.Errorf("opening archive %s: %w", *dep.ArchiveID, err)
	}
	pkg := filepath.Join(scratch, "pkg")
	_, err = modelpkg.Extract(r, *dep.ArchiveID, pkg)
	r.Close()
	if err != nil {
		return "", fmt.Errorf("unpacking archive %s: %w", *dep.ArchiveID, err)
	}
	if err := patch.Apply(pkg, patch.Fold(opsOf(ps))); err != nil {
		return "", fmt.Errorf("applying the synced patches: %w", err)
	}
	if err := os.WriteFile(filepath.Join(pkg, modelpkg.ConfigFile), []byte(configText), 0o644); err != nil {
		return "", fmt.Errorf("writing the patched %s: %w", modelpkg.ConfigFile, err)
	}
	cfg, err := modelpkg.ReadConfig(pkg)
	if err != nil {
		return "", refused("the development deployment's patched package is not valid: %v", err)
	}
	cfgJSON, err := json.Marshal(cfg)
	if err != nil {
		return "", err
	}
	pr, pw := io.Pipe()
	go func() {
		_, err := modelpkg.Pack(pkg, pw)
		pw.CloseWithError(err)
	}()
	digest, size, _, err := a.Blobs.Put(ctx, pr, maxPatchedArchiveBytes)
	pr.Close()
	if err != nil {
		return "", fmt.Errorf("storing the patched archive: %w", err)
	}
	if _, _, err := store.CreateArchive(ctx, a.DB, store.Archive{
		WorkspaceID: dep.WorkspaceID, ID: digest, SizeBytes: size, Config: cfgJSON,
	}); err != nil {
		return "", err
	}
	activity.GetLogger(ctx).Info("archive made from the development deployment's patches", "deployment_id", dep.ID,
		"archive_id", digest, "patch_hash", s.AppliedHash)
	return digest, nil
}
