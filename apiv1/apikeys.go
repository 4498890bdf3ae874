package apiv1

import "time"

// APIKeyCategory is the kind of an API key (Baseten's APIKeyCategory). modelplane keys are
// either admin keys (WORKSPACE_MANAGE_ALL) or keys that manage and call the workspace's
// models but not its keys or nodes (PERSONAL).
type APIKeyCategory string

// The categories of Baseten's spec; modelplane makes only the first two.
const (
	APIKeyWorkspaceManageAll     APIKeyCategory = "WORKSPACE_MANAGE_ALL"
	APIKeyPersonal               APIKeyCategory = "PERSONAL"
	APIKeyWorkspaceExportMetrics APIKeyCategory = "WORKSPACE_EXPORT_METRICS"
	APIKeyWorkspaceInvoke        APIKeyCategory = "WORKSPACE_INVOKE"
	APIKeyWorkspaceManageAPIKeys APIKeyCategory = "WORKSPACE_MANAGE_API_KEYS"
)

// APIKeyCategories are every category of the spec.
func APIKeyCategories() []APIKeyCategory {
	return []APIKeyCategory{APIKeyPersonal, APIKeyWorkspaceManageAll, APIKeyWorkspaceExportMetrics,
		APIKeyWorkspaceInvoke, APIKeyWorkspaceManageAPIKeys}
}

// APIKeyOwnerV1 is the user a personal key belongs to; modelplane has no users, so it is
// always null.
type APIKeyOwnerV1 struct {
	UserID string  `json:"user_id"`
	Email  *string `json:"email"`
	Name   *string `json:"name"`
}

// APIKeyInfoV1 is a key without its secret (Baseten's APIKeyInfoV1).
type APIKeyInfoV1 struct {
	// Prefix is the key's public ID, the 12 characters after "mp_".
	Prefix   string         `json:"prefix"`
	Name     *string        `json:"name"`
	Type     APIKeyCategory `json:"type"`
	ModelIDs []string       `json:"model_ids"`
	// TeamName is the workspace's name.
	TeamName *string        `json:"team_name"`
	Owner    *APIKeyOwnerV1 `json:"owner"`
	// CreatedAt and LastUsedAt are modelplane's own.
	CreatedAt  time.Time  `json:"created_at"`
	LastUsedAt *time.Time `json:"last_used_at"`
}

// APIKeysV1 answers GET /v1/api_keys.
type APIKeysV1 struct {
	Keys []APIKeyInfoV1 `json:"keys"`
}

// CreateAPIKeyRequest is the body of POST /v1/api_keys (Baseten's CreateAPIKeyRequestV1).
type CreateAPIKeyRequest struct {
	Name *string        `json:"name,omitempty"`
	Type APIKeyCategory `json:"type"`
	// ModelIDs scopes WORKSPACE_EXPORT_METRICS and WORKSPACE_INVOKE keys, which modelplane
	// does not make.
	ModelIDs []string `json:"model_ids,omitempty"`
}

// APIKeyV1 answers POST /v1/api_keys: the key, shown this once.
type APIKeyV1 struct {
	APIKey string `json:"api_key"`
}

// APIKeyTombstoneV1 answers DELETE /v1/api_keys/{api_key_prefix}.
type APIKeyTombstoneV1 struct {
	Prefix string `json:"prefix"`
}
