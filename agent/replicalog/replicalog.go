// Package replicalog keeps a replica's output as timestamped lines. The model server writes
// its stdout and stderr straight into files of its own (it outlives the agent, and never
// waits on it); a Book follows those files as they grow, stamps each complete line with the
// time it read it and a level, and appends it to a JSON-lines file of its own, which it
// rotates. Its read offsets are kept beside the lines, in step with them, so that an agent
// restart, even a crash, neither reads a line twice nor skips one.
package replicalog

import (
	"bufio"
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"time"

	"github.com/modelplane/modelplane/agent/agentproto"
	"github.com/modelplane/modelplane/agent/runtime"
	"github.com/modelplane/modelplane/agent/runtime/process"
)

// Bounds of what a replica's logs take on disk, raw and stamped: each file rotates past its
// limit (the defaults of Book's RawLimit and LinesLimit) and keeps that many older
// generations.
const (
	RawLimit     = 10 << 20
	RawKeep      = 3
	LinesLimit   = 8 << 20
	LinesKeep    = 3
	maxLine      = 64 << 10 // a longer line is cut into pieces of this size
	maxReadChunk = 4 << 20  // read per stream and step, so one chatty replica cannot stall the others
)

const (
	linesFile = "lines.jsonl"
	stateFile = "state.json"
)

// state is what a Book must remember across restarts: how far it has read each raw file, how
// long its lines file was when it had, and the last stamp it gave.
type state struct {
	Offsets map[string]int64 `json:"offsets"`
	// Copies mark each raw file's rotated copy (.1) as it was at the last read: a copy that
	// changed since says the file was rotated, and truncated, in between.
	Copies map[string]fileMark `json:"copies"`
	Size   int64               `json:"size"`
	Last   time.Time           `json:"last"`
}

// Book is one replica's stamped lines, in Dir, from the raw files in RawDir.
type Book struct {
	// RawLimit and LinesLimit are the sizes past which a raw file and the lines file rotate.
	RawLimit, LinesLimit int64

	dir, rawDir string
	st          state
	levels      map[string]*leveler
	now         func() time.Time
}

// Open opens the book in dir (created when missing) of the raw files in rawDir. The lines
// written after the state was last saved (an agent that crashed in between) are dropped: the
// raw files still hold them, from the saved offsets on, and are read again.
func Open(dir, rawDir string) (*Book, error) {
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return nil, err
	}
	b := &Book{RawLimit: RawLimit, LinesLimit: LinesLimit, dir: dir, rawDir: rawDir, levels: map[string]*leveler{}, now: time.Now}
	raw, err := os.ReadFile(filepath.Join(dir, stateFile))
	switch {
	case errors.Is(err, os.ErrNotExist):
	case err != nil:
		return nil, err
	default:
		if err := json.Unmarshal(raw, &b.st); err != nil {
			return nil, fmt.Errorf("the log state %s is corrupt: %w", filepath.Join(dir, stateFile), err)
		}
	}
	if b.st.Offsets == nil {
		b.st.Offsets = map[string]int64{}
	}
	if b.st.Copies == nil {
		b.st.Copies = map[string]fileMark{}
	}
	if fi, err := os.Stat(b.linesPath()); err == nil {
		if fi.Size() > b.st.Size {
			if err := os.Truncate(b.linesPath(), b.st.Size); err != nil {
				return nil, err
			}
		}
		b.st.Size = min(fi.Size(), b.st.Size)
	} else {
		b.st.Size = 0
	}
	for _, s := range process.Streams {
		b.levels[s] = newLeveler(s)
	}
	return b, nil
}

func (b *Book) linesPath() string { return filepath.Join(b.dir, linesFile) }

// Follow reads what the raw files gained since the last call and appends it, stamped. A raw
// file past b.RawLimit is rotated here, once read, so that no line is between two reads when
// it moves; one that shrank without that (rotated by someone else) is read on from its
// rotated copy. With final set, a line the server left unfinished is taken as it is: the
// server has stopped.
func (b *Book) Follow(final bool) error {
	var lines []agentproto.LogLine
	var errs []error
	for _, stream := range process.Streams {
		got, err := b.followStream(stream, final)
		lines = append(lines, got...)
		errs = append(errs, err)
	}
	if len(lines) > 0 || !final {
		errs = append(errs, b.append(lines))
	}
	return errors.Join(errs...)
}

