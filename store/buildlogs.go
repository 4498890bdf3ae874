package store

import (
	"context"
	"errors"
	"strings"
	"time"

	"github.com/jmoiron/sqlx"
)

// MaxBuildLog is how much of a deployment's build log is kept, in characters: appends drop
// the oldest text past it.
const MaxBuildLog = 256 << 10

// AppendBuildLog appends text to the deployment's build log, ending it with a newline when it
// does not, and keeps the last MaxBuildLog characters.
func AppendBuildLog(ctx context.Context, db sqlx.ExecerContext, deploymentID, text string) error {
	if text == "" {
		return nil
	}
	if !strings.HasSuffix(text, "\n") {
		text += "\n"
	}
	return exec(ctx, db, true, `
		INSERT INTO deployment_build_logs (deployment_id, log) VALUES ($1, right($2, $3))
		ON CONFLICT (deployment_id) DO UPDATE
		SET log = right(deployment_build_logs.log || excluded.log, $3), updated_at = now()`,
		deploymentID, text, MaxBuildLog)
}

// BuildLogLines answers the deployment's build log as lines, oldest first; none when it has
// none. A log cut at MaxBuildLog loses its first, partial line.
func BuildLogLines(ctx context.Context, db sqlx.QueryerContext, deploymentID string) ([]string, error) {
	var text string
	err := get(ctx, db, &text, `SELECT log FROM deployment_build_logs WHERE deployment_id = $1`, deploymentID)
	if errors.Is(err, ErrNotFound) || text == "" {
		return []string{}, nil
	}
	if err != nil {
		return nil, err
	}
	lines := strings.Split(strings.TrimSuffix(text, "\n"), "\n")
	if len([]rune(text)) >= MaxBuildLog && len(lines) > 1 {
		lines = lines[1:]
	}
	return lines, nil
}

// BuildLogLinesAt is BuildLogLines with the time the log was last written; the zero time
// when the deployment has no build log.
func BuildLogLinesAt(ctx context.Context, db sqlx.QueryerContext, deploymentID string) ([]string, time.Time, error) {
	var at time.Time
	err := get(ctx, db, &at, `SELECT updated_at FROM deployment_build_logs WHERE deployment_id = $1`, deploymentID)
	if errors.Is(err, ErrNotFound) {
		return []string{}, time.Time{}, nil
	}
	if err != nil {
		return nil, at, err
	}
	lines, err := BuildLogLines(ctx, db, deploymentID)
	return lines, at.UTC(), err
}
