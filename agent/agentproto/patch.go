package agentproto

import (
	"encoding/json"

	"github.com/modelplane/modelplane/patch"
)

// PatchRequest is the body of POST /v1/replicas/:id/patch: change a running replica's package
// and have its model server take the change, in the same process (How patch.HowHotReload) or
// in a new one on the same GPUs and port (How patch.HowRestart).
type PatchRequest struct {
	// PatchHash names the patched package; the replica records it.
	PatchHash string        `json:"patch_hash"`
	Files     patch.FileSet `json:"files"`
	// Config, when given, is the config the replica runs with from the restart on; like
	// StartRequest.Config it overrides the package's config.yaml. A hot reload only checks it.
	Config json.RawMessage `json:"config,omitempty"`
	How    string          `json:"how"`
}

// PatchResult answers a PatchRequest.
type PatchResult struct {
	Replica Replica `json:"replica"`
	// How is what was done: the request's How, or HowUnchanged.
	How string `json:"how"`
	// ReloadError says why the model server could not load the patched code; the replica
	// then stays READY but answers every prediction with this error.
	ReloadError string `json:"reload_error,omitempty"`
	DurationMS  int64  `json:"duration_ms"`
}

// HowUnchanged answers a hot reload of the patch the replica is already at: a retry of a
// request whose answer was lost changes nothing.
const HowUnchanged = "unchanged"
