package patch_test

import (
	"archive/tar"
	"bytes"
	"compress/gzip"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/modelplane/modelplane/modelpkg"
	"github.com/modelplane/modelplane/patch"
)

func samplePoint() patch.Point {
	return patch.Point{
		ContentHashes: map[string]*string{
			"model":          nil,
			"model/model.py": hashOf("print('hi')\n"),
			"weights.bin":    hashOf(binary),
		},
		Config: cfgEnvAB,
	}
}

func TestHash_StableForTheSamePoint(t *testing.T) {
	p := samplePoint()
	first, second := p.Hash(), p.Hash()
	assert.Equal(t, first, second, "hashing the same point twice: want the same hash")
	assert.Equal(t, first, samplePoint().Hash(), "an equal point built again: want the same hash")
	assert.Regexp(t, `^[0-9a-f]{64}$`, first, "want a SHA-256 in lowercase hex")
}

func TestHash_IndependentOfInsertionOrder(t *testing.T) {
	paths := []string{"a", "a/b", "a/b/c.py", "m.txt", "z.py"}
	entry := func(rel string) *string {
		if strings.Contains(rel, ".") {
			return hashOf(rel)
		}
		return nil
	}
	forward := patch.Point{ContentHashes: map[string]*string{}, Config: cfgPlain}
	backward := patch.Point{ContentHashes: map[string]*string{}, Config: cfgPlain}
	for i := range paths {
		forward.ContentHashes[paths[i]] = entry(paths[i])
		rel := paths[len(paths)-1-i]
		backward.ContentHashes[rel] = entry(rel)
	}
	assert.Equal(t, forward.Hash(), backward.Hash(), "same entries inserted in another order: want the same hash")
}

func TestHash_IndependentOfKeyOrderInJSON(t *testing.T) {
	h1, h2 := *hashOf("one"), *hashOf("two")
	texts := []string{
		fmt.Sprintf(`{"content_hashes":{"a":null,"a/one.py":%q,"two.py":%q},"config":"model_name: m\n"}`, h1, h2),
		fmt.Sprintf(`{"config":"model_name: m\n","content_hashes":{"two.py":%q,"a/one.py":%q,"a":null}}`, h2, h1),
		fmt.Sprintf(`{ "config" : "model_name: m\n",
			"content_hashes" : { "a/one.py" : %q, "a" : null, "two.py" : %q } }`, h1, h2),
	}
	want := patch.Point{
		ContentHashes: map[string]*string{"a": nil, "a/one.py": &h1, "two.py": &h2},
		Config:        cfgPlain,
	}.Hash()
	for i, text := range texts {
		var p patch.Point
		require.NoError(t, json.Unmarshal([]byte(text), &p), "text %d", i)
		assert.Equal(t, want, p.Hash(), "JSON text %d lists the keys in another order: want the hash of the same point", i)
		assert.Equal(t, want, overWire(t, p).Hash(), "text %d after another JSON round trip", i)
	}
}

func TestHash_IsSHA256OfCanonicalJSON(t *testing.T) {
	h := *hashOf("x")
	p := patch.Point{ContentHashes: map[string]*string{"z.py": &h, "a": nil}, Config: cfgPlain}
	canonical := `{"content_hashes":{"a":null,"z.py":"` + h + `"},"config":"model_name: m\n"}`
	assert.Equal(t, patch.SumHex([]byte(canonical)), p.Hash(), "want the SHA-256 of %s", canonical)
}

func TestHash_NilAndEmptyContentHashesAreTheSamePoint(t *testing.T) {
	assert.Equal(t, patch.Point{Config: cfgPlain}.Hash(),
		patch.Point{ContentHashes: map[string]*string{}, Config: cfgPlain}.Hash(),
		"a package with no paths: want the same hash whether the map is nil or empty")
}

func TestHash_ChangesWithAnyChangeOfThePoint(t *testing.T) {
	base := samplePoint()
	tests := []struct {
		name   string
		change func(p *patch.Point)
	}{
		{"one byte of a file's content", func(p *patch.Point) { p.ContentHashes["model/model.py"] = hashOf("print('hI')\n") }},
		{"one byte of the config", func(p *patch.Point) { p.Config = strings.Replace(p.Config, `"1"`, `"2"`, 1) }},
		{"a trailing newline of the config", func(p *patch.Point) { p.Config += "\n" }},
		{"a file renamed", func(p *patch.Point) {
			p.ContentHashes["weights2.bin"] = p.ContentHashes["weights.bin"]
			delete(p.ContentHashes, "weights.bin")
		}},
		{"an empty directory added", func(p *patch.Point) { p.ContentHashes["empty"] = nil }},
		{"a file removed", func(p *patch.Point) { delete(p.ContentHashes, "weights.bin") }},
		{"a directory becomes an empty file", func(p *patch.Point) {
			delete(p.ContentHashes, "model/model.py")
			p.ContentHashes["model"] = hashOf("")
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			p := samplePoint()
			tt.change(&p)
			assert.NotEqual(t, base.Hash(), p.Hash(), "after %s: want a different hash, got the same", tt.name)
		})
	}
}

