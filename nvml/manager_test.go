//go:build cgo

package nvml

import (
	"context"
	"encoding/xml"
	"log/slog"
	"os"
	"regexp"
	"strconv"
	"sync"
	"testing"
	"time"

	gonvml "github.com/NVIDIA/go-nvml/pkg/nvml"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/modelplane/modelplane"
)

// fakeClock is the clock probation is measured with in tests.
type fakeClock struct {
	mu sync.Mutex
	t  time.Time
}

func newFakeClock() *fakeClock {
	return &fakeClock{t: time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)}
}

func (c *fakeClock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.t
}

func (c *fakeClock) Advance(d time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.t = c.t.Add(d)
}

func quietLogger() *slog.Logger { return slog.New(slog.DiscardHandler) }

// openSim opens a simulated profile with a fast poll, a 5-minute probation on clock, and
// closes it when the test ends.
func openSim(t *testing.T, profile string, clock *fakeClock) *Manager {
	t.Helper()
	m, err := Open(profile, Options{
		Probation: 5 * time.Minute, PollInterval: 10 * time.Millisecond, Now: clock.Now, Logger: quietLogger(),
	})
	require.NoError(t, err, "opening profile %s", profile)
	t.Cleanup(func() { assert.NoError(t, m.Close()) })
	return m
}

// startRun runs the health loop until the test ends.
func startRun(t *testing.T, m *Manager) {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- m.Run(ctx) }()
	t.Cleanup(func() {
		cancel()
		select {
		case err := <-done:
			assert.NoError(t, err)
		case <-time.After(5 * time.Second):
			t.Error("Run did not return within 5s of cancellation")
		}
	})
}

func gpuOf(t *testing.T, m *Manager, uuid string) GPU {
	t.Helper()
	inv, err := m.Inventory()
	require.NoError(t, err)
	for _, g := range inv.GPUs {
		if g.UUID == uuid {
			return g
		}
	}
	t.Fatalf("GPU %s not in the inventory %+v", uuid, inv.GPUs)
	return GPU{}
}

// nvmlLoads reports whether real NVML starts on this machine, for tests that expect one
// outcome or the other.
func nvmlLoads() bool {
	lib := gonvml.New()
	if lib.Init() != gonvml.SUCCESS {
		return false
	}
	lib.Shutdown()
	return true
}

func TestOpen_H200ReportsWhatTheFixtureRecorded(t *testing.T) {
	m := openSim(t, ProfileH200, newFakeClock())
	assert.Equal(t, ProfileH200, m.Profile())
	require.NotNil(t, m.Simulator())
	inv, err := m.Inventory()
	require.NoError(t, err)

	assert.Equal(t, "580.159.04", inv.DriverVersion)
	assert.Equal(t, "13.0", inv.CUDADriverVersion)
	require.Len(t, inv.GPUs, 1)
	g := inv.GPUs[0]
	want := GPU{
		UUID: "GPU-de25bed1-7435-016b-2e4f-41acf9daf109", Index: 0, Name: "NVIDIA H200",
		Architecture: "Hopper", ComputeCapability: "9.0",
		MemoryTotalBytes: 150754820096, MemoryUsedBytes: 644939776,
		PCIBusID: "0000:00:06.0", NUMANode: -1, NVLinkGroup: -1, MIGMode: false,
		TemperatureC: 36, UtilizationPercent: 0, PowerUsageMilliwatts: 125898, PowerLimitMilliwatts: 700000,
		Healthy: true,
	}
	gotNoMIG := g
	gotNoMIG.MIGProfiles = nil
	assert.Equal(t, want, gotNoMIG)
	assert.Empty(t, g.MIGInstances)

	// The same facts as nvidia-smi -q printed them on that machine.
	var smi struct {
		GPU struct {
			UUID    string `xml:"uuid"`
			Product string `xml:"product_name"`
			Arch    string `xml:"product_architecture"`
			FB      struct {
				Total string `xml:"total"`
			} `xml:"fb_memory_usage"`
			PCI struct {
				BusID string `xml:"pci_bus_id"`
			} `xml:"pci"`
			MIG struct {
				Current string `xml:"current_mig"`
			} `xml:"mig_mode"`
		} `xml:"gpu"`
	}
	raw, err := os.ReadFile("testdata/h200-nvidia-smi-q.xml")
	require.NoError(t, err)
	require.NoError(t, xml.Unmarshal(raw, &smi))
	assert.Equal(t, smi.GPU.UUID, g.UUID)
	assert.Equal(t, smi.GPU.Product, g.Name)
	assert.Equal(t, smi.GPU.Arch, g.Architecture)
	assert.Equal(t, smi.GPU.FB.Total, strconv.FormatUint(g.MemoryTotalBytes>>20, 10)+" MiB")
	assert.Equal(t, "0000"+smi.GPU.PCI.BusID[8:], "0000"+g.PCIBusID[4:], "bus IDs differ only in domain padding")
	assert.Equal(t, "Disabled", smi.GPU.MIG.Current)

	// Every profile nvidia-smi mig -lgip listed, with its ID and instance count, and no other.
	lgip, err := os.ReadFile("testdata/h200-mig-lgip.txt")
	require.NoError(t, err)
	row := regexp.MustCompile(`MIG (\S+)\s+(\d+)\s+\d+/(\d+)\s+([\d.]+)`)
	wantProfiles := map[string][2]int{}
	for _, m := range row.FindAllStringSubmatch(string(lgip), -1) {
		id, _ := strconv.Atoi(m[2])
		total, _ := strconv.Atoi(m[3])
		wantProfiles[m[1]] = [2]int{id, total}
	}
	require.Len(t, wantProfiles, 7, "parsing the lgip fixture")
	gotProfiles := map[string][2]int{}
	for _, p := range g.MIGProfiles {
		gotProfiles[p.Name] = [2]int{p.ID, p.InstanceCount}
	}
	assert.Equal(t, wantProfiles, gotProfiles)
}

