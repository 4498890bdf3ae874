//go:build !cgo

package nvml

import (
	"context"
	"fmt"
	"sync"
)

// Manager reports the node's GPUs. This build has no cgo, so it cannot load NVML: it only
// offers the GPU-less profiles, so that a CPU-only agent still builds and runs.
type Manager struct {
	profile string
	mu      sync.Mutex
	closed  bool
	done    chan struct{}
}

// Open accepts "none" and "auto" (which finds no GPUs) and refuses the rest, which need a
// build with cgo.
func Open(profile string, opts Options) (*Manager, error) {
	opts = opts.withDefaults()
	switch profile {
	case ProfileNone, ProfileAuto:
		if profile == ProfileAuto {
			opts.Logger.Info("built without cgo, so NVML is not available; reporting no GPUs", "component", "nvml")
		}
		return &Manager{profile: ProfileNone, done: make(chan struct{})}, nil
	case ProfileReal, ProfileH200, ProfileDGXA100:
		return nil, fmt.Errorf("%w: GPU profile %s needs a build with cgo", ErrUnavailable, profile)
	default:
		return nil, fmt.Errorf("nvml: unknown GPU profile %q (want auto, none, real, h200 or dgxa100)", profile)
	}
}

// Profile is always "none" in a build without cgo.
func (m *Manager) Profile() string { return m.profile }

// Simulator is always nil in a build without cgo.
func (m *Manager) Simulator() *Simulator { return nil }

// Inventory reports no GPUs.
func (m *Manager) Inventory() (Inventory, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.closed {
		return Inventory{}, ErrClosed
	}
	return Inventory{GPUs: []GPU{}}, nil
}

// Run waits until ctx is done or the Manager is closed; there is nothing to watch.
func (m *Manager) Run(ctx context.Context) error {
	m.mu.Lock()
	closed := m.closed
	m.mu.Unlock()
	if closed {
		return ErrClosed
	}
	select {
	case <-ctx.Done():
	case <-m.done:
	}
	return nil
}

// Close stops Run.
func (m *Manager) Close() error {
	m.mu.Lock()
	defer m.mu.Unlock()
	if !m.closed {
		m.closed = true
		close(m.done)
	}
	return nil
}

// Simulator exists in builds without cgo only so that code using it compiles; no Manager
// returns one.
type Simulator struct{}

func errNoSimulator() error {
	return fmt.Errorf("%w: simulated GPUs need a build with cgo", ErrUnavailable)
}

// UUIDs returns nothing.
func (s *Simulator) UUIDs() []string { return nil }

// InjectXID fails: there is no simulation without cgo.
func (s *Simulator) InjectXID(string, uint64) error { return errNoSimulator() }

// InjectECC fails: there is no simulation without cgo.
func (s *Simulator) InjectECC(string) error { return errNoSimulator() }

// LoseGPU fails: there is no simulation without cgo.
func (s *Simulator) LoseGPU(string) error { return errNoSimulator() }

// RecoverGPU fails: there is no simulation without cgo.
func (s *Simulator) RecoverGPU(string) error { return errNoSimulator() }

// SetMIGMode fails: there is no simulation without cgo.
func (s *Simulator) SetMIGMode(string, bool) error { return errNoSimulator() }

// CreateMIGInstance fails: there is no simulation without cgo.
func (s *Simulator) CreateMIGInstance(string, string) (string, error) { return "", errNoSimulator() }
