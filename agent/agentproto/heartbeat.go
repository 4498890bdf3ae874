package agentproto

// HeartbeatPath is the control plane route the agent reports to. The first heartbeat
// registers the node.
const HeartbeatPath = "/internal/v1/nodes/heartbeat"

// Heartbeat is what the agent reports every few seconds: where it is, its GPUs with health
// and assignments, and its replicas.
type Heartbeat struct {
	Name      string            `json:"name"`
	AgentID   string            `json:"agent_id"`
	AgentURL  string            `json:"agent_url"`
	Inventory InventoryResponse `json:"inventory"`
	Replicas  []Replica         `json:"replicas"`
}

// NodeNameHeader and AgentIDHeader say which node asks when an agent downloads an archive
// from the control plane: the name and agent ID its heartbeats report. The control plane
// serves a node only the archives of the replicas placed on it and of the environments it was
// asked to build; a node's own token must name its own node, and the shared token of older
// setups, which every such node holds, is told apart by these alone.
const (
	NodeNameHeader = "X-Modelplane-Node"
	AgentIDHeader  = "X-Modelplane-Agent-Id"
)
