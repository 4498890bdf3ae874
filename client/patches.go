package client

import (
	"context"
	"net/http"
	"time"

	"github.com/modelplane/modelplane"
	"github.com/modelplane/modelplane/apiv1"
)

// Patches returns the development deployment's live-reload state, with its newest point.
func (c *Client) Patches(ctx context.Context, modelID string) (apiv1.PatchStateV1, error) {
	var out apiv1.PatchStateV1
	err := c.get(ctx, &out, "v1", "models", modelID, "deployments", modelplane.DevelopmentName, "patches")
	return out, err
}

// StagePatch stages a patch of the development deployment. A PrevPatchHash other than the
// deployment's newest point is refused with 409.
func (c *Client) StagePatch(ctx context.Context, modelID string, req apiv1.PatchRequest) (apiv1.PatchStateV1, error) {
	var out apiv1.PatchStateV1
	err := c.send(ctx, http.MethodPost, req, &out, "v1", "models", modelID, "deployments", modelplane.DevelopmentName, "patches")
	return out, err
}

// SyncPatches applies the staged patches to the development deployment's replica.
func (c *Client) SyncPatches(ctx context.Context, modelID string) (apiv1.PatchSyncV1, error) {
	var out apiv1.PatchSyncV1
	err := c.send(ctx, http.MethodPost, nil, &out, "v1", "models", modelID, "deployments", modelplane.DevelopmentName, "patches", "sync")
	return out, err
}

// KeepAwake holds the development deployment at one replica at least for d (10 s to 1 h).
func (c *Client) KeepAwake(ctx context.Context, modelID string, d time.Duration) error {
	body := apiv1.KeepAwakeRequest{Seconds: int(d / time.Second)}
	var out apiv1.KeepAwakeV1
	return c.send(ctx, http.MethodPost, body, &out, "v1", "models", modelID, "deployments", modelplane.DevelopmentName, "keep_awake")
}

// PatchesState returns the point the development deployment runs and the newest staged one
// while patches wait to be synced.
func (c *Client) PatchesState(ctx context.Context, modelID string) (apiv1.PatchesStateV1, error) {
	var out apiv1.PatchesStateV1
	return out, c.get(ctx, &out, "v1", "models", modelID, "deployments", "development", "patches", "state")
}
