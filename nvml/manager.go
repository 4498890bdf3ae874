//go:build cgo

package nvml

import (
	"context"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"

	gonvml "github.com/NVIDIA/go-nvml/pkg/nvml"
)

// Manager reports the node's GPUs and watches their health over one NVML backend. Its
// methods are safe for concurrent use.
type Manager struct {
	profile string
	lib     gonvml.Interface // nil when the node has no GPUs to report
	sim     *Simulator
	real    bool
	opts    Options
	log     *slog.Logger

	// life ends when Close is called, so that Close can stop Run before NVML shuts down.
	life     context.Context
	stopLife context.CancelFunc
	runs     sync.WaitGroup

	mu     sync.Mutex
	closed bool
	book   *healthBook
	// ecc is the last uncorrected volatile ECC count read per GPU UUID.
	ecc map[string]uint64
	// known is the last description of the GPU at each index, so a GPU NVML can no longer
	// read is still reported, as unhealthy, rather than silently vanishing.
	known map[int]GPU
	// handles names the GPU behind a device handle, because an event's handle may belong to
	// a GPU that can no longer answer GetUUID.
	handles  map[gonvml.Device]string
	topoKey  string
	topology map[string]int
}

// Open starts NVML for profile: "auto" (real NVML if the library loads, else no GPUs),
// "none" (no GPUs), "real" (real NVML; an error if it cannot load), "h200" or "dgxa100"
// (simulated; see Simulator). Call Close when done.
func Open(profile string, opts Options) (*Manager, error) {
	opts = opts.withDefaults()
	m := &Manager{
		profile: profile,
		opts:    opts,
		log:     opts.Logger.With("component", "nvml"),
		book:    newHealthBook(opts.Probation),
		ecc:     map[string]uint64{},
		known:   map[int]GPU{},
		handles: map[gonvml.Device]string{},
	}
	m.life, m.stopLife = context.WithCancel(context.Background())
	switch profile {
	case ProfileNone:
	case ProfileAuto, ProfileReal:
		lib := gonvml.New()
		ret := lib.Init()
		switch {
		case ret == gonvml.SUCCESS:
			m.lib, m.real, m.profile = lib, true, ProfileReal
		case profile == ProfileAuto && (ret == gonvml.ERROR_LIBRARY_NOT_FOUND || ret == gonvml.ERROR_DRIVER_NOT_LOADED):
			// A host without the NVIDIA driver is a CPU node, not a broken one.
			m.log.Info("NVML is not available; reporting no GPUs", "ret", ret.Error())
			m.profile = ProfileNone
		case ret == gonvml.ERROR_LIBRARY_NOT_FOUND:
			return nil, fmt.Errorf("%w: libnvidia-ml.so.1 could not be loaded (%s); install the NVIDIA driver, or use GPU profile auto or none on a host without GPUs",
				ErrUnavailable, ret.Error())
		default:
			return nil, fmt.Errorf("%w: initializing NVML: %s", ErrUnavailable, ret.Error())
		}
	case ProfileH200:
		sim, err := newH200Simulator()
		if err != nil {
			return nil, err
		}
		m.lib, m.sim = sim, sim
	case ProfileDGXA100:
		sim := newDGXA100Simulator()
		m.lib, m.sim = sim, sim
	default:
		return nil, fmt.Errorf("nvml: unknown GPU profile %q (want auto, none, real, h200 or dgxa100)", profile)
	}
	if m.sim != nil {
		if ret := m.sim.Init(); ret != gonvml.SUCCESS {
			return nil, fmt.Errorf("nvml: starting simulated profile %s: %s", profile, ret.Error())
		}
	}
	if m.lib != nil {
		// Learn the GPUs now, so ECC baselines predate anything the health loop sees.
		if _, err := m.Inventory(); err != nil {
			m.lib.Shutdown()
			return nil, err
		}
	}
	return m, nil
}

// Profile is the profile in use: the one asked for, except that "auto" becomes "real" or
// "none" depending on whether NVML loaded.
func (m *Manager) Profile() string { return m.profile }

