package nvml

import (
	"cmp"
	"errors"
	"fmt"
	"slices"
	"strings"

	"github.com/modelplane/modelplane"
)

// ErrUnsatisfiable is what every *AllocationError matches with errors.Is: the request is
// valid but this node cannot meet it now.
var ErrUnsatisfiable = errors.New("nvml: GPU request cannot be satisfied on this node")

// ErrInvalidRequest is returned for a GPU request that no node could meet as written.
var ErrInvalidRequest = errors.New("nvml: invalid GPU request")

// AllocationError says why a request cannot be met on this node.
type AllocationError struct {
	Request modelplane.GPURequest
	// Reason is a sentence a human can act on, e.g. "needs 2 GPUs of type H100 with >= 80
	// GiB; 1 free, 1 assigned to replica r1, 2 unhealthy".
	Reason string
}

// Error implements error.
func (e *AllocationError) Error() string { return "cannot allocate GPUs: " + e.Reason }

// Unwrap lets errors.Is(err, ErrUnsatisfiable) hold.
func (e *AllocationError) Unwrap() error { return ErrUnsatisfiable }

const gib = 1 << 30

// Allocate picks the GPUs (or the MIG instance) for req from inv, given assigned, which maps
// every GPU or MIG UUID already in use to its replica ID. It returns the UUIDs to give the
// replica, in index order.
//
// Whole GPUs are never shared: a GPU is taken if it or any of its MIG instances is assigned.
// A GPU with MIG on is only handed out by MIG instance, and one with MIG off only whole.
// Unhealthy GPUs are skipped. Several GPUs come from one NVLink group if possible, else from
// one NUMA node, else from anywhere; among equal choices the smallest group that fits wins
// (keeping larger groups whole for larger requests), then the lowest index.
func Allocate(req modelplane.GPURequest, inv Inventory, assigned map[string]string) ([]string, error) {
	switch {
	case req.GPUCount < 0:
		return nil, fmt.Errorf("%w: GPU count %d is negative", ErrInvalidRequest, req.GPUCount)
	case req.GPUMemoryGiB < 0:
		return nil, fmt.Errorf("%w: GPU memory %d GiB is negative", ErrInvalidRequest, req.GPUMemoryGiB)
	case req.MIGProfile != "" && req.GPUCount > 1:
		return nil, fmt.Errorf("%w: a MIG profile request gets one MIG instance, not %d", ErrInvalidRequest, req.GPUCount)
	}
	gpus := slices.Clone(inv.GPUs)
	slices.SortStableFunc(gpus, func(a, b GPU) int { return cmp.Compare(a.Index, b.Index) })
	if req.MIGProfile != "" {
		return allocateMIG(req, gpus, assigned)
	}
	if req.GPUCount == 0 {
		return nil, nil
	}
	return allocateWhole(req, gpus, assigned)
}

func allocateWhole(req modelplane.GPURequest, gpus []GPU, assigned map[string]string) ([]string, error) {
	var free []GPU
	var t tally
	for _, g := range gpus {
		if !typeMatches(g, req) || memoryGiB(g.MemoryTotalBytes) < req.GPUMemoryGiB {
			continue
		}
		t.matching++
		if r, ok := holder(g, assigned); ok {
			t.assign(r)
			continue
		}
		switch {
		case !g.Healthy:
			t.unhealthy++
		case g.MIGMode:
			t.migOn++
		default:
			free = append(free, g)
		}
	}
	if len(free) >= req.GPUCount {
		picked := pickTopology(free, req.GPUCount)
		out := make([]string, len(picked))
		for i, g := range picked {
			out[i] = g.UUID
		}
		return out, nil
	}
	reason := "needs " + describeWant(req) + "; "
	if t.matching == 0 {
		reason += noMatch(gpus)
	} else {
		reason += t.String(len(free))
	}
	return nil, &AllocationError{Request: req, Reason: reason}
}

