//go:build cgo

package nvml

import (
	"context"
	"fmt"
	"slices"
	"sync"
	"time"

	gonvml "github.com/NVIDIA/go-nvml/pkg/nvml"
)

// watchedEvents are the NVML events the health loop asks for. Single-bit ECC errors were
// corrected by the hardware; they are only logged, but asking for them costs nothing.
const watchedEvents = gonvml.EventTypeXidCriticalError | gonvml.EventTypeDoubleBitEccError | gonvml.EventTypeSingleBitEccError

// applicationXIDs are XIDs caused by what ran on the GPU (a faulting kernel, a bad memory
// access, a preempted context), not by the GPU; the next replica may well run fine.
var applicationXIDs = map[uint64]bool{13: true, 31: true, 43: true, 45: true, 68: true, 109: true}

// xidMeaning gives a short gloss for the XIDs an operator is most likely to meet.
var xidMeaning = map[uint64]string{
	13:  "graphics engine exception",
	31:  "GPU memory page fault",
	43:  "GPU stopped processing",
	45:  "preemptive cleanup after an application error",
	48:  "double-bit ECC error",
	63:  "ECC page retirement or row remapping recorded",
	64:  "ECC page retirement or row remapping failed",
	68:  "video processor exception",
	74:  "NVLink error",
	79:  "GPU has fallen off the bus",
	92:  "high single-bit ECC error rate",
	94:  "contained ECC error",
	95:  "uncontained ECC error",
	109: "context switch timeout",
	119: "GSP RPC timeout",
	120: "GSP error",
}

func xidReason(xid uint64) string {
	if m, ok := xidMeaning[xid]; ok {
		return fmt.Sprintf("XID %d (%s)", xid, m)
	}
	return fmt.Sprintf("XID %d", xid)
}

// Run watches GPU health until ctx is done or the Manager is closed: it waits on an NVML
// event set for XID and ECC events and, every PollInterval, checks that each GPU still
// answers and that its uncorrected ECC count has not risen. It returns nil when it stops, and
// ErrClosed if the Manager was already closed. Without event support it keeps polling.
func (m *Manager) Run(ctx context.Context) error {
	m.mu.Lock()
	if m.closed {
		m.mu.Unlock()
		return ErrClosed
	}
	m.runs.Add(1)
	m.mu.Unlock()
	defer m.runs.Done()
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	defer context.AfterFunc(m.life, cancel)()

	if m.lib == nil {
		<-ctx.Done()
		return nil
	}
	var wg sync.WaitGroup
	wg.Go(func() { m.watchEvents(ctx) })
	m.poll(ctx)
	wg.Wait()
	return nil
}

func (m *Manager) poll(ctx context.Context) {
	t := time.NewTicker(m.opts.PollInterval)
	defer t.Stop()
	for {
		for _, uuid := range m.knownUUIDs() {
			m.checkGPU(uuid)
		}
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
	}
}

func (m *Manager) knownUUIDs() []string {
	m.mu.Lock()
	defer m.mu.Unlock()
	out := make([]string, 0, len(m.known))
	for _, g := range m.known {
		out = append(out, g.UUID)
	}
	slices.Sort(out)
	return out
}

// checkGPU runs the polling checks on one GPU and records the outcome.
func (m *Manager) checkGPU(uuid string) {
	if reason := m.probe(uuid); reason != "" {
		m.failGPU(uuid, reason)
		return
	}
	now := m.opts.Now()
	m.mu.Lock()
	recovered := m.book.pass(uuid, now)
	m.mu.Unlock()
	if recovered {
		m.log.Info("GPU healthy again after probation", "gpu_uuid", uuid, "probation", m.opts.Probation.String())
	}
}

