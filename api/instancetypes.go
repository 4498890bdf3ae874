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

// servedInstanceType is the instance type of a deployment whose replicas ask for res (its
// config.yaml's resources) and whose oldest placed replica holds held (store.DeploymentGPUs,
// empty when none is placed). The GPUs held say the type and memory, as GET
// /v1/instance_types names them; without them the request does, and the memory is null
// unless the request sets a minimum. millicpu_limit and memory_limit_mib are the CPU and
// memory the resources ask for, 0 where they ask for none.
func servedInstanceType(res modelpkg.Resources, held []store.GPU) apiv1.InstanceTypeV1 {
	v := servedGPUs(res.GPURequest, held)
	v.MillicpuLimit, v.MemoryLimitMiB = resourceLimits(res)
	return v
}

// resourceLimits are the CPU (thousandths) and memory (MiB, rounded up) that resources ask
// for; 0 for one they leave out (or one that does not parse, which a validated config never
// has).
func resourceLimits(res modelpkg.Resources) (millicpu, memMiB int) {
	if res.CPU != "" {
		if m, err := modelpkg.ParseCPU(res.CPU); err == nil {
			millicpu = int(m)
		}
	}
	if res.Memory != "" {
		if b, err := modelpkg.ParseMemory(res.Memory); err == nil {
			memMiB = int(b >> 20)
			if b&(1<<20-1) != 0 {
				memMiB++
			}
		}
	}
	return millicpu, memMiB
}

// servedGPUs is servedInstanceType without the CPU and memory limits.
func servedGPUs(req modelplane.GPURequest, held []store.GPU) apiv1.InstanceTypeV1 {
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

// servedInstanceTypes is the instance type each deployment of views runs on
// (servedInstanceType), by deployment ID, from its config.yaml's resources (for the
// development deployment, those of the config its synced patches led to) and the GPUs its
// replicas hold. A config that cannot be read asks for nothing, and the GPUs its replicas
// hold then say the instance type alone: an answer about a deployment is not refused over
// it. The archives' configs and the GPUs held are read in one query each, whatever the
// number of deployments.
func (s *Server) servedInstanceTypes(ctx context.Context, views []store.DeploymentView) (map[string]apiv1.InstanceTypeV1, error) {
	out := make(map[string]apiv1.InstanceTypeV1, len(views))
	if len(views) == 0 {
		return out, nil
	}
	texts := make(map[string][]byte, len(views))
	var ids []string
	archives := map[string][]string{} // workspace ID: archive IDs
	for _, d := range views {
		ids = append(ids, d.ID)
		if d.IsDevelopment {
			text, err := s.developmentConfig(ctx, d.ID)
			if err != nil {
				return nil, err
			}
			if text != nil {
				texts[d.ID] = text
				continue
			}
		}
		if d.ArchiveID != nil {
			archives[d.WorkspaceID] = append(archives[d.WorkspaceID], *d.ArchiveID)
		}
	}
	configs := map[[2]string][]byte{} // workspace and archive ID: config
	for ws, archiveIDs := range archives {
		got, err := store.ArchiveConfigs(ctx, s.deps.DB, ws, archiveIDs)
		if err != nil {
			return nil, err
		}
		for id, cfg := range got {
			configs[[2]string{ws, id}] = cfg
		}
	}
	held, err := store.DeploymentsGPUs(ctx, s.deps.DB, ids)
	if err != nil {
		return nil, err
	}
	for _, d := range views {
		text, ok := texts[d.ID]
		if !ok && d.ArchiveID != nil {
			text = configs[[2]string{d.WorkspaceID, *d.ArchiveID}]
		}
		var res modelpkg.Resources
		if text != nil {
			if cfg, err := modelpkg.ParseConfig(text); err == nil {
				res = cfg.Resources
			}
		}
		out[d.ID] = servedInstanceType(res, held[d.ID])
	}
	return out, nil
}

// developmentConfig is the config.yaml that the development deployment's synced patches led
// to; nil when it has no live-reload state yet (its archive's config then applies).
func (s *Server) developmentConfig(ctx context.Context, deploymentID string) ([]byte, error) {
	st, err := store.PatchStateOf(ctx, s.deps.DB, deploymentID)
	switch {
	case errors.Is(err, store.ErrNotFound):
		return nil, nil
	case err != nil:
		return nil, err
	}
	t, err := store.ConfigAt(ctx, s.deps.DB, st, st.AppliedSeq)
	if err != nil {
		return nil, err
	}
	return []byte(t), nil
}