// Simulator returns the simulated NVML behind an "h200" or "dgxa100" manager, for injecting
// faults; nil for "real" and "none".
func (m *Manager) Simulator() *Simulator { return m.sim }

// Close stops Run and shuts NVML down. Calling it again does nothing.
func (m *Manager) Close() error {
	m.mu.Lock()
	if m.closed {
		m.mu.Unlock()
		return nil
	}
	m.closed = true
	m.mu.Unlock()
	m.stopLife()
	m.runs.Wait() // the event loop must not wait on an event set after NVML is gone
	if m.lib == nil {
		return nil
	}
	if ret := m.lib.Shutdown(); ret != gonvml.SUCCESS {
		return fmt.Errorf("nvml: shutting NVML down: %s", ret.Error())
	}
	return nil
}

// Inventory reads every GPU afresh, runs the polling health checks on each, and reports
// them with their health folded in. A node without GPUs gives an empty list, not an error.
func (m *Manager) Inventory() (Inventory, error) {
	m.mu.Lock()
	closed := m.closed
	m.mu.Unlock()
	if closed {
		return Inventory{}, ErrClosed
	}
	inv := Inventory{GPUs: []GPU{}}
	if m.lib == nil {
		return inv, nil
	}
	if v, ret := m.lib.SystemGetDriverVersion(); ret == gonvml.SUCCESS {
		inv.DriverVersion = v
	}
	if v, ret := m.lib.SystemGetCudaDriverVersion(); ret == gonvml.SUCCESS {
		inv.CUDADriverVersion = fmt.Sprintf("%d.%d", v/1000, v%1000/10)
	}
	count, ret := m.lib.DeviceGetCount()
	if ret != gonvml.SUCCESS {
		return Inventory{}, fmt.Errorf("nvml: counting GPUs: %s", ret.Error())
	}
	devs := make([]gonvml.Device, 0, count)
	for i := range count {
		g, dev, ok := m.readGPU(i)
		if !ok {
			continue
		}
		inv.GPUs = append(inv.GPUs, g)
		devs = append(devs, dev)
	}
	m.fillNVLinkGroups(inv.GPUs, devs)

	for i := range inv.GPUs {
		m.checkGPU(inv.GPUs[i].UUID)
	}
	now := m.opts.Now()
	m.mu.Lock()
	defer m.mu.Unlock()
	for i := range inv.GPUs {
		g := &inv.GPUs[i]
		g.Healthy, g.UnhealthyReason = m.book.verdict(g.UUID, now)
		if devs[i] != nil {
			m.known[g.Index] = *g
			m.handles[devs[i]] = g.UUID
		}
	}
	return inv, nil
}

// readGPU describes the GPU at index. When NVML cannot name it, the last description of that
// index stands in (marked failed) and dev is nil; ok is false when there is none.
func (m *Manager) readGPU(index int) (g GPU, dev gonvml.Device, ok bool) {
	dev, ret := m.lib.DeviceGetHandleByIndex(index)
	var uuid string
	if ret == gonvml.SUCCESS {
		uuid, ret = dev.GetUUID()
	}
	if ret != gonvml.SUCCESS {
		m.mu.Lock()
		prev, had := m.known[index]
		m.mu.Unlock()
		if !had {
			m.log.Warn("NVML cannot read a GPU it counts; leaving it out", "gpu_index", index, "ret", ret.Error())
			return GPU{}, nil, false
		}
		m.failGPU(prev.UUID, "NVML cannot read the GPU: "+ret.Error())
		return prev, nil, true
	}
	g = m.describe(index, uuid, dev)
	m.mu.Lock()
	prev, had := m.known[index]
	m.mu.Unlock()
	if had && prev.UUID == uuid {
		// Properties that cannot change keep their last value when a read fails, so a GPU in
		// trouble is still recognisable in the inventory.
		g.Name = cmpOr(g.Name, prev.Name)
		g.Architecture = cmpOr(g.Architecture, prev.Architecture)
		g.ComputeCapability = cmpOr(g.ComputeCapability, prev.ComputeCapability)
		g.PCIBusID = cmpOr(g.PCIBusID, prev.PCIBusID)
		g.MemoryTotalBytes = cmpOr(g.MemoryTotalBytes, prev.MemoryTotalBytes)
		if g.MIGProfiles == nil {
			g.MIGProfiles = prev.MIGProfiles
		}
	}
	return g, dev, true
}

