package apiv1

// MetricMode is how GET .../metrics aggregates: Baseten's ModelMetricModeV1.
type MetricMode string

// The modes of Baseten's spec.
const (
	// MetricModeCurrent is one value set for now (the default).
	MetricModeCurrent MetricMode = "CURRENT"
	// MetricModeSummary is one value set over the whole window.
	MetricModeSummary MetricMode = "SUMMARY"
	// MetricModeSeries is evenly spaced value sets across the window.
	MetricModeSeries MetricMode = "SERIES"
)

// MetricModes are every mode, in the spec's order.
func MetricModes() []MetricMode {
	return []MetricMode{MetricModeCurrent, MetricModeSummary, MetricModeSeries}
}

// MetricUnitHint says what a metric's values measure: Baseten's ModelMetricUnitHintV1.
type MetricUnitHint string

// The unit hints modelplane's metrics use.
const (
	MetricUnitCount   MetricUnitHint = "COUNT"
	MetricUnitSeconds MetricUnitHint = "SECONDS"
)

// MetricKind says how a metric behaves: Baseten's ModelMetricKindV1.
type MetricKind string

// The kinds of Baseten's spec.
const (
	// MetricKindGauge is a value at an instant, or its average over a step.
	MetricKindGauge MetricKind = "GAUGE"
	// MetricKindCounter is a total over the step.
	MetricKindCounter MetricKind = "COUNTER"
	// MetricKindHistogram is a distribution, given as quantile series.
	MetricKindHistogram MetricKind = "HISTOGRAM"
)

// MetricDescriptorV1 describes one metric; its place in ModelMetricsV1.MetricDescriptors is
// the index of its values in every value set.
type MetricDescriptorV1 struct {
	Name     string         `json:"name"`
	UnitHint MetricUnitHint `json:"unit_hint"`
	Kind     MetricKind     `json:"kind"`
	// LabelSets are the metric's series, in the order of its values: one empty set for a
	// plain metric, one per quantile for a histogram, one per status class for requests.
	LabelSets []map[string]string `json:"label_sets"`
}

// MetricValueSetV1 is the metrics of one step: Values[i] holds one value per label set of
// MetricDescriptors[i], null where the step has no data.
type MetricValueSetV1 struct {
	StartEpochMillis int64        `json:"start_epoch_millis"`
	Values           [][]*float64 `json:"values"`
}

// ModelMetricsV1 answers GET /v1/models/{model_id}/deployments/{deployment_id}/metrics and
// GET /v1/models/{model_id}/environments/{env_name}/metrics (Baseten's
// GetModelMetricsResponseV1).
type ModelMetricsV1 struct {
	StartEpochMillis  int64                `json:"start_epoch_millis"`
	EndEpochMillis    int64                `json:"end_epoch_millis"`
	Mode              MetricMode           `json:"mode"`
	StepSeconds       *int64               `json:"step_seconds"`
	MetricDescriptors []MetricDescriptorV1 `json:"metric_descriptors"`
	MetricValues      []MetricValueSetV1   `json:"metric_values"`
}
