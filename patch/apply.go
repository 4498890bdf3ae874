package patch

import (
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path"
	"strings"
)

// ErrRefused is a FileSet that Apply does not carry out, changing nothing: a path that is not
// a package path, or that leads outside the package (through "..", or a symlink in it that
// points elsewhere).
var ErrRefused = errors.New("refused")

// errOutside is a path that leads outside the package.
var errOutside = errors.New("leads outside the package")

// Apply carries out s on the package in pkgDir: removals, then directories, then files,
// each written whole under a temporary name and renamed, so a server reading one at that
// moment sees the old file or the new one. Every path is resolved inside pkgDir through
// os.Root, and all of them are checked before anything changes, so that neither ".." nor a
// symlink in the package that points elsewhere lets a patch touch anything outside it (an
// error wrapping ErrRefused).
func Apply(pkgDir string, s FileSet) error {
	if err := s.Check(); err != nil {
		return fmt.Errorf("%w: %v", ErrRefused, err)
	}
	root, err := os.OpenRoot(pkgDir)
	if err != nil {
		return err
	}
	defer root.Close()
	paths := append(append([]string(nil), s.Remove...), s.Dirs...)
	for _, f := range s.Files {
		paths = append(paths, f.Path)
	}
	for _, p := range paths {
		if err := checkInside(root, p); err != nil {
			return fmt.Errorf("%w: %s: %v", ErrRefused, p, err)
		}
	}
	for _, p := range s.Remove {
		if err := root.RemoveAll(p); err != nil {
			return fmt.Errorf("removing %s: %w", p, err)
		}
	}
	for _, p := range s.Dirs {
		if err := root.MkdirAll(p, 0o755); err != nil {
			return fmt.Errorf("making %s: %w", p, err)
		}
	}
	for _, f := range s.Files {
		if err := writeFile(root, f.Path, f.Content); err != nil {
			return fmt.Errorf("writing %s: %w", f.Path, err)
		}
	}
	return nil
}

// checkInside checks that every existing part of rel, a symlink followed, stays in root.
func checkInside(root *os.Root, rel string) error {
	parts := strings.Split(rel, "/")
	for i := range parts {
		p := strings.Join(parts[:i+1], "/")
		fi, err := root.Lstat(p)
		if errors.Is(err, fs.ErrNotExist) {
			return nil // what is missing is made inside what exists
		}
		if err != nil {
			return fmt.Errorf("%w: %v", errOutside, err)
		}
		if fi.Mode()&fs.ModeSymlink == 0 {
			continue
		}
		if _, err := root.Stat(p); err != nil && !errors.Is(err, fs.ErrNotExist) {
			return fmt.Errorf("%w: %v", errOutside, err)
		}
	}
	return nil
}

// writeFile replaces rel's content in one rename, so a server that reads it at that moment
// sees the old file or the new one. A file that exists keeps its mode.
func writeFile(root *os.Root, rel string, content []byte) error {
	dir := path.Dir(rel)
	if dir != "." {
		if err := root.MkdirAll(dir, 0o755); err != nil {
			return err
		}
	}
	mode := os.FileMode(0o644)
	switch fi, err := root.Stat(rel); {
	case err == nil && fi.IsDir():
		return fmt.Errorf("%s is a directory", rel)
	case err == nil:
		mode = fi.Mode().Perm()
	case !errors.Is(err, fs.ErrNotExist):
		return err
	}
	var suffix [8]byte
	if _, err := rand.Read(suffix[:]); err != nil {
		return err
	}
	tmp := path.Join(dir, ".patch-"+hex.EncodeToString(suffix[:])+".tmp")
	f, err := root.OpenFile(tmp, os.O_WRONLY|os.O_CREATE|os.O_EXCL, mode)
	if err != nil {
		return err
	}
	_, err = f.Write(content)
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err == nil {
		// The mode given to OpenFile went through the umask.
		err = root.Chmod(tmp, mode)
	}
	if err == nil {
		err = root.Rename(tmp, rel)
	}
	if err != nil {
		_ = root.Remove(tmp)
	}
	return err
}
