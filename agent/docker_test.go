package agent_test

import (
	"archive/tar"
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io/fs"
	"maps"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/modelplane/modelplane"
	"github.com/modelplane/modelplane/agent"
	"github.com/modelplane/modelplane/agent/agentproto"
	"github.com/modelplane/modelplane/agent/runtime"
	"github.com/modelplane/modelplane/agent/runtime/docker"
)

// pythonImage is the tag of an image holding this machine's python3 and its standard
// library, imported once per test process: images cannot be pulled where the tests run.
const pythonImage = "modelplane-test/python:agent"

var (
	pythonImageOnce sync.Once
	pythonImageErr  error
)

// needPythonImage skips the test without a docker engine, and imports the python image.
func needPythonImage(t *testing.T) {
	t.Helper()
	if !docker.Available("") {
		t.Skip("no docker engine at " + docker.DefaultSocket)
	}
	if _, err := exec.LookPath("docker"); err != nil {
		t.Skip("no docker command to import the test image with")
	}
	pythonImageOnce.Do(func() { pythonImageErr = importPythonImage() })
	require.NoError(t, pythonImageErr)
}

// importPythonImage imports pythonRootfs as pythonImage.
func importPythonImage() error {
	rootfs, err := pythonRootfs()
	if err != nil {
		return err
	}
	cmd := exec.Command("docker", "import", "-", pythonImage)
	cmd.Stdin = bytes.NewReader(rootfs)
	if out, err := cmd.CombinedOutput(); err != nil {
		return fmt.Errorf("docker import: %v: %s", err, out)
	}
	return nil
}

// pythonRootfs is a tar of a root file system holding /usr/bin/python3.11 (or whichever
// python3 /usr/bin has), its standard library, /bin/sh and the libraries both load.
func pythonRootfs() ([]byte, error) {
	python, err := filepath.EvalSymlinks("/usr/bin/python3")
	if err != nil {
		return nil, err
	}
	version := filepath.Base(python) // python3.11
	var buf bytes.Buffer
	tw := tar.NewWriter(&buf)
	dirs := map[string]bool{}
	add := func(src, dst string, mode int64) error {
		b, err := os.ReadFile(src) // follows symlinks: the image holds plain files
		if err != nil {
			return err
		}
		dst = strings.TrimPrefix(dst, "/")
		if dirs[dst] {
			return nil
		}
		dirs[dst] = true
		if err := writeParents(tw, dirs, dst); err != nil {
			return err
		}
		return writeFile(tw, dst, b, mode)
	}
	sh, err := filepath.EvalSymlinks("/bin/sh")
	if err != nil {
		return nil, err
	}
	for _, f := range [][2]string{{python, "/usr/bin/" + version}, {python, "/usr/bin/python3"}, {sh, "/bin/sh"}} {
		if err := add(f[0], f[1], 0o755); err != nil {
			return nil, err
		}
	}
	libs, err := sharedLibraries(python, sh)
	if err != nil {
		return nil, err
	}
	for _, l := range libs {
		if err := add(l, l, 0o755); err != nil {
			return nil, err
		}
	}
	stdlib := "/usr/lib/" + version
	skip := map[string]bool{"test": true, "tests": true, "__pycache__": true, "idlelib": true, "tkinter": true,
		"turtledemo": true, "ensurepip": true, "lib2to3": true, "site-packages": true, "dist-packages": true}
	err = filepath.WalkDir(stdlib, func(p string, d fs.DirEntry, err error) error {
		switch {
		case err != nil:
			return err
		case d.IsDir() && skip[d.Name()]:
			return filepath.SkipDir
		case d.IsDir() && strings.HasPrefix(d.Name(), "config-"):
			return filepath.SkipDir
		case d.IsDir():
			return nil
		}
		if d.Type()&fs.ModeSymlink != 0 {
			if _, err := os.Stat(p); err != nil {
				return nil // a dangling link of the distribution's
			}
		}
		return add(p, p, 0o644)
	})
	if err != nil {
		return nil, err
	}
	if err := writeParents(tw, dirs, "tmp/x"); err != nil {
		return nil, err
	}
	if err := tw.Close(); err != nil {
		return nil, err
	}
	return buf.Bytes(), nil
}

func writeParents(tw *tar.Writer, written map[string]bool, file string) error {
	var parents []string
	for d := filepath.Dir(file); d != "." && d != "/"; d = filepath.Dir(d) {
		parents = append([]string{d}, parents...)
	}
	for _, d := range parents {
		if written[d+"/"] {
			continue
		}
		written[d+"/"] = true
		mode := int64(0o755)
		if d == "tmp" {
			mode = 0o1777
		}
		if err := tw.WriteHeader(&tar.Header{Typeflag: tar.TypeDir, Name: d + "/", Mode: mode, ModTime: time.Unix(0, 0)}); err != nil {
			return err
		}
	}
	return nil
}

