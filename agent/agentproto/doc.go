// Package agentproto is what crosses the wire between the control plane and the node agent:
// the bodies of the agent's API (start, list, get, stop and patch replicas; inventory), the
// heartbeat the agent posts to the API, and the client the control plane calls the agent
// with.
//
// It holds no server code, so the activities, the API and the tools that talk to an agent
// import it without pulling in the agent's runtimes and state. Replica is the agent's answer
// about a replica and nothing more: the agent builds it field by field from what it keeps,
// so that secrets, control tokens and runtime handles stay on the host.
package agentproto