func TestOpen_H200EventSetBehavesAsRecorded(t *testing.T) {
	m := openSim(t, ProfileH200, newFakeClock())
	sim := m.Simulator()
	set, ret := sim.EventSetCreate()
	require.Equal(t, gonvml.SUCCESS, ret, "event set creation")
	defer set.Free()
	dev, ret := sim.DeviceGetHandleByIndex(0)
	require.Equal(t, gonvml.SUCCESS, ret)
	supported, ret := dev.GetSupportedEventTypes()
	require.Equal(t, gonvml.SUCCESS, ret)
	assert.Equal(t, uint64(65439), supported)
	require.Equal(t, gonvml.SUCCESS, dev.RegisterEvents(watchedEvents, set), "registration")

	start := time.Now()
	_, ret = set.Wait(200)
	assert.Equal(t, gonvml.ERROR_TIMEOUT, ret, "a wait with nothing pending times out")
	assert.GreaterOrEqual(t, time.Since(start), 190*time.Millisecond, "the wait lasts its timeout")
}

func TestOpen_DGXA100ReportsEightA100s(t *testing.T) {
	m := openSim(t, ProfileDGXA100, newFakeClock())
	inv, err := m.Inventory()
	require.NoError(t, err)
	require.Len(t, inv.GPUs, 8)
	assert.Equal(t, "550.54.15", inv.DriverVersion)
	assert.Equal(t, "12.4", inv.CUDADriverVersion)
	for i, g := range inv.GPUs {
		assert.Equal(t, i, g.Index)
		assert.Contains(t, g.Name, "A100")
		assert.Equal(t, "Ampere", g.Architecture)
		assert.Equal(t, "8.0", g.ComputeCapability)
		assert.Equal(t, uint64(40960)<<20, g.MemoryTotalBytes)
		assert.Equal(t, 0, g.NVLinkGroup, "all eight share the NVSwitch fabric")
		assert.Equal(t, i/4, g.NUMANode)
		assert.True(t, g.Healthy)
		var names []string
		for _, p := range g.MIGProfiles {
			names = append(names, p.Name)
		}
		assert.Equal(t, []string{"1g.5gb", "2g.10gb", "3g.20gb", "4g.20gb", "7g.40gb", "1g.5gb+me", "1g.10gb"}, names)
	}
	assert.Equal(t, m.Simulator().UUIDs()[3], inv.GPUs[3].UUID)
}

func TestOpen_NoneReportsNoGPUs(t *testing.T) {
	m, err := Open(ProfileNone, Options{Logger: quietLogger()})
	require.NoError(t, err)
	defer m.Close()
	inv, err := m.Inventory()
	require.NoError(t, err)
	assert.Empty(t, inv.GPUs)
	assert.NotNil(t, inv.GPUs, "an empty list, so JSON says [] rather than null")
	assert.Nil(t, m.Simulator())
	assert.Equal(t, ProfileNone, m.Profile())
}

