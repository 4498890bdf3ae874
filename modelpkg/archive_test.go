package modelpkg_test

import (
	"archive/tar"
	"bytes"
	"compress/gzip"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/modelplane/modelplane/modelpkg"
)

// entry is one tar entry of a hand-made archive.
type entry struct {
	name     string
	typ      byte
	mode     int64
	body     string
	linkname string
}

func file(name, body string) entry {
	return entry{name: name, typ: tar.TypeReg, mode: 0o644, body: body}
}
func dir(name string) entry { return entry{name: name, typ: tar.TypeDir, mode: 0o755} }
func symlink(name, target string) entry {
	return entry{name: name, typ: tar.TypeSymlink, mode: 0o777, linkname: target}
}

const goodConfig = "model_name: echo\nruntime: python\n"

// archive builds a gzip'd tar of entries and returns it with its sha256 hex.
func archive(t *testing.T, entries ...entry) ([]byte, string) {
	t.Helper()
	var buf bytes.Buffer
	gz := gzip.NewWriter(&buf)
	tw := tar.NewWriter(gz)
	for _, e := range entries {
		hdr := &tar.Header{Name: e.name, Typeflag: e.typ, Mode: e.mode, Linkname: e.linkname, ModTime: time.Unix(0, 0)}
		if e.typ == tar.TypeReg {
			hdr.Size = int64(len(e.body))
		}
		require.NoError(t, tw.WriteHeader(hdr))
		if e.typ == tar.TypeReg {
			_, err := tw.Write([]byte(e.body))
			require.NoError(t, err)
		}
	}
	require.NoError(t, tw.Close())
	require.NoError(t, gz.Close())
	sum := sha256.Sum256(buf.Bytes())
	return buf.Bytes(), hex.EncodeToString(sum[:])
}

// sandbox is a directory holding dest and an "outside" directory that a malicious archive
// would like to write into; nothing else may ever appear in it.
type sandbox struct {
	base, dest, outside string
}

func newSandbox(t *testing.T) sandbox {
	base := t.TempDir()
	s := sandbox{base: base, dest: filepath.Join(base, "pkg"), outside: filepath.Join(base, "outside")}
	require.NoError(t, os.Mkdir(s.outside, 0o755))
	return s
}

// listing returns every path under root, relative and sorted.
func listing(t *testing.T, root string) []string {
	t.Helper()
	var out []string
	err := filepath.WalkDir(root, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if p != root {
			rel, _ := filepath.Rel(root, p)
			out = append(out, filepath.ToSlash(rel))
		}
		return nil
	})
	require.NoError(t, err)
	sort.Strings(out)
	return out
}

// assertUntouched checks that a failed extraction left no trace: dest is gone (Extract
// created it) and nothing appeared next to it.
func (s sandbox) assertUntouched(t *testing.T) {
	t.Helper()
	assert.Equal(t, []string{"outside"}, listing(t, s.base), "only the outside dir may remain next to dest")
}

func TestExtract_GoodPackageKeepsContentAndModes(t *testing.T) {
	s := newSandbox(t)
	data, sum := archive(t,
		file("config.yaml", goodConfig),
		dir("model/"),
		file("model/model.py", "class Model: pass\n"),
		entry{name: "bin/server", typ: tar.TypeReg, mode: 0o755, body: "#!/bin/sh\n"},
		entry{name: "data/readonly.txt", typ: tar.TypeReg, mode: 0o444, body: "r"},
		symlink("model/link.py", "model.py"),
		symlink("data/up", "../model"),
	)
	cfg, err := modelpkg.Extract(bytes.NewReader(data), "sha256:"+sum, s.dest)
	require.NoError(t, err)
	assert.Equal(t, "echo", cfg.ModelName)
	assert.Equal(t, goodConfig, cfg.Raw)

	assert.Equal(t, []string{"bin", "bin/server", "config.yaml", "data", "data/readonly.txt", "data/up",
		"model", "model/link.py", "model/model.py"}, listing(t, s.dest))
	body, err := os.ReadFile(filepath.Join(s.dest, "model/model.py"))
	require.NoError(t, err)
	assert.Equal(t, "class Model: pass\n", string(body))

	fi, err := os.Stat(filepath.Join(s.dest, "bin/server"))
	require.NoError(t, err)
	assert.Equal(t, os.FileMode(0o755), fi.Mode().Perm(), "executable bit kept")
	fi, err = os.Stat(filepath.Join(s.dest, "data/readonly.txt"))
	require.NoError(t, err)
	assert.Equal(t, os.FileMode(0o644), fi.Mode().Perm(), "owner may always write (0444 becomes 0644)")
	target, err := os.Readlink(filepath.Join(s.dest, "model/link.py"))
	require.NoError(t, err)
	assert.Equal(t, "model.py", target)
	assert.Equal(t, []string{"outside", "pkg"}, listing(t, s.base)[:2])
}

