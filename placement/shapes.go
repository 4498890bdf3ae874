package placement

import (
	"cmp"
	"slices"
	"strings"
	"unicode"

	"github.com/modelplane/modelplane"
	"github.com/modelplane/modelplane/nvml"
)

// Shape is a GPU request the registered nodes' GPUs can meet, with how many replicas of it
// fit.
type Shape struct {
	// GPU is the request: GPUCount whole GPUs of GPUType, or one MIG instance of MIGProfile
	// on a GPU of GPUType (GPUCount 1).
	GPU modelplane.GPURequest
	// GPUMemoryBytes is the memory of each GPU, or of the MIG instance: the least among those
	// of the shape.
	GPUMemoryBytes uint64
	// Available is how many replicas of the shape Place would place now, one after another.
	Available int
	// Total is how many would fit with every node READY, every GPU healthy and none held.
	Total int
}

// GPUType is the accelerator type a GPU's name stands for, as config.yaml writes it: the
// first word of the name (after the vendor's) that has a digit, upper-cased ("NVIDIA H100
// 80GB HBM3" is H100, "NVIDIA A100-SXM4-40GB" is A100, "NVIDIA GeForce RTX 4090" is 4090). A
// request's type matches every GPU whose name holds it, which this word always is.
func GPUType(name string) string {
	words := strings.FieldsFunc(name, func(r rune) bool { return !unicode.IsLetter(r) && !unicode.IsDigit(r) })
	for _, w := range words {
		if strings.ContainsFunc(w, unicode.IsDigit) {
			return strings.ToUpper(w)
		}
	}
	for _, w := range words {
		if !strings.EqualFold(w, "NVIDIA") {
			return strings.ToUpper(w)
		}
	}
	return ""
}

// Shapes lists what the nodes' GPUs can be asked for: for each GPU type, one to as many
// whole GPUs as one node has of it with MIG off, and one instance of each MIG profile that
// some GPU has instances of (placement hands out existing instances; it does not make them).
// Shapes come by type, whole GPUs (by count) before MIG profiles (by memory, then name).
// Every node counts for the list, whatever its state; Available asks Place as it is.
func Shapes(nodes []Node) []Shape {
	type key struct {
		gpuType, profile string
		count            int
	}
	mem := map[key]uint64{}
	note := func(k key, bytes uint64) {
		if m, ok := mem[k]; !ok || bytes < m {
			mem[k] = bytes
		}
	}
	units := 0
	for _, n := range nodes {
		whole := map[string][]uint64{}
		for _, g := range n.Inventory.GPUs {
			units += 1 + len(g.MIGInstances)
			t := GPUType(g.Name)
			if !g.MIGMode {
				whole[t] = append(whole[t], g.MemoryTotalBytes)
			}
			for _, mi := range g.MIGInstances {
				if mi.Profile != "" {
					note(key{gpuType: t, profile: mi.Profile, count: 1}, mi.MemoryBytes)
				}
			}
		}
		for t, sizes := range whole {
			least := slices.Min(sizes)
			for c := 1; c <= len(sizes); c++ {
				note(key{gpuType: t, count: c}, least)
			}
		}
	}

	idle := make([]Node, len(nodes))
	for i, n := range nodes {
		idle[i] = Node{ID: n.ID, Name: n.Name, State: modelplane.NodeReady, Inventory: healthy(n.Inventory)}
	}
	out := make([]Shape, 0, len(mem))
	for k, bytes := range mem {
		req := modelplane.GPURequest{GPUCount: k.count, GPUType: k.gpuType, MIGProfile: k.profile}
		out = append(out, Shape{GPU: req, GPUMemoryBytes: bytes,
			Available: fits(req, nodes, units), Total: fits(req, idle, units)})
	}
	slices.SortFunc(out, func(a, b Shape) int {
		return cmp.Or(
			cmp.Compare(a.GPU.GPUType, b.GPU.GPUType),
			cmp.Compare(isMIG(a), isMIG(b)),
			cmp.Compare(a.GPU.GPUCount, b.GPU.GPUCount),
			cmp.Compare(a.GPUMemoryBytes, b.GPUMemoryBytes),
			cmp.Compare(a.GPU.MIGProfile, b.GPU.MIGProfile),
		)
	})
	return out
}

// fits is how many replicas of req Place puts on nodes; no more than units (every GPU and
// MIG instance there is) can fit.
func fits(req modelplane.GPURequest, nodes []Node, units int) int {
	placed, _ := Place(Request{Count: units, GPU: req}, nodes)
	return len(placed)
}

// healthy is inv with every GPU healthy.
func healthy(inv nvml.Inventory) nvml.Inventory {
	out := inv
	out.GPUs = slices.Clone(inv.GPUs)
	for i := range out.GPUs {
		out.GPUs[i].Healthy, out.GPUs[i].UnhealthyReason = true, ""
	}
	return out
}

// isMIG orders whole-GPU shapes (0) before MIG ones (1).
func isMIG(s Shape) int {
	if s.GPU.MIGProfile != "" {
		return 1
	}
	return 0
}