func allocateMIG(req modelplane.GPURequest, gpus []GPU, assigned map[string]string) ([]string, error) {
	var t tally
	for _, g := range gpus {
		if !typeMatches(g, req) {
			continue
		}
		for _, mi := range g.MIGInstances {
			if mi.Profile != req.MIGProfile || memoryGiB(mi.MemoryBytes) < req.GPUMemoryGiB {
				continue
			}
			t.matching++
			if r, ok := assigned[mi.UUID]; ok {
				t.assign(r)
				continue
			}
			// A parent handed out whole cannot lend an instance too.
			if r, ok := assigned[g.UUID]; ok {
				t.assign(r)
				continue
			}
			if !g.Healthy {
				t.unhealthy++
				continue
			}
			return []string{mi.UUID}, nil
		}
	}
	reason := "needs " + describeWant(req) + "; "
	if t.matching == 0 {
		reason += noMIGInstance(req, gpus)
	} else {
		reason += t.String(0)
	}
	return nil, &AllocationError{Request: req, Reason: reason}
}

// holder reports the replica holding g or any MIG instance of it.
func holder(g GPU, assigned map[string]string) (string, bool) {
	if r, ok := assigned[g.UUID]; ok {
		return r, true
	}
	for _, mi := range g.MIGInstances {
		if r, ok := assigned[mi.UUID]; ok {
			return r, true
		}
	}
	return "", false
}

func typeMatches(g GPU, req modelplane.GPURequest) bool {
	return req.GPUType == "" || strings.Contains(strings.ToLower(g.Name), strings.ToLower(req.GPUType))
}

// memoryGiB rounds up because NVML reports memory net of what the firmware reserves: an
// "80 GB" H100 shows 79.6 GiB, and a request written against the advertised size should fit.
func memoryGiB(bytes uint64) int {
	return int((bytes + gib - 1) / gib)
}

// pickTopology chooses n of free (sorted by index, len >= n). Each tier groups the GPUs a
// different way; the first tier with a group that fits wins, and within it the smallest such
// group, then the one with the lowest index. A GPU with no NVLink group (or NUMA node) is a
// group of its own in the tiers that use that key, so single-GPU requests go first to GPUs
// that no larger request could use together with others.
func pickTopology(free []GPU, n int) []GPU {
	type key struct{ a, b int }
	alone := func(g GPU) key { return key{-1, -1 - g.Index} }
	tiers := []func(GPU) key{
		func(g GPU) key { // one NVLink group and one NUMA node
			if g.NVLinkGroup < 0 {
				return alone(g)
			}
			return key{g.NVLinkGroup, g.NUMANode}
		},
		func(g GPU) key { // one NVLink group
			if g.NVLinkGroup < 0 {
				return alone(g)
			}
			return key{g.NVLinkGroup, 0}
		},
		func(g GPU) key { // one NUMA node
			if g.NUMANode < 0 {
				return alone(g)
			}
			return key{g.NUMANode, 0}
		},
		func(GPU) key { return key{0, 0} }, // anywhere
	}
	for _, keyOf := range tiers {
		var order []key
		groups := map[key][]GPU{}
		for _, g := range free {
			k := keyOf(g)
			if _, seen := groups[k]; !seen {
				order = append(order, k)
			}
			groups[k] = append(groups[k], g)
		}
		var best []GPU
		for _, k := range order { // order is by lowest index, so ties keep the earlier group
			if g := groups[k]; len(g) >= n && (best == nil || len(g) < len(best)) {
				best = g
			}
		}
		if best != nil {
			return best[:n]
		}
	}
	return nil
}

// tally counts why matching GPUs or MIG instances are not free.
type tally struct {
	matching  int
	unhealthy int
	migOn     int
	replicas  map[string]int
}

func (t *tally) assign(replica string) {
	if t.replicas == nil {
		t.replicas = map[string]int{}
	}
	t.replicas[replica]++
}

