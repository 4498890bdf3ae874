//go:build cgo

package nvml

import (
	"fmt"

	gonvml "github.com/NVIDIA/go-nvml/pkg/nvml"
)

// migProfileName names GPU-instance profile index profile the way nvidia-smi does, e.g.
// "1g.18gb" or "1g.18gb+me", from its slice count, its memory and the GPU's total memory.
//
// The memory figure is not the profile's own size (the H200's "1g.18gb" has 16 GiB): it is
// the profile's share of the GPU, rounded up to whole eighths, times the GPU's memory in GiB
// rounded up, rounded to the nearest whole number. Names must match nvidia-smi's because
// that is what people write in a model's mig_profile.
func migProfileName(profile int, sliceCount uint32, memoryMiB, totalBytes uint64) string {
	const mib = 1 << 20
	gb := (memoryMiB*mib + gib - 1) / gib // fallback when the GPU's size is unknown
	if totalBytes > 0 {
		eighths := (8*memoryMiB*mib + totalBytes - 1) / totalBytes
		totalGiB := (totalBytes + gib - 1) / gib
		gb = (eighths*totalGiB*2 + 8) / 16 // eighths*totalGiB/8, rounded half up
	}
	var suffix string
	switch profile {
	case gonvml.GPU_INSTANCE_PROFILE_1_SLICE_REV1, gonvml.GPU_INSTANCE_PROFILE_2_SLICE_REV1:
		suffix = "+me" // with a media engine
	case gonvml.GPU_INSTANCE_PROFILE_1_SLICE_NO_ME, gonvml.GPU_INSTANCE_PROFILE_2_SLICE_NO_ME:
		suffix = "-me"
	case gonvml.GPU_INSTANCE_PROFILE_1_SLICE_ALL_ME, gonvml.GPU_INSTANCE_PROFILE_2_SLICE_ALL_ME:
		suffix = "+me.all"
	case gonvml.GPU_INSTANCE_PROFILE_1_SLICE_GFX, gonvml.GPU_INSTANCE_PROFILE_2_SLICE_GFX,
		gonvml.GPU_INSTANCE_PROFILE_4_SLICE_GFX, gonvml.GPU_INSTANCE_PROFILE_3_SLICE_GFX:
		suffix = "+gfx"
	}
	return fmt.Sprintf("%dg.%dgb%s", sliceCount, gb, suffix)
}
