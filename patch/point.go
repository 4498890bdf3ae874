// Package patch is the live-reload protocol of the development deployment: patch points (the
// content hashes of a package's tree and its config text), the operations that take one
// point to the next, and the pure decisions around them (is a patch consistent, what a
// replica's directory must change, can a running replica take it, and how).
package patch

import (
	"archive/tar"
	"compress/gzip"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path"
	"path/filepath"
	"regexp"
	"sort"
	"strings"
	"unicode/utf8"

	"github.com/modelplane/modelplane/modelpkg"
)

// Limits on a point, so a hostile one cannot make the server hash or store without bound.
const (
	// MaxPaths bounds the entries of a point's content_hashes.
	MaxPaths = 20_000
	// MaxPathLen bounds one path, in bytes.
	MaxPathLen = 1024
)

// Point is a patch point: the SHA-256 (hex) of every file of a package by its slash-separated
// path, null for a directory, and the text of config.yaml, which is not among the paths.
type Point struct {
	ContentHashes map[string]*string `json:"content_hashes"`
	Config        string             `json:"config"`
	// Requirements are what the watch client resolved from config.yaml's requirements file,
	// kept as sent. They are not part of the hash: the file itself is among the paths.
	Requirements []string `json:"requirements,omitempty"`
}

// Hash is the point's identity: the SHA-256 (hex) of its canonical JSON, in which object keys
// are sorted, so it depends on the content alone and not on the order anything was listed in.
func (p Point) Hash() string {
	hashes := p.ContentHashes
	if hashes == nil {
		hashes = map[string]*string{}
	}
	b, err := json.Marshal(Point{ContentHashes: hashes, Config: p.Config})
	if err != nil {
		panic(err) // strings and maps of strings always marshal
	}
	return sumHex(b)
}

// IsDir reports whether the point has a directory at p.
func (p Point) IsDir(rel string) bool {
	h, ok := p.ContentHashes[rel]
	return ok && h == nil
}

// Has reports whether the point has anything at p.
func (p Point) Has(rel string) bool {
	_, ok := p.ContentHashes[rel]
	return ok
}

func (p Point) clone() Point {
	out := Point{ContentHashes: make(map[string]*string, len(p.ContentHashes)), Config: p.Config,
		Requirements: append([]string(nil), p.Requirements...)}
	for k, v := range p.ContentHashes {
		out.ContentHashes[k] = v
	}
	return out
}

// Sorted returns the point's paths in lexical order.
func (p Point) Sorted() []string {
	out := make([]string, 0, len(p.ContentHashes))
	for k := range p.ContentHashes {
		out = append(out, k)
	}
	sort.Strings(out)
	return out
}

var hexDigest = regexp.MustCompile(`^[0-9a-f]{64}$`)

// Validate checks a point that came over the wire: every path well formed, every hash 64
// lowercase hex digits or null, the parent directories of every entry present, and a
// config.yaml that parses. The error names what is wrong.
func (p Point) Validate() error {
	if len(p.ContentHashes) > MaxPaths {
		return fmt.Errorf("content_hashes: more than %d paths", MaxPaths)
	}
	for _, rel := range p.Sorted() {
		if err := CheckPath(rel); err != nil {
			return fmt.Errorf("content_hashes[%q]: %w", rel, err)
		}
		if h := p.ContentHashes[rel]; h != nil && !hexDigest.MatchString(*h) {
			return fmt.Errorf("content_hashes[%q]: must be a SHA-256 in 64 lowercase hex digits, or null for a directory", rel)
		}
		if dir := path.Dir(rel); dir != "." && !p.IsDir(dir) {
			return fmt.Errorf("content_hashes[%q]: its directory %q is not in the point (as null)", rel, dir)
		}
	}
	if _, err := modelpkg.ParseConfig([]byte(p.Config)); err != nil {
		return fmt.Errorf("config: %w", err)
	}
	if len(p.Requirements) > MaxPaths {
		return fmt.Errorf("requirements: more than %d", MaxPaths)
	}
	for i, r := range p.Requirements {
		if strings.TrimSpace(r) == "" || len(r) > MaxPathLen {
			return fmt.Errorf("requirements[%d]: must be a requirement of 1-%d bytes", i, MaxPathLen)
		}
	}
	return nil
}