func TestHash_DirectoryDiffersFromEmptyFile(t *testing.T) {
	dir := patch.Point{ContentHashes: map[string]*string{"x": nil}, Config: cfgPlain}
	empty := patch.Point{ContentHashes: map[string]*string{"x": hashOf("")}, Config: cfgPlain}
	assert.NotEqual(t, dir.Hash(), empty.Hash(), "x as a directory and x as an empty file: want different hashes")
}

// packageTree has what FromDir and Pack must agree on: nested and empty directories, a binary
// file, relative symlinks (one dangling), and entries a package never holds.
var packageTree = tree{
	"config.yaml":                 cfgEnvAB,
	"model/model.py":              "def predict(x):\n    return x\n",
	"model/sub/deep/util.py":      "U = 1\n",
	"model/empty/":                "",
	"weights.bin":                 binary,
	"blank.txt":                   "",
	"link.py":                     symlinkPrefix + "model/model.py",
	"dangling.py":                 symlinkPrefix + "gone.py",
	"sub/config.yaml":             "not the package's config\n",
	"__pycache__/x.pyc":           "bytecode",
	"model/__pycache__/m.pyc":     "bytecode",
	".git/HEAD":                   "ref: refs/heads/main\n",
	".git/objects/ab/cdef":        "object",
	"model/.model.py.swp":         "swap",
	"model/model.py~":             "backup",
	"x~":                          "backup",
	".#lock":                      "emacs lock",
	".DS_Store":                   "finder",
	"vendor/lib/lib.py":           "L = 1\n",
	"vendor/lib/.git":             "gitdir: ../../.git/modules/lib\n", // a submodule's .git is a file
	"backup~/left.py":             "in a directory named like a backup file\n",
	"model/.model.py.swp.d/x.txt": "not a swap file: a directory",
}

func TestFromDir_MatchesFromArchiveOfPack(t *testing.T) {
	dir := packageTree.write(t)
	// An absolute symlink inside the package: Pack writes it relative, and the point must
	// count what Pack writes.
	require.NoError(t, os.Symlink(filepath.Join(dir, "model", "model.py"), filepath.Join(dir, "abs.py")))

	fromDir := pointOf(t, dir)
	fromArchive := packedPoint(t, dir)
	requirePointEqual(t, fromDir, fromArchive, "FromDir (want) vs FromArchive of Pack (got)")

	assert.Equal(t, cfgEnvAB, fromDir.Config, "want config.yaml's text as the config")
	for _, rel := range []string{"link.py", "abs.py", "dangling.py"} {
		require.NotNil(t, fromDir.ContentHashes[rel], "symlink %s: want a hash, got a directory or nothing", rel)
	}
	assert.Equal(t, *fromDir.ContentHashes["link.py"], *fromDir.ContentHashes["abs.py"],
		"an absolute symlink to model/model.py and a relative one: want the same hash, as Pack writes both relative")
	assert.NotEqual(t, *hashOf("model/model.py"), *fromDir.ContentHashes["link.py"],
		"a symlink: want a hash other than that of a file holding the target's name")

	want := map[string]*string{
		"model":                       nil,
		"model/model.py":              hashOf(packageTree["model/model.py"]),
		"model/sub":                   nil,
		"model/sub/deep":              nil,
		"model/sub/deep/util.py":      hashOf(packageTree["model/sub/deep/util.py"]),
		"model/empty":                 nil,
		"model/.model.py.swp.d":       nil,
		"model/.model.py.swp.d/x.txt": hashOf(packageTree["model/.model.py.swp.d/x.txt"]),
		"weights.bin":                 hashOf(binary),
		"blank.txt":                   hashOf(""),
		"link.py":                     fromDir.ContentHashes["link.py"],
		"abs.py":                      fromDir.ContentHashes["abs.py"],
		"dangling.py":                 fromDir.ContentHashes["dangling.py"],
		"sub":                         nil,
		"sub/config.yaml":             hashOf(packageTree["sub/config.yaml"]),
		"vendor":                      nil,
		"vendor/lib":                  nil,
		"vendor/lib/lib.py":           hashOf(packageTree["vendor/lib/lib.py"]),
	}
	requirePointEqual(t, patch.Point{ContentHashes: want, Config: cfgEnvAB}, fromDir,
		"FromDir: want the package's entries without config.yaml and without what a package never holds")
	require.NoError(t, fromDir.Validate(), "the point of a package directory: want it valid")
}

