package patch_test

import (
	"bytes"
	"encoding/json"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/modelplane/modelplane/modelpkg"
	"github.com/modelplane/modelplane/patch"
)

// tree describes a package directory: a key ending in "/" is a directory, a value starting
// with "symlink:" is a symlink to the rest of the value, anything else a file with that
// content. Parents are made as needed, so listing a directory matters only when it is empty.
type tree map[string]string

const symlinkPrefix = "symlink:"

// Configs used throughout: a minimal python package, and variants that differ in their
// environment variables.
const (
	cfgPlain = "model_name: m\n"
	cfgEnvAB = "model_name: m\nenvironment_variables:\n  A: \"1\"\n  B: \"2\"\n"
	cfgEnvBC = "model_name: m\nenvironment_variables:\n  B: \"20\"\n  C: \"3\"\n"
)

// binary is content that is not UTF-8, so Diff must send it as content_bytes.
const binary = "\x00\xff\xfe\x80weights\x00"

// write makes the tree under a fresh directory and returns the directory.
func (tr tree) write(t *testing.T) string {
	t.Helper()
	dir := t.TempDir()
	tr.writeInto(t, dir)
	return dir
}

func (tr tree) writeInto(t *testing.T, dir string) {
	t.Helper()
	keys := make([]string, 0, len(tr))
	for k := range tr {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	for _, rel := range keys {
		v := tr[rel]
		abs := filepath.Join(dir, filepath.FromSlash(strings.TrimSuffix(rel, "/")))
		if strings.HasSuffix(rel, "/") {
			require.NoError(t, os.MkdirAll(abs, 0o755))
			continue
		}
		require.NoError(t, os.MkdirAll(filepath.Dir(abs), 0o755))
		if target, ok := strings.CutPrefix(v, symlinkPrefix); ok {
			require.NoError(t, os.Symlink(target, abs))
			continue
		}
		require.NoError(t, os.WriteFile(abs, []byte(v), 0o644))
	}
}

// with returns a copy of the tree with the given entries changed; the value "-" deletes the
// entry.
func (tr tree) with(changes tree) tree {
	out := tree{}
	for k, v := range tr {
		out[k] = v
	}
	for k, v := range changes {
		if v == "-" {
			delete(out, k)
			continue
		}
		out[k] = v
	}
	return out
}

// pointOf is FromDir that fails the test on error.
func pointOf(t *testing.T, dir string) patch.Point {
	t.Helper()
	p, err := patch.FromDir(dir)
	require.NoError(t, err, "FromDir(%s)", dir)
	return p
}

// packedPoint is the point of the archive Pack makes of dir.
func packedPoint(t *testing.T, dir string) patch.Point {
	t.Helper()
	var buf bytes.Buffer
	_, err := modelpkg.Pack(dir, &buf)
	require.NoError(t, err, "Pack(%s)", dir)
	p, err := patch.FromArchive(&buf)
	require.NoError(t, err, "FromArchive of Pack(%s)", dir)
	return p
}

// applyFileSet carries out a FileSet on dir as its documentation says: remove, make the
// directories, write the files. It makes no parent on its own, so a FileSet that forgets a
// directory fails here.
func applyFileSet(t *testing.T, dir string, s patch.FileSet) {
	t.Helper()
	require.NoError(t, s.Check(), "FileSet.Check")
	for _, rel := range s.Remove {
		require.NoError(t, os.RemoveAll(filepath.Join(dir, filepath.FromSlash(rel))), "remove %s", rel)
	}
	for _, rel := range s.Dirs {
		require.NoError(t, os.MkdirAll(filepath.Join(dir, filepath.FromSlash(rel)), 0o755), "mkdir %s", rel)
	}
	for _, f := range s.Files {
		require.NoError(t, os.WriteFile(filepath.Join(dir, filepath.FromSlash(f.Path)), f.Content, 0o644), "write %s", f.Path)
	}
}

// overWire sends v through JSON and back, as a client and the server would.
func overWire[T any](t *testing.T, v T) T {
	t.Helper()
	b, err := json.Marshal(v)
	require.NoError(t, err)
	var out T
	require.NoError(t, json.Unmarshal(b, &out), "unmarshal %s", b)
	return out
}

func str(s string) *string { return &s }

func hashOf(content string) *string { return str(patch.SumHex([]byte(content))) }

// requirePointEqual compares points by their maps and config, listing the paths that differ
// instead of two pointer maps.
func requirePointEqual(t *testing.T, want, got patch.Point, msgAndArgs ...any) {
	t.Helper()
	require.Equal(t, describe(want), describe(got), msgAndArgs...)
	require.Equal(t, want.Hash(), got.Hash(), msgAndArgs...)
}

// describe renders a point's entries as "path=dir" or "path=<hash prefix>" lines, so a
// failing comparison shows paths, not pointers.
func describe(p patch.Point) string {
	var b strings.Builder
	for _, rel := range p.Sorted() {
		if h := p.ContentHashes[rel]; h == nil {
			b.WriteString(rel + "=dir\n")
		} else {
			b.WriteString(rel + "=" + (*h)[:12] + "\n")
		}
	}
	b.WriteString("config=" + p.Config)
	return b.String()
}
