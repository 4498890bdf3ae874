package agent

import (
	"os"
	"path/filepath"
	"syscall"
	"testing"

	"github.com/stretchr/testify/require"
)

// TestClosedGPUDevices_NamesDeviceFilesOthersCannotOpen makes NVIDIA-named device files with
// mknod (as root; a test run as another user has nothing to make them with) and expects the
// ones others cannot read and write to be named, and nothing else.
func TestClosedGPUDevices_NamesDeviceFilesOthersCannotOpen(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Fatal("making device files needs root; run the tests as root (CI does)")
	}
	dev := t.TempDir()
	mknod := func(name string, mode uint32) {
		p := filepath.Join(dev, name)
		// /dev/null's numbers: a real character device, harmless.
		require.NoError(t, syscall.Mknod(p, syscall.S_IFCHR|mode, 1<<8|3))
		require.NoError(t, os.Chmod(p, os.FileMode(mode)))
	}
	mknod("nvidiactl", 0o660)
	mknod("nvidia0", 0o666)
	mknod("nvidia-uvm", 0o600)
	require.NoError(t, os.WriteFile(filepath.Join(dev, "nvidia-notes"), nil, 0o600))
	require.Equal(t, []string{
		filepath.Join(dev, "nvidia-uvm") + " (mode 0600)",
		filepath.Join(dev, "nvidiactl") + " (mode 0660)",
	}, closedGPUDevices(dev))
}
