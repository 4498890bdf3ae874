package main

import (
	"fmt"
	"log/slog"
	"net"
	"os"
	"strings"

	"github.com/spf13/cobra"

	"github.com/modelplane/modelplane/agent"
	"github.com/modelplane/modelplane/agent/runtime/docker"
	"github.com/modelplane/modelplane/agent/runtime/process"
	"github.com/modelplane/modelplane/internal/httpserve"
	"github.com/modelplane/modelplane/internal/tlsfiles"
	"github.com/modelplane/modelplane/nvml"
)

type agentConfig struct {
	Listen       string
	AdvertiseURL string
	ReplicaHost  string
	APIURL       string
	TokenFile    string
	StateDir     string
	GPUProfile   string
	Runtime      string
	Name         string
	DockerSocket string
	python       pythonConfig
	isolation    isolationConfig
	timeouts     httpserve.Timeouts
	tls          tlsfiles.ServerFiles
	tlsCAFile    string
}

// isolationConfig is how an agent keeps model servers away from itself and each other.
type isolationConfig struct {
	ReplicaUIDs string
	Require     bool
}

func isolationFlags(cmd *cobra.Command, c *isolationConfig) {
	f := cmd.Flags()
	f.StringVar(&c.ReplicaUIDs, "replica-uids", envString("MODELPLANE_REPLICA_UIDS", agent.DefaultReplicaUIDs),
		"user IDs FIRST-LAST a root agent runs process replicas as, one each (they need no user entry; IDs that have one are skipped); off runs them as the agent's user (MODELPLANE_REPLICA_UIDS)")
	f.BoolVar(&c.Require, "require-isolation", envBool("MODELPLANE_REQUIRE_ISOLATION", false),
		"refuse to start when process replicas cannot run as users of their own (MODELPLANE_REQUIRE_ISOLATION)")
}

// pythonConfig is where pip finds the packages' requirements, for an agent.
type pythonConfig struct {
	IndexURL  string
	FindLinks string
	Prewarm   bool
}

// pythonFlags adds the flags of the agent's pip: both empty leave pip's own configuration
// (PIP_* variables, pip.conf) to decide.
func pythonFlags(cmd *cobra.Command, c *pythonConfig) {
	f := cmd.Flags()
	f.StringVar(&c.IndexURL, "python-index-url", envString("MODELPLANE_PYTHON_INDEX_URL", ""), "package index pip installs requirements from (pip --index-url; default: pip's own) (MODELPLANE_PYTHON_INDEX_URL)")
	f.StringVar(&c.FindLinks, "python-find-links", envString("MODELPLANE_PYTHON_FIND_LINKS", ""), "directory or URL of wheels pip installs requirements from (pip --find-links); without --python-index-url pip then uses no index (MODELPLANE_PYTHON_FIND_LINKS)")
	f.BoolVar(&c.Prewarm, "python-prewarm", envBool("MODELPLANE_PYTHON_PREWARM", true), "start Truss models' replicas from a warm interpreter of their Python environment that has imported their modules (runtime.prewarm_imports and the ones learned from earlier replicas), not a cold one: forked from a fork server, or, for replicas of replica users, a warm spare already running as a replica user (MODELPLANE_PYTHON_PREWARM)")
}

