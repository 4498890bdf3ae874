package patch

import (
	"fmt"
	"strings"

	"github.com/modelplane/modelplane/modelpkg"
)

// How a running replica takes a run of patches.
const (
	// HowHotReload: the files are written in place and the python server loads model.py
	// again in the same process.
	HowHotReload = "hot_reload"
	// HowRestart: the files are written in place and the model server restarts, as the same
	// replica on the same GPUs.
	HowRestart = "restart"
)

// Decide says how a replica running config prev takes ops, which lead to config next: a
// reason to deploy again when the change cannot be made in place (runtime, image or
// resources changed; code of a docker-runtime package), otherwise HowHotReload when every
// operation is model code asking for hot reload on the python runtime, and HowRestart when
// not.
func Decide(prev, next modelpkg.Config, ops []Op) (how, fullDeployReason string) {
	if prev.Runtime != next.Runtime {
		return "", fmt.Sprintf("runtime changed from %s to %s: a new deployment is needed", prev.Runtime, next.Runtime)
	}
	if prev.Image != next.Image {
		return "", fmt.Sprintf("image changed from %q to %q: a new deployment is needed", prev.Image, next.Image)
	}
	if changes := resourceChanges(prev.Resources, next.Resources); len(changes) > 0 {
		return "", fmt.Sprintf("resources changed (%s): a replica's GPUs and size are chosen when it is placed, so a new deployment is needed",
			strings.Join(changes, ", "))
	}
	hot := len(ops) > 0 && next.Runtime == modelpkg.RuntimePython
	for _, op := range ops {
		if op.Type == TypeModelCode && next.Runtime == modelpkg.RuntimeDocker {
			return "", fmt.Sprintf("%s changed, but a docker-runtime replica runs its image, not the package's files: a new deployment is needed", op.Path)
		}
		hot = hot && op.Type == TypeModelCode && op.HotReload
	}
	if hot {
		return HowHotReload, ""
	}
	return HowRestart, ""
}

func resourceChanges(a, b modelpkg.Resources) []string {
	var out []string
	diff := func(name string, x, y any) {
		if x != y {
			out = append(out, fmt.Sprintf("%s %v → %v", name, shown(x), shown(y)))
		}
	}
	diff("accelerator", a.Accelerator, b.Accelerator)
	if a.Accelerator == b.Accelerator {
		diff("gpu_type", a.GPUType, b.GPUType)
		diff("gpu_count", a.GPUCount, b.GPUCount)
	}
	diff("gpu_memory_gib", a.GPUMemoryGiB, b.GPUMemoryGiB)
	diff("mig_profile", a.MIGProfile, b.MIGProfile)
	diff("cpu", a.CPU, b.CPU)
	diff("memory", a.Memory, b.Memory)
	return out
}

func shown(v any) any {
	if s, ok := v.(string); ok && s == "" {
		return "none"
	}
	return v
}
