package contract

import "encoding/json"

// ErrTypePatchRefused is a patch the deployment's replica cannot take, for a reason retrying
// cannot fix.
const ErrTypePatchRefused = "PatchRefused"

// ApplyPatchesInput names the development deployment to bring to its staged head, and the
// replicas it runs.
type ApplyPatchesInput struct {
	DeploymentID string
	ReplicaIDs   []string
}

// ApplyPatchesResult says what the sync did.
type ApplyPatchesResult struct {
	// FullDeployReason is set when the staged patches cannot be taken in place; nothing was
	// applied.
	FullDeployReason string
	// PatchHash is the point the deployment now runs.
	PatchHash string
	// How is patch.HowHotReload or patch.HowRestart as the replica took the patches, or
	// "unchanged" when there was nothing to do.
	How string
	// ReloadError is the model server's error when a hot reload failed.
	ReloadError string
	// Config is the config (JSON, as LoadDeploymentSpec gives it) of the point applied; nil
	// when it did not change.
	Config json.RawMessage
}

// HowUnchanged is ApplyPatchesResult.How when the replicas ran the staged head already.
const HowUnchanged = "unchanged"