// probe returns why uuid fails the polling checks, or "" if it passes them.
func (m *Manager) probe(uuid string) string {
	dev, ret := m.lib.DeviceGetHandleByUUID(uuid)
	switch ret {
	case gonvml.SUCCESS:
	case gonvml.ERROR_GPU_IS_LOST:
		return "GPU lost: NVML answers ERROR_GPU_IS_LOST; the GPU needs a reset or the host a reboot"
	default:
		return "NVML cannot find the GPU by UUID: " + ret.Error()
	}
	count, ret := dev.GetTotalEccErrors(gonvml.MEMORY_ERROR_TYPE_UNCORRECTED, gonvml.VOLATILE_ECC)
	switch ret {
	case gonvml.SUCCESS:
	case gonvml.ERROR_GPU_IS_LOST:
		return "GPU lost: NVML answers ERROR_GPU_IS_LOST; the GPU needs a reset or the host a reboot"
	default:
		return "" // ECC off or not reported on this GPU
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	before, seen := m.ecc[uuid]
	m.ecc[uuid] = count
	if seen && count > before {
		return fmt.Sprintf("uncorrected ECC errors rose from %d to %d since the last check", before, count)
	}
	return ""
}

// failGPU records a failed check and logs when a healthy GPU turns unhealthy.
func (m *Manager) failGPU(uuid, reason string) {
	m.mu.Lock()
	wasHealthy := m.book.fail(uuid, reason)
	m.mu.Unlock()
	if wasHealthy {
		m.log.Warn("GPU unhealthy", "gpu_uuid", uuid, "reason", reason, "probation", m.opts.Probation.String())
	}
}

// watchEvents waits on an NVML event set until ctx is done. Waits time out at least once a
// second so that cancellation is noticed.
func (m *Manager) watchEvents(ctx context.Context) {
	set, ret := m.lib.EventSetCreate()
	if ret != gonvml.SUCCESS {
		m.log.Warn("NVML event sets are unavailable; relying on polling", "ret", ret.Error())
		return
	}
	defer set.Free()
	if m.registerEvents(set) == 0 {
		m.log.Warn("no GPU accepted event registration; relying on polling")
		return
	}
	timeout := max(min(time.Second, m.opts.PollInterval), time.Millisecond)
	var lastErr gonvml.Return
	for ctx.Err() == nil {
		ev, ret := set.Wait(uint32(timeout.Milliseconds()))
		switch ret {
		case gonvml.SUCCESS:
			lastErr = gonvml.SUCCESS
			m.handleEvent(ev)
		case gonvml.ERROR_TIMEOUT:
			lastErr = gonvml.SUCCESS
		default:
			// Wait fails at once, for instance, while a GPU in the set is lost. Polling finds
			// out which GPU; here we only avoid spinning and repeating the same warning.
			if ret != lastErr {
				m.log.Warn("waiting for NVML events failed", "ret", ret.Error())
				lastErr = ret
			}
			select {
			case <-ctx.Done():
			case <-time.After(timeout):
			}
		}
	}
}

// registerEvents asks for watchedEvents on every GPU that supports any of them and returns
// how many GPUs accepted.
func (m *Manager) registerEvents(set gonvml.EventSet) int {
	count, ret := m.lib.DeviceGetCount()
	if ret != gonvml.SUCCESS {
		return 0
	}
	registered := 0
	for i := range count {
		dev, ret := m.lib.DeviceGetHandleByIndex(i)
		if ret != gonvml.SUCCESS {
			continue
		}
		supported, ret := dev.GetSupportedEventTypes()
		if ret != gonvml.SUCCESS {
			m.log.Debug("cannot read supported event types", "gpu_index", i, "ret", ret.Error())
			continue
		}
		mask := watchedEvents & supported
		if mask == 0 {
			continue
		}
		if ret := dev.RegisterEvents(mask, set); ret != gonvml.SUCCESS {
			m.log.Warn("cannot register for GPU events; relying on polling for this GPU", "gpu_index", i, "ret", ret.Error())
			continue
		}
		registered++
	}
	return registered
}

// handleEvent turns one NVML event into health. On a GPU in MIG mode the event may concern
// one MIG instance, but the whole GPU is marked: instances share the GPU's memory and bus,
// and allocation only hands out instances of healthy GPUs.
func (m *Manager) handleEvent(ev gonvml.EventData) {
	uuids := m.eventGPUs(ev)
	switch {
	case ev.EventType&gonvml.EventTypeXidCriticalError != 0:
		xid := ev.EventData
		if applicationXIDs[xid] {
			m.log.Info("application XID; the GPU stays healthy", "gpu_uuid", uuids, "xid", xid)
			return
		}
		for _, u := range uuids {
			m.failGPU(u, xidReason(xid))
		}
	case ev.EventType&gonvml.EventTypeDoubleBitEccError != 0:
		for _, u := range uuids {
			m.failGPU(u, "uncorrected (double-bit) ECC error")
		}
	case ev.EventType&gonvml.EventTypeSingleBitEccError != 0:
		m.log.Debug("corrected single-bit ECC error", "gpu_uuid", uuids)
	}
}

// eventGPUs names the GPUs an event is about: its device's, or every known GPU when NVML
// sends the event without a device.
func (m *Manager) eventGPUs(ev gonvml.EventData) []string {
	if ev.Device == nil {
		return m.knownUUIDs()
	}
	m.mu.Lock()
	uuid, ok := m.handles[ev.Device]
	m.mu.Unlock()
	if ok {
		return []string{uuid}
	}
	if uuid, ret := ev.Device.GetUUID(); ret == gonvml.SUCCESS {
		if parent, ret := ev.Device.GetDeviceHandleFromMigDeviceHandle(); ret == gonvml.SUCCESS {
			if p, ret := parent.GetUUID(); ret == gonvml.SUCCESS {
				return []string{p}
			}
		}
		return []string{uuid}
	}
	return m.knownUUIDs()
}