func TestExtract_AcceptsDotSlashNamesAndEmptyExistingDest(t *testing.T) {
	dest := t.TempDir()
	data, sum := archive(t, dir("./"), file("./config.yaml", goodConfig), file("./model/model.py", "x"))
	cfg, err := modelpkg.Extract(bytes.NewReader(data), strings.ToUpper(sum), dest)
	require.NoError(t, err, "an upper-case checksum is the same checksum")
	assert.Equal(t, "echo", cfg.ModelName)
	assert.Equal(t, []string{"config.yaml", "model", "model/model.py"}, listing(t, dest))
}

func TestExtract_EmptyChecksumSkipsVerification(t *testing.T) {
	data, _ := archive(t, file("config.yaml", goodConfig))
	_, err := modelpkg.Extract(bytes.NewReader(data), "", filepath.Join(t.TempDir(), "pkg"))
	require.NoError(t, err)
}

func TestExtract_ChecksumMismatchRemovesEverything(t *testing.T) {
	data, _ := archive(t, file("config.yaml", goodConfig), file("model/model.py", "x"))
	wrong := strings.Repeat("0", 64)

	t.Run("dest created by Extract is removed", func(t *testing.T) {
		s := newSandbox(t)
		_, err := modelpkg.Extract(bytes.NewReader(data), wrong, s.dest)
		require.ErrorIs(t, err, modelpkg.ErrChecksum)
		s.assertUntouched(t)
	})
	t.Run("existing dest is left empty", func(t *testing.T) {
		dest := t.TempDir()
		_, err := modelpkg.Extract(bytes.NewReader(data), "sha256:"+wrong, dest)
		require.ErrorIs(t, err, modelpkg.ErrChecksum)
		assert.Empty(t, listing(t, dest))
	})
	t.Run("truncated upload is reported as a checksum mismatch", func(t *testing.T) {
		s := newSandbox(t)
		full, sum := archive(t, file("config.yaml", goodConfig), file("big", strings.Repeat("abc", 10000)))
		_, err := modelpkg.Extract(bytes.NewReader(full[:len(full)/2]), sum, s.dest)
		require.ErrorIs(t, err, modelpkg.ErrChecksum)
		s.assertUntouched(t)
	})
	t.Run("malformed checksum is refused before writing", func(t *testing.T) {
		s := newSandbox(t)
		_, err := modelpkg.Extract(bytes.NewReader(data), "abc", s.dest)
		require.Error(t, err)
		s.assertUntouched(t)
	})
}

