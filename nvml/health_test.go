//go:build cgo

package nvml

import (
	"testing"
	"time"

	gonvml "github.com/NVIDIA/go-nvml/pkg/nvml"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/modelplane/modelplane"
)

const eventually = 5 * time.Second

// injectXID retries until the health loop has registered for events, then injects.
func injectXID(t *testing.T, sim *Simulator, uuid string, xid uint64) {
	t.Helper()
	require.Eventually(t, func() bool { return sim.InjectXID(uuid, xid) == nil }, eventually, 5*time.Millisecond,
		"the health loop never registered for XID events on %s", uuid)
}

func TestHealth_XID79MarksTheGPUUnhealthy(t *testing.T) {
	m := openSim(t, ProfileH200, newFakeClock())
	sim := m.Simulator()
	u := sim.UUIDs()[0]
	startRun(t, m)

	injectXID(t, sim, u, 79)
	require.Eventually(t, func() bool { return !gpuOf(t, m, u).Healthy }, eventually, 5*time.Millisecond,
		"XID 79 should make the GPU unhealthy")
	assert.Contains(t, gpuOf(t, m, u).UnhealthyReason, "XID 79 (GPU has fallen off the bus)")

	_, err := Allocate(modelplane.GPURequest{GPUCount: 1}, mustInventory(t, m), nil)
	var ae *AllocationError
	require.ErrorAs(t, err, &ae)
	assert.Equal(t, "needs 1 GPU; 0 free, 1 unhealthy", ae.Reason)
}

func TestHealth_ApplicationXIDsLeaveTheGPUHealthy(t *testing.T) {
	for _, xid := range []uint64{13, 31, 43, 45, 68, 109} {
		m := openSim(t, ProfileDGXA100, newFakeClock())
		sim := m.Simulator()
		u0, u1 := sim.UUIDs()[0], sim.UUIDs()[1]
		startRun(t, m)

		injectXID(t, sim, u0, xid)
		// Events arrive in order on one event set: once the XID 48 on GPU 1 has been seen,
		// the application XID on GPU 0 has been handled too.
		injectXID(t, sim, u1, 48)
		require.Eventually(t, func() bool { return !gpuOf(t, m, u1).Healthy }, eventually, 5*time.Millisecond)
		g := gpuOf(t, m, u0)
		assert.True(t, g.Healthy, "XID %d is the application's fault, but the GPU became unhealthy: %s", xid, g.UnhealthyReason)
	}
}

func TestHealth_LostGPUIsUnhealthy(t *testing.T) {
	m := openSim(t, ProfileDGXA100, newFakeClock())
	sim := m.Simulator()
	u := sim.UUIDs()[2]

	require.NoError(t, sim.LoseGPU(u))
	// Inventory runs the polling checks itself, so no health loop is needed here.
	inv := mustInventory(t, m)
	require.Len(t, inv.GPUs, 8, "a lost GPU is still listed")
	g := inv.GPUs[2]
	assert.Equal(t, u, g.UUID)
	assert.False(t, g.Healthy)
	assert.Contains(t, g.UnhealthyReason, "GPU lost")
	assert.Contains(t, g.UnhealthyReason, "ERROR_GPU_IS_LOST")
	assert.Contains(t, g.Name, "A100", "static facts survive the loss")
	for i, other := range inv.GPUs {
		if i != 2 {
			assert.True(t, other.Healthy, "GPU %d: %s", i, other.UnhealthyReason)
		}
	}
}

func TestHealth_PollingSeesALostGPU(t *testing.T) {
	m := openSim(t, ProfileH200, newFakeClock())
	sim := m.Simulator()
	u := sim.UUIDs()[0]
	startRun(t, m)

	require.NoError(t, sim.LoseGPU(u))
	require.Eventually(t, func() bool {
		m.mu.Lock()
		defer m.mu.Unlock()
		healthy, _ := m.book.verdict(u, m.opts.Now())
		return !healthy
	}, eventually, 5*time.Millisecond, "the poll loop should notice the lost GPU without Inventory")
}

func TestHealth_UncorrectedECCIsUnhealthy(t *testing.T) {
	t.Run("seen by polling", func(t *testing.T) {
		m := openSim(t, ProfileH200, newFakeClock())
		sim := m.Simulator()
		u := sim.UUIDs()[0]
		require.NoError(t, sim.InjectECC(u))
		g := gpuOf(t, m, u)
		assert.False(t, g.Healthy)
		assert.Contains(t, g.UnhealthyReason, "uncorrected ECC errors rose from 0 to 1")
	})
	t.Run("seen as an event", func(t *testing.T) {
		m := openSim(t, ProfileDGXA100, newFakeClock())
		sim := m.Simulator()
		u := sim.UUIDs()[5]
		startRun(t, m)
		injectXID(t, sim, sim.UUIDs()[0], 13) // only to know the loop is listening
		require.NoError(t, sim.InjectECC(u))
		require.Eventually(t, func() bool { return !gpuOf(t, m, u).Healthy }, eventually, 5*time.Millisecond)
		assert.Contains(t, gpuOf(t, m, u).UnhealthyReason, "ECC")
	})
}

func TestHealth_ProbationKeepsARecoveredGPUUnhealthy(t *testing.T) {
	clock := newFakeClock()
	m := openSim(t, ProfileH200, clock)
	sim := m.Simulator()
	u := sim.UUIDs()[0]

	require.NoError(t, sim.LoseGPU(u))
	require.False(t, gpuOf(t, m, u).Healthy)

	require.NoError(t, sim.RecoverGPU(u))
	g := gpuOf(t, m, u) // the first clean check starts probation
	assert.False(t, g.Healthy, "a recovered GPU serves probation first")
	assert.Contains(t, g.UnhealthyReason, "on probation")

	clock.Advance(4*time.Minute + 59*time.Second)
	assert.False(t, gpuOf(t, m, u).Healthy, "4m59s of a 5m probation")
	clock.Advance(time.Second)
	g = gpuOf(t, m, u)
	assert.True(t, g.Healthy, "probation served: %s", g.UnhealthyReason)
	assert.Empty(t, g.UnhealthyReason)

	// A failure during probation starts it over.
	require.NoError(t, sim.InjectECC(u))
	require.False(t, gpuOf(t, m, u).Healthy)
	clock.Advance(3 * time.Minute)
	require.False(t, gpuOf(t, m, u).Healthy, "3 minutes into probation")
	require.NoError(t, sim.InjectECC(u))
	require.False(t, gpuOf(t, m, u).Healthy)
	gpuOf(t, m, u) // the first clean check after the second error
	clock.Advance(4 * time.Minute)
	assert.False(t, gpuOf(t, m, u).Healthy, "only 4 clean minutes since the last error")
	clock.Advance(time.Minute)
	assert.True(t, gpuOf(t, m, u).Healthy)
}

func TestHealth_XIDWithoutADeviceMarksEveryGPU(t *testing.T) {
	m := openSim(t, ProfileDGXA100, newFakeClock())
	m.handleEvent(eventXID(nil, 79))
	for _, g := range mustInventory(t, m).GPUs {
		assert.False(t, g.Healthy, "GPU %d", g.Index)
	}
}

func eventXID(dev gonvml.Device, xid uint64) gonvml.EventData {
	return gonvml.EventData{Device: dev, EventType: gonvml.EventTypeXidCriticalError, EventData: xid}
}

func mustInventory(t *testing.T, m *Manager) Inventory {
	t.Helper()
	inv, err := m.Inventory()
	require.NoError(t, err)
	return inv
}
