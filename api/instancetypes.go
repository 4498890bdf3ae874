package api

import (
	"fmt"
	"maps"
	"net/http"

	"github.com/labstack/echo/v4"

	"github.com/modelplane/modelplane/apiv1"
	"github.com/modelplane/modelplane/nvml"
	"github.com/modelplane/modelplane/placement"
	"github.com/modelplane/modelplane/store"
)

// listInstanceTypes answers the GPU shapes the registered nodes can place, with how many
// replicas of each fit now (placement.Shapes).
func (s *Server) listInstanceTypes(c echo.Context) error {
	nodes, err := store.ListNodes(c.Request().Context(), s.deps.DB)
	if err != nil {
		return err
	}
	shapes := placement.Shapes(placementNodes(nodes))
	out := apiv1.InstanceTypesV1{InstanceTypes: make([]apiv1.InstanceTypeV1, 0, len(shapes))}
	for _, sh := range shapes {
		out.InstanceTypes = append(out.InstanceTypes, instanceTypeV1(sh))
	}
	return c.JSON(http.StatusOK, out)
}

// instanceTypeV1 maps a shape onto Baseten's instance type: its ID is what config.yaml's
// resources ask for.
func instanceTypeV1(sh placement.Shape) apiv1.InstanceTypeV1 {
	gpuType := sh.GPU.GPUType
	mib := int(sh.GPUMemoryBytes >> 20)
	v := apiv1.InstanceTypeV1{GPUCount: sh.GPU.GPUCount, GPUType: &gpuType, GPUMemoryLimitMiB: &mib,
		Available: sh.Available, Total: sh.Total}
	if sh.GPU.MIGProfile != "" {
		v.ID = fmt.Sprintf("%s:%s", gpuType, sh.GPU.MIGProfile)
		v.Name = fmt.Sprintf("%s MIG %s", gpuType, sh.GPU.MIGProfile)
		v.GPUCount = 1
	} else {
		v.ID = fmt.Sprintf("%s:%d", gpuType, sh.GPU.GPUCount)
		v.Name = fmt.Sprintf("%dx %s", sh.GPU.GPUCount, gpuType)
	}
	return v
}

// placementNodes is the nodes as placement sees them: their GPUs with MIG instances, and
// what replicas hold. Replica counts do not change what fits, so they are left out.
func placementNodes(nodes []store.Node) []placement.Node {
	out := make([]placement.Node, 0, len(nodes))
	for _, n := range nodes {
		pn := placement.Node{ID: n.ID, Name: n.Name, State: n.State, Assigned: map[string]string{}}
		for _, g := range n.GPUs {
			ng := nvml.GPU{UUID: g.UUID, Index: g.Index, Name: g.Name,
				MemoryTotalBytes: uint64(max(g.MemoryTotalBytes, 0)), MIGMode: g.MIGMode,
				Healthy: g.Healthy, NUMANode: -1, NVLinkGroup: -1}
			for _, mi := range g.MIGInstances {
				ng.MIGInstances = append(ng.MIGInstances, nvml.MIGInstance{UUID: mi.UUID, ParentUUID: g.UUID,
					Profile: mi.MIGProfile, MemoryBytes: uint64(max(mi.MemoryTotalBytes, 0))})
			}
			maps.Copy(pn.Assigned, g.Holders())
			pn.Inventory.GPUs = append(pn.Inventory.GPUs, ng)
		}
		out = append(out, pn)
	}
	return out
}
