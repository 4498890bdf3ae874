package activities

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"time"

	"go.temporal.io/sdk/activity"

	"github.com/modelplane/modelplane"
	"github.com/modelplane/modelplane/agent/agentproto"
	"github.com/modelplane/modelplane/placement"
	"github.com/modelplane/modelplane/store"
	"github.com/modelplane/modelplane/workflows/contract"
)

// buildLogTail is how many lines of a node's build output the deployment's build log gets.
const buildLogTail = 5000

// envBuild is one node's build of the deployment's environment.
type envBuild struct {
	node   placement.Node
	agent  *agentproto.Client
	st     agentproto.EnvStatus
	done   bool
	logged bool
}

// BuildPythonEnv has every node that could host the deployment (READY, with GPUs that fit it)
// build the Python environment of its requirements, and waits for them, heartbeating. While it
// waits the deployment stays BUILDING with a status_reason that says how far the nodes are,
// and their output goes to the deployment's build log. A build that fails on a node fails
// non-retryably with type contract.ErrTypeBuildFailed and pip's last lines as the message.
// With no node to build on, nothing is built: a replica's node builds the environment when
// it starts it.
func (a *Activities) BuildPythonEnv(ctx context.Context, in contract.BuildPythonEnvInput) (contract.BuildPythonEnvResult, error) {
	log := activity.GetLogger(ctx)
	interval := in.PollInterval
	if interval <= 0 {
		interval = time.Second
	}
	nodes, err := store.ListNodes(ctx, a.DB)
	if err != nil {
		return contract.BuildPythonEnvResult{}, err
	}
	hosts := placement.Hosts(in.Spec.Resources, placementNodes(nodes, nil))
	agentURLs := map[string]string{}
	for _, n := range nodes {
		agentURLs[n.ID] = n.AgentURL
	}
	req := agentproto.EnvRequest{
		ArchiveURL:    strings.TrimSuffix(a.ArchiveBaseURL, "/") + agentproto.ArchivePath + in.Spec.ArchiveID,
		ArchiveSHA256: strings.TrimPrefix(in.Spec.ArchiveID, "sha256:"),
		Config:        in.Spec.Config,
	}
	builds := make([]*envBuild, 0, len(hosts))
	for _, n := range hosts {
		agent, err := a.agent(ctx, &n.ID, agentURLs[n.ID])
		if err != nil {
			return contract.BuildPythonEnvResult{}, err
		}
		b := &envBuild{node: n, agent: agent}
		// The node may download the archive only once it is recorded as asked to build it.
		if err := store.RecordEnvBuildNode(ctx, a.DB, in.Spec.DeploymentID, n.ID); err != nil {
			return contract.BuildPythonEnvResult{}, err
		}
		if b.st, err = b.agent.BuildEnv(ctx, req); err != nil {
			return contract.BuildPythonEnvResult{}, a.agentFailed(n, err)
		}
		builds = append(builds, b)
	}
	result := contract.BuildPythonEnvResult{Nodes: []string{}, Reused: true}
	written := ""
	for {
		activity.RecordHeartbeat(ctx)
		building := false
		for _, b := range builds {
			if b.done {
				continue
			}
			if b.st.State == agentproto.EnvBuilding && b.logged {
				st, err := b.agent.Env(ctx, b.st.Key, buildLogTail)
				if err != nil {
					return contract.BuildPythonEnvResult{}, a.agentFailed(b.node, err)
				}
				st.Requirements = b.st.Requirements
				b.st = st
			}
			if !b.logged {
				if err := store.AppendBuildLog(ctx, a.DB, in.Spec.DeploymentID, progressLine(b)); err != nil {
					return contract.BuildPythonEnvResult{}, err
				}
				b.logged = true
			}
			switch b.st.State {
			case agentproto.EnvBuilding:
				building = true
				continue
			case agentproto.EnvFailed:
				if err := a.logBuildOutput(ctx, in.Spec.DeploymentID, b); err != nil {
					return contract.BuildPythonEnvResult{}, err
				}
				msg := fmt.Sprintf("node %s could not prepare the Python environment: %s", nodeName(b.node), b.st.Error)
				_ = store.AppendBuildLog(ctx, a.DB, in.Spec.DeploymentID, msg)
				log.Warn("python environment build failed", "deployment_id", in.Spec.DeploymentID, "node", nodeName(b.node))
				return contract.BuildPythonEnvResult{}, buildFailed("%s", msg)
			}
			b.done = true
			if !b.st.Reused {
				if err := a.logBuildOutput(ctx, in.Spec.DeploymentID, b); err != nil {
					return contract.BuildPythonEnvResult{}, err
				}
				if err := store.AppendBuildLog(ctx, a.DB, in.Spec.DeploymentID, progressLine(b)); err != nil {
					return contract.BuildPythonEnvResult{}, err
				}
				result.Reused = false
			}
			result.Nodes = append(result.Nodes, nodeName(b.node))
		}
		reason := progress(builds)
		if reason != "" && reason != written {
			if err := store.SetDeploymentStatus(ctx, a.DB, in.Spec.DeploymentID, modelplane.DeploymentBuilding, reason); err != nil {
				return contract.BuildPythonEnvResult{}, err
			}
			written = reason
		}
		if !building {
			if len(builds) == 0 {
				result.Reused = false
			}
			return result, nil
		}
		select {
		case <-ctx.Done():
			return contract.BuildPythonEnvResult{}, ctx.Err()
		case <-time.After(interval):
		}
	}
}

