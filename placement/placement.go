// Package placement decides which nodes get a deployment's new replicas and which GPUs each
// replica takes there. It is a pure function of the nodes' reported state, so the activity
// that starts replicas only gathers the nodes, calls Place and carries out the answer.
package placement

import (
	"cmp"
	"errors"
	"fmt"
	"maps"
	"slices"
	"strings"

	"github.com/modelplane/modelplane"
	"github.com/modelplane/modelplane/nvml"
)

// Node is one GPU host as the control plane last saw it.
type Node struct {
	ID   string
	Name string
	// State is READY, DRAINING or DOWN; only READY nodes take new replicas.
	State     modelplane.NodeState
	Inventory nvml.Inventory
	// Assigned maps every GPU or MIG instance UUID in use on the node to its replica ID, as
	// the agent reports it.
	Assigned map[string]string
	// Replicas counts the live replicas on the node, of every deployment.
	Replicas int
}

// Request asks for Count replicas of one deployment, each needing GPU.
type Request struct {
	// Count is how many replicas to place.
	Count int
	// GPU is what each replica needs; the zero value is a CPU-only replica.
	GPU modelplane.GPURequest
	// ExistingByNode counts this deployment's live replicas per node ID, so new replicas go
	// where the deployment is thinnest and one node's loss takes out as few as possible.
	ExistingByNode map[string]int
}

// Placement is one replica's node and the GPU or MIG instance UUIDs it gets there (none for a
// CPU-only replica).
type Placement struct {
	NodeID   string
	GPUUUIDs []string
}

// ErrUnplaceable is what every *Unplaceable matches with errors.Is: the cluster cannot take
// all the replicas asked for right now.
var ErrUnplaceable = errors.New("placement: replicas cannot be placed")

// ErrNoNodes is matched, besides ErrUnplaceable, when no node is registered at all, which
// calls for a different fix (start an agent) than a full cluster does.
var ErrNoNodes = errors.New("placement: no nodes are registered")

// ErrInvalidRequest is returned for a Request that no cluster could meet as written.
var ErrInvalidRequest = errors.New("placement: invalid request")

// Unplaceable says how many replicas were placed and why each node could not take more.
type Unplaceable struct {
	Wanted, Placed int
	// Reasons maps a node's name (its ID when it has no name) to why it took no more
	// replicas; empty when there are no nodes.
	Reasons map[string]string
}

// Error implements error with one sentence naming every node's obstacle, in name order, e.g.
// "placed 1 of 3 replicas: gpu-a: needs 1 GPU of type H100; 0 free, 1 assigned to replica
// r1; gpu-b: node is DOWN".
func (e *Unplaceable) Error() string {
	noun := "replicas"
	if e.Wanted == 1 {
		noun = "replica"
	}
	head := fmt.Sprintf("placed %d of %d %s: ", e.Placed, e.Wanted, noun)
	if len(e.Reasons) == 0 {
		return head + "no nodes are registered; start a node agent (modelplane agent) on a GPU host"
	}
	names := slices.Sorted(maps.Keys(e.Reasons))
	parts := make([]string, len(names))
	for i, n := range names {
		parts[i] = n + ": " + e.Reasons[n]
	}
	return head + strings.Join(parts, "; ")
}

// Unwrap lets errors.Is match ErrUnplaceable always and ErrNoNodes when there were none.
func (e *Unplaceable) Unwrap() []error {
	if len(e.Reasons) == 0 {
		return []error{ErrUnplaceable, ErrNoNodes}
	}
	return []error{ErrUnplaceable}
}

// candidate is a READY node with what this call has given out on it so far.
type candidate struct {
	node     Node
	key      string // name for Reasons
	assigned map[string]string
	existing int // this deployment's replicas, placed ones included
	total    int // all replicas, placed ones included
	full     bool
}

