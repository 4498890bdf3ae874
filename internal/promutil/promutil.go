// Package promutil registers Prometheus collectors for components of which one process may
// run several (tests, the dev stack).
package promutil

import "github.com/prometheus/client_golang/prometheus"

// Register registers c, or returns the collector already registered under the same name, so
// that several instances in one process share the series.
func Register[C prometheus.Collector](reg prometheus.Registerer, c C) C {
	if err := reg.Register(c); err != nil {
		if are, ok := err.(prometheus.AlreadyRegisteredError); ok {
			if existing, ok := are.ExistingCollector.(C); ok {
				return existing
			}
		}
		panic(err)
	}
	return c
}