func TestExtract_RefusesUnsafeEntries(t *testing.T) {
	tests := []struct {
		name    string
		entries []entry
	}{
		{"parent directory entry", []entry{file("config.yaml", goodConfig), file("../evil", "x")}},
		{"parent hidden inside a path", []entry{file("config.yaml", goodConfig), file("model/../../evil", "x")}},
		{"absolute path", []entry{file("config.yaml", goodConfig), file("/tmp/modelpkg-evil", "x")}},
		{"symlink to a parent directory", []entry{file("config.yaml", goodConfig), symlink("model/up", "../../outside")}},
		{"symlink to an absolute path", []entry{file("config.yaml", goodConfig), symlink("etc", "/etc")}},
		{"symlink dir then a file written through it", []entry{
			file("config.yaml", goodConfig), symlink("sub", "."), file("sub/evil", "x"),
		}},
		{"symlink to outside then a file written through it", []entry{
			file("config.yaml", goodConfig), symlink("out", "../outside"), file("out/evil", "x"),
		}},
		{"chain of harmless-looking symlinks leading out", []entry{
			file("config.yaml", goodConfig), symlink("a", "."), symlink("b", "a/.."),
		}},
		{"chain whose first link comes later", []entry{
			file("config.yaml", goodConfig), symlink("b", "a/.."), symlink("a", "."),
		}},
		{"hard link", []entry{file("config.yaml", goodConfig), {name: "h", typ: tar.TypeLink, linkname: "config.yaml"}}},
		{"fifo", []entry{file("config.yaml", goodConfig), {name: "f", typ: tar.TypeFifo, mode: 0o644}}},
		{"character device", []entry{file("config.yaml", goodConfig), {name: "d", typ: tar.TypeChar, mode: 0o644}}},
		{"block device", []entry{file("config.yaml", goodConfig), {name: "d", typ: tar.TypeBlock, mode: 0o644}}},
		{"file below a file", []entry{file("config.yaml", goodConfig), file("a", "x"), file("a/b", "y")}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s := newSandbox(t)
			data, sum := archive(t, tt.entries...)
			_, err := modelpkg.Extract(bytes.NewReader(data), sum, s.dest)
			require.ErrorIs(t, err, modelpkg.ErrUnsafePath)
			s.assertUntouched(t)
			assert.Empty(t, listing(t, s.outside), "nothing written outside dest")
			_, statErr := os.Lstat("/tmp/modelpkg-evil")
			assert.True(t, errors.Is(statErr, os.ErrNotExist), "absolute entry must not be written")
		})
	}
}

func TestExtract_LaterEntryReplacesEarlierSymlinkInsteadOfFollowingIt(t *testing.T) {
	s := newSandbox(t)
	data, sum := archive(t,
		file("config.yaml", goodConfig),
		file("real.txt", "original"),
		symlink("x", "real.txt"),
		file("x", "replacement"),
	)
	_, err := modelpkg.Extract(bytes.NewReader(data), sum, s.dest)
	require.NoError(t, err)
	real, err := os.ReadFile(filepath.Join(s.dest, "real.txt"))
	require.NoError(t, err)
	assert.Equal(t, "original", string(real), "the symlink's target must not be overwritten")
	fi, err := os.Lstat(filepath.Join(s.dest, "x"))
	require.NoError(t, err)
	assert.True(t, fi.Mode().IsRegular(), "x is now a regular file, got %v", fi.Mode())
}

func TestExtract_RequiresConfigAtTheRoot(t *testing.T) {
	tests := []struct {
		name    string
		entries []entry
	}{
		{"no config at all", []entry{file("model/model.py", "x")}},
		{"config under a top-level directory", []entry{dir("echo/"), file("echo/config.yaml", goodConfig)}},
		{"config is a directory", []entry{dir("config.yaml/")}},
		{"config is a symlink", []entry{file("c.yaml", goodConfig), symlink("config.yaml", "c.yaml")}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s := newSandbox(t)
			data, sum := archive(t, tt.entries...)
			_, err := modelpkg.Extract(bytes.NewReader(data), sum, s.dest)
			require.ErrorIs(t, err, modelpkg.ErrNoConfig)
			s.assertUntouched(t)
		})
	}
}

func TestExtract_InvalidConfigIsFieldError(t *testing.T) {
	s := newSandbox(t)
	data, sum := archive(t, file("config.yaml", "model_name: m\nresources: {accelerator: \"H100:99\"}\n"))
	_, err := modelpkg.Extract(bytes.NewReader(data), sum, s.dest)
	var fe *modelpkg.FieldError
	require.ErrorAs(t, err, &fe)
	assert.Equal(t, "resources.accelerator", fe.Field)
	s.assertUntouched(t)
}

