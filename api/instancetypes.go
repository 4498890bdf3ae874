package api

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"net/http"

	"github.com/labstack/echo/v4"

	"github.com/modelplane/modelplane"
	"github.com/modelplane/modelplane/apiv1"
	"github.com/modelplane/modelplane/modelpkg"
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
	out := apiv1.InstanceTypesV1{InstanceTypes: make([]apiv1.InstanceTypeCapacityV1, 0, len(shapes))}
	for _, sh := range shapes {
		out.InstanceTypes = append(out.InstanceTypes, apiv1.InstanceTypeCapacityV1{
			InstanceTypeV1: instanceTypeV1(sh.GPU, sh.GPUMemoryBytes), Available: sh.Available, Total: sh.Total})
	}
	return c.JSON(http.StatusOK, out)
}

// instanceTypeV1 maps a GPU shape onto Baseten's instance type: its ID is what config.yaml's
// resources ask for. memBytes is the memory of each GPU or of the MIG instance, 0 when not
// known (gpu_memory_limit_mib null).
func instanceTypeV1(gpu modelplane.GPURequest, memBytes uint64) apiv1.InstanceTypeV1 {
	gpuType := gpu.GPUType
	v := apiv1.InstanceTypeV1{GPUCount: gpu.GPUCount, GPUType: &gpuType}
	if memBytes > 0 {
		mib := int(memBytes >> 20)
		v.GPUMemoryLimitMiB = &mib
	}
	if gpu.MIGProfile != "" {
		v.ID = fmt.Sprintf("%s:%s", gpuType, gpu.MIGProfile)
		v.Name = fmt.Sprintf("%s MIG %s", gpuType, gpu.MIGProfile)
		v.GPUCount = 1
	} else {
		v.ID = fmt.Sprintf("%s:%d", gpuType, gpu.GPUCount)
		v.Name = fmt.Sprintf("%dx %s", gpu.GPUCount, gpuType)
	}
	return v
}

// CPU-only replicas run on an instance type of this ID and name, with no GPU.
const cpuInstanceType = "CPU"

// anyGPUType stands for the GPU type of a request that takes any GPU, while no replica
// shows which one it got.
const anyGPUType = "GPU"

// servedInstanceType is the instance type of a deployment whose replicas ask for req (its
// config.yaml's resources) and whose oldest placed replica holds held (store.DeploymentGPUs,
// empty when none is placed). The GPUs held say the type and memory, as GET
// /v1/instance_types names them; without them the request does, and the memory is null
// unless the request sets a minimum.
func servedInstanceType(req modelplane.GPURequest, held []store.GPU) apiv1.InstanceTypeV1 {
	if req.CPUOnly() && len(held) == 0 {
		return apiv1.InstanceTypeV1{ID: cpuInstanceType, Name: cpuInstanceType}
	}
	shape := modelplane.GPURequest{GPUCount: max(req.GPUCount, 1), GPUType: placement.GPUType(req.GPUType),
		MIGProfile: req.MIGProfile}
	var mem uint64
	if req.GPUMemoryGiB > 0 {
		mem = uint64(req.GPUMemoryGiB) << 30
	}
	if len(held) > 0 {
		whole := 0
		for _, g := range held {
			switch {
			case g.MIGProfile != "":
				shape = modelplane.GPURequest{GPUCount: 1, GPUType: placement.GPUType(g.Name), MIGProfile: g.MIGProfile}
				return instanceTypeV1(shape, uint64(max(g.MemoryTotalBytes, 0)))
			case whole == 0 || uint64(max(g.MemoryTotalBytes, 0)) < mem:
				mem = uint64(max(g.MemoryTotalBytes, 0))
			}
			shape.GPUType = placement.GPUType(g.Name)
			whole++
		}
		shape.GPUCount = whole
	}
	if shape.GPUType == "" {
		shape.GPUType = anyGPUType
	}
	return instanceTypeV1(shape, mem)
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

// deploymentGPURequest is what the deployment's replicas ask of a node's GPUs: its
// config.yaml's resources (for the development deployment, those of the config its synced
// patches led to). A config that cannot be read asks for nothing, and the GPUs its replicas
// hold then say the instance type alone: an answer about an environment is not refused
// over it.
func (s *Server) deploymentGPURequest(ctx context.Context, d store.DeploymentView) (modelplane.GPURequest, error) {
	var text []byte
	if d.IsDevelopment {
		st, err := store.PatchStateOf(ctx, s.deps.DB, d.ID)
		switch {
		case err == nil:
			t, err := store.ConfigAt(ctx, s.deps.DB, st, st.AppliedSeq)
			if err != nil {
				return modelplane.GPURequest{}, err
			}
			text = []byte(t)
		case !errors.Is(err, store.ErrNotFound):
			return modelplane.GPURequest{}, err
		}
	}
	if text == nil && d.ArchiveID != nil {
		a, err := store.ArchiveByID(ctx, s.deps.DB, d.WorkspaceID, *d.ArchiveID)
		switch {
		case err == nil:
			text = a.Config
		case !errors.Is(err, store.ErrNotFound):
			return modelplane.GPURequest{}, err
		}
	}
	if text == nil {
		return modelplane.GPURequest{}, nil
	}
	cfg, err := modelpkg.ParseConfig(text)
	if err != nil {
		return modelplane.GPURequest{}, nil
	}
	return cfg.Resources.GPURequest, nil
}
