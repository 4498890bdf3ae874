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