func TestExtract_RefusesPackagesOverTheSizeLimit(t *testing.T) {
	old := modelpkg.MaxUnpackedBytes
	modelpkg.MaxUnpackedBytes = 1000
	t.Cleanup(func() { modelpkg.MaxUnpackedBytes = old })

	s := newSandbox(t)
	// 600 + 600 bytes: each file fits, the two together do not.
	data, sum := archive(t, file("config.yaml", goodConfig), file("a", strings.Repeat("a", 600)), file("b", strings.Repeat("b", 600)))
	_, err := modelpkg.Extract(bytes.NewReader(data), sum, s.dest)
	require.ErrorIs(t, err, modelpkg.ErrTooLarge)
	s.assertUntouched(t)
}

func TestExtract_RefusesNonEmptyDest(t *testing.T) {
	dest := t.TempDir()
	require.NoError(t, os.WriteFile(filepath.Join(dest, "keep"), []byte("mine"), 0o644))
	data, sum := archive(t, file("config.yaml", goodConfig))
	_, err := modelpkg.Extract(bytes.NewReader(data), sum, dest)
	require.Error(t, err)
	assert.Equal(t, []string{"keep"}, listing(t, dest), "what was there is left alone")
}

func TestExtract_RefusesNonGzipInput(t *testing.T) {
	s := newSandbox(t)
	_, err := modelpkg.Extract(strings.NewReader("not a tarball"), "", s.dest)
	require.Error(t, err)
	s.assertUntouched(t)
}

// writeTree creates a package directory for Pack tests.
func writeTree(t *testing.T) string {
	t.Helper()
	src := t.TempDir()
	for name, body := range map[string]string{
		"config.yaml":       goodConfig,
		"model/model.py":    "class Model: pass\n",
		"model/__init__.py": "",
		"data/weights.bin":  strings.Repeat("\x00\x01", 5000),
	} {
		p := filepath.Join(src, name)
		require.NoError(t, os.MkdirAll(filepath.Dir(p), 0o755))
		require.NoError(t, os.WriteFile(p, []byte(body), 0o644))
	}
	require.NoError(t, os.WriteFile(filepath.Join(src, "run.sh"), []byte("#!/bin/sh\n"), 0o755))
	require.NoError(t, os.Chmod(filepath.Join(src, "run.sh"), 0o755))
	require.NoError(t, os.MkdirAll(filepath.Join(src, "model", "__pycache__"), 0o755))
	require.NoError(t, os.WriteFile(filepath.Join(src, "model", "__pycache__", "model.cpython-311.pyc"), []byte("cache"), 0o644))
	require.NoError(t, os.MkdirAll(filepath.Join(src, ".git"), 0o755))
	require.NoError(t, os.WriteFile(filepath.Join(src, ".git", "HEAD"), []byte("ref"), 0o644))
	require.NoError(t, os.Mkdir(filepath.Join(src, "empty"), 0o750))
	require.NoError(t, os.Chmod(filepath.Join(src, "empty"), 0o750))
	require.NoError(t, os.Symlink("model.py", filepath.Join(src, "model", "alias.py")))
	// An absolute link inside the package must survive being moved elsewhere.
	require.NoError(t, os.Symlink(filepath.Join(src, "data"), filepath.Join(src, "model", "data")))
	return src
}

