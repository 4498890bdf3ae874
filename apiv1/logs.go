package apiv1

// LogLevelV1 is a log line's severity: Baseten's LogLevelV1.
type LogLevelV1 string

// The levels of Baseten's spec, least severe first.
const (
	LogLevelDebug   LogLevelV1 = "DEBUG"
	LogLevelInfo    LogLevelV1 = "INFO"
	LogLevelWarning LogLevelV1 = "WARNING"
	LogLevelError   LogLevelV1 = "ERROR"
)

// LogLevels are every level, least severe first.
func LogLevels() []LogLevelV1 {
	return []LogLevelV1{LogLevelDebug, LogLevelInfo, LogLevelWarning, LogLevelError}
}

// SortOrderV1 is the order of the lines: Baseten's SortOrderV1.
type SortOrderV1 string

// The orders of Baseten's spec.
const (
	SortAsc  SortOrderV1 = "asc"
	SortDesc SortOrderV1 = "desc"
)

// SortOrders are both orders.
func SortOrders() []SortOrderV1 { return []SortOrderV1{SortAsc, SortDesc} }

// The components a log line comes from (modelplane's): a model server replica's output, or
// the deployment's build (its requirements being installed on the nodes).
const (
	LogComponentModel = "model"
	LogComponentBuild = "build"
)

// LogComponents are the components, as the component parameter takes them.
func LogComponents() []string { return []string{LogComponentModel, LogComponentBuild} }

// LogV1 is one log line: Baseten's LogV1, with modelplane's component and deployment_id.
type LogV1 struct {
	// Timestamp is nanoseconds since the epoch, as a decimal string.
	Timestamp string `json:"timestamp"`
	Message   string `json:"message"`
	// Replica is the replica that wrote the line; null for a build line.
	Replica *string `json:"replica"`
	// RequestID is always null: modelplane does not tag lines with inference requests.
	RequestID *string     `json:"request_id"`
	Level     *LogLevelV1 `json:"level"`
	// Component is LogComponentModel or LogComponentBuild.
	Component    string `json:"component"`
	DeploymentID string `json:"deployment_id"`
}

// UnavailableLogsV1 names a replica whose lines could not be read, and why (modelplane's).
type UnavailableLogsV1 struct {
	Replica string `json:"replica"`
	Node    string `json:"node"`
	Reason  string `json:"reason"`
}

// GetLogsResponseV1 is the answer of the logs routes: Baseten's GetLogsResponseV1, with
// modelplane's unavailable, empty when every replica's lines were read.
type GetLogsResponseV1 struct {
	Logs        []LogV1             `json:"logs"`
	Unavailable []UnavailableLogsV1 `json:"unavailable"`
}

// GetDeploymentLogsRequestV1 is the body of POST .../deployments/{deployment_id}/logs:
// Baseten's GetDeploymentLogsRequestV1, the GET route's parameters.
type GetDeploymentLogsRequestV1 struct {
	StartEpochMillis *int64       `json:"start_epoch_millis,omitempty"`
	EndEpochMillis   *int64       `json:"end_epoch_millis,omitempty"`
	Direction        *SortOrderV1 `json:"direction,omitempty"`
	Limit            *int         `json:"limit,omitempty"`
	MinLevel         *LogLevelV1  `json:"min_level,omitempty"`
	Replica          *string      `json:"replica,omitempty"`
	RequestID        *string      `json:"request_id,omitempty"`
	Component        *string      `json:"component,omitempty"`
	SearchPattern    *string      `json:"search_pattern,omitempty"`
	Includes         []string     `json:"includes,omitempty"`
	Excludes         []string     `json:"excludes,omitempty"`
}