func cmpOr[T comparable](v, fallback T) T {
	var zero T
	if v == zero {
		return fallback
	}
	return v
}

// describe reads what NVML will say about dev. A failed read leaves its field at the zero
// value (or -1): one unsupported query must not hide the GPU.
func (m *Manager) describe(index int, uuid string, dev gonvml.Device) GPU {
	g := GPU{UUID: uuid, Index: index, NUMANode: -1, NVLinkGroup: -1}
	if v, ret := dev.GetName(); ret == gonvml.SUCCESS {
		g.Name = v
	}
	if v, ret := dev.GetArchitecture(); ret == gonvml.SUCCESS {
		g.Architecture = architectureName(v)
	}
	if major, minor, ret := dev.GetCudaComputeCapability(); ret == gonvml.SUCCESS {
		g.ComputeCapability = fmt.Sprintf("%d.%d", major, minor)
	}
	if v, ret := dev.GetMemoryInfo(); ret == gonvml.SUCCESS {
		g.MemoryTotalBytes, g.MemoryUsedBytes = v.Total, v.Used
	}
	if v, ret := dev.GetPciInfo(); ret == gonvml.SUCCESS {
		g.PCIBusID = pciBusID(v)
	}
	g.NUMANode = m.numaNode(dev, g.PCIBusID)
	if v, ret := dev.GetTemperature(gonvml.TEMPERATURE_GPU); ret == gonvml.SUCCESS {
		g.TemperatureC = int(v)
	}
	if v, ret := dev.GetUtilizationRates(); ret == gonvml.SUCCESS {
		g.UtilizationPercent = int(v.Gpu)
	}
	if v, ret := dev.GetPowerUsage(); ret == gonvml.SUCCESS {
		g.PowerUsageMilliwatts = v
	}
	if v, ret := dev.GetEnforcedPowerLimit(); ret == gonvml.SUCCESS {
		g.PowerLimitMilliwatts = v
	}
	// GPUs without MIG answer NOT_SUPPORTED here; they offer no profiles either.
	if current, _, ret := dev.GetMigMode(); ret == gonvml.SUCCESS {
		g.MIGMode = current == gonvml.DEVICE_MIG_ENABLE
		profiles := readMIGProfiles(dev, g.MemoryTotalBytes)
		for _, p := range profiles {
			g.MIGProfiles = append(g.MIGProfiles, p.MIGProfile)
		}
		if g.MIGMode {
			g.MIGInstances = m.readMIGInstances(dev, uuid, profiles)
		}
	}
	return g
}

// numaNode prefers the kernel's view for real GPUs: NVML's own NUMA query only answers on
// systems where GPU memory is itself a NUMA node, and answers NOT_SUPPORTED elsewhere.
func (m *Manager) numaNode(dev gonvml.Device, busID string) int {
	if m.real {
		if n, ok := sysfsNUMANode(busID); ok {
			return n
		}
		// Older drivers lack the symbol; calling it anyway would kill the process.
		if m.lib.Extensions().LookupSymbol("nvmlDeviceGetNumaNodeId") != nil {
			return -1
		}
	}
	if n, ret := dev.GetNumaNodeId(); ret == gonvml.SUCCESS && n >= 0 {
		return n
	}
	return -1
}

func sysfsNUMANode(busID string) (int, bool) {
	if busID == "" {
		return 0, false
	}
	b, err := os.ReadFile(filepath.Join("/sys/bus/pci/devices", busID, "numa_node"))
	if err != nil {
		return 0, false
	}
	n, err := strconv.Atoi(strings.TrimSpace(string(b)))
	if err != nil || n < 0 {
		return 0, false
	}
	return n, true
}