func TestPackExtract_RoundTripKeepsTree(t *testing.T) {
	src := writeTree(t)
	var buf bytes.Buffer
	sum, err := modelpkg.Pack(src, &buf)
	require.NoError(t, err)
	got := sha256.Sum256(buf.Bytes())
	assert.Equal(t, hex.EncodeToString(got[:]), sum, "Pack returns the sha256 of what it wrote")

	dest := filepath.Join(t.TempDir(), "pkg")
	cfg, err := modelpkg.Extract(&buf, sum, dest)
	require.NoError(t, err)
	assert.Equal(t, "echo", cfg.ModelName)
	assert.Equal(t, []string{"config.yaml", "data", "data/weights.bin", "empty", "model", "model/__init__.py",
		"model/alias.py", "model/data", "model/model.py", "run.sh"}, listing(t, dest),
		"the tree comes back without .git and __pycache__")

	for _, name := range []string{"config.yaml", "model/model.py", "data/weights.bin", "model/data/weights.bin"} {
		a, err := os.ReadFile(filepath.Join(src, name))
		require.NoError(t, err)
		b, err := os.ReadFile(filepath.Join(dest, name))
		require.NoError(t, err)
		assert.Equal(t, a, b, name)
	}
	fi, err := os.Stat(filepath.Join(dest, "run.sh"))
	require.NoError(t, err)
	assert.Equal(t, os.FileMode(0o755), fi.Mode().Perm())
	fi, err = os.Stat(filepath.Join(dest, "empty"))
	require.NoError(t, err)
	assert.True(t, fi.IsDir())
	assert.Equal(t, os.FileMode(0o750), fi.Mode().Perm())
	target, err := os.Readlink(filepath.Join(dest, "model", "data"))
	require.NoError(t, err)
	assert.Equal(t, "../data", target, "absolute link made relative")
}

func TestPack_IsDeterministic(t *testing.T) {
	src := writeTree(t)
	var a, b bytes.Buffer
	sumA, err := modelpkg.Pack(src, &a)
	require.NoError(t, err)
	// Touching files changes mtimes and nothing that matters.
	later := time.Now().Add(time.Hour)
	require.NoError(t, os.Chtimes(filepath.Join(src, "config.yaml"), later, later))
	sumB, err := modelpkg.Pack(src, &b)
	require.NoError(t, err)
	assert.Equal(t, sumA, sumB)
	assert.Equal(t, a.Bytes(), b.Bytes())

	gz, err := gzip.NewReader(bytes.NewReader(a.Bytes()))
	require.NoError(t, err)
	tr := tar.NewReader(gz)
	var names []string
	for {
		hdr, err := tr.Next()
		if err != nil {
			break
		}
		names = append(names, hdr.Name)
		assert.Equal(t, int64(0), hdr.ModTime.Unix(), "%s mtime", hdr.Name)
		assert.Zero(t, hdr.Uid, "%s uid", hdr.Name)
		assert.Zero(t, hdr.Gid, "%s gid", hdr.Name)
		assert.Empty(t, hdr.Uname, "%s owner name", hdr.Name)
	}
	assert.True(t, sort.StringsAreSorted(names), "entries sorted: %v", names)
}

func TestPack_RefusesSymlinkLeadingOutside(t *testing.T) {
	src := t.TempDir()
	require.NoError(t, os.WriteFile(filepath.Join(src, "config.yaml"), []byte(goodConfig), 0o644))
	require.NoError(t, os.Symlink("/etc/passwd", filepath.Join(src, "passwd")))
	_, err := modelpkg.Pack(src, &bytes.Buffer{})
	require.ErrorIs(t, err, modelpkg.ErrUnsafePath)
}

func TestExample_EchoPacksAndParses(t *testing.T) {
	var buf bytes.Buffer
	sum, err := modelpkg.Pack("../examples/models/echo", &buf)
	require.NoError(t, err)
	cfg, err := modelpkg.Extract(&buf, sum, filepath.Join(t.TempDir(), "echo"))
	require.NoError(t, err)
	assert.Equal(t, "echo", cfg.ModelName)
	assert.Equal(t, modelpkg.RuntimePython, cfg.Runtime)
	assert.Zero(t, cfg.Resources.GPUCount, "echo needs no GPU")
	assert.NotEmpty(t, cfg.EnvironmentVariables)
}

