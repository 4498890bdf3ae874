package check

import (
	"bytes"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
)

// dockerComposeVersion is the Docker Compose CLI dockercompose/go.mod pins.
const dockerComposeVersion = "v5.6.0"

var (
	composeOnce sync.Once
	composeBin  string
	composeErr  error
)

// dockerCompose returns the Docker Compose CLI, built once from the pinned module into the
// user's cache directory (it downloads and compiles Compose the first time) and reused after.
func dockerCompose(t *testing.T) string {
	t.Helper()
	composeOnce.Do(func() {
		cache, err := os.UserCacheDir()
		if err != nil {
			cache = os.TempDir()
		}
		dir := filepath.Join(cache, "modelplane-test", "docker-compose-"+dockerComposeVersion)
		composeBin = filepath.Join(dir, "docker-compose")
		if _, err := os.Stat(composeBin); err == nil {
			return
		}
		if composeErr = os.MkdirAll(dir, 0o750); composeErr != nil {
			return
		}
		// Built beside its final name and renamed, so that a concurrent run never runs half a file.
		tmp := composeBin + ".tmp-" + strconv.Itoa(os.Getpid())
		if composeErr = goBuild(filepath.Join(deployDir, "check", "dockercompose"), "github.com/docker/compose/v5/cmd", tmp); composeErr != nil {
			return
		}
		composeErr = os.Rename(tmp, composeBin)
	})
	if composeErr != nil {
		t.Fatalf("building the Docker Compose CLI %s: %v", dockerComposeVersion, composeErr)
	}
	return composeBin
}

// TestDockerCompose_ConfigAcceptsEveryWayTheFileIsRun runs `docker compose config` itself (the
// Compose CLI, as a docker CLI plugin runs it) on the Compose file as the README starts it:
// alone, with the GPU overlay, and with the s3 profile.
func TestDockerCompose_ConfigAcceptsEveryWayTheFileIsRun(t *testing.T) {
	bin := dockerCompose(t)
	for _, tc := range []struct {
		name string
		args []string
		env  []string
		want string
	}{
		{"default", []string{"-f", "compose.yaml"}, nil, "gateway"},
		{"gpu", []string{"-f", "compose.yaml", "-f", "compose.gpu.yaml"}, nil, "driver: nvidia"},
		{"s3", []string{"-f", "compose.yaml", "--profile", "s3"}, []string{"MODELPLANE_BLOB_STORE=s3"}, "seaweedfs-bucket"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			cmd := exec.Command(bin, append(tc.args, "config")...)
			cmd.Dir = deployDir
			cmd.Env = append(os.Environ(), tc.env...)
			var stdout, stderr bytes.Buffer
			cmd.Stdout, cmd.Stderr = &stdout, &stderr
			if err := cmd.Run(); err != nil {
				t.Fatalf("docker compose %s config: %v\n%s", strings.Join(tc.args, " "), err, stderr.String())
			}
			if !strings.Contains(stdout.String(), tc.want) {
				t.Fatalf("docker compose %s config printed no %q:\n%s", strings.Join(tc.args, " "), tc.want, stdout.String())
			}
		})
	}
}
