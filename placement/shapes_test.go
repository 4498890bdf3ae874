package placement

import (
	"testing"

	"github.com/stretchr/testify/assert"

	"github.com/modelplane/modelplane"
)

func TestGPUType_IsTheFirstWordWithADigit(t *testing.T) {
	for name, want := range map[string]string{
		"NVIDIA H200":             "H200",
		"NVIDIA H100 80GB HBM3":   "H100",
		"NVIDIA A100-SXM4-40GB":   "A100",
		"NVIDIA GeForce RTX 4090": "4090",
		"Tesla T4":                "T4",
		"NVIDIA L40S":             "L40S",
		"NVIDIA Graphics Device":  "GRAPHICS",
		"":                        "",
	} {
		assert.Equal(t, want, GPUType(name), "GPUType(%q)", name)
	}
}

// shape is what a test expects of one listed shape.
type shape struct {
	gpu              modelplane.GPURequest
	memGiB           uint64
	available, total int
}

func shapesOf(nodes ...Node) []shape {
	var out []shape
	for _, s := range Shapes(nodes) {
		out = append(out, shape{s.GPU, s.GPUMemoryBytes / gib, s.Available, s.Total})
	}
	return out
}

func TestShapes(t *testing.T) {
	h100x := func(n int) modelplane.GPURequest { return modelplane.GPURequest{GPUCount: n, GPUType: "H100"} }
	mig := modelplane.GPURequest{GPUCount: 1, GPUType: "A100", MIGProfile: "1g.10gb"}
	tests := []struct {
		name  string
		nodes []Node
		want  []shape
	}{
		{"no nodes, no shapes", nil, nil},
		{"whole GPUs from one to as many as a node has", []Node{
			node("a", modelplane.NodeReady, h100("a0", 0), h100("a1", 1), h100("a2", 2)),
			node("b", modelplane.NodeReady, h100("b0", 0)),
		}, []shape{{h100x(1), 80, 4, 4}, {h100x(2), 80, 1, 1}, {h100x(3), 80, 1, 1}}},
		{"held and unhealthy GPUs are not available but count in the total", []Node{
			withAssigned(node("a", modelplane.NodeReady, h100("a0", 0), unhealthy(h100("a1", 1)), h100("a2", 2), h100("a3", 3)),
				map[string]string{"a0": "r1"}),
		}, []shape{{h100x(1), 80, 2, 4}, {h100x(2), 80, 1, 2}, {h100x(3), 80, 0, 1}, {h100x(4), 80, 0, 1}}},
		{"a node that is not READY places nothing now", []Node{
			node("a", modelplane.NodeDown, h100("a0", 0)),
			node("b", modelplane.NodeDraining, h100("b0", 0)),
		}, []shape{{h100x(1), 80, 0, 2}}},
		{"MIG instances are shapes of their own, and their GPU is no whole GPU", []Node{
			withAssigned(node("a", modelplane.NodeReady, migGPU("g0", 0, "m1", "m2", "m3"), h100("h0", 1)),
				map[string]string{"m2": "r1"}),
		}, []shape{{mig, 10, 2, 3}, {h100x(1), 80, 1, 1}}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			assert.Equal(t, tt.want, shapesOf(tt.nodes...))
		})
	}
}