func (b *Book) followStream(stream string, final bool) ([]agentproto.LogLine, error) {
	p := filepath.Join(b.rawDir, stream+".log")
	fi, err := os.Stat(p)
	if errors.Is(err, os.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	var out []agentproto.LogLine
	off := b.st.Offsets[stream]
	copyMark := markOf(p + ".1")
	if prev, known := b.st.Copies[stream]; (known && prev != copyMark) || fi.Size() < off {
		// Rotated behind our back: the rest of what we had not read is in its copy.
		out = append(out, b.readRest(p+".1", stream, off)...)
		off = 0
	}
	b.st.Copies[stream] = copyMark
	data, err := readFrom(p, off, maxReadChunk)
	if err != nil {
		return nil, err
	}
	got, used := b.split(stream, data, final)
	out = append(out, got...)
	off += int64(used)
	if fi.Size() > b.RawLimit && off >= fi.Size() {
		if err := process.RotateLog(p, RawKeep); err != nil {
			return out, err
		}
		// What the server wrote between the read and the rotation is in the copy only.
		out = append(out, b.readRest(p+".1", stream, off)...)
		off = 0
		b.st.Copies[stream] = markOf(p + ".1")
	}
	b.st.Offsets[stream] = off
	return out, nil
}

// fileMark tells one version of a file from another; zero for no file.
type fileMark struct {
	Size    int64 `json:"size"`
	ModTime int64 `json:"mtime_ns"`
}

func markOf(p string) fileMark {
	fi, err := os.Stat(p)
	if err != nil {
		return fileMark{}
	}
	return fileMark{fi.Size(), fi.ModTime().UnixNano()}
}

// readRest reads the lines of a rotated copy from off to its end, unfinished or not.
func (b *Book) readRest(p, stream string, off int64) []agentproto.LogLine {
	data, err := readFrom(p, off, RawLimit*2)
	if err != nil {
		return nil
	}
	lines, _ := b.split(stream, data, true)
	return lines
}

func readFrom(p string, off int64, max int64) ([]byte, error) {
	f, err := os.Open(p)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	if _, err := f.Seek(off, io.SeekStart); err != nil {
		return nil, err
	}
	return io.ReadAll(io.LimitReader(f, max))
}

// split cuts data into stamped lines and says how many bytes they took: an unfinished last
// line waits for its end unless final (or too long to wait for).
func (b *Book) split(stream string, data []byte, final bool) ([]agentproto.LogLine, int) {
	var out []agentproto.LogLine
	used := 0
	for used < len(data) {
		rest := data[used:]
		i := bytes.IndexByte(rest, '\n')
		var text []byte
		switch {
		case i >= 0 && i <= maxLine:
			text, used = rest[:i], used+i+1
		case len(rest) >= maxLine || i > maxLine:
			text, used = rest[:maxLine], used+maxLine
		case final:
			text, used = rest, len(data)
		default:
			return out, used
		}
		msg := strings.ToValidUTF8(string(bytes.TrimSuffix(text, []byte("\r"))), "\uFFFD")
		out = append(out, agentproto.LogLine{Time: b.stamp(), Stream: stream, Level: b.levels[stream].level(msg), Message: msg})
	}
	return out, used
}

// stamp is the time a line is read, later than every stamp before it, so that a replica's
// lines are in order by their stamps and no two share one.
func (b *Book) stamp() time.Time {
	t := b.now().UTC()
	if !t.After(b.st.Last) {
		t = b.st.Last.Add(time.Nanosecond)
	}
	b.st.Last = t
	return t
}

// append writes lines to the lines file, rotating it first when full, then saves the
// state that says how far the raw files were read.
func (b *Book) append(lines []agentproto.LogLine) error {
	if len(lines) > 0 {
		if b.st.Size > b.LinesLimit {
			if err := b.rotate(); err != nil {
				return err
			}
		}
		var buf bytes.Buffer
		enc := json.NewEncoder(&buf)
		enc.SetEscapeHTML(false)
		for _, l := range lines {
			if err := enc.Encode(l); err != nil {
				return err
			}
		}
		f, err := os.OpenFile(b.linesPath(), os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
		if err != nil {
			return err
		}
		_, err = f.Write(buf.Bytes())
		if cerr := f.Close(); err == nil {
			err = cerr
		}
		if err != nil {
			return err
		}
		b.st.Size += int64(buf.Len())
	}
	return b.save()
}

func (b *Book) rotate() error {
	p := b.linesPath()
	for i := LinesKeep - 1; i >= 1; i-- {
		_ = os.Rename(fmt.Sprintf("%s.%d", p, i), fmt.Sprintf("%s.%d", p, i+1))
	}
	if err := os.Rename(p, p+".1"); err != nil {
		return err
	}
	b.st.Size = 0
	return b.save()
}

// save writes the state atomically.
func (b *Book) save() error {
	raw, err := json.Marshal(b.st)
	if err != nil {
		return err
	}
	tmp := filepath.Join(b.dir, stateFile+".tmp")
	if err := os.WriteFile(tmp, raw, 0o644); err != nil {
		return err
	}
	return os.Rename(tmp, filepath.Join(b.dir, stateFile))
}

// Query answers the lines q selects from the book in dir, oldest generation first.
func Query(dir string, q agentproto.LinesQuery) ([]agentproto.LogLine, error) {
	match, err := matcher(q)
	if err != nil {
		return nil, err
	}
	p := filepath.Join(dir, linesFile)
	var files []string
	for i := LinesKeep; i >= 1; i-- {
		files = append(files, fmt.Sprintf("%s.%d", p, i))
	}
	files = append(files, p)
	out := []agentproto.LogLine{}
	desc := q.Direction == "desc"
	for _, name := range files {
		// A file last written before since holds nothing after it.
		if fi, err := os.Stat(name); err != nil || (!q.Since.IsZero() && fi.ModTime().Before(q.Since.Add(-time.Second))) {
			continue
		}
		done, err := scan(name, func(l agentproto.LogLine) bool {
			if !q.Until.IsZero() && !l.Time.Before(q.Until) {
				return false
			}
			if l.Time.Before(q.Since) || !match(l) {
				return true
			}
			out = append(out, l)
			if desc && q.Limit > 0 && len(out) > 2*q.Limit {
				out = slices.Delete(out, 0, len(out)-q.Limit)
			}
			return desc || q.Limit <= 0 || len(out) < q.Limit
		})
		if err != nil {
			return nil, err
		}
		if done {
			break
		}
	}
	if desc {
		slices.Reverse(out)
	}
	if q.Limit > 0 && len(out) > q.Limit {
		out = out[:q.Limit]
	}
	return out, nil
}

// scan calls fn with each line of the file until it answers false; done says it did.
func scan(name string, fn func(agentproto.LogLine) bool) (bool, error) {
	f, err := os.Open(name)
	if err != nil {
		return false, nil
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	sc.Buffer(make([]byte, 64<<10), 4*maxLine)
	for sc.Scan() {
		var l agentproto.LogLine
		if json.Unmarshal(sc.Bytes(), &l) != nil {
			continue
		}
		if !fn(l) {
			return true, nil
		}
	}
	return false, sc.Err()
}

// matcher is the filter of q's level and text conditions.
func matcher(q agentproto.LinesQuery) (func(agentproto.LogLine) bool, error) {
	var re *regexp.Regexp
	if q.Search != "" {
		var err error
		if re, err = regexp.Compile(q.Search); err != nil {
			return nil, fmt.Errorf("search: not an RE2 expression: %w", err)
		}
	}
	minRank := agentproto.LevelRank(q.MinLevel)
	return func(l agentproto.LogLine) bool {
		if q.MinLevel != "" && agentproto.LevelRank(l.Level) < minRank {
			return false
		}
		if re != nil && !re.MatchString(l.Message) {
			return false
		}
		for _, s := range q.Includes {
			if !strings.Contains(l.Message, s) {
				return false
			}
		}
		for _, s := range q.Excludes {
			if strings.Contains(l.Message, s) {
				return false
			}
		}
		return true
	}, nil
}

// Leveled gives lines stamped by their runtime (a container engine's) their levels, as a Book
// gives them to the lines it reads.
func Leveled(lines []runtime.Line) []agentproto.LogLine {
	levels := map[string]*leveler{}
	out := make([]agentproto.LogLine, 0, len(lines))
	for _, l := range lines {
		lv := levels[l.Stream]
		if lv == nil {
			lv = newLeveler(l.Stream)
			levels[l.Stream] = lv
		}
		out = append(out, agentproto.LogLine{Time: l.Time, Stream: l.Stream, Level: lv.level(l.Message), Message: l.Message})
	}
	return out
}

// Select answers the lines q selects of lines, which are in order, oldest first.
func Select(lines []agentproto.LogLine, q agentproto.LinesQuery) ([]agentproto.LogLine, error) {
	match, err := matcher(q)
	if err != nil {
		return nil, err
	}
	out := []agentproto.LogLine{}
	for _, l := range lines {
		if !l.Time.Before(q.Since) && (q.Until.IsZero() || l.Time.Before(q.Until)) && match(l) {
			out = append(out, l)
		}
	}
	if q.Direction == "desc" {
		slices.Reverse(out)
	}
	if q.Limit > 0 && len(out) > q.Limit {
		out = out[:q.Limit]
	}
	return out, nil
}
