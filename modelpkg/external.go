package modelpkg

import (
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strconv"

	"go.yaml.in/yaml/v3"
)

// ExternalRoot is the directory of a packed package that holds the external_package_dirs
// lying outside it: entry i of the list is packed as ExternalRoot/<i>/, where the python
// runtime looks for it.
const ExternalRoot = ".external"

// externalDir is one external package directory that PackWithExternal copies.
type externalDir struct {
	index int    // its index in external_package_dirs
	entry string // the entry as the config writes it
	path  string // the directory, absolute, symlinks resolved
	name  string // its name in the archive: ".external/<index>/"
}

// ExternalPackageDirs returns the external_package_dirs of dir's config.yaml (Truss's list
// of directories, relative to dir or absolute, whose code the model imports), nil when the
// key is absent or null.
func ExternalPackageDirs(dir string) ([]string, error) {
	text, err := os.ReadFile(filepath.Join(dir, ConfigFile))
	if err != nil {
		return nil, err
	}
	var doc struct {
		ExternalPackageDirs yaml.Node `yaml:"external_package_dirs"`
	}
	if err := yaml.Unmarshal(text, &doc); err != nil {
		return nil, fmt.Errorf("%s: %w", ConfigFile, err)
	}
	n := &doc.ExternalPackageDirs
	if n.Kind == 0 || isNull(n) {
		return nil, nil
	}
	var dirs []string
	if n.Kind != yaml.SequenceNode || n.Decode(&dirs) != nil {
		return nil, fmt.Errorf("%s: external_package_dirs must be a list of paths", ConfigFile)
	}
	for i, d := range dirs {
		if d == "" {
			return nil, fmt.Errorf("%s: external_package_dirs[%d] is empty", ConfigFile, i)
		}
	}
	return dirs, nil
}

// PackWithExternal writes dir as Pack does and then, after the package's own entries, each
// directory of external (the config's external_package_dirs: paths relative to dir, or
// absolute) that lies outside dir, as .external/<i>/ with i its index in external. Entries
// inside dir are in the archive already and are not copied again. The same rules as Pack's
// apply inside each copied directory: entries sorted, times and owners fixed, Ignored names
// left out, and a symlink that leads outside that directory refused with ErrUnsafePath.
//
// An entry that names no directory is an error naming the entry. So is a package with its
// own .external when there is anything to copy there.
func PackWithExternal(dir string, external []string, w io.Writer) (sha256hex string, err error) {
	dirs, err := resolveExternal(dir, external)
	if err != nil {
		return "", err
	}
	return pack(dir, dirs, w)
}

// resolveExternal finds each entry of external and returns those outside dir.
func resolveExternal(dir string, external []string) ([]externalDir, error) {
	absDir, err := filepath.Abs(dir)
	if err != nil {
		return nil, err
	}
	realDir, err := filepath.EvalSymlinks(absDir)
	if err != nil {
		return nil, err
	}
	var out []externalDir
	for i, entry := range external {
		if entry == "" {
			return nil, fmt.Errorf("external_package_dirs[%d] is empty", i)
		}
		p := entry
		if !filepath.IsAbs(p) {
			p = filepath.Join(absDir, filepath.FromSlash(entry))
		}
		p = filepath.Clean(p)
		fi, err := os.Stat(p)
		if err != nil {
			if errors.Is(err, os.ErrNotExist) {
				return nil, fmt.Errorf("external_package_dirs[%d] %q: directory %s does not exist", i, entry, p)
			}
			return nil, fmt.Errorf("external_package_dirs[%d] %q: %w", i, entry, err)
		}
		if !fi.IsDir() {
			return nil, fmt.Errorf("external_package_dirs[%d] %q: %s is not a directory", i, entry, p)
		}
		resolved, err := filepath.EvalSymlinks(p)
		if err != nil {
			return nil, fmt.Errorf("external_package_dirs[%d] %q: %w", i, entry, err)
		}
		if _, inside := within(absDir, p); inside {
			continue
		}
		if _, inside := within(realDir, resolved); inside {
			continue
		}
		out = append(out, externalDir{index: i, entry: entry, path: resolved, name: ExternalRoot + "/" + strconv.Itoa(i) + "/"})
	}
	if len(out) > 0 {
		if _, err := os.Lstat(filepath.Join(absDir, ExternalRoot)); err == nil {
			return nil, fmt.Errorf("%s has its own %s, where the external_package_dirs outside it would be packed",
				dir, ExternalRoot)
		}
	}
	return out, nil
}
