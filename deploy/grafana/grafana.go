// Package grafana holds modelplane's Grafana dashboard (modelplane.json), over the Prometheus
// metrics the API, the gateways and the worker serve on /metrics. Its test checks that every
// metric a panel queries is one the code registers, so the dashboard cannot drift from them.
package grafana

import _ "embed"

// Dashboard is the dashboard's JSON, for Grafana's provisioning or its import page.
//
//go:embed modelplane.json
var Dashboard []byte
