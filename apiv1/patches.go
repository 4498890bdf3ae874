package apiv1

import (
	"time"

	"github.com/modelplane/modelplane"
	"github.com/modelplane/modelplane/patch"
)

// PatchStateV1 is the development deployment's live-reload state, the answer to GET and
// POST .../deployments/development/patches.
type PatchStateV1 struct {
	DeploymentID string `json:"deployment_id"`
	// PatchHash is the hash of the newest staged point, the base of the next patch.
	PatchHash string `json:"patch_hash"`
	// PatchPoint is that newest staged point (Baseten's CreateDeploymentPatchResponseV1).
	PatchPoint PatchPointWithHashV1 `json:"patch_point"`
	// AppliedPatchHash is the point the replica runs, or starts with.
	AppliedPatchHash string `json:"applied_patch_hash"`
	PendingPatches   int64  `json:"pending_patches"`
}

// PatchRequest is the body of POST .../deployments/development/patches.
type PatchRequest struct {
	PrevPatchHash  string      `json:"prev_patch_hash"`
	NextPatchPoint patch.Point `json:"next_patch_point"`
	PatchOps       []patch.Op  `json:"patch_ops"`
}

// PatchSyncV1 answers .../patches/sync.
type PatchSyncV1 struct {
	NeedsFullDeployReason *string `json:"needs_full_deploy_reason"`
	PatchHash             string  `json:"patch_hash"`
	// How the replica took the patches: hot_reload, restart, unchanged or woken.
	How         string `json:"how"`
	ReloadError string `json:"reload_error,omitempty"`
	// Status is the development deployment's status after the sync.
	Status     modelplane.DeploymentStatus `json:"status"`
	DurationMS int64                       `json:"duration_ms"`
}

// KeepAwakeRequest is the body of POST .../deployments/development/keep_awake; an empty body
// asks for 60 seconds.
type KeepAwakeRequest struct {
	Seconds int `json:"seconds"` // 10-3600
}

// KeepAwakeV1 answers keep_awake: the development deployment keeps a replica until then.
type KeepAwakeV1 struct {
	DeploymentID string    `json:"deployment_id"`
	AwakeUntil   time.Time `json:"awake_until"`
}

// PatchPointWithHashV1 is a patch point with the hash the server derives from it (SHA-256
// of its canonical JSON; Baseten's is a blake3 fold, see API.md).
type PatchPointWithHashV1 struct {
	ContentHashes map[string]*string `json:"content_hashes"`
	Config        string             `json:"config"`
	// Requirements are those the watch client resolved, as it sent them (empty when none).
	Requirements []string `json:"requirements"`
	Hash         string   `json:"hash"`
}

// Point is the patch point without its hash, as the next patch is computed against it.
func (p PatchPointWithHashV1) Point() patch.Point {
	return patch.Point{ContentHashes: p.ContentHashes, Config: p.Config, Requirements: p.Requirements}
}

// PatchesStateV1 answers GET .../deployments/development/patches/state: the point the
// deployment runs, and the newest staged one when patches wait to be synced (else null).
type PatchesStateV1 struct {
	RunningPatchPoint PatchPointWithHashV1  `json:"running_patch_point"`
	PendingPatchPoint *PatchPointWithHashV1 `json:"pending_patch_point"`
}
