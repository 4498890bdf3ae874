package main

import (
	"bufio"
	"context"
	"errors"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/modelplane/modelplane/apikey"
	"github.com/modelplane/modelplane/internal/pgtest"
	"github.com/modelplane/modelplane/internal/proctest"
	"github.com/modelplane/modelplane/store"
)

var dbURL string

// The test binary doubles as the modelplane binary: with MODELPLANE_TEST_MAIN set it runs
// main, so the tests drive the real command line (flags, signals, exit codes).
func TestMain(m *testing.M) {
	if os.Getenv("MODELPLANE_TEST_MAIN") == "1" {
		main()
		os.Exit(0)
	}
	// Migrated up front: keys and client commands need the schema whatever test runs first
	// (dev migrates too, which is then a no-op).
	os.Exit(pgtest.Run(m, "cmd", true, &dbURL))
}

func modelplaneCmd(args ...string) *exec.Cmd {
	cmd := exec.Command(os.Args[0], args...)
	cmd.Env = append(os.Environ(), "MODELPLANE_TEST_MAIN=1")
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	return cmd
}

func freeAddr(t *testing.T) string {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	defer l.Close()
	return l.Addr().String()
}

// devDatabase is a fresh database for one dev: dev refuses a database whose deployments
// another data directory's Temporal history runs, as the tests' other devs' would be. It is
// dropped when the test ends, after dev has stopped.
func devDatabase(t *testing.T) string {
	t.Helper()
	u, drop, err := pgtest.Create("cmddev")
	require.NoError(t, err)
	t.Cleanup(drop)
	return u
}

func TestDev_CtrlCStopsEverythingAndExitsZero(t *testing.T) {
	dir := t.TempDir()
	cmd := modelplaneCmd("dev", "--data-dir", dir, "--listen", freeAddr(t),
		"--temporal-port", "0", "--temporal-ui-port", "0", "--database-url", devDatabase(t))
	stdout, err := cmd.StdoutPipe()
	require.NoError(t, err)
	var stderr strings.Builder
	cmd.Stderr = &stderr
	require.NoError(t, cmd.Start())
	t.Cleanup(func() { _ = syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL) })

	// Read the banner for the API's address.
	lines := make(chan string, 64)
	go func() {
		sc := bufio.NewScanner(stdout)
		for sc.Scan() {
			lines <- sc.Text()
		}
		close(lines)
	}()
	var apiURL string
	timeout := time.After(60 * time.Second)
	for apiURL == "" {
		select {
		case l, ok := <-lines:
			require.True(t, ok, "dev exited before it was ready; stderr:\n%s", stderr.String())
			if v, found := strings.CutPrefix(strings.TrimSpace(l), "API:"); found {
				apiURL = strings.TrimSpace(v)
			}
		case <-timeout:
			t.Fatalf("dev printed no API address within 60s; stderr:\n%s", stderr.String())
		}
	}
	resp, err := http.Get(apiURL + "/readyz")
	require.NoError(t, err)
	resp.Body.Close()
	require.Equal(t, http.StatusOK, resp.StatusCode)
	key, err := os.ReadFile(filepath.Join(dir, "api-key"))
	require.NoError(t, err)
	_, _, err = apikey.Parse(strings.TrimSpace(string(key)))
	require.NoError(t, err, "the key file must hold a key")

	start := time.Now()
	require.NoError(t, cmd.Process.Signal(os.Interrupt))
	go func() {
		for range lines {
		}
	}()
	err = cmd.Wait()
	require.NoError(t, err, "dev must exit 0 after Ctrl-C; stderr:\n%s", stderr.String())
	require.Less(t, time.Since(start), 10*time.Second, "dev must stop within 10s")
	require.Empty(t, groupMembers(cmd.Process.Pid), "processes of dev's process group outlived it")
}

func TestDev_UnusablePortIsOneClearError(t *testing.T) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	defer l.Close()
	cmd := modelplaneCmd("dev", "--data-dir", t.TempDir(), "--listen", "127.0.0.1:0",
		"--temporal-port", "0", "--temporal-ui-port", strconv.Itoa(l.Addr().(*net.TCPAddr).Port), "--database-url", devDatabase(t))
	out, err := cmd.CombinedOutput()
	var exit *exec.ExitError
	require.True(t, errors.As(err, &exit), "dev must fail when the UI port is taken: %v\n%s", err, out)
	require.Equal(t, 1, exit.ExitCode())
	require.Contains(t, string(out), "temporal UI port")
}

func TestKeysCreate_PrintsAKeyThatExists(t *testing.T) {
	out, err := modelplaneCmd("keys", "create", "--database-url", dbURL, "--workspace", "team-a", "--name", "ci").Output()
	require.NoError(t, err)
	id, _, err := apikey.Parse(strings.TrimSpace(string(out)))
	require.NoError(t, err, "keys create must print only the key, got %q", out)

	db, err := store.Open(context.Background(), dbURL)
	require.NoError(t, err)
	defer db.Close()
	k, err := store.APIKeyByID(context.Background(), db, id)
	require.NoError(t, err)
	ws, err := store.WorkspaceByName(context.Background(), db, "team-a")
	require.NoError(t, err)
	require.Equal(t, ws.ID, k.WorkspaceID)
	require.Equal(t, "ci", k.Name)

	out, err = modelplaneCmd("keys", "revoke", "--database-url", dbURL, strings.TrimSpace(string(out))).CombinedOutput()
	require.NoError(t, err, string(out))
	k, err = store.APIKeyByID(context.Background(), db, id)
	require.NoError(t, err)
	require.NotNil(t, k.RevokedAt)
}

func TestKeysCreate_BadWorkspaceNameFails(t *testing.T) {
	out, err := modelplaneCmd("keys", "create", "--database-url", dbURL, "--workspace", "Not Valid!").CombinedOutput()
	require.Error(t, err)
	require.Contains(t, string(out), "workspace")
}

func TestMigrate_SecondRunReportsVersionOnly(t *testing.T) {
	u, drop, err := pgtest.Create("cmdmig")
	require.NoError(t, err)
	defer drop()
	out, err := modelplaneCmd("migrate", "--database-url", u).CombinedOutput()
	require.NoError(t, err, string(out))
	require.Contains(t, string(out), "applied 1")
	out, err = modelplaneCmd("migrate", "--database-url", u).CombinedOutput()
	require.NoError(t, err, string(out))
	require.NotContains(t, string(out), "applied")
	require.Contains(t, string(out), "schema at version")
}

// groupMembers lists the live processes in process group pgid.
func groupMembers(pgid int) []proctest.Process {
	return proctest.Where(func(p proctest.Process) bool { return p.PGID == pgid })
}
