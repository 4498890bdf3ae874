//go:build cgo

package nvml

import (
	"crypto/sha256"
	"fmt"
	"sync"
	"time"

	gonvml "github.com/NVIDIA/go-nvml/pkg/nvml"
	"github.com/NVIDIA/go-nvml/pkg/nvml/mock"
)

// Simulator is a simulated NVML: it answers go-nvml's Interface for a fixed set of GPUs and
// lets tests break them. A Manager opened on "h200" or "dgxa100" hands it out through
// Manager.Simulator. Calls the simulation does not cover fall through to go-nvml's mocks,
// which panic naming the method, so a gap shows up at once in a test.
type Simulator struct {
	gonvml.Interface

	driverVersion  string
	nvmlVersion    string
	cudaVersion    int
	eventSetCreate gonvml.Return
	devices        []*simDevice

	mu   sync.Mutex // guards the mutable state of the simulator and its devices
	sets map[*simEventSet]struct{}
}

var _ gonvml.Interface = (*Simulator)(nil)

func newSimulator(base gonvml.Interface) *Simulator {
	return &Simulator{Interface: base, sets: map[*simEventSet]struct{}{}}
}

// UUIDs lists the simulated GPUs' UUIDs in index order.
func (s *Simulator) UUIDs() []string {
	out := make([]string, len(s.devices))
	for i, d := range s.devices {
		out[i] = d.uuid
	}
	return out
}

func (s *Simulator) device(uuid string) (*simDevice, error) {
	for _, d := range s.devices {
		if d.uuid == uuid {
			return d, nil
		}
	}
	return nil, fmt.Errorf("%w: %s", ErrUnknownGPU, uuid)
}

// InjectXID raises an XID critical-error event on the GPU, as the driver does on a GPU
// fault (79: fell off the bus; 13: an application's fault). It fails with an error if no
// event set is registered for XID events on that GPU, because the event would be lost.
func (s *Simulator) InjectXID(uuid string, xid uint64) error {
	d, err := s.device(uuid)
	if err != nil {
		return err
	}
	if !s.emit(d, gonvml.EventTypeXidCriticalError, xid) {
		return fmt.Errorf("%w: %s", ErrNotListening, uuid)
	}
	return nil
}

// InjectECC records an uncorrected ECC error on the GPU: its volatile uncorrected count goes
// up (what polling sees) and a double-bit ECC event goes to any event set listening.
func (s *Simulator) InjectECC(uuid string) error {
	d, err := s.device(uuid)
	if err != nil {
		return err
	}
	s.mu.Lock()
	d.ecc++
	s.mu.Unlock()
	s.emit(d, gonvml.EventTypeDoubleBitEccError, 0)
	return nil
}

// LoseGPU makes the GPU unreachable, as when it falls off the bus: DeviceGetHandleByUUID
// answers ERROR_GPU_IS_LOST, and so do its live readings (memory, temperature, power, ECC).
func (s *Simulator) LoseGPU(uuid string) error {
	return s.setLost(uuid, true)
}

// RecoverGPU makes a lost GPU answer again, as after a reset.
func (s *Simulator) RecoverGPU(uuid string) error {
	return s.setLost(uuid, false)
}

func (s *Simulator) setLost(uuid string, lost bool) error {
	d, err := s.device(uuid)
	if err != nil {
		return err
	}
	s.mu.Lock()
	d.lost = lost
	s.mu.Unlock()
	return nil
}