func (t tally) String(free int) string {
	parts := []string{fmt.Sprintf("%d free", free)}
	if len(t.replicas) > 0 {
		ids := make([]string, 0, len(t.replicas))
		total := 0
		for id, n := range t.replicas {
			ids = append(ids, id)
			total += n
		}
		slices.Sort(ids)
		noun := "replica"
		if len(ids) > 1 {
			noun = "replicas"
		}
		parts = append(parts, fmt.Sprintf("%d assigned to %s %s", total, noun, strings.Join(ids, ", ")))
	}
	if t.unhealthy > 0 {
		parts = append(parts, fmt.Sprintf("%d unhealthy", t.unhealthy))
	}
	if t.migOn > 0 {
		parts = append(parts, fmt.Sprintf("%d in MIG mode (ask for a MIG profile to use them)", t.migOn))
	}
	return strings.Join(parts, ", ")
}

func describeWant(req modelplane.GPURequest) string {
	var b strings.Builder
	if req.MIGProfile != "" {
		b.WriteString("a MIG instance " + req.MIGProfile)
	} else if req.GPUCount == 1 {
		b.WriteString("1 GPU")
	} else {
		fmt.Fprintf(&b, "%d GPUs", req.GPUCount)
	}
	if req.GPUType != "" {
		b.WriteString(" of type " + req.GPUType)
	}
	if req.GPUMemoryGiB > 0 {
		fmt.Fprintf(&b, " with >= %d GiB", req.GPUMemoryGiB)
	}
	return b.String()
}

// noMatch says what the node has, so the reader sees why nothing matched.
func noMatch(gpus []GPU) string {
	if len(gpus) == 0 {
		return "this node has no GPUs"
	}
	var kinds []string
	count := map[string]int{}
	for _, g := range gpus {
		k := fmt.Sprintf("%s (%d GiB)", g.Name, memoryGiB(g.MemoryTotalBytes))
		if count[k] == 0 {
			kinds = append(kinds, k)
		}
		count[k]++
	}
	have := make([]string, len(kinds))
	for i, k := range kinds {
		have[i] = fmt.Sprintf("%d × %s", count[k], k)
	}
	return "no GPU on this node matches; it has " + strings.Join(have, ", ")
}

// noMIGInstance explains a missing MIG instance: MIG off, instance not created, or a profile
// that no GPU here offers.
func noMIGInstance(req modelplane.GPURequest, gpus []GPU) string {
	var offeredOff, offeredOn []string
	var others []string
	for _, g := range gpus {
		if !typeMatches(g, req) {
			continue
		}
		for _, p := range g.MIGProfiles {
			if p.Name != req.MIGProfile {
				if !slices.Contains(others, p.Name) {
					others = append(others, p.Name)
				}
				continue
			}
			if g.MIGMode {
				offeredOn = append(offeredOn, fmt.Sprint(g.Index))
			} else {
				offeredOff = append(offeredOff, fmt.Sprint(g.Index))
			}
		}
	}
	switch {
	case len(offeredOn) > 0:
		return fmt.Sprintf("no %s instance exists yet; create one, e.g. nvidia-smi mig -i %s -cgi %s -C",
			req.MIGProfile, offeredOn[0], req.MIGProfile)
	case len(offeredOff) == 1:
		return fmt.Sprintf("GPU %s offers %s but has MIG mode off; enable MIG and create the instance",
			offeredOff[0], req.MIGProfile)
	case len(offeredOff) > 1:
		return fmt.Sprintf("GPUs %s offer %s but have MIG mode off; enable MIG and create the instance",
			strings.Join(offeredOff, ", "), req.MIGProfile)
	case len(others) > 0:
		return fmt.Sprintf("no GPU on this node offers that profile (offered: %s)", strings.Join(others, ", "))
	case len(gpus) == 0:
		return "this node has no GPUs"
	default:
		return "no GPU on this node supports MIG"
	}
}
