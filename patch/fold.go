package patch

import (
	"fmt"
	"sort"
	"strings"

	"github.com/modelplane/modelplane/modelpkg"
)

// FileSet is what a package directory must undergo to take a run of patches: remove each
// path in Remove (with what it holds), make each directory in Dirs, then write each file in
// Files, in that order. It is absolute, not relative: carried out on the package as unpacked,
// or on the package with any earlier part of the same run already carried out, it gives the
// same tree. config.yaml is among the files when the run changed it.
type FileSet struct {
	Remove []string `json:"remove,omitempty"`
	Dirs   []string `json:"dirs,omitempty"`
	Files  []File   `json:"files,omitempty"`
}

// File is a file to write whole.
type File struct {
	Path    string `json:"path"`
	Content []byte `json:"content"`
}

// Empty reports whether the set changes nothing.
func (s FileSet) Empty() bool { return len(s.Remove) == 0 && len(s.Dirs) == 0 && len(s.Files) == 0 }

// Bytes is the size of the files to write.
func (s FileSet) Bytes() int64 {
	var n int64
	for _, f := range s.Files {
		n += int64(len(f.Content))
	}
	return n
}

// Check checks a set that came over the wire: every path a package path.
func (s FileSet) Check() error {
	for _, p := range s.Remove {
		if err := CheckPath(p); err != nil {
			return fmt.Errorf("remove %q: %w", p, err)
		}
	}
	for _, p := range s.Dirs {
		if err := CheckPath(p); err != nil {
			return fmt.Errorf("dir %q: %w", p, err)
		}
	}
	for _, f := range s.Files {
		if f.Path == modelpkg.ConfigFile {
			continue
		}
		if err := CheckPath(f.Path); err != nil {
			return fmt.Errorf("file %q: %w", f.Path, err)
		}
	}
	return nil
}

type foldEntry struct {
	clear   bool // what the package had here goes first
	dir     bool
	file    bool
	content []byte
}

// Fold turns the operations of a run of consistent patches (Next accepted each) into the
// FileSet that carries them out: each path's last state, and a removal for every path that
// was removed (or replaced by another kind) on the way.
func Fold(ops []Op) FileSet {
	entries := map[string]*foldEntry{}
	at := func(p string) *foldEntry {
		e := entries[p]
		if e == nil {
			e = &foldEntry{}
			entries[p] = e
		}
		return e
	}
	for _, op := range ops {
		switch op.Type {
		case TypeConfig:
			if op.Content != nil {
				e := at(modelpkg.ConfigFile)
				e.file, e.content = true, []byte(*op.Content)
			}
		case TypeModelCode:
			switch op.Action {
			case ActionRemove:
				for k := range entries {
					if strings.HasPrefix(k, op.Path+"/") {
						delete(entries, k)
					}
				}
				e := at(op.Path)
				*e = foldEntry{clear: true}
			case ActionAdd, ActionUpdate:
				e := at(op.Path)
				if op.IsDir() {
					e.dir, e.file, e.content = true, false, nil
				} else {
					e.dir, e.file, e.content = false, true, op.Data()
				}
			}
		}
	}
	var out FileSet
	for _, p := range sortedKeys(entries) {
		e := entries[p]
		if e.clear {
			out.Remove = append(out.Remove, p)
		}
		switch {
		case e.dir:
			out.Dirs = append(out.Dirs, p)
		case e.file:
			out.Files = append(out.Files, File{Path: p, Content: e.content})
		}
	}
	return out
}

func sortedKeys[V any](m map[string]V) []string {
	out := make([]string, 0, len(m))
	for k := range m {
		out = append(out, k)
	}
	sort.Strings(out)
	return out
}
