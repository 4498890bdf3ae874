// Package nvml reports a node's GPUs, watches their health and decides which GPUs a replica
// gets.
//
// A Manager wraps NVIDIA's NVML through github.com/NVIDIA/go-nvml. The real backend loads
// libnvidia-ml at run time, so a binary built here runs on hosts without a driver and simply
// sees no GPUs. Simulated backends ("h200", recorded on a real H200, and "dgxa100", go-nvml's
// mock of a DGX A100) stand in for hardware in tests and in development, and let tests inject
// faults through a Simulator.
//
// Health comes from NVML event sets (XID critical errors, ECC errors) and from polling. A GPU
// that failed a check stays unhealthy until it has passed every check for a probation period,
// so a flapping GPU is not handed straight back to a replica.
//
// Allocate is a pure function of a request, an Inventory and the current assignments, so the
// agent can decide under its own lock and tests can cover every case with tables.
package nvml