// pciBusID gives the bus ID in the kernel's form ("0000:00:06.0"); NVML pads the domain to
// eight digits ("00000000:00:06.0").
func pciBusID(p gonvml.PciInfo) string {
	var b strings.Builder
	for _, c := range p.BusId {
		if c == 0 {
			break
		}
		b.WriteByte(byte(c))
	}
	id := strings.ToLower(b.String())
	if domain, rest, ok := strings.Cut(id, ":"); ok && len(domain) == 8 && strings.HasPrefix(domain, "0000") {
		id = domain[4:] + ":" + rest
	}
	return id
}

func architectureName(a gonvml.DeviceArchitecture) string {
	switch a {
	case gonvml.DEVICE_ARCH_KEPLER:
		return "Kepler"
	case gonvml.DEVICE_ARCH_MAXWELL:
		return "Maxwell"
	case gonvml.DEVICE_ARCH_PASCAL:
		return "Pascal"
	case gonvml.DEVICE_ARCH_VOLTA:
		return "Volta"
	case gonvml.DEVICE_ARCH_TURING:
		return "Turing"
	case gonvml.DEVICE_ARCH_AMPERE:
		return "Ampere"
	case gonvml.DEVICE_ARCH_ADA:
		return "Ada"
	case gonvml.DEVICE_ARCH_HOPPER:
		return "Hopper"
	case gonvml.DEVICE_ARCH_BLACKWELL:
		return "Blackwell"
	case gonvml.DEVICE_ARCH_RUBIN:
		return "Rubin"
	default:
		return ""
	}
}

// migProfile is a MIGProfile with the slice count, which identifies a MIG device's profile
// when NVML will not tell.
type migProfile struct {
	MIGProfile
	slices uint32
}

func readMIGProfiles(dev gonvml.Device, totalBytes uint64) []migProfile {
	var out []migProfile
	for p := range gonvml.GPU_INSTANCE_PROFILE_COUNT {
		info, ret := dev.GetGpuInstanceProfileInfo(p)
		if ret != gonvml.SUCCESS || info.InstanceCount == 0 {
			continue
		}
		out = append(out, migProfile{
			MIGProfile: MIGProfile{
				Name:            migProfileName(p, info.SliceCount, info.MemorySizeMB, totalBytes),
				ID:              int(info.Id),
				InstanceCount:   int(info.InstanceCount),
				MemoryMiB:       info.MemorySizeMB,
				Multiprocessors: int(info.MultiprocessorCount),
			},
			slices: info.SliceCount,
		})
	}
	return out
}

func (m *Manager) readMIGInstances(parent gonvml.Device, parentUUID string, profiles []migProfile) []MIGInstance {
	slots, ret := parent.GetMaxMigDeviceCount()
	if ret != gonvml.SUCCESS {
		return nil
	}
	var out []MIGInstance
	for i := range slots {
		dev, ret := parent.GetMigDeviceHandleByIndex(i)
		if ret != gonvml.SUCCESS { // slots without a MIG device answer NOT_FOUND
			continue
		}
		uuid, ret := dev.GetUUID()
		if ret != gonvml.SUCCESS {
			m.log.Debug("cannot read a MIG device's UUID", "gpu_uuid", parentUUID, "ret", ret.Error())
			continue
		}
		mi := MIGInstance{UUID: uuid, ParentUUID: parentUUID, Profile: migDeviceProfile(parent, dev, profiles)}
		if mem, ret := dev.GetMemoryInfo(); ret == gonvml.SUCCESS {
			mi.MemoryBytes = mem.Total
		}
		out = append(out, mi)
	}
	return out
}