// SetMIGMode turns MIG on or off on the GPU. Turning it off destroys its MIG instances.
func (s *Simulator) SetMIGMode(uuid string, enabled bool) error {
	d, err := s.device(uuid)
	if err != nil {
		return err
	}
	if d.rets[callMIGMode] != gonvml.SUCCESS {
		return fmt.Errorf("nvml: GPU %s does not support MIG", uuid)
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	d.migMode = gonvml.DEVICE_MIG_DISABLE
	if enabled {
		d.migMode = gonvml.DEVICE_MIG_ENABLE
	} else {
		d.migs = nil
	}
	return nil
}

// CreateMIGInstance creates a MIG device of the named profile (e.g. "1g.18gb") on a GPU in
// MIG mode and returns its UUID. It fails when the GPU has no room left for it.
func (s *Simulator) CreateMIGInstance(uuid, profile string) (string, error) {
	d, err := s.device(uuid)
	if err != nil {
		return "", err
	}
	info, ok := d.profileByName(profile)
	if !ok {
		return "", fmt.Errorf("nvml: GPU %s offers no MIG profile %q", uuid, profile)
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if d.migMode != gonvml.DEVICE_MIG_ENABLE {
		return "", fmt.Errorf("nvml: GPU %s has MIG mode off", uuid)
	}
	same, used := 0, uint32(0)
	for _, mi := range d.migs {
		if mi.profile.Id == info.Id {
			same++
		}
		used += mi.profile.SliceCount
	}
	if same >= int(info.InstanceCount) || used+info.SliceCount > d.maxSlices() {
		return "", fmt.Errorf("nvml: GPU %s has no room for another %s instance", uuid, profile)
	}
	d.nextGI++
	mi := &simMIG{
		Device:  &mock.Device{},
		parent:  d,
		uuid:    fakeUUID("MIG", fmt.Sprintf("%s/%d", d.uuid, d.nextGI)),
		giID:    d.nextGI,
		profile: info,
	}
	d.migs = append(d.migs, mi)
	return mi.uuid, nil
}

// fakeUUID makes a stable UUID-shaped name from seed, so simulated MIG devices keep their
// UUIDs from run to run.
func fakeUUID(prefix, seed string) string {
	h := sha256.Sum256([]byte(seed))
	return fmt.Sprintf("%s-%x-%x-%x-%x-%x", prefix, h[0:4], h[4:6], h[6:8], h[8:10], h[10:16])
}

// emit sends an event to every event set registered for it on d and reports whether any was.
func (s *Simulator) emit(d *simDevice, eventType, data uint64) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	sent := false
	for set := range s.sets {
		if set.masks[d]&eventType == 0 {
			continue
		}
		ev := gonvml.EventData{Device: d, EventType: eventType, EventData: data,
			GpuInstanceId: 0xFFFFFFFF, ComputeInstanceId: 0xFFFFFFFF}
		select {
		case set.events <- ev:
			sent = true
		default: // a full queue drops events, as NVML's does
		}
	}
	return sent
}

// Init implements gonvml.Interface.
func (s *Simulator) Init() gonvml.Return { return gonvml.SUCCESS }

// Shutdown implements gonvml.Interface.
func (s *Simulator) Shutdown() gonvml.Return { return gonvml.SUCCESS }

// SystemGetDriverVersion implements gonvml.Interface.
func (s *Simulator) SystemGetDriverVersion() (string, gonvml.Return) {
	return s.driverVersion, gonvml.SUCCESS
}

// SystemGetNVMLVersion implements gonvml.Interface.
func (s *Simulator) SystemGetNVMLVersion() (string, gonvml.Return) {
	return s.nvmlVersion, gonvml.SUCCESS
}

// SystemGetCudaDriverVersion implements gonvml.Interface.
func (s *Simulator) SystemGetCudaDriverVersion() (int, gonvml.Return) {
	return s.cudaVersion, gonvml.SUCCESS
}

// DeviceGetCount implements gonvml.Interface.
func (s *Simulator) DeviceGetCount() (int, gonvml.Return) { return len(s.devices), gonvml.SUCCESS }

// DeviceGetHandleByIndex implements gonvml.Interface.
func (s *Simulator) DeviceGetHandleByIndex(i int) (gonvml.Device, gonvml.Return) {
	if i < 0 || i >= len(s.devices) {
		return nil, gonvml.ERROR_INVALID_ARGUMENT
	}
	return s.devices[i], gonvml.SUCCESS
}

// DeviceGetHandleByUUID implements gonvml.Interface; a lost GPU answers ERROR_GPU_IS_LOST.
func (s *Simulator) DeviceGetHandleByUUID(uuid string) (gonvml.Device, gonvml.Return) {
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, d := range s.devices {
		if d.uuid == uuid {
			if d.lost {
				return nil, gonvml.ERROR_GPU_IS_LOST
			}
			return d, gonvml.SUCCESS
		}
		for _, mi := range d.migs {
			if mi.uuid == uuid {
				return mi, gonvml.SUCCESS
			}
		}
	}
	return nil, gonvml.ERROR_NOT_FOUND
}

// EventSetCreate implements gonvml.Interface.
func (s *Simulator) EventSetCreate() (gonvml.EventSet, gonvml.Return) {
	if s.eventSetCreate != gonvml.SUCCESS {
		return nil, s.eventSetCreate
	}
	set := &simEventSet{
		EventSet: &mock.EventSet{},
		sim:      s,
		events:   make(chan gonvml.EventData, 64),
		masks:    map[*simDevice]uint64{},
		freed:    make(chan struct{}),
	}
	s.mu.Lock()
	s.sets[set] = struct{}{}
	s.mu.Unlock()
	return set, gonvml.SUCCESS
}

// simEventSet queues events for one waiter.
type simEventSet struct {
	gonvml.EventSet
	sim      *Simulator
	events   chan gonvml.EventData
	masks    map[*simDevice]uint64 // guarded by sim.mu
	freed    chan struct{}
	freeOnce sync.Once
}

// Wait implements gonvml.EventSet: an event if one is queued within timeoutms, else
// ERROR_TIMEOUT, as the H200 probe recorded.
func (e *simEventSet) Wait(timeoutms uint32) (gonvml.EventData, gonvml.Return) {
	select {
	case ev := <-e.events:
		return ev, gonvml.SUCCESS
	default:
	}
	t := time.NewTimer(time.Duration(timeoutms) * time.Millisecond)
	defer t.Stop()
	select {
	case ev := <-e.events:
		return ev, gonvml.SUCCESS
	case <-t.C:
		return gonvml.EventData{}, gonvml.ERROR_TIMEOUT
	case <-e.freed:
		return gonvml.EventData{}, gonvml.ERROR_UNINITIALIZED
	}
}

// Free implements gonvml.EventSet.
func (e *simEventSet) Free() gonvml.Return {
	e.freeOnce.Do(func() {
		e.sim.mu.Lock()
		delete(e.sim.sets, e)
		e.sim.mu.Unlock()
		close(e.freed)
	})
	return gonvml.SUCCESS
}

// Names of simulated calls whose answer a profile can override with a failure, as the H200
// probe records for queries its GPU does not support.
const (
	callMemory    = "memory"
	callNUMANode  = "numa_node"
	callNVLink    = "nvlink_state"
	callMIGMode   = "mig_mode"
	callECC       = "ecc_uncorrected_volatile"
	callRegister  = "register_events"
	callSupported = "supported_event_types"
	callPower     = "power_usage"
	callPowerCap  = "power_limit"
	callTemp      = "temperature"
	callUtil      = "utilization"
)

// simDevice is one simulated GPU.
type simDevice struct {
	gonvml.Device
	sim *Simulator

	index            int
	uuid, name       string
	busID            string
	arch             gonvml.DeviceArchitecture
	ccMajor, ccMinor int
	memory           gonvml.Memory
	numa             int
	nvlinkGroup      int // -1: no NVLink
	nvlinks          int // links per GPU when nvlinkGroup >= 0
	profiles         []simProfile
	temperature      uint32
	utilization      uint32
	power, powerCap  uint32
	supportedEvents  uint64
	// rets holds the failures a profile records for a call; a missing entry is SUCCESS.
	rets map[string]gonvml.Return

	// Mutable, guarded by sim.mu.
	migMode int
	ecc     uint64
	lost    bool
	migs    []*simMIG
	nextGI  int
}

// simProfile is the answer to GetGpuInstanceProfileInfo for one profile index.
type simProfile struct {
	info gonvml.GpuInstanceProfileInfo
	ret  gonvml.Return
}

var _ gonvml.Device = (*simDevice)(nil)

func (d *simDevice) isLost() bool {
	d.sim.mu.Lock()
	defer d.sim.mu.Unlock()
	return d.lost
}

// live answers ret, or ERROR_GPU_IS_LOST for a lost GPU, for readings that need the GPU.
func (d *simDevice) live(call string) gonvml.Return {
	if d.isLost() {
		return gonvml.ERROR_GPU_IS_LOST
	}
	return d.rets[call]
}

func (d *simDevice) profileByName(name string) (gonvml.GpuInstanceProfileInfo, bool) {
	for i, p := range d.profiles {
		if p.ret == gonvml.SUCCESS && p.info.InstanceCount > 0 &&
			migProfileName(i, p.info.SliceCount, p.info.MemorySizeMB, d.memory.Total) == name {
			return p.info, true
		}
	}
	return gonvml.GpuInstanceProfileInfo{}, false
}

// maxSlices is the most slices the GPU can hand out: the largest profile's.
func (d *simDevice) maxSlices() uint32 {
	var n uint32
	for _, p := range d.profiles {
		if p.ret == gonvml.SUCCESS {
			n = max(n, p.info.SliceCount)
		}
	}
	return n
}

// GetUUID implements gonvml.Device.
func (d *simDevice) GetUUID() (string, gonvml.Return) { return d.uuid, gonvml.SUCCESS }

// GetName implements gonvml.Device.
func (d *simDevice) GetName() (string, gonvml.Return) { return d.name, gonvml.SUCCESS }

// GetIndex implements gonvml.Device.
func (d *simDevice) GetIndex() (int, gonvml.Return) { return d.index, gonvml.SUCCESS }

// GetArchitecture implements gonvml.Device.
func (d *simDevice) GetArchitecture() (gonvml.DeviceArchitecture, gonvml.Return) {
	return d.arch, gonvml.SUCCESS
}

// GetCudaComputeCapability implements gonvml.Device.
func (d *simDevice) GetCudaComputeCapability() (int, int, gonvml.Return) {
	return d.ccMajor, d.ccMinor, gonvml.SUCCESS
}

// GetMemoryInfo implements gonvml.Device.
func (d *simDevice) GetMemoryInfo() (gonvml.Memory, gonvml.Return) {
	if ret := d.live(callMemory); ret != gonvml.SUCCESS {
		return gonvml.Memory{}, ret
	}
	return d.memory, gonvml.SUCCESS
}

// GetPciInfo implements gonvml.Device.
func (d *simDevice) GetPciInfo() (gonvml.PciInfo, gonvml.Return) {
	var p gonvml.PciInfo
	for i := 0; i < len(d.busID) && i < len(p.BusId)-1; i++ {
		p.BusId[i] = int8(d.busID[i])
	}
	for i := 0; i < len(d.busID) && i < len(p.BusIdLegacy)-1; i++ {
		p.BusIdLegacy[i] = int8(d.busID[i])
	}
	return p, gonvml.SUCCESS
}

// GetNumaNodeId implements gonvml.Device.
func (d *simDevice) GetNumaNodeId() (int, gonvml.Return) {
	if ret := d.rets[callNUMANode]; ret != gonvml.SUCCESS {
		return 0, ret
	}
	return d.numa, gonvml.SUCCESS
}

// GetNvLinkState implements gonvml.Device.
func (d *simDevice) GetNvLinkState(link int) (gonvml.EnableState, gonvml.Return) {
	if ret := d.live(callNVLink); ret != gonvml.SUCCESS {
		return 0, ret
	}
	if d.nvlinkGroup < 0 {
		return gonvml.FEATURE_DISABLED, gonvml.ERROR_NOT_SUPPORTED
	}
	if link < 0 || link >= d.nvlinks {
		return 0, gonvml.ERROR_INVALID_ARGUMENT
	}
	return gonvml.FEATURE_ENABLED, gonvml.SUCCESS
}

// GetP2PStatus implements gonvml.Device; GPUs in one simulated NVLink group reach each other.
func (d *simDevice) GetP2PStatus(other gonvml.Device, index gonvml.GpuP2PCapsIndex) (gonvml.GpuP2PStatus, gonvml.Return) {
	if d.isLost() {
		return gonvml.P2P_STATUS_UNKNOWN, gonvml.ERROR_GPU_IS_LOST
	}
	o, ok := other.(*simDevice)
	if !ok || o.sim != d.sim {
		return gonvml.P2P_STATUS_UNKNOWN, gonvml.ERROR_INVALID_ARGUMENT
	}
	if index == gonvml.P2P_CAPS_INDEX_NVLINK && d.nvlinkGroup >= 0 && d.nvlinkGroup == o.nvlinkGroup {
		return gonvml.P2P_STATUS_OK, gonvml.SUCCESS
	}
	return gonvml.P2P_STATUS_NOT_SUPPORTED, gonvml.SUCCESS
}

// GetTemperature implements gonvml.Device.
func (d *simDevice) GetTemperature(gonvml.TemperatureSensors) (uint32, gonvml.Return) {
	if ret := d.live(callTemp); ret != gonvml.SUCCESS {
		return 0, ret
	}
	return d.temperature, gonvml.SUCCESS
}

// GetUtilizationRates implements gonvml.Device.
func (d *simDevice) GetUtilizationRates() (gonvml.Utilization, gonvml.Return) {
	if ret := d.live(callUtil); ret != gonvml.SUCCESS {
		return gonvml.Utilization{}, ret
	}
	return gonvml.Utilization{Gpu: d.utilization}, gonvml.SUCCESS
}

// GetPowerUsage implements gonvml.Device.
func (d *simDevice) GetPowerUsage() (uint32, gonvml.Return) {
	if ret := d.live(callPower); ret != gonvml.SUCCESS {
		return 0, ret
	}
	return d.power, gonvml.SUCCESS
}

// GetEnforcedPowerLimit implements gonvml.Device.
func (d *simDevice) GetEnforcedPowerLimit() (uint32, gonvml.Return) {
	if ret := d.live(callPowerCap); ret != gonvml.SUCCESS {
		return 0, ret
	}
	return d.powerCap, gonvml.SUCCESS
}

// GetTotalEccErrors implements gonvml.Device; only the volatile uncorrected count is kept.
func (d *simDevice) GetTotalEccErrors(t gonvml.MemoryErrorType, c gonvml.EccCounterType) (uint64, gonvml.Return) {
	if ret := d.live(callECC); ret != gonvml.SUCCESS {
		return 0, ret
	}
	if t != gonvml.MEMORY_ERROR_TYPE_UNCORRECTED || c != gonvml.VOLATILE_ECC {
		return 0, gonvml.ERROR_NOT_SUPPORTED
	}
	d.sim.mu.Lock()
	defer d.sim.mu.Unlock()
	return d.ecc, gonvml.SUCCESS
}

// GetSupportedEventTypes implements gonvml.Device.
func (d *simDevice) GetSupportedEventTypes() (uint64, gonvml.Return) {
	if ret := d.rets[callSupported]; ret != gonvml.SUCCESS {
		return 0, ret
	}
	return d.supportedEvents, gonvml.SUCCESS
}

// RegisterEvents implements gonvml.Device. Like NVML, it refuses a mask with any event type
// the GPU does not support.
func (d *simDevice) RegisterEvents(mask uint64, set gonvml.EventSet) gonvml.Return {
	if ret := d.live(callRegister); ret != gonvml.SUCCESS {
		return ret
	}
	es, ok := set.(*simEventSet)
	if !ok || es.sim != d.sim {
		return gonvml.ERROR_INVALID_ARGUMENT
	}
	if mask&^d.supportedEvents != 0 {
		return gonvml.ERROR_NOT_SUPPORTED
	}
	d.sim.mu.Lock()
	defer d.sim.mu.Unlock()
	es.masks[d] |= mask
	return gonvml.SUCCESS
}

// GetMigMode implements gonvml.Device.
func (d *simDevice) GetMigMode() (int, int, gonvml.Return) {
	if ret := d.rets[callMIGMode]; ret != gonvml.SUCCESS {
		return 0, 0, ret
	}
	d.sim.mu.Lock()
	defer d.sim.mu.Unlock()
	return d.migMode, d.migMode, gonvml.SUCCESS
}

// GetGpuInstanceProfileInfo implements gonvml.Device.
func (d *simDevice) GetGpuInstanceProfileInfo(profile int) (gonvml.GpuInstanceProfileInfo, gonvml.Return) {
	if profile < 0 || profile >= len(d.profiles) {
		return gonvml.GpuInstanceProfileInfo{}, gonvml.ERROR_INVALID_ARGUMENT
	}
	p := d.profiles[profile]
	return p.info, p.ret
}

// GetMaxMigDeviceCount implements gonvml.Device.
func (d *simDevice) GetMaxMigDeviceCount() (int, gonvml.Return) {
	d.sim.mu.Lock()
	defer d.sim.mu.Unlock()
	if d.migMode != gonvml.DEVICE_MIG_ENABLE {
		return 0, gonvml.SUCCESS
	}
	return int(d.maxSlices()), gonvml.SUCCESS
}

// GetMigDeviceHandleByIndex implements gonvml.Device.
func (d *simDevice) GetMigDeviceHandleByIndex(i int) (gonvml.Device, gonvml.Return) {
	d.sim.mu.Lock()
	defer d.sim.mu.Unlock()
	switch {
	case i >= 0 && i < len(d.migs):
		return d.migs[i], gonvml.SUCCESS
	case i >= 0 && i < int(d.maxSlices()):
		return nil, gonvml.ERROR_NOT_FOUND
	default:
		return nil, gonvml.ERROR_INVALID_ARGUMENT
	}
}

// GetGpuInstanceById implements gonvml.Device.
func (d *simDevice) GetGpuInstanceById(id int) (gonvml.GpuInstance, gonvml.Return) {
	d.sim.mu.Lock()
	defer d.sim.mu.Unlock()
	for _, mi := range d.migs {
		if mi.giID == id {
			return &simGPUInstance{GpuInstance: &mock.GpuInstance{},
				info: gonvml.GpuInstanceInfo{Device: d, Id: uint32(id), ProfileId: mi.profile.Id}}, gonvml.SUCCESS
		}
	}
	return nil, gonvml.ERROR_NOT_FOUND
}

// IsMigDeviceHandle implements gonvml.Device.
func (d *simDevice) IsMigDeviceHandle() (bool, gonvml.Return) { return false, gonvml.SUCCESS }

// GetDeviceHandleFromMigDeviceHandle implements gonvml.Device.
func (d *simDevice) GetDeviceHandleFromMigDeviceHandle() (gonvml.Device, gonvml.Return) {
	return nil, gonvml.ERROR_INVALID_ARGUMENT
}

// simGPUInstance answers GetInfo for a simulated GPU instance.
type simGPUInstance struct {
	gonvml.GpuInstance
	info gonvml.GpuInstanceInfo
}

// GetInfo implements gonvml.GpuInstance.
func (g *simGPUInstance) GetInfo() (gonvml.GpuInstanceInfo, gonvml.Return) {
	return g.info, gonvml.SUCCESS
}

// simMIG is a simulated MIG device: one GPU instance with one compute instance spanning it.
type simMIG struct {
	gonvml.Device
	parent  *simDevice
	uuid    string
	giID    int
	profile gonvml.GpuInstanceProfileInfo
}

// GetUUID implements gonvml.Device.
func (m *simMIG) GetUUID() (string, gonvml.Return) { return m.uuid, gonvml.SUCCESS }

// GetMemoryInfo implements gonvml.Device.
func (m *simMIG) GetMemoryInfo() (gonvml.Memory, gonvml.Return) {
	total := m.profile.MemorySizeMB << 20
	return gonvml.Memory{Total: total, Free: total}, gonvml.SUCCESS
}

// GetGpuInstanceId implements gonvml.Device.
func (m *simMIG) GetGpuInstanceId() (int, gonvml.Return) { return m.giID, gonvml.SUCCESS }

// GetAttributes implements gonvml.Device.
func (m *simMIG) GetAttributes() (gonvml.DeviceAttributes, gonvml.Return) {
	return gonvml.DeviceAttributes{
		MultiprocessorCount:       m.profile.MultiprocessorCount,
		GpuInstanceSliceCount:     m.profile.SliceCount,
		ComputeInstanceSliceCount: m.profile.SliceCount,
		MemorySizeMB:              m.profile.MemorySizeMB,
	}, gonvml.SUCCESS
}

// IsMigDeviceHandle implements gonvml.Device.
func (m *simMIG) IsMigDeviceHandle() (bool, gonvml.Return) { return true, gonvml.SUCCESS }

// GetDeviceHandleFromMigDeviceHandle implements gonvml.Device.
func (m *simMIG) GetDeviceHandleFromMigDeviceHandle() (gonvml.Device, gonvml.Return) {
	return m.parent, gonvml.SUCCESS
}

// simProfilesFrom lays out a profile table by index: indexes not in byIndex answer
// NOT_SUPPORTED, as NVML does for profiles a GPU lacks.
func simProfilesFrom(byIndex map[int]gonvml.GpuInstanceProfileInfo) []simProfile {
	out := make([]simProfile, gonvml.GPU_INSTANCE_PROFILE_COUNT)
	for i := range out {
		if info, ok := byIndex[i]; ok {
			out[i] = simProfile{info: info}
		} else {
			out[i] = simProfile{ret: gonvml.ERROR_NOT_SUPPORTED}
		}
	}
	return out
}