// TestOpen_RealBackendOnThisHost checks the real backend against whatever this host has:
// without a driver, auto means no GPUs and real fails clearly; with one, every GPU is
// described and, on an H200, matches the recorded fixture.
func TestOpen_RealBackendOnThisHost(t *testing.T) {
	if nvmlLoads() {
		realOnAGPUHost(t)
		return
	}
	autoWithoutDriverReportsNoGPUs(t)
	realWithoutDriverFailsClearly(t)
}

func autoWithoutDriverReportsNoGPUs(t *testing.T) {
	m, err := Open(ProfileAuto, Options{Logger: quietLogger()})
	require.NoError(t, err)
	defer m.Close()
	assert.Equal(t, ProfileNone, m.Profile())
	inv, err := m.Inventory()
	require.NoError(t, err)
	assert.Empty(t, inv.GPUs)
	assert.Nil(t, m.Simulator())
}

func realWithoutDriverFailsClearly(t *testing.T) {
	_, err := Open(ProfileReal, Options{Logger: quietLogger()})
	require.ErrorIs(t, err, ErrUnavailable)
	assert.Contains(t, err.Error(), "libnvidia-ml.so.1 could not be loaded")
	assert.Contains(t, err.Error(), "install the NVIDIA driver")
}

func TestOpen_UnknownProfile(t *testing.T) {
	_, err := Open("h300", Options{Logger: quietLogger()})
	require.Error(t, err)
	assert.Contains(t, err.Error(), `unknown GPU profile "h300"`)
}

// realOnAGPUHost runs where NVML loads (a GPU machine): the real backend must describe every
// GPU, survive the health loop, and agree with the H200 fixture when it finds an H200.
func realOnAGPUHost(t *testing.T) {
	m, err := Open(ProfileAuto, Options{PollInterval: 50 * time.Millisecond, Logger: slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelDebug}))})
	require.NoError(t, err)
	defer m.Close()
	assert.Equal(t, ProfileReal, m.Profile())
	assert.Nil(t, m.Simulator())
	inv, err := m.Inventory()
	require.NoError(t, err)
	require.NotEmpty(t, inv.GPUs)
	for _, g := range inv.GPUs {
		assert.NotEmpty(t, g.UUID)
		assert.NotEmpty(t, g.Name)
		assert.NotZero(t, g.MemoryTotalBytes)
		assert.Regexp(t, `^[0-9a-f]{4}:[0-9a-f]{2}:[0-9a-f]{2}\.[0-9a-f]$`, g.PCIBusID)
		assert.True(t, g.Healthy, "GPU %s: %s", g.UUID, g.UnhealthyReason)
	}

	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	start := time.Now()
	require.NoError(t, m.Run(ctx))
	assert.Less(t, time.Since(start), 4*time.Second, "Run notices cancellation within a wait timeout")

	g := inv.GPUs[0]
	if g.Name != "NVIDIA H200" {
		return
	}
	sim := openSim(t, ProfileH200, newFakeClock())
	simInv, err := sim.Inventory()
	require.NoError(t, err)
	want := simInv.GPUs[0]
	assert.Equal(t, want.Architecture, g.Architecture)
	assert.Equal(t, want.ComputeCapability, g.ComputeCapability)
	assert.Equal(t, want.MemoryTotalBytes, g.MemoryTotalBytes)
	assert.Equal(t, want.PowerLimitMilliwatts, g.PowerLimitMilliwatts)
	var wantNames, gotNames []string
	for _, p := range want.MIGProfiles {
		wantNames = append(wantNames, p.Name)
	}
	for _, p := range g.MIGProfiles {
		gotNames = append(gotNames, p.Name)
	}
	assert.Equal(t, wantNames, gotNames)
}