func TestFromDir_SymlinkTargetIsPartOfThePoint(t *testing.T) {
	a := tree{"config.yaml": cfgPlain, "a.py": "a", "b.py": "b", "link.py": symlinkPrefix + "a.py"}
	b := a.with(tree{"link.py": symlinkPrefix + "b.py"})
	pa, pb := pointOf(t, a.write(t)), pointOf(t, b.write(t))
	assert.NotEqual(t, pa.Hash(), pb.Hash(), "a symlink pointed elsewhere: want a different point")
}

func TestFromDir_RefusesWhatPackRefuses(t *testing.T) {
	dir := tree{"config.yaml": cfgPlain}.write(t)
	require.NoError(t, os.Symlink("/etc/passwd", filepath.Join(dir, "outside.py")))
	var buf bytes.Buffer
	_, packErr := modelpkg.Pack(dir, &buf)
	require.ErrorIs(t, packErr, modelpkg.ErrUnsafePath, "Pack of a symlink leading outside the package")
	_, err := patch.FromDir(dir)
	assert.ErrorIs(t, err, modelpkg.ErrUnsafePath, "FromDir of a package Pack refuses: want ErrUnsafePath, got %v", err)
}

func TestFromDir_NeedsConfig(t *testing.T) {
	dir := tree{"model.py": "x"}.write(t)
	_, err := patch.FromDir(dir)
	require.Error(t, err, "a package without config.yaml: want an error")
	assert.Contains(t, err.Error(), "config.yaml", "want the error to name config.yaml, got %v", err)
}

// tarOf builds a gzip'd tar by hand: name → content, a name ending in "/" a directory.
func tarOf(t *testing.T, entries [][2]string) []byte {
	t.Helper()
	var buf bytes.Buffer
	gz := gzip.NewWriter(&buf)
	tw := tar.NewWriter(gz)
	for _, e := range entries {
		hdr := &tar.Header{Name: e[0], Mode: 0o644, ModTime: time.Unix(0, 0), Typeflag: tar.TypeReg, Size: int64(len(e[1]))}
		if strings.HasSuffix(e[0], "/") {
			hdr.Typeflag, hdr.Size, hdr.Mode = tar.TypeDir, 0, 0o755
		}
		require.NoError(t, tw.WriteHeader(hdr))
		_, err := tw.Write([]byte(e[1]))
		require.NoError(t, err)
	}
	require.NoError(t, tw.Close())
	require.NoError(t, gz.Close())
	return buf.Bytes()
}

func TestFromArchive_CountsDirectoriesOfFilesWithoutDirectoryEntries(t *testing.T) {
	b := tarOf(t, [][2]string{
		{"./config.yaml", cfgPlain},
		{"a/b/c.py", "c"},
		{"./d/", ""},
		{"../escape.py", "no"},
		{".git/config", "no"},
		{"a/__pycache__/c.pyc", "no"},
	})
	got, err := patch.FromArchive(bytes.NewReader(b))
	require.NoError(t, err)
	want := patch.Point{
		ContentHashes: map[string]*string{"a": nil, "a/b": nil, "a/b/c.py": hashOf("c"), "d": nil},
		Config:        cfgPlain,
	}
	requirePointEqual(t, want, got, "FromArchive: want directories of files counted, and what a patch could not name left out")
}

func TestFromArchive_RefusesWhatIsNotAGzipTar(t *testing.T) {
	_, err := patch.FromArchive(strings.NewReader("plain text"))
	assert.Error(t, err, "text that is not gzip: want an error")
}

func TestValidate_AcceptsAPackagePoint(t *testing.T) {
	assert.NoError(t, samplePoint().Validate(), "a well-formed point: want no error")
	assert.NoError(t, patch.Point{Config: cfgPlain}.Validate(), "a point with no paths: want no error")
}