func writeFile(tw *tar.Writer, name string, b []byte, mode int64) error {
	if err := tw.WriteHeader(&tar.Header{Typeflag: tar.TypeReg, Name: name, Mode: mode, Size: int64(len(b)), ModTime: time.Unix(0, 0)}); err != nil {
		return err
	}
	_, err := tw.Write(b)
	return err
}

var lddPath = regexp.MustCompile(`(/\S+)`)

// sharedLibraries lists the libraries the binaries load, by the paths the loader uses.
func sharedLibraries(bins ...string) ([]string, error) {
	seen := map[string]bool{}
	var out []string
	for _, b := range bins {
		o, err := exec.Command("ldd", b).Output()
		if err != nil {
			return nil, fmt.Errorf("ldd %s: %w", b, err)
		}
		for _, line := range strings.Split(string(o), "\n") {
			for _, m := range lddPath.FindAllString(line, -1) {
				if !seen[m] {
					seen[m] = true
					out = append(out, m)
				}
			}
		}
	}
	return out, nil
}

// startCustomServerInDocker starts, on a node of its own configured by opts, a custom server
// package whose base image is the python image, with extra keys added to its docker_server,
// and waits until the replica is READY on the docker runtime.
func startCustomServerInDocker(t *testing.T, extra map[string]any, opts ...func(*agent.Config)) (*node, agentproto.Replica) {
	t.Helper()
	needPythonImage(t)
	dir := t.TempDir()
	t.Cleanup(func() { stopAll(t, dir) })
	n := startNodeWith(t, dir, "none", true, opts...)
	url, sum := customServerPackage(t, `python3 server.py 8000`, 8000, "")
	id := newID()
	req := startReq(id, url, sum, 0)
	server := map[string]any{"start_command": "python3 server.py 8000", "server_port": 8000,
		"predict_endpoint": "/predict", "readiness_endpoint": "/ready", "liveness_endpoint": "/live"}
	maps.Copy(server, extra)
	// The control plane sends the parsed config with the archive; the base image makes it
	// the docker runtime's.
	cfg, err := json.Marshal(map[string]any{
		"model_name": "custom server", "base_image": map[string]any{"image": pythonImage}, "docker_server": server,
	})
	require.NoError(t, err)
	req.Config = cfg
	n.mustStart(req)
	t.Cleanup(func() { _, _ = n.call(http.MethodDelete, "/v1/replicas/"+id+"?grace_seconds=1", nil, token) })
	r := n.waitState(id, modelplane.ReplicaReady)
	require.Equal(t, "docker", r.Runtime)
	return n, r
}

func TestAgent_CustomServerInDockerRunsItsStartCommandInItsBaseImage(t *testing.T) {
	uid := 1234
	n, r := startCustomServerInDocker(t, map[string]any{"run_as_user_id": uid})
	id := r.ID
	require.NotContains(t, r.Address, ":8000", "the container's server_port is published on a port the agent chose")
	status, out := predict(t, r.Address, r.PredictPath, `{"x": 1}`)
	require.Equal(t, http.StatusOK, status, "%v", out)
	require.Equal(t, float64(8000), out["port"], "the server listens on its server_port in the container")
	require.Equal(t, float64(uid), out["user"], "run_as_user_id is the container's user")

	code, body := n.call(http.MethodDelete, "/v1/replicas/"+id+"?grace_seconds=1", nil, token)
	require.Equal(t, http.StatusOK, code, string(body))
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	_, err := docker.New(docker.Options{}).Status(ctx, runtime.Handle{ReplicaID: id})
	require.ErrorIs(t, err, runtime.ErrNotFound, "the container is removed with the replica")
}

// TestAgent_ModelInDockerRunsAsRootWithoutCapabilities runs a custom server as the image's
// root user: with every capability dropped and no_new_privs set, root in the container cannot
// even give a file of its own to another user.
func TestAgent_ModelInDockerRunsAsRootWithoutCapabilities(t *testing.T) {
	_, r := startCustomServerInDocker(t, nil)

	status, out := predict(t, r.Address, "/predict", `{}`)
	require.Equal(t, http.StatusOK, status, "%v", out)
	require.Equal(t, float64(0), out["user"], "the image's own user, root, runs the server")
	status, out = predict(t, r.Address, "/privileges", `{}`)
	require.Equal(t, http.StatusOK, status, "%v", out)
	require.Equal(t, "0000000000000000", out["CapEff"], "root in the container has no capability left")
	require.Equal(t, "1", out["NoNewPrivs"], "no process in the container can gain privileges")
	require.Equal(t, "Operation not permitted", out["chown"], "chown needs CAP_CHOWN, which is dropped")
}

// TestAgent_ModelInDockerIsPublishedOnTheReplicaHostOnly runs a container on an agent whose
// replica host is not 127.0.0.1: its port is published there, and only there.
func TestAgent_ModelInDockerIsPublishedOnTheReplicaHostOnly(t *testing.T) {
	_, r := startCustomServerInDocker(t, nil, onReplicaHost(otherLoopback))
	requireOnlyOn(t, otherLoopback, r.Address, r.PredictPath)
}