// writeExternalLayout makes base/pkg, a package whose external_package_dirs are
// ../shared_lib (outside it) and vendor (inside it), and base/shared_lib. It returns pkg and
// shared_lib.
func writeExternalLayout(t *testing.T) (pkg, shared string) {
	t.Helper()
	base := t.TempDir()
	pkg, shared = filepath.Join(base, "pkg"), filepath.Join(base, "shared_lib")
	for name, body := range map[string]string{
		"pkg/config.yaml":                 goodConfig + "external_package_dirs:\n  - ../shared_lib\n  - vendor\n",
		"pkg/model/model.py":              "import shared\n",
		"pkg/vendor/vendored.py":          "VALUE = 1\n",
		"shared_lib/shared/__init__.py":   "",
		"shared_lib/shared/words.py":      "WORDS = ['a']\n",
		"shared_lib/top.py":               "TOP = 1\n",
		"shared_lib/__pycache__/top.pyc":  "cache",
		"shared_lib/shared/.words.py.swp": "swap",
	} {
		p := filepath.Join(base, filepath.FromSlash(name))
		require.NoError(t, os.MkdirAll(filepath.Dir(p), 0o755))
		require.NoError(t, os.WriteFile(p, []byte(body), 0o644))
	}
	require.NoError(t, os.Symlink("shared/words.py", filepath.Join(shared, "words_alias.py")))
	return pkg, shared
}

// tarNames lists the entry names of a gzip'd tar in their order.
func tarNames(t *testing.T, archive []byte) []string {
	t.Helper()
	gz, err := gzip.NewReader(bytes.NewReader(archive))
	require.NoError(t, err)
	tr := tar.NewReader(gz)
	var names []string
	for {
		hdr, err := tr.Next()
		if err != nil {
			require.ErrorIs(t, err, io.EOF)
			return names
		}
		names = append(names, hdr.Name)
		assert.Equal(t, int64(0), hdr.ModTime.Unix(), "%s mtime", hdr.Name)
	}
}

func TestExternalPackageDirs_ReadsTheConfigsList(t *testing.T) {
	tests := []struct {
		name    string
		config  string
		want    []string
		wantErr string
	}{
		{"absent", goodConfig, nil, ""},
		{"null", goodConfig + "external_package_dirs: ~\n", nil, ""},
		{"list", goodConfig + "external_package_dirs: [../shared_lib, vendor]\n", []string{"../shared_lib", "vendor"}, ""},
		{"not a list", goodConfig + "external_package_dirs: ../shared_lib\n", nil, "external_package_dirs must be a list of paths"},
		{"empty entry", goodConfig + "external_package_dirs: ['']\n", nil, "external_package_dirs[0] is empty"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			dir := t.TempDir()
			require.NoError(t, os.WriteFile(filepath.Join(dir, "config.yaml"), []byte(tt.config), 0o644))
			got, err := modelpkg.ExternalPackageDirs(dir)
			if tt.wantErr != "" {
				require.ErrorContains(t, err, tt.wantErr)
				return
			}
			require.NoError(t, err)
			assert.Equal(t, tt.want, got)
		})
	}
}

