package agent

import (
	"fmt"
	"os"
	"path/filepath"

	"github.com/modelplane/modelplane/modelpkg"
)

// namedSecrets answers the values of the secrets cfg names, from those the replica's start
// request carried (held). The control plane sends every one a config names, so a missing
// value means the agent has lost them (it restarted since the start) or a patch named a new
// secret: the replica fails, and the control plane starts another with the workspace's values.
func namedSecrets(cfg modelpkg.Config, held map[string]string) (map[string]string, error) {
	out := make(map[string]string, len(cfg.Secrets))
	for _, name := range cfg.Secrets {
		v, ok := held[name]
		if !ok {
			return nil, fmt.Errorf("secret %q, which config.yaml names, is not held for this replica "+
				"(the agent restarted since it started, or a patch named a new secret); a new replica gets it", name)
		}
		out[name] = v
	}
	return out, nil
}

// writeSecrets writes one file per secret, named as the secret, into dir (emptied first) and
// answers dir. The files are the owner's alone, except for a container, which may run as
// another user: it gets the directory read-only (the replica's directory lies in the agent's
// state directory, which others on the host should not reach).
func writeSecrets(dir string, secrets map[string]string, container bool) (string, error) {
	dir, err := filepath.Abs(dir)
	if err != nil {
		return "", err
	}
	dirMode, fileMode := os.FileMode(0o700), os.FileMode(0o600)
	if container {
		dirMode, fileMode = 0o755, 0o444
	}
	if err := os.RemoveAll(dir); err != nil {
		return "", err
	}
	if err := os.MkdirAll(dir, dirMode); err != nil {
		return "", err
	}
	if err := os.Chmod(dir, dirMode); err != nil {
		return "", err
	}
	for name, value := range secrets {
		// Names are checked when the start request arrives: no separator, not "." or "..".
		if err := modelpkg.ValidateSecretName(name); err != nil {
			return "", err
		}
		path := filepath.Join(dir, name)
		if err := os.WriteFile(path, []byte(value), fileMode); err != nil {
			return "", err
		}
		if err := os.Chmod(path, fileMode); err != nil {
			return "", err
		}
	}
	return dir, nil
}
