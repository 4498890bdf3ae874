package agentproto

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"net/url"
)

// The states of a Python environment's build on a node.
const (
	EnvBuilding = "building"
	EnvReady    = "ready"
	EnvFailed   = "failed"
)

// EnvRequest is the body of POST /v1/envs: the package whose requirements the node should
// install. The agent reads the requirement set from Config, or from the package's
// config.yaml when Config is empty, and a requirements_file from the package.
type EnvRequest struct {
	ArchiveURL    string          `json:"archive_url"`
	ArchiveSHA256 string          `json:"archive_sha256"`
	Config        json.RawMessage `json:"config,omitempty"`
}

// EnvStatus is where a node's build of one requirement set stands: the answer of POST
// /v1/envs and GET /v1/envs/{key}.
type EnvStatus struct {
	// Key names the environment; empty when the package needs none (python_version
	// without requirements, whose interpreter is there).
	Key string `json:"key"`
	// State is building, ready or failed.
	State string `json:"state"`
	// Reused says the environment was built before this request: nothing was installed.
	Reused bool `json:"reused"`
	// Requirements counts the requirement lines of the set.
	Requirements int `json:"requirements"`
	// LogTail is the last lines of the build's output (GET's ?tail=, default 20).
	LogTail []string `json:"log_tail"`
	// Error says why the build failed, with pip's last lines.
	Error string `json:"error,omitempty"`
}

// BuildEnv asks the agent to build the package's Python environment, or joins the build
// under way, and answers where it stands.
func (c *Client) BuildEnv(ctx context.Context, req EnvRequest) (EnvStatus, error) {
	var out EnvStatus
	return out, c.do(ctx, http.MethodPost, "/v1/envs", req, &out)
}

// Env answers a build the agent knows, with the last tail lines of its output.
func (c *Client) Env(ctx context.Context, key string, tail int) (EnvStatus, error) {
	var out EnvStatus
	return out, c.do(ctx, http.MethodGet, fmt.Sprintf("/v1/envs/%s?tail=%d", url.PathEscape(key), tail), nil, &out)
}