// CheckPath checks one package path: relative, slash-separated, clean, inside the package, not
// config.yaml (the point's config carries it) and not something a package never holds.
func CheckPath(rel string) error {
	switch {
	case rel == "":
		return errors.New("empty path")
	case len(rel) > MaxPathLen:
		return fmt.Errorf("path longer than %d bytes", MaxPathLen)
	case !utf8.ValidString(rel):
		return errors.New("must be valid UTF-8")
	case strings.HasPrefix(rel, "/"), strings.Contains(rel, `\`), strings.ContainsRune(rel, 0):
		return errors.New("must be a relative, slash-separated path")
	case path.Clean(rel) != rel || rel == "." || rel == ".." || strings.HasPrefix(rel, "../"):
		return errors.New("must be a clean path inside the package (no '.', '..' or doubled '/')")
	case rel == modelpkg.ConfigFile:
		return errors.New("config.yaml is the point's config, not a content hash")
	}
	// Every part is judged both as a directory and as a file: a path cannot say which it is,
	// and a point must not hold a directory ("x~") whose own entry it could not name.
	for _, part := range strings.Split(rel, "/") {
		if modelpkg.Ignored(part, true) || modelpkg.Ignored(part, false) {
			return fmt.Errorf("%q is never part of a package", part)
		}
	}
	return nil
}

// Tracked reports whether the package path rel counts in a point: config.yaml (as the point's
// config) and every path a patch can name. What Pack leaves out (version control, the
// bytecode cache, editors' swap files) does not, wherever it appears in the path.
func Tracked(rel string) bool { return rel == modelpkg.ConfigFile || CheckPath(rel) == nil }

// FromDir computes the point of a package directory: what Pack would put in its archive,
// less what a patch could not name (as FromArchive leaves it out). A symlink counts by the
// target Pack writes, so changing where it points changes the point; one Pack refuses is an
// error here too.
func FromDir(dir string) (Point, error) {
	root, err := filepath.Abs(dir)
	if err != nil {
		return Point{}, err
	}
	p := Point{ContentHashes: map[string]*string{}}
	cfg, err := os.ReadFile(filepath.Join(root, modelpkg.ConfigFile))
	if err != nil {
		return Point{}, fmt.Errorf("reading %s: %w", modelpkg.ConfigFile, err)
	}
	p.Config = string(cfg)
	err = filepath.WalkDir(root, func(abs string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if abs == root {
			return nil
		}
		rel, err := filepath.Rel(root, abs)
		if err != nil {
			return err
		}
		rel = filepath.ToSlash(rel)
		if rel == modelpkg.ConfigFile {
			return nil
		}
		// What Pack leaves out, and what Pack keeps but FromArchive drops (a submodule's .git
		// file, a directory named like an editor's backup): the two points must agree.
		if !Tracked(rel) {
			if d.IsDir() {
				return filepath.SkipDir
			}
			return nil
		}
		switch {
		case d.IsDir():
			p.ContentHashes[rel] = nil
		case d.Type()&fs.ModeSymlink != 0:
			target, err := modelpkg.SymlinkTarget(root, rel)
			if err != nil {
				return err
			}
			h := symlinkHash(target)
			p.ContentHashes[rel] = &h
		case d.Type().IsRegular():
			h, err := fileHash(abs)
			if err != nil {
				return err
			}
			p.ContentHashes[rel] = &h
		}
		return nil
	})
	if err != nil {
		return Point{}, err
	}
	return p, nil
}

// FromArchive computes the point of a package archive (a gzip'd tar as Pack writes it). An
// archive may leave out directory entries; the directories of its files count all the same.
func FromArchive(r io.Reader) (Point, error) {
	gz, err := gzip.NewReader(r)
	if err != nil {
		return Point{}, fmt.Errorf("reading the archive: %w", err)
	}
	defer gz.Close()
	tr := tar.NewReader(gz)
	p := Point{ContentHashes: map[string]*string{}}
	for {
		hdr, err := tr.Next()
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			return Point{}, fmt.Errorf("reading the archive: %w", err)
		}
		rel := path.Clean(strings.TrimPrefix(strings.TrimPrefix(hdr.Name, "./"), "/"))
		if rel == "." || rel == ".." || strings.HasPrefix(rel, "../") {
			continue
		}
		if !Tracked(rel) {
			continue // what Pack would leave out, and what a patch could not name
		}
		switch hdr.Typeflag {
		case tar.TypeDir:
			p.ContentHashes[rel] = nil
		case tar.TypeSymlink:
			h := symlinkHash(hdr.Linkname)
			p.ContentHashes[rel] = &h
		case tar.TypeReg:
			if rel == modelpkg.ConfigFile {
				b, err := io.ReadAll(io.LimitReader(tr, 1<<20))
				if err != nil {
					return Point{}, fmt.Errorf("reading the archive: %w", err)
				}
				p.Config = string(b)
				continue
			}
			h := sha256.New()
			if _, err := io.Copy(h, tr); err != nil {
				return Point{}, fmt.Errorf("reading the archive: %w", err)
			}
			s := hex.EncodeToString(h.Sum(nil))
			p.ContentHashes[rel] = &s
		}
		for dir := path.Dir(rel); dir != "."; dir = path.Dir(dir) {
			p.ContentHashes[dir] = nil
		}
	}
	delete(p.ContentHashes, modelpkg.ConfigFile)
	return p, nil
}

func fileHash(p string) (string, error) {
	f, err := os.Open(p)
	if err != nil {
		return "", err
	}
	defer f.Close()
	h := sha256.New()
	if _, err := io.Copy(h, f); err != nil {
		return "", err
	}
	return hex.EncodeToString(h.Sum(nil)), nil
}

// symlinkHash stands for a symlink: distinct from any file content a package could hold with
// the same bytes as its target's name.
func symlinkHash(target string) string { return sumHex([]byte("symlink\x00" + target)) }

// SumHex is the SHA-256 (hex) of b, the hash of a file with that content.
func SumHex(b []byte) string { return sumHex(b) }

func sumHex(b []byte) string {
	s := sha256.Sum256(b)
	return hex.EncodeToString(s[:])
}