// agentFailed is an agent's error: a refusal retrying cannot fix fails the build, anything
// else is retried.
func (a *Activities) agentFailed(n placement.Node, err error) error {
	var apiErr *agentproto.APIError
	if errors.As(err, &apiErr) && !apiErr.Retryable() {
		return buildFailed("node %s refused to prepare the Python environment: %s", nodeName(n), apiErr.Message)
	}
	return fmt.Errorf("asking node %s about the Python environment: %w", nodeName(n), err)
}

// logBuildOutput appends the node's build output to the deployment's build log.
func (a *Activities) logBuildOutput(ctx context.Context, deploymentID string, b *envBuild) error {
	lines := b.st.LogTail
	if b.st.Key != "" && len(lines) < buildLogTail {
		if st, err := b.agent.Env(ctx, b.st.Key, buildLogTail); err == nil {
			lines = st.LogTail
		}
	}
	if len(lines) == 0 {
		return nil
	}
	return store.AppendBuildLog(ctx, a.DB, deploymentID, strings.Join(lines, "\n"))
}

func nodeName(n placement.Node) string {
	if n.Name != "" {
		return n.Name
	}
	return n.ID
}

func plural(n int, word string) string {
	if n == 1 {
		return fmt.Sprintf("%d %s", n, word)
	}
	return fmt.Sprintf("%d %ss", n, word)
}

// progressLine says what a node does about the environment, for the status and the log.
func progressLine(b *envBuild) string {
	name := nodeName(b.node)
	switch {
	case b.st.Key == "" && b.st.State == agentproto.EnvReady:
		return fmt.Sprintf("the Python interpreter is installed on node %s", name)
	case b.st.State == agentproto.EnvReady && b.st.Reused:
		return fmt.Sprintf("requirements already installed on node %s (environment %s), reused", name, b.st.Key)
	case b.st.State == agentproto.EnvReady:
		return fmt.Sprintf("requirements installed on node %s (environment %s)", name, b.st.Key)
	case b.st.State == agentproto.EnvFailed:
		return fmt.Sprintf("installing the requirements failed on node %s", name)
	}
	return fmt.Sprintf("installing %s on node %s", plural(b.st.Requirements, "requirement"), name)
}

// progress is the status_reason while the nodes build: each node's line.
func progress(builds []*envBuild) string {
	parts := make([]string, 0, len(builds))
	for _, b := range builds {
		parts = append(parts, progressLine(b))
	}
	return strings.Join(parts, "; ")
}
