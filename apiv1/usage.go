package apiv1

import (
	"strconv"
	"time"
)

// UsageGroupBy is what GET /v1/usage sums its rows by, besides the hour.
type UsageGroupBy string

// The groupings of GET /v1/usage; deployment is the default.
const (
	UsageByModel      UsageGroupBy = "model"
	UsageByDeployment UsageGroupBy = "deployment"
	UsageByGPUType    UsageGroupBy = "gpu_type"
)

// UsageGroupBys are the values group_by takes.
func UsageGroupBys() []UsageGroupBy {
	return []UsageGroupBy{UsageByModel, UsageByDeployment, UsageByGPUType}
}

// UsageFormat is the shape GET /v1/usage answers in.
type UsageFormat string

// The formats of GET /v1/usage; json is the default.
const (
	UsageJSON UsageFormat = "json"
	UsageCSV  UsageFormat = "csv"
)

// UsageFormats are the values format takes.
func UsageFormats() []UsageFormat { return []UsageFormat{UsageJSON, UsageCSV} }

// UsageRowV1 is one hour (UTC, the hour's start) of one group's usage. The fields the
// grouping folds away are empty strings.
type UsageRowV1 struct {
	Hour           time.Time `json:"hour"`
	ModelID        string    `json:"model_id"`
	ModelName      string    `json:"model_name"`
	DeploymentID   string    `json:"deployment_id"`
	DeploymentName string    `json:"deployment_name"`
	GPUType        string    `json:"gpu_type"`
	MIGProfile     string    `json:"mig_profile"`
	ReplicaSeconds float64   `json:"replica_seconds"`
	GPUSeconds     float64   `json:"gpu_seconds"`
}

// UsageTotalsV1 sums a usage answer's rows.
type UsageTotalsV1 struct {
	ReplicaSeconds float64 `json:"replica_seconds"`
	GPUSeconds     float64 `json:"gpu_seconds"`
}

// UsageV1 answers GET /v1/usage (modelplane's): the key's workspace's usage in [start, end),
// by hour and group_by, ordered by hour, then by group.
type UsageV1 struct {
	Start   time.Time     `json:"start"`
	End     time.Time     `json:"end"`
	GroupBy UsageGroupBy  `json:"group_by"`
	Rows    []UsageRowV1  `json:"rows"`
	Totals  UsageTotalsV1 `json:"totals"`
}

// UsageCSVHeader is the header row of GET /v1/usage?format=csv; each row after it has
// UsageRowV1's fields in this order.
func UsageCSVHeader() []string {
	return []string{"hour", "model_id", "model_name", "deployment_id", "deployment_name", "gpu_type", "mig_profile",
		"replica_seconds", "gpu_seconds"}
}

// CSV is the row's fields as strings, in UsageCSVHeader's order.
func (r UsageRowV1) CSV() []string {
	return []string{r.Hour.UTC().Format(time.RFC3339), r.ModelID, r.ModelName, r.DeploymentID, r.DeploymentName,
		r.GPUType, r.MIGProfile, strconv.FormatFloat(r.ReplicaSeconds, 'f', -1, 64), strconv.FormatFloat(r.GPUSeconds, 'f', -1, 64)}
}