func TestPackWithExternal_CopiesDirsOutsideThePackageUnderDotExternal(t *testing.T) {
	pkg, shared := writeExternalLayout(t)
	external, err := modelpkg.ExternalPackageDirs(pkg)
	require.NoError(t, err)
	var a, b, plain bytes.Buffer
	sumA, err := modelpkg.PackWithExternal(pkg, external, &a)
	require.NoError(t, err)
	got := sha256.Sum256(a.Bytes())
	assert.Equal(t, hex.EncodeToString(got[:]), sumA, "PackWithExternal returns the sha256 of what it wrote")
	later := time.Now().Add(time.Hour)
	require.NoError(t, os.Chtimes(filepath.Join(shared, "top.py"), later, later))
	sumB, err := modelpkg.PackWithExternal(pkg, external, &b)
	require.NoError(t, err)
	assert.Equal(t, sumA, sumB, "the same trees pack to the same sum")
	assert.Equal(t, a.Bytes(), b.Bytes(), "the same trees pack to the same bytes")

	_, err = modelpkg.Pack(pkg, &plain)
	require.NoError(t, err)
	own := tarNames(t, plain.Bytes())
	names := tarNames(t, a.Bytes())
	require.Greater(t, len(names), len(own))
	assert.Equal(t, own, names[:len(own)], "the package's own entries come first, as Pack writes them")
	assert.Equal(t, []string{".external/", ".external/0/", ".external/0/shared/", ".external/0/shared/__init__.py",
		".external/0/shared/words.py", ".external/0/top.py", ".external/0/words_alias.py"}, names[len(own):],
		"then the directory outside the package as .external/0, without what Pack ignores; "+
			"vendor, inside the package, is not copied again")

	dest := filepath.Join(t.TempDir(), "pkg")
	cfg, err := modelpkg.Extract(bytes.NewReader(a.Bytes()), sumA, dest)
	require.NoError(t, err)
	assert.Equal(t, "echo", cfg.ModelName)
	assert.Equal(t, []string{".external", ".external/0", ".external/0/shared", ".external/0/shared/__init__.py",
		".external/0/shared/words.py", ".external/0/top.py", ".external/0/words_alias.py", "config.yaml",
		"model", "model/model.py", "vendor", "vendor/vendored.py"}, listing(t, dest))
	for _, name := range []string{"shared/words.py", "top.py", "words_alias.py"} {
		want, err := os.ReadFile(filepath.Join(shared, name))
		require.NoError(t, err)
		have, err := os.ReadFile(filepath.Join(dest, ".external", "0", filepath.FromSlash(name)))
		require.NoError(t, err)
		assert.Equal(t, want, have, name)
	}
	target, err := os.Readlink(filepath.Join(dest, ".external", "0", "words_alias.py"))
	require.NoError(t, err)
	assert.Equal(t, "shared/words.py", target, "a symlink inside the external directory stays a symlink")

	// An absolute entry is found the same way.
	var abs bytes.Buffer
	_, err = modelpkg.PackWithExternal(pkg, []string{shared, "vendor"}, &abs)
	require.NoError(t, err)
	assert.Equal(t, a.Bytes(), abs.Bytes(), "an absolute path to the same directory packs the same")
}

func TestPackWithExternal_RefusesWhatItCannotPack(t *testing.T) {
	tests := []struct {
		name     string
		setup    func(t *testing.T, pkg, shared string)
		external []string
		wantErr  string
		wantIs   error
	}{
		{
			name:     "missing directory outside the package",
			external: []string{"vendor", "../no_such_lib"},
			wantErr:  `external_package_dirs[1] "../no_such_lib"`,
		},
		{
			name:     "missing directory inside the package",
			external: []string{"libs"},
			wantErr:  `external_package_dirs[0] "libs"`,
		},
		{
			name:     "a file, not a directory",
			external: []string{"../shared_lib/top.py"},
			wantErr:  `external_package_dirs[0] "../shared_lib/top.py"`,
		},
		{
			name: "symlink leading outside the external directory",
			setup: func(t *testing.T, pkg, shared string) {
				require.NoError(t, os.Symlink("../pkg/config.yaml", filepath.Join(shared, "config_link")))
			},
			external: []string{"../shared_lib"},
			wantIs:   modelpkg.ErrUnsafePath,
			wantErr:  `external_package_dirs[0] "../shared_lib"`,
		},
		{
			name: "a package with its own .external",
			setup: func(t *testing.T, pkg, shared string) {
				require.NoError(t, os.Mkdir(filepath.Join(pkg, ".external"), 0o755))
			},
			external: []string{"../shared_lib"},
			wantErr:  "has its own .external",
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			pkg, shared := writeExternalLayout(t)
			if tt.setup != nil {
				tt.setup(t, pkg, shared)
			}
			_, err := modelpkg.PackWithExternal(pkg, tt.external, io.Discard)
			require.Error(t, err)
			assert.Contains(t, err.Error(), tt.wantErr)
			if tt.wantIs != nil {
				assert.ErrorIs(t, err, tt.wantIs)
			}
		})
	}
}