func TestMIGProfileName_MatchesNvidiaSMI(t *testing.T) {
	const h200Total = 150754820096 // from the H200 probe
	const a100Total = 40960 << 20
	tests := []struct {
		profile   int
		slices    uint32
		memoryMiB uint64
		total     uint64
		want      string
	}{
		{gonvml.GPU_INSTANCE_PROFILE_1_SLICE, 1, 16384, h200Total, "1g.18gb"},
		{gonvml.GPU_INSTANCE_PROFILE_1_SLICE_REV1, 1, 16384, h200Total, "1g.18gb+me"},
		{gonvml.GPU_INSTANCE_PROFILE_1_SLICE_REV2, 1, 33280, h200Total, "1g.35gb"},
		{gonvml.GPU_INSTANCE_PROFILE_2_SLICE, 2, 33280, h200Total, "2g.35gb"},
		{gonvml.GPU_INSTANCE_PROFILE_3_SLICE, 3, 71424, h200Total, "3g.71gb"},
		{gonvml.GPU_INSTANCE_PROFILE_4_SLICE, 4, 71424, h200Total, "4g.71gb"},
		{gonvml.GPU_INSTANCE_PROFILE_7_SLICE, 7, 143360, h200Total, "7g.141gb"},
		{gonvml.GPU_INSTANCE_PROFILE_1_SLICE, 1, 4864, a100Total, "1g.5gb"},
		{gonvml.GPU_INSTANCE_PROFILE_2_SLICE, 2, 9856, a100Total, "2g.10gb"},
		{gonvml.GPU_INSTANCE_PROFILE_3_SLICE, 3, 19968, a100Total, "3g.20gb"},
		{gonvml.GPU_INSTANCE_PROFILE_7_SLICE, 7, 40192, a100Total, "7g.40gb"},
		{gonvml.GPU_INSTANCE_PROFILE_1_SLICE_NO_ME, 1, 4864, a100Total, "1g.5gb-me"},
		{gonvml.GPU_INSTANCE_PROFILE_1_SLICE, 1, 4864, 0, "1g.5gb"},
	}
	for _, tc := range tests {
		assert.Equal(t, tc.want, migProfileName(tc.profile, tc.slices, tc.memoryMiB, tc.total),
			"profile %d with %d MiB of %d bytes", tc.profile, tc.memoryMiB, tc.total)
	}
}

func TestSimulator_MIGInstancesAreReportedAndAllocated(t *testing.T) {
	m := openSim(t, ProfileDGXA100, newFakeClock())
	sim := m.Simulator()
	u := sim.UUIDs()[0]

	_, err := sim.CreateMIGInstance(u, "1g.5gb")
	require.ErrorContains(t, err, "MIG mode off")
	require.NoError(t, sim.SetMIGMode(u, true))
	a, err := sim.CreateMIGInstance(u, "1g.5gb")
	require.NoError(t, err)
	b, err := sim.CreateMIGInstance(u, "1g.5gb")
	require.NoError(t, err)
	c, err := sim.CreateMIGInstance(u, "3g.20gb")
	require.NoError(t, err)
	_, err = sim.CreateMIGInstance(u, "7g.40gb")
	require.ErrorContains(t, err, "no room")
	_, err = sim.CreateMIGInstance(u, "1g.6gb")
	require.ErrorContains(t, err, "offers no MIG profile")

	inv, err := m.Inventory()
	require.NoError(t, err)
	g := inv.GPUs[0]
	assert.True(t, g.MIGMode)
	assert.Equal(t, []MIGInstance{
		{UUID: a, ParentUUID: u, Profile: "1g.5gb", MemoryBytes: 4864 << 20},
		{UUID: b, ParentUUID: u, Profile: "1g.5gb", MemoryBytes: 4864 << 20},
		{UUID: c, ParentUUID: u, Profile: "3g.20gb", MemoryBytes: 19968 << 20},
	}, g.MIGInstances)

	got, err := Allocate(modelplane.GPURequest{MIGProfile: "1g.5gb"}, inv, map[string]string{a: "r1"})
	require.NoError(t, err)
	assert.Equal(t, []string{b}, got)

	_, err = Allocate(modelplane.GPURequest{GPUCount: 8}, inv, nil)
	var ae *AllocationError
	require.ErrorAs(t, err, &ae)
	assert.Equal(t, "needs 8 GPUs; 7 free, 1 in MIG mode (ask for a MIG profile to use them)", ae.Reason)

	require.NoError(t, sim.SetMIGMode(u, false))
	inv, err = m.Inventory()
	require.NoError(t, err)
	assert.Empty(t, inv.GPUs[0].MIGInstances)
}

func TestManager_CloseStopsRunAndLaterCalls(t *testing.T) {
	m, err := Open(ProfileH200, Options{PollInterval: 10 * time.Millisecond, Logger: quietLogger()})
	require.NoError(t, err)
	done := make(chan error, 1)
	go func() { done <- m.Run(context.Background()) }()
	time.Sleep(30 * time.Millisecond)
	require.NoError(t, m.Close())
	select {
	case err := <-done:
		assert.NoError(t, err)
	case <-time.After(5 * time.Second):
		t.Fatal("Run kept going after Close")
	}
	_, err = m.Inventory()
	assert.ErrorIs(t, err, ErrClosed)
	assert.ErrorIs(t, m.Run(context.Background()), ErrClosed)
	assert.NoError(t, m.Close(), "a second Close does nothing")
}
