package replicalog_test

import (
	"fmt"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/modelplane/modelplane/agent/agentproto"
	"github.com/modelplane/modelplane/agent/replicalog"
	"github.com/modelplane/modelplane/agent/runtime/process"
)

// server stands for a model server: it appends to its raw files, as one holding them open in
// append mode does.
type server struct {
	t   *testing.T
	raw string
}

func (s server) write(stream, text string) {
	f, err := os.OpenFile(filepath.Join(s.raw, stream+".log"), os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	require.NoError(s.t, err)
	_, err = f.WriteString(text)
	require.NoError(s.t, err)
	require.NoError(s.t, f.Close())
}

func setup(t *testing.T) (server, string) {
	t.Helper()
	root := t.TempDir()
	raw := filepath.Join(root, "logs")
	require.NoError(t, os.MkdirAll(raw, 0o755))
	return server{t, raw}, filepath.Join(root, "lines")
}

func all(t *testing.T, dir string) []agentproto.LogLine {
	t.Helper()
	lines, err := replicalog.Query(dir, agentproto.LinesQuery{})
	require.NoError(t, err)
	return lines
}

func messages(lines []agentproto.LogLine) []string {
	out := make([]string, len(lines))
	for i, l := range lines {
		out[i] = l.Message
	}
	return out
}

func TestBook_StampsCompleteLinesInOrderAndWaitsForTheRest(t *testing.T) {
	srv, dir := setup(t)
	b, err := replicalog.Open(dir, srv.raw)
	require.NoError(t, err)
	before := time.Now().UTC()
	srv.write("stdout", "one\ntwo\nthr")
	srv.write("stderr", "ERROR:root:boom\n  File \"model.py\"\nplain\n")
	require.NoError(t, b.Follow(false))
	srv.write("stdout", "ee\n")
	require.NoError(t, b.Follow(false))

	lines := all(t, dir)
	require.Equal(t, []string{"one", "two", "ERROR:root:boom", "  File \"model.py\"", "plain", "three"}, messages(lines))
	for i, l := range lines {
		require.False(t, l.Time.Before(before), "line %d stamped %s, before the read at %s", i, l.Time, before)
		if i > 0 {
			require.True(t, l.Time.After(lines[i-1].Time), "stamps must increase: %s then %s", lines[i-1].Time, l.Time)
		}
	}
	require.Equal(t, []string{"", "", agentproto.LevelError, agentproto.LevelError, agentproto.LevelWarning, ""},
		[]string{lines[0].Level, lines[1].Level, lines[2].Level, lines[3].Level, lines[4].Level, lines[5].Level})
	require.Equal(t, "stderr", lines[2].Stream)
}

func TestBook_ReopenedReadsOnWithoutDuplicatesOrGaps(t *testing.T) {
	srv, dir := setup(t)
	b, err := replicalog.Open(dir, srv.raw)
	require.NoError(t, err)
	srv.write("stdout", "a\nb\n")
	require.NoError(t, b.Follow(false))
	srv.write("stdout", "c\n") // written while nothing follows

	b, err = replicalog.Open(dir, srv.raw)
	require.NoError(t, err)
	srv.write("stdout", "d\n")
	require.NoError(t, b.Follow(false))
	require.Equal(t, []string{"a", "b", "c", "d"}, messages(all(t, dir)))
}

func TestBook_LinesWrittenAfterTheLastSavedStateAreReadAgainOnce(t *testing.T) {
	srv, dir := setup(t)
	b, err := replicalog.Open(dir, srv.raw)
	require.NoError(t, err)
	srv.write("stdout", "a\n")
	require.NoError(t, b.Follow(false))
	state, err := os.ReadFile(filepath.Join(dir, "state.json"))
	require.NoError(t, err)
	srv.write("stdout", "b\n")
	require.NoError(t, b.Follow(false))
	// A crash between appending "b" and saving the state that says it was read.
	require.NoError(t, os.WriteFile(filepath.Join(dir, "state.json"), state, 0o644))

	b, err = replicalog.Open(dir, srv.raw)
	require.NoError(t, err)
	require.NoError(t, b.Follow(false))
	require.Equal(t, []string{"a", "b"}, messages(all(t, dir)))
}

func TestBook_FollowsThroughCopyAndTruncateRotation(t *testing.T) {
	srv, dir := setup(t)
	b, err := replicalog.Open(dir, srv.raw)
	require.NoError(t, err)
	srv.write("stdout", "a\n")
	require.NoError(t, b.Follow(false))
	// Rotated by someone else after more was written.
	srv.write("stdout", "b\n")
	require.NoError(t, process.RotateLog(filepath.Join(srv.raw, "stdout.log"), 3))
	srv.write("stdout", "c\n")
	require.NoError(t, b.Follow(false))
	require.Equal(t, []string{"a", "b", "c"}, messages(all(t, dir)))

	// Rotated by the book itself, past its limit.
	b.RawLimit = 10
	srv.write("stdout", "0123456789\n")
	require.NoError(t, b.Follow(false))
	fi, err := os.Stat(filepath.Join(srv.raw, "stdout.log"))
	require.NoError(t, err)
	require.Zero(t, fi.Size(), "the raw file past its limit is truncated once read")
	srv.write("stdout", "d\n")
	require.NoError(t, b.Follow(false))
	require.Equal(t, []string{"a", "b", "c", "0123456789", "d"}, messages(all(t, dir)))
}

func TestBook_RotatesItsLinesAndQueriesEveryGeneration(t *testing.T) {
	srv, dir := setup(t)
	b, err := replicalog.Open(dir, srv.raw)
	require.NoError(t, err)
	b.LinesLimit = 200
	var want []string
	for i := range 8 {
		msg := fmt.Sprintf("line %d", i)
		want = append(want, msg)
		srv.write("stdout", msg+"\n")
		require.NoError(t, b.Follow(false))
	}
	require.FileExists(t, filepath.Join(dir, "lines.jsonl.1"))
	require.Equal(t, want, messages(all(t, dir)))
}

func TestQuery_FiltersByTimeLevelTextLimitAndDirection(t *testing.T) {
	srv, dir := setup(t)
	b, err := replicalog.Open(dir, srv.raw)
	require.NoError(t, err)
	srv.write("stdout", "DEBUG a\nINFO b\nWARNING c\nERROR d\nno level e\n")
	require.NoError(t, b.Follow(false))
	lines := all(t, dir)
	require.Len(t, lines, 5)

	q := func(q agentproto.LinesQuery) []string {
		got, err := replicalog.Query(dir, q)
		require.NoError(t, err)
		return messages(got)
	}
	require.Equal(t, []string{"INFO b", "WARNING c"}, q(agentproto.LinesQuery{Since: lines[1].Time, Until: lines[3].Time}))
	require.Equal(t, []string{"WARNING c", "ERROR d"}, q(agentproto.LinesQuery{MinLevel: agentproto.LevelWarning}))
	require.Equal(t, []string{"DEBUG a", "INFO b"}, q(agentproto.LinesQuery{Limit: 2}))
	require.Equal(t, []string{"no level e", "ERROR d"}, q(agentproto.LinesQuery{Limit: 2, Direction: "desc"}))
	require.Equal(t, []string{"ERROR d", "no level e"}, q(agentproto.LinesQuery{Search: `^(ERROR|no)`}))
	require.Equal(t, []string{"WARNING c"}, q(agentproto.LinesQuery{Includes: []string{"c"}, Excludes: []string{"e"}}))
	_, err = replicalog.Query(dir, agentproto.LinesQuery{Search: "("})
	require.ErrorContains(t, err, "search")
}

func TestDetectLevel_KnowsCommonFormats(t *testing.T) {
	for line, want := range map[string]string{
		"ERROR:root:failed":                           agentproto.LevelError,
		"INFO:     Started server process":            agentproto.LevelInfo,
		"[WARNING] slow":                              agentproto.LevelWarning,
		"2024-05-01 12:00:00,123 - DEBUG - loading":   agentproto.LevelDebug,
		"2024-05-01T12:00:00Z CRITICAL out of memory": agentproto.LevelError,
		`time=1 level=warn msg="x"`:                   agentproto.LevelWarning,
		`{"level":"info","msg":"x"}`:                  agentproto.LevelInfo,
		"loading the model's weights":                 "",
		"informed decisions":                          "",
	} {
		require.Equal(t, want, replicalog.DetectLevel(line), "level of %q", line)
	}
}