// Place picks a node and GPUs for each of req.Count replicas.
//
// Only READY nodes take replicas. Each replica goes to the node with the fewest replicas of
// this deployment, then the fewest replicas overall, then the first by name, so a deployment
// spreads across hosts and the same input always gives the same answer. GPUs come from
// nvml.Allocate against the node's inventory and assignments, and every GPU handed out in
// this call counts as assigned for the next replica, so no GPU is given twice.
//
// When not every replica fits, Place returns the placements that do fit together with an
// *Unplaceable that says why each node took no more; the caller may start those it got.
func Place(req Request, nodes []Node) ([]Placement, error) {
	if req.Count < 0 {
		return nil, fmt.Errorf("%w: replica count %d is negative", ErrInvalidRequest, req.Count)
	}
	// A malformed GPU request fails the same way on every node; say so once instead of once
	// per node.
	if _, err := nvml.Allocate(req.GPU, nvml.Inventory{}, nil); errors.Is(err, nvml.ErrInvalidRequest) {
		return nil, fmt.Errorf("%w: %w", ErrInvalidRequest, err)
	}
	if req.Count == 0 {
		return nil, nil
	}
	if len(nodes) == 0 {
		return nil, &Unplaceable{Wanted: req.Count, Reasons: map[string]string{}}
	}

	reasons := map[string]string{}
	var cands []*candidate
	for _, n := range nodes {
		key := cmp.Or(n.Name, n.ID)
		if n.State != modelplane.NodeReady {
			reasons[key] = notReady(n.State)
			continue
		}
		cands = append(cands, &candidate{
			node:     n,
			key:      key,
			assigned: maps.Clone(n.Assigned),
			existing: req.ExistingByNode[n.ID],
			total:    n.Replicas,
		})
	}

	var out []Placement
	for len(out) < req.Count {
		c := next(cands)
		if c == nil {
			break
		}
		uuids, err := nvml.Allocate(req.GPU, c.node.Inventory, c.assigned)
		if err != nil {
			c.full = true
			reasons[c.key] = allocReason(err)
			continue
		}
		if c.assigned == nil {
			c.assigned = map[string]string{}
		}
		// The replica has no ID yet; a placeholder still shows up in later reasons as the
		// holder, which tells the reader the GPU went to this same request.
		for _, u := range uuids {
			c.assigned[u] = fmt.Sprintf("new#%d", len(out)+1)
		}
		c.existing++
		c.total++
		out = append(out, Placement{NodeID: c.node.ID, GPUUUIDs: uuids})
	}
	if len(out) < req.Count {
		return out, &Unplaceable{Wanted: req.Count, Placed: len(out), Reasons: reasons}
	}
	return out, nil
}

// next is the node that should take the next replica, or nil when every node is full.
func next(cands []*candidate) *candidate {
	var best *candidate
	for _, c := range cands {
		if c.full {
			continue
		}
		if best == nil || less(c, best) {
			best = c
		}
	}
	return best
}

func less(a, b *candidate) bool {
	return cmp.Or(
		cmp.Compare(a.existing, b.existing),
		cmp.Compare(a.total, b.total),
		cmp.Compare(a.node.Name, b.node.Name),
		cmp.Compare(a.node.ID, b.node.ID),
	) < 0
}

func notReady(state modelplane.NodeState) string {
	switch state {
	case modelplane.NodeDown:
		return "node is DOWN; check that its agent is running and reachable"
	case modelplane.NodeDraining:
		return "node is DRAINING and takes no new replicas"
	case "":
		return "node state is unknown, so it takes no replicas"
	}
	return fmt.Sprintf("node is %s, not READY", state)
}

// allocReason drops nvml's "cannot allocate GPUs:" lead-in, since the sentence around it
// already says that.
func allocReason(err error) string {
	var ae *nvml.AllocationError
	if errors.As(err, &ae) {
		return ae.Reason
	}
	return err.Error()
}

// Hosts are the nodes that could take a replica needing gpu: READY nodes whose GPUs, were
// they all free, fit it. It is where a deployment's build prepares what its replicas will need
// (their Python environment), so that a replica placed later finds it there. The answer is in
// name order.
func Hosts(gpu modelplane.GPURequest, nodes []Node) []Node {
	var out []Node
	for _, n := range nodes {
		if n.State != modelplane.NodeReady {
			continue
		}
		if _, err := nvml.Allocate(gpu, n.Inventory, nil); err != nil {
			continue
		}
		out = append(out, n)
	}
	slices.SortFunc(out, func(a, b Node) int {
		return cmp.Or(cmp.Compare(cmp.Or(a.Name, a.ID), cmp.Or(b.Name, b.ID)), cmp.Compare(a.ID, b.ID))
	})
	return out
}