func TestValidate_NamesWhatIsWrong(t *testing.T) {
	good := *hashOf("x")
	tests := []struct {
		name    string
		hashes  map[string]*string
		config  string
		wantErr string
	}{
		{"hash in upper case", map[string]*string{"a.py": str(strings.ToUpper(good))}, cfgPlain, `content_hashes["a.py"]: must be a SHA-256`},
		{"hash too short", map[string]*string{"a.py": str(good[:63])}, cfgPlain, `content_hashes["a.py"]: must be a SHA-256`},
		{"hash not hex", map[string]*string{"a.py": str(strings.Repeat("g", 64))}, cfgPlain, `content_hashes["a.py"]: must be a SHA-256`},
		{"missing parent directory", map[string]*string{"a/b.py": &good}, cfgPlain, `content_hashes["a/b.py"]: its directory "a" is not in the point`},
		{"missing grandparent directory", map[string]*string{"a/b": nil, "a/b/c.py": &good}, cfgPlain, `content_hashes["a/b"]: its directory "a" is not in the point`},
		{"parent is a file", map[string]*string{"a": &good, "a/b.py": &good}, cfgPlain, `content_hashes["a/b.py"]: its directory "a" is not in the point`},
		{"dot dot", map[string]*string{"../x.py": &good}, cfgPlain, `content_hashes["../x.py"]: must be a clean path`},
		{"dot dot inside", map[string]*string{"a": nil, "a/../x.py": &good}, cfgPlain, `content_hashes["a/../x.py"]: must be a clean path`},
		{"absolute path", map[string]*string{"/etc/passwd": &good}, cfgPlain, `content_hashes["/etc/passwd"]: must be a relative`},
		{"config.yaml among the paths", map[string]*string{"config.yaml": &good}, cfgPlain, `content_hashes["config.yaml"]: config.yaml is the point's config`},
		{"ignored path", map[string]*string{"__pycache__": nil}, cfgPlain, `content_hashes["__pycache__"]: "__pycache__" is never part of a package`},
		{"config not YAML", nil, "model_name: [unclosed\n", "config: config.yaml: not valid YAML"},
		{"config without model_name", nil, "description: no name\n", "config: config.yaml: model_name: is required"},
		{"empty config", nil, "", "config: config.yaml: model_name: is required"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := patch.Point{ContentHashes: tt.hashes, Config: tt.config}.Validate()
			require.Error(t, err, "want an error containing %q, got none", tt.wantErr)
			assert.Contains(t, err.Error(), tt.wantErr, "want the error to say %q, got %q", tt.wantErr, err)
		})
	}
}

func TestValidate_RefusesTooManyPaths(t *testing.T) {
	p := patch.Point{ContentHashes: make(map[string]*string, patch.MaxPaths+1), Config: cfgPlain}
	for i := 0; i <= patch.MaxPaths; i++ {
		p.ContentHashes[fmt.Sprintf("d%d", i)] = nil
	}
	err := p.Validate()
	require.Error(t, err, "%d paths: want an error", len(p.ContentHashes))
	assert.Contains(t, err.Error(), "more than", "want the error to name the limit, got %v", err)
}

func TestCheckPath(t *testing.T) {
	tests := []struct {
		path    string
		wantErr string // empty: accepted
	}{
		{"a", ""},
		{"a/b.py", ""},
		{".hidden", ""},
		{"sub/config.yaml", ""},
		{"a-b/c_d.e", ""},
		{"model/.model.py.swp.d", ""},
		{"", "empty path"},
		{strings.Repeat("a", patch.MaxPathLen+1), "longer than"},
		{"/a", "relative, slash-separated"},
		{`a\b`, "relative, slash-separated"},
		{"a\x00b", "relative, slash-separated"},
		{".", "clean path"},
		{"..", "clean path"},
		{"../a", "clean path"},
		{"a/..", "clean path"},
		{"a/../b", "clean path"},
		{"a//b", "clean path"},
		{"./a", "clean path"},
		{"a/", "clean path"},
		{"config.yaml", "config.yaml is the point's config"},
		{".git", "never part of a package"},
		{".git/config", "never part of a package"},
		{"a/__pycache__/b.pyc", "never part of a package"},
		{"x.py~", "never part of a package"},
		{"a/.x.py.swp", "never part of a package"},
		{".#lock", "never part of a package"},
		{".DS_Store", "never part of a package"},
		{"backup~/a.py", "never part of a package"},
	}
	for _, tt := range tests {
		t.Run(fmt.Sprintf("%q", tt.path), func(t *testing.T) {
			err := patch.CheckPath(tt.path)
			if tt.wantErr == "" {
				assert.NoError(t, err, "%q: want accepted", tt.path)
				return
			}
			require.Error(t, err, "%q: want an error containing %q, got none", tt.path, tt.wantErr)
			assert.Contains(t, err.Error(), tt.wantErr, "%q: want %q, got %q", tt.path, tt.wantErr, err)
		})
	}
}