func newAgentCmd(logger func() *slog.Logger) *cobra.Command {
	var c agentConfig
	cmd := &cobra.Command{
		Use:   "agent",
		Short: "Run the node agent: GPU inventory and health, and the model servers of this host",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if err := checkTimeouts(c.timeouts); err != nil {
				return err
			}
			replicaHost, err := agent.ResolveReplicaHost(c.ReplicaHost)
			if err != nil {
				return fmt.Errorf("--replica-host: %w", err)
			}
			log := logger()
			token, err := readToken(c.TokenFile)
			if err != nil {
				return err
			}
			cert, err := c.tls.Load()
			if err != nil {
				return err
			}
			apiTLS, err := httpClientTLS(c.tlsCAFile)
			if err != nil {
				return err
			}
			if c.Runtime != "process" && c.Runtime != "docker" {
				return fmt.Errorf("--runtime %q: use process or docker", c.Runtime)
			}
			gpus, err := nvml.Open(c.GPUProfile, nvml.Options{Logger: log})
			if err != nil {
				return fmt.Errorf("--gpu-profile %s: %w", c.GPUProfile, err)
			}
			defer gpus.Close()
			ln, err := net.Listen("tcp", c.Listen)
			if err != nil {
				return fmt.Errorf("listen %s: %w", c.Listen, err)
			}
			ln = tlsfiles.Listener(ln, cert)
			if c.AdvertiseURL == "" {
				c.AdvertiseURL = tlsfiles.Scheme(ln) + "://" + ln.Addr().String()
			}
			a, err := agent.New(agent.Config{
				Name: c.Name, AdvertiseURL: c.AdvertiseURL, APIURL: c.APIURL, Token: token,
				StateDir: c.StateDir, ReplicaHost: replicaHost, Logger: log,
				PythonIndexURL: c.python.IndexURL, PythonFindLinks: c.python.FindLinks, PythonPrewarm: c.python.Prewarm,
				HTTPTimeouts: c.timeouts, APITLS: apiTLS,
				ReplicaUIDs: c.isolation.ReplicaUIDs, RequireIsolation: c.isolation.Require,
			}, gpus, agent.Runtimes{})
			if err != nil {
				return err
			}
			rts := agent.Runtimes{Process: process.New(a.ID())}
			// Python and process packages always run as processes; --runtime docker adds
			// containers for image packages.
			if c.Runtime == "docker" {
				if !docker.Available(c.DockerSocket) {
					return fmt.Errorf("--runtime docker: no Docker engine answers on %s", c.DockerSocket)
				}
				rts.Docker = docker.New(docker.Options{Socket: c.DockerSocket, AgentID: a.ID(), Logger: log})
			}
			a.SetRuntimes(rts)
			log.Info("agent listening", "addr", ln.Addr().String(), "gpu_profile", gpus.Profile(),
				"runtime", c.Runtime, "replica_host", replicaHost, "state_dir", c.StateDir, "api_url", c.APIURL)
			ctx, stop := signalContext(cmd)
			defer stop()
			return a.Run(ctx, ln)
		},
	}
	f := cmd.Flags()
	f.StringVar(&c.Listen, "listen", envString("MODELPLANE_AGENT_LISTEN", "127.0.0.1:7070"), "address of the agent API (MODELPLANE_AGENT_LISTEN)")
	f.StringVar(&c.AdvertiseURL, "advertise-url", envString("MODELPLANE_AGENT_ADVERTISE_URL", ""), "URL the control plane uses to reach this agent (default http://<listen address>, https:// with --tls-cert-file)")
	f.StringVar(&c.ReplicaHost, "replica-host", envString("MODELPLANE_AGENT_REPLICA_HOST", "127.0.0.1"), "address this host's model servers listen on and gateways reach them at: an IP address or host name of this host without a port, e.g. its private address on the cluster network; the default, the loopback, is reached only by gateways on this host (MODELPLANE_AGENT_REPLICA_HOST)")
	f.StringVar(&c.APIURL, "api-url", envString("MODELPLANE_API_URL", ""), "control plane API to register and heartbeat with; empty runs stand-alone (MODELPLANE_API_URL)")
	f.StringVar(&c.TokenFile, "token-file", envString("MODELPLANE_NODE_TOKEN_FILE", ""), "file holding this node's token (modelplane nodes token create --name <--name>), or the shared one (MODELPLANE_NODE_TOKEN_FILE; required)")
	f.StringVar(&c.StateDir, "state-dir", envString("MODELPLANE_AGENT_STATE_DIR", "./.modelplane/agent"), "state file and replica directories (MODELPLANE_AGENT_STATE_DIR)")
	f.StringVar(&c.GPUProfile, "gpu-profile", envString("MODELPLANE_GPU_PROFILE", "auto"), "auto, none, real, h200 or dgxa100 (MODELPLANE_GPU_PROFILE)")
	f.StringVar(&c.Runtime, "runtime", envString("MODELPLANE_AGENT_RUNTIME", "process"), "process, or docker to also run container images (MODELPLANE_AGENT_RUNTIME)")
	f.StringVar(&c.Name, "name", envString("MODELPLANE_NODE_NAME", ""), "node name (default: host name)")
	f.StringVar(&c.DockerSocket, "docker-socket", envString("DOCKER_SOCKET", "/var/run/docker.sock"), "Docker engine socket, with --runtime docker")
	pythonFlags(cmd, &c.python)
	isolationFlags(cmd, &c.isolation)
	serverTimeoutFlags(cmd, &c.timeouts)
	tlsServerFlags(cmd, &c.tls)
	tlsCAFlag(cmd, &c.tlsCAFile, "the API")
	return cmd
}

// readToken reads a secret from a file, refusing an empty one.
func readToken(path string) (string, error) {
	if path == "" {
		return "", fmt.Errorf("--token-file is required")
	}
	b, err := os.ReadFile(path)
	if err != nil {
		return "", fmt.Errorf("node token: %w", err)
	}
	t := strings.TrimSpace(string(b))
	if len(t) < 16 {
		return "", fmt.Errorf("node token in %s is shorter than 16 characters", path)
	}
	return t, nil
}
