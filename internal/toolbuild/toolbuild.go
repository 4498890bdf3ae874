// Package toolbuild builds, for tests, a program from a module of its own that pins the
// program's version (internal/s3test/weed for SeaweedFS, internal/clustertest/temporalserver
// for the Temporal server). Those modules are separate so that the programs' dependencies stay
// out of modelplane's own.
//
// A program is built once into the user's cache directory, under its module path's version,
// and reused by later runs; the first build downloads and compiles it, which takes minutes.
package toolbuild

import (
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"time"
)

// Tool is a program pinned by a module of its own.
type Tool struct {
	// Name is the binary's name, and the cache directory's with the version.
	Name string
	// ModuleDir is the pinning module's directory; Requires the module path whose version
	// it pins; Package the main package to build.
	ModuleDir, Requires, Package string
	// Env names a variable that, when set, is a binary to use instead of building one.
	Env string
}

// Binary returns the path of the tool's binary, building it when the cache has none.
func (t Tool) Binary() (string, error) {
	if p := os.Getenv(t.Env); t.Env != "" && p != "" {
		return p, nil
	}
	version, err := pinnedVersion(filepath.Join(t.ModuleDir, "go.mod"), t.Requires)
	if err != nil {
		return "", err
	}
	cache, err := os.UserCacheDir()
	if err != nil {
		cache = os.TempDir()
	}
	dir := filepath.Join(cache, "modelplane-test", t.Name+"-"+version)
	bin := filepath.Join(dir, t.Name)
	if _, err := os.Stat(bin); err == nil {
		return bin, nil
	}
	if err := os.MkdirAll(dir, 0o750); err != nil {
		return "", err
	}
	// Built beside its final name and renamed, so that test processes building at once
	// never run a half-written binary.
	tmp := filepath.Join(dir, t.Name+".tmp-"+strconv.Itoa(os.Getpid()))
	cmd := exec.Command("go", "build", "-o", tmp, t.Package)
	cmd.Dir = t.ModuleDir
	start := time.Now()
	out, err := cmd.CombinedOutput()
	if err != nil {
		return "", fmt.Errorf("building %s %s (%s): %v\n%s", t.Name, version, time.Since(start).Round(time.Second), err, out)
	}
	if err := os.Rename(tmp, bin); err != nil {
		return "", err
	}
	fmt.Fprintf(os.Stderr, "built %s %s in %s\n", t.Name, version, time.Since(start).Round(time.Second))
	return bin, nil
}

// pinnedVersion reads the version of module the go.mod at path requires.
func pinnedVersion(path, module string) (string, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return "", err
	}
	for _, line := range strings.Split(string(b), "\n") {
		f := strings.Fields(line)
		if len(f) >= 3 && f[0] == "require" {
			f = f[1:]
		}
		if len(f) >= 2 && f[0] == module {
			return f[1], nil
		}
	}
	return "", errors.New(path + " does not require " + module)
}