// migDeviceProfile names the GPU-instance profile a MIG device was made from: exactly, from
// its GPU instance, when NVML allows (that needs root); otherwise by matching the device's
// slice count and memory against the profiles, which cannot tell a "+me" variant from its
// base profile and so picks the base one.
func migDeviceProfile(parent, dev gonvml.Device, profiles []migProfile) string {
	if id, ret := dev.GetGpuInstanceId(); ret == gonvml.SUCCESS {
		if gi, ret := parent.GetGpuInstanceById(id); ret == gonvml.SUCCESS {
			if info, ret := gi.GetInfo(); ret == gonvml.SUCCESS {
				for _, p := range profiles {
					if p.ID == int(info.ProfileId) {
						return p.Name
					}
				}
			}
		}
	}
	attrs, ret := dev.GetAttributes()
	if ret != gonvml.SUCCESS {
		return ""
	}
	best, bestDiff := "", uint64(0)
	for _, p := range profiles {
		if p.slices != attrs.GpuInstanceSliceCount {
			continue
		}
		diff := max(p.MemoryMiB, attrs.MemorySizeMB) - min(p.MemoryMiB, attrs.MemorySizeMB)
		if best == "" || diff < bestDiff {
			best, bestDiff = p.Name, diff
		}
	}
	return best
}

// fillNVLinkGroups sets NVLinkGroup on gpus (devs[i] is gpus[i]'s handle, nil when it could
// not be read). Topology only changes with the set of GPUs, so it is worked out once per set.
func (m *Manager) fillNVLinkGroups(gpus []GPU, devs []gonvml.Device) {
	uuids := make([]string, 0, len(gpus))
	for i, g := range gpus {
		if devs[i] != nil {
			uuids = append(uuids, g.UUID)
		}
	}
	key := strings.Join(uuids, ",")
	m.mu.Lock()
	groups, cached := m.topology, m.topoKey == key && m.topology != nil
	m.mu.Unlock()
	if !cached {
		groups = nvlinkGroups(gpus, devs)
		m.mu.Lock()
		m.topoKey, m.topology = key, groups
		m.mu.Unlock()
	}
	for i := range gpus {
		if devs[i] == nil {
			continue // keeps its last known group
		}
		if n, ok := groups[gpus[i].UUID]; ok {
			gpus[i].NVLinkGroup = n
		} else {
			gpus[i].NVLinkGroup = -1
		}
	}
}

// nvlinkGroups joins GPUs that NVML says can talk peer-to-peer over NVLink (directly or
// through NVSwitch) and numbers each set of two or more by its lowest index.
func nvlinkGroups(gpus []GPU, devs []gonvml.Device) map[string]int {
	n := len(gpus)
	linked := make([]bool, n)
	for i, d := range devs {
		linked[i] = d != nil && hasNVLink(d)
	}
	root := make([]int, n)
	for i := range root {
		root[i] = i
	}
	var find func(int) int
	find = func(i int) int {
		if root[i] != i {
			root[i] = find(root[i])
		}
		return root[i]
	}
	for i := range n {
		for j := i + 1; j < n; j++ {
			if !linked[i] || !linked[j] {
				continue
			}
			st, ret := devs[i].GetP2PStatus(devs[j], gonvml.P2P_CAPS_INDEX_NVLINK)
			if ret == gonvml.SUCCESS && st == gonvml.P2P_STATUS_OK {
				root[find(j)] = find(i)
			}
		}
	}
	size := map[int]int{}
	for i := range n {
		size[find(i)]++
	}
	order := make([]int, n)
	for i := range order {
		order[i] = i
	}
	slices.SortFunc(order, func(a, b int) int { return gpus[a].Index - gpus[b].Index })
	number := map[int]int{}
	out := map[string]int{}
	for _, i := range order {
		r := find(i)
		if size[r] < 2 {
			continue
		}
		if _, ok := number[r]; !ok {
			number[r] = len(number)
		}
		out[gpus[i].UUID] = number[r]
	}
	return out
}

func hasNVLink(d gonvml.Device) bool {
	for link := range gonvml.NVLINK_MAX_LINKS {
		st, ret := d.GetNvLinkState(link)
		if ret != gonvml.SUCCESS {
			return false // NOT_SUPPORTED: no NVLink; INVALID_ARGUMENT: past the last link
		}
		if st == gonvml.FEATURE_ENABLED {
			return true
		}
	}
	return false
}
