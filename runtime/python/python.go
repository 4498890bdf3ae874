// Package python ships the model server of the `python` runtime: server.py, a Python 3.9+
// standard-library-only program that loads a package's model/model.py (Truss's Model
// interface) and serves it over HTTP. The agent writes it next to an unpacked package with
// WriteServer and runs Command with the variables from Env.
package python

import (
	_ "embed"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"

	"github.com/modelplane/modelplane/modelpkg"
)

// source is server.py, embedded so that the agent binary carries the server it runs.
//
//go:embed server.py
var source []byte

// forkServerSource is forkserver.py: the process runtime's pre-warmed interpreter of a
// Python environment, which starts replicas by forking itself (see its docstring).
//
//go:embed forkserver.py
var forkServerSource []byte

// ServerFile is the name WriteServer gives the server; ForkServerFile the one
// WriteForkServer gives the fork server.
const (
	ServerFile     = "server.py"
	ForkServerFile = "forkserver.py"
)

// Environment variables server.py reads. PORT is read too; the agent's runtime sets it.
const (
	// EnvConfigJSON holds the package's config as JSON (Config.JSON): the standard library
	// has no YAML parser, so the Go side converts config.yaml once.
	EnvConfigJSON = "MODELPLANE_CONFIG_JSON"
	// EnvSecretsJSON holds {"name": "value"} for the secrets the package names.
	EnvSecretsJSON = "MODELPLANE_SECRETS_JSON"
	// EnvEnvironment is the environment the replica serves ("production", "staging"); the
	// model sees it as environment={"name": ...}.
	EnvEnvironment = "MODELPLANE_ENVIRONMENT"
	// EnvBind is the address to listen on; server.py listens on 127.0.0.1 without it.
	EnvBind = "MODELPLANE_BIND"
	// EnvPython names the interpreter to run server.py with (Interpreter).
	EnvPython = "MODELPLANE_PYTHON"
	// EnvControlToken enables server.py's control routes (ReloadPath) for callers that
	// send the same value in ControlTokenHeader. Without it those routes answer 404.
	EnvControlToken = "MODELPLANE_CONTROL_TOKEN"
	// EnvImportsReport names the file server.py writes once the model has loaded: a JSON list
	// of the top-level modules the load imported beyond the standard library's, less the
	// package's own. The process runtime learns a fork server's imports from it.
	EnvImportsReport = "MODELPLANE_IMPORTS_REPORT"
)

// The control route that reloads the model in place: POST ReloadPath with the token of
// EnvControlToken in ControlTokenHeader re-imports the package's code (model/ and packages/)
// in the same process, constructs a new Model and calls its load(), and answers when that is
// done: 200 {"status": "ready", "seconds": ...}; 500 {"error": "model reload failed: ..."}
// when the new code failed, after which predict answers 500 with that error and the health
// path 200 with "ready": false and "reload_error" until a reload succeeds; 409 while another
// reload runs; 403 for a missing or wrong token.
const (
	ReloadPath         = "/_modelplane/reload"
	ControlTokenHeader = "X-Modelplane-Control-Token"
)

// Source returns the text of server.py.
func Source() []byte { return append([]byte(nil), source...) }

// WriteServer writes server.py into dir with mode 0644 and returns its path. The file is
// written under a temporary name and renamed, so a server starting at the same moment never
// reads half a file.
func WriteServer(dir string) (path string, err error) {
	return writeFile(dir, ServerFile, source)
}

// ForkServerSource answers forkserver.py's text: a warm spare, which runs as a user that
// cannot read the agent's files, reads it from its standard input.
func ForkServerSource() []byte { return append([]byte(nil), forkServerSource...) }

// WriteForkServer writes forkserver.py into dir as WriteServer writes server.py.
func WriteForkServer(dir string) (path string, err error) {
	return writeFile(dir, ForkServerFile, forkServerSource)
}

func writeFile(dir, name string, text []byte) (path string, err error) {
	path = filepath.Join(dir, name)
	tmp, err := os.CreateTemp(dir, "."+name+"-*")
	if err != nil {
		return "", fmt.Errorf("write %s: %w", name, err)
	}
	defer func() {
		if err != nil {
			tmp.Close()
			os.Remove(tmp.Name())
		}
	}()
	if _, err = tmp.Write(text); err != nil {
		return "", fmt.Errorf("write %s: %w", name, err)
	}
	if err = tmp.Chmod(0o644); err != nil {
		return "", fmt.Errorf("write %s: %w", name, err)
	}
	if err = tmp.Close(); err != nil {
		return "", fmt.Errorf("write %s: %w", name, err)
	}
	if err = os.Rename(tmp.Name(), path); err != nil {
		return "", fmt.Errorf("write %s: %w", name, err)
	}
	return path, nil
}

// Interpreter is the Python to run server.py with: $MODELPLANE_PYTHON, else "python3" from
// PATH.
func Interpreter() string {
	if p := os.Getenv(EnvPython); p != "" {
		return p
	}
	return "python3"
}

// Command is the argv that runs server.py for the package unpacked in packageDir. "-u"
// keeps Python from buffering its log lines when they go to a file.
func Command(serverPath, packageDir string) []string {
	return []string{Interpreter(), "-u", serverPath, "--package", packageDir}
}

// Env returns the variables a python-runtime replica needs besides PORT,
// MODELPLANE_ENVIRONMENT and the GPU variables, which the agent's runtime adds: the
// package's environment_variables, its config as JSON, and the values of the secrets it
// names. Secrets it does not name are left out even when given, and a named secret without
// a value is left out rather than passed empty.
func Env(cfg modelpkg.Config, secrets map[string]string) (map[string]string, error) {
	env := make(map[string]string, len(cfg.EnvironmentVariables)+2)
	for k, v := range cfg.EnvironmentVariables {
		env[k] = v
	}
	configJSON, err := cfg.JSON()
	if err != nil {
		return nil, err
	}
	env[EnvConfigJSON] = string(configJSON)
	named := make(map[string]string, len(cfg.Secrets))
	for _, name := range cfg.Secrets {
		if v, ok := secrets[name]; ok {
			named[name] = v
		}
	}
	secretsJSON, err := json.Marshal(named)
	if err != nil {
		return nil, err
	}
	env[EnvSecretsJSON] = string(secretsJSON)
	return env, nil
}
