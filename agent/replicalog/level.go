package replicalog

import (
	"regexp"
	"strings"

	"github.com/modelplane/modelplane/agent/agentproto"
)

// levelPatterns find a line's level: Python logging's and most servers' formats put it first
// ("ERROR:root:...", "[INFO] ...", "INFO:     Started server"), or after a date
// ("2024-05-01 12:00:00,123 - WARNING - ..."); logfmt and JSON loggers name it (level=error,
// "level":"info").
var levelPatterns = []*regexp.Regexp{
	regexp.MustCompile(`^\W{0,3}(?i:(debug|info|warning|warn|error|critical|fatal))\b`),
	regexp.MustCompile(`^[0-9][0-9\-:T.,/ +Z]{9,34}\W{0,4}(?i:(debug|info|warning|warn|error|critical|fatal))\b`),
	regexp.MustCompile(`\b(?:level|severity|levelname)"?\s*[=:]\s*"?(?i:(debug|info|warning|warn|error|critical|fatal))\b`),
}

// DetectLevel is the level a line names, "" when it names none. WARN is WARNING; CRITICAL and
// FATAL are ERROR, the most severe level of Baseten's four.
func DetectLevel(line string) string {
	for _, p := range levelPatterns {
		m := p.FindStringSubmatch(line)
		if m == nil {
			continue
		}
		switch strings.ToUpper(m[1]) {
		case "DEBUG":
			return agentproto.LevelDebug
		case "INFO":
			return agentproto.LevelInfo
		case "WARN", "WARNING":
			return agentproto.LevelWarning
		default:
			return agentproto.LevelError
		}
	}
	return ""
}

// leveler gives each line of one stream its level: the level it names; else, for a line that
// continues the one before (indented, as a traceback's frames are), that line's level; else
// the stream's default (WARNING on stderr, none on stdout).
type leveler struct {
	fallback string
	prev     string
}

func newLeveler(stream string) *leveler {
	l := &leveler{}
	if stream == "stderr" {
		l.fallback = agentproto.LevelWarning
	}
	return l
}

func (l *leveler) level(line string) string {
	lvl := DetectLevel(line)
	switch {
	case lvl != "":
	case l.prev != "" && (strings.HasPrefix(line, " ") || strings.HasPrefix(line, "\t") || strings.HasPrefix(line, "Traceback ")):
		lvl = l.prev
	default:
		lvl = l.fallback
	}
	l.prev = lvl
	return lvl
}
