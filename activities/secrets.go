package activities

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strings"

	"go.temporal.io/sdk/temporal"

	"github.com/modelplane/modelplane/modelpkg"
	"github.com/modelplane/modelplane/store"
	"github.com/modelplane/modelplane/workflows/contract"
)

// secretsKeySettings names where the secrets key comes from, for a failure that needs one.
const secretsKeySettings = "--secrets-key-file (MODELPLANE_SECRETS_KEY_FILE) or MODELPLANE_SECRETS_KEY"

// checkDeploymentSecrets fails non-retryably, with type contract.ErrTypeMissingSecret, when
// the config the deployment's replicas run names a secret its workspace does not have. A
// deployment whose config cannot be read is left to the start, which reports that.
func (a *Activities) checkDeploymentSecrets(ctx context.Context, deploymentID string) error {
	modelID, err := store.DeploymentModelID(ctx, a.DB, deploymentID)
	if errors.Is(err, store.ErrNotFound) {
		return nil
	}
	if err != nil {
		return err
	}
	v, _, cfg, err := a.deploymentConfig(ctx, modelID, deploymentID)
	var appErr *temporal.ApplicationError
	if errors.As(err, &appErr) {
		return nil
	}
	if err != nil {
		return err
	}
	if v.IsDevelopment {
		// A development replica starts at the latest patch, whose config may name others.
		_, patched, err := a.appliedPatch(ctx, deploymentID)
		if err != nil {
			return err
		}
		if patched != nil {
			if cfg, err = modelpkg.ParseConfig(patched); err != nil {
				return nil
			}
		}
	}
	if len(cfg.Secrets) == 0 {
		return nil
	}
	if a.SecretsKey == nil {
		return noSecretsKey(cfg.Secrets)
	}
	have, err := store.SecretNames(ctx, a.DB, v.WorkspaceID, cfg.Secrets)
	if err != nil {
		return err
	}
	return missingSecrets(cfg.Secrets, have)
}

// replicaSecrets answers the values of the secrets config (config.yaml's keys as JSON) names,
// opened with the secrets key, for the start request to the agent and nothing else. A
// secret the workspace lacks fails non-retryably with type contract.ErrTypeMissingSecret.
func (a *Activities) replicaSecrets(ctx context.Context, workspaceID string, config json.RawMessage) (map[string]string, error) {
	if len(config) == 0 {
		return nil, nil
	}
	cfg, err := modelpkg.ParseConfig(config)
	if err != nil {
		// The agent refuses a config that does not parse, naming the key at fault.
		return nil, nil
	}
	if len(cfg.Secrets) == 0 {
		return nil, nil
	}
	if a.SecretsKey == nil {
		return nil, noSecretsKey(cfg.Secrets)
	}
	sealed, err := store.SealedSecrets(ctx, a.DB, workspaceID, cfg.Secrets)
	if err != nil {
		return nil, err
	}
	have := make(map[string]bool, len(sealed))
	for name := range sealed {
		have[name] = true
	}
	if err := missingSecrets(cfg.Secrets, have); err != nil {
		return nil, err
	}
	out := make(map[string]string, len(sealed))
	for _, name := range cfg.Secrets {
		value, err := a.SecretsKey.Open(workspaceID, name, sealed[name])
		if err != nil {
			// Another key sealed it: retrying with this one cannot help. The message names the
			// secret, never a value.
			return nil, temporal.NewNonRetryableApplicationError(
				fmt.Sprintf("secret %q: %v", name, err), contract.ErrTypeMissingSecret, nil)
		}
		out[name] = string(value)
	}
	return out, nil
}

// missingSecrets fails with the names of those of names not in have, in config order.
func missingSecrets(names []string, have map[string]bool) error {
	var missing []string
	for _, n := range names {
		if !have[n] {
			missing = append(missing, fmt.Sprintf("%q", n))
		}
	}
	if len(missing) == 0 {
		return nil
	}
	word := "secret"
	if len(missing) > 1 {
		word = "secrets"
	}
	return temporal.NewNonRetryableApplicationError(fmt.Sprintf(
		"missing %s %s: config.yaml's secrets names it but the workspace has none by that name; "+
			"set it (POST /v1/secrets, or modelplane secrets set NAME) and retry the deployment",
		word, strings.Join(missing, ", ")), contract.ErrTypeMissingSecret, nil)
}

func noSecretsKey(names []string) error {
	return temporal.NewNonRetryableApplicationError(fmt.Sprintf(
		"config.yaml names secrets (%s) but the control plane has no secrets key; set %s",
		strings.Join(names, ", "), secretsKeySettings), contract.ErrTypeMissingSecret, nil)
}
