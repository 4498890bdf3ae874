package agent_test

import (
	"fmt"
	"net"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/modelplane/modelplane"
	"github.com/modelplane/modelplane/agent"
)

// otherLoopback is a replica host other than the default: Linux answers on all of 127/8
// without configuration, so a server bound there is not reached on 127.0.0.1.
const otherLoopback = "127.0.0.2"

func onReplicaHost(host string) func(*agent.Config) {
	return func(c *agent.Config) { c.ReplicaHost = host }
}

// requireOnlyOn checks that the replica's server answers at its address, which is on host,
// and that nothing listens on the same port of 127.0.0.1.
func requireOnlyOn(t *testing.T, host, address, path string) {
	t.Helper()
	h, port, err := net.SplitHostPort(address)
	require.NoError(t, err)
	require.Equal(t, host, h, "the replica is recorded at the replica host")
	status, out := predict(t, address, path, `{}`)
	require.Equal(t, http.StatusOK, status, "%v", out)
	conn, err := net.DialTimeout("tcp", net.JoinHostPort("127.0.0.1", port), 2*time.Second)
	if err == nil {
		conn.Close()
	}
	require.Error(t, err, "the server listens on the replica host only, not on 127.0.0.1:%s", port)
	require.Contains(t, err.Error(), "connection refused")
}

func TestAgent_ReplicaHostIsWhereModelServersListenAndAreRecorded(t *testing.T) {
	packages := map[string]func(t *testing.T) (url, sum, predictPath string){
		"process": func(t *testing.T) (string, string, string) {
			url, sum := testmodelPackage(t)
			return url, sum, "/predict"
		},
		"python": func(t *testing.T) (string, string, string) {
			url, sum := livePackage(t)
			return url, sum, ""
		},
		"custom server listening on MODELPLANE_BIND": func(t *testing.T) (string, string, string) {
			url, sum := customServerPackage(t, `python3 server.py "$PORT" "$MODELPLANE_BIND"`, 8000, "")
			return url, sum, ""
		},
	}
	for name, build := range packages {
		t.Run(name, func(t *testing.T) {
			dir := t.TempDir()
			defer stopAll(t, dir)
			n := startNode(t, dir, "none", onReplicaHost(otherLoopback))
			url, sum, path := build(t)
			id := newID()
			n.mustStart(startReq(id, url, sum, 0))
			r := n.waitState(id, modelplane.ReplicaReady)
			if path == "" {
				path = r.PredictPath
			}
			requireOnlyOn(t, otherLoopback, r.Address, path)
			_, _ = n.call(http.MethodDelete, "/v1/replicas/"+id+"?grace_seconds=1", nil, token)
		})
	}
}

func TestAgent_CustomServerWithFixedPortOnReplicaHostIsRecordedThere(t *testing.T) {
	dir := t.TempDir()
	defer stopAll(t, dir)
	n := startNode(t, dir, "none", onReplicaHost(otherLoopback))
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	port := ln.Addr().(*net.TCPAddr).Port
	ln.Close()
	url, sum := customServerPackage(t, fmt.Sprintf(`python3 server.py %d "$MODELPLANE_BIND"`, port), port, "")
	first := newID()
	n.mustStart(startReq(first, url, sum, 0))
	r := n.waitState(first, modelplane.ReplicaReady)
	require.Equal(t, net.JoinHostPort(otherLoopback, fmt.Sprint(port)), r.Address)
	requireOnlyOn(t, otherLoopback, r.Address, r.PredictPath)

	second := newID()
	n.mustStart(startReq(second, url, sum, 0))
	failed := n.waitState(second, modelplane.ReplicaFailed)
	require.Contains(t, failed.Error, first, "the port is known taken by the first replica, at the replica host")
	_, _ = n.call(http.MethodDelete, "/v1/replicas/"+first+"?grace_seconds=1", nil, token)
}

func TestResolveReplicaHost(t *testing.T) {
	for host, want := range map[string]string{
		"":          "127.0.0.1",
		"127.0.0.1": "127.0.0.1",
		"127.0.0.2": "127.0.0.2",
		"::1":       "::1",
		"localhost": "", // 127.0.0.1 or ::1, whichever the resolver gives first
	} {
		got, err := agent.ResolveReplicaHost(host)
		require.NoError(t, err, host)
		if want != "" {
			require.Equal(t, want, got, host)
		} else {
			require.True(t, net.ParseIP(got).IsLoopback(), "%s resolved to %s", host, got)
		}
	}
	for host, why := range map[string]string{
		"10.0.0.1:80":  "has a port",
		"[::1]:80":     "has a port",
		"[::1]":        "without brackets",
		"not an ip!":   "neither an IP address nor a host name",
		"203.0.113.7":  "not an address of this host",
		"0.0.0.0":      "every address",
		"-bad-.name":   "neither an IP address nor a host name",
		"host_name.io": "neither an IP address nor a host name",
	} {
		_, err := agent.ResolveReplicaHost(host)
		require.Error(t, err, host)
		require.True(t, strings.Contains(err.Error(), why), "%s: %v, want %q", host, err, why)
	}
}

func TestNew_RefusesAReplicaHostThisHostDoesNotHave(t *testing.T) {
	_, err := agent.New(agent.Config{Token: token, StateDir: t.TempDir(), ReplicaHost: "203.0.113.7"}, nil, agent.Runtimes{})
	require.ErrorContains(t, err, "203.0.113.7 is not an address of this host")
}
