package agentproto

import "time"

// Levels a replica's log line can carry, from least to most severe; a line whose severity the
// agent could not tell has none ("").
const (
	LevelDebug   = "DEBUG"
	LevelInfo    = "INFO"
	LevelWarning = "WARNING"
	LevelError   = "ERROR"
)

// Levels are the levels in order of severity.
func Levels() []string { return []string{LevelDebug, LevelInfo, LevelWarning, LevelError} }

// LevelRank is a level's place in Levels, -1 for no level or an unknown one.
func LevelRank(level string) int {
	for i, l := range Levels() {
		if l == level {
			return i
		}
	}
	return -1
}

// LogLine is one line a replica wrote, stamped by the agent (a process replica: when the
// agent read it) or by the container engine (a docker replica).
type LogLine struct {
	Time time.Time `json:"time"`
	// Stream is "stdout" or "stderr".
	Stream string `json:"stream"`
	// Level is the line's severity, one of Levels, or "" when it has none.
	Level   string `json:"level,omitempty"`
	Message string `json:"message"`
}

// LinesResponse is the answer of GET /v1/replicas/{id}/lines.
type LinesResponse struct {
	ReplicaID string    `json:"replica_id"`
	Lines     []LogLine `json:"lines"`
}

// LinesQuery selects a replica's lines: those stamped in [Since, Until) (zero: unbounded),
// at MinLevel or above when set, matching Search (an RE2 expression), holding every one of
// Includes and none of Excludes; the first Limit of them in Direction ("asc", oldest first,
// or "desc").
type LinesQuery struct {
	Since, Until time.Time
	Limit        int
	Direction    string
	MinLevel     string
	Search       string
	Includes     []string
	Excludes     []string
}
