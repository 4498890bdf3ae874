package modelpkg_test

import (
	"archive/tar"
	"bytes"
	"compress/gzip"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/modelplane/modelplane/modelpkg"
)

// checkExtracted holds what Extract promises of the sandbox, whatever the archive: nothing
// exists under the sandbox but dest and the empty outside directory, every symlink in dest
// resolves inside it, and a refused archive leaves no dest behind (Extract created it).
func checkExtracted(t *testing.T, s sandbox, err error) {
	t.Helper()
	walkErr := filepath.WalkDir(s.base, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		switch {
		case p == s.base, p == s.outside, p == s.dest:
			return nil
		case !strings.HasPrefix(p, s.dest+string(filepath.Separator)):
			t.Errorf("%s is outside dest", p)
		case d.Type()&fs.ModeSymlink != 0:
			resolved, err := filepath.EvalSymlinks(p)
			if err == nil && resolved != s.dest && !strings.HasPrefix(resolved, s.dest+string(filepath.Separator)) {
				t.Errorf("symlink %s resolves outside dest, to %s", p, resolved)
			}
		}
		return nil
	})
	if walkErr != nil {
		t.Fatalf("walking the sandbox: %v", walkErr)
	}
	if entries, _ := os.ReadDir(s.outside); len(entries) > 0 {
		t.Errorf("%d entries written outside dest", len(entries))
	}
	if err != nil {
		if _, statErr := os.Lstat(s.dest); statErr == nil {
			t.Errorf("refused (%v), but dest is left behind", err)
		}
	}
}

func FuzzExtract(f *testing.F) {
	// A good package, a package Pack wrote, and the refused archives of the tests above.
	seed := func(entries ...entry) {
		data, err := tarGz(entries...)
		if err != nil {
			f.Fatal(err)
		}
		f.Add(data)
	}
	seed(file("config.yaml", goodConfig), dir("model/"), file("model/model.py", "print(1)\n"), symlink("model/alias", "model.py"))
	seed(file("./config.yaml", goodConfig), file("./a", "x"))
	seed(file("config.yaml", goodConfig), file("../evil", "x"))
	seed(file("config.yaml", goodConfig), symlink("out", "../outside"), file("out/evil", "x"))
	seed(file("config.yaml", goodConfig), symlink("a", "."), symlink("b", "a/.."))
	seed(file("config.yaml", goodConfig), entry{name: "h", typ: tar.TypeLink, linkname: "config.yaml"})
	seed(file("config.yaml", goodConfig), file("a", "x"), file("a/b", "y"))
	seed(file("pkg/config.yaml", goodConfig))
	seed(file("config.yaml", "runtime: [a]\n"))
	f.Add([]byte("not gzip"))
	f.Add([]byte{})
	f.Fuzz(func(t *testing.T, data []byte) {
		s := newSandbox(t)
		_, err := modelpkg.Extract(bytes.NewReader(data), "", s.dest)
		checkExtracted(t, s, err)
	})
}

// tarGz is archive for a fuzz target: a tar entry that cannot be written is an error.
func tarGz(entries ...entry) ([]byte, error) {
	var buf bytes.Buffer
	gz := gzip.NewWriter(&buf)
	tw := tar.NewWriter(gz)
	for _, e := range entries {
		hdr := &tar.Header{Name: e.name, Typeflag: e.typ, Mode: e.mode, Linkname: e.linkname, ModTime: time.Unix(0, 0)}
		if e.typ == tar.TypeReg {
			hdr.Size = int64(len(e.body))
		}
		if err := tw.WriteHeader(hdr); err != nil {
			return nil, err
		}
		if e.typ == tar.TypeReg {
			if _, err := tw.Write([]byte(e.body)); err != nil {
				return nil, err
			}
		}
	}
	if err := tw.Close(); err != nil {
		return nil, err
	}
	if err := gz.Close(); err != nil {
		return nil, err
	}
	return buf.Bytes(), nil
}

// fuzzTypes are the entry types FuzzExtractEntries picks from by its type bytes.
var fuzzTypes = []byte{tar.TypeReg, tar.TypeDir, tar.TypeSymlink, tar.TypeLink, tar.TypeFifo, tar.TypeChar}

// FuzzExtractEntries builds small archives of config.yaml and three entries of fuzzed names,
// types and link targets, the third a file written after the two (through them, if they
// let it), so that the fuzzer spends its time on the paths rather than on gzip and tar.
func FuzzExtractEntries(f *testing.F) {
	f.Add("model/", byte(1), "", "model/up", byte(2), "../../outside", "model/up/evil")
	f.Add("sub", byte(2), ".", "x", byte(0), "", "sub/evil")
	f.Add("a", byte(2), ".", "b", byte(2), "a/..", "b/evil")
	f.Add("b", byte(2), "a/..", "a", byte(2), ".", "a/x")
	f.Add("etc", byte(2), "/etc", "h", byte(3), "config.yaml", "etc/passwd")
	f.Add("a", byte(0), "", "a/b", byte(0), "", "a/b/c")
	f.Add("/tmp/modelpkg-evil", byte(0), "", "model/../../evil", byte(0), "", "./x")
	f.Add("link", byte(2), "config.yaml", "config.yaml", byte(0), "", "link")
	f.Add("d", byte(4), "", "c", byte(5), "", "d")
	f.Fuzz(func(t *testing.T, name1 string, type1 byte, link1, name2 string, type2 byte, link2, name3 string) {
		data, err := tarGz(file("config.yaml", goodConfig),
			entry{name: name1, typ: fuzzTypes[int(type1)%len(fuzzTypes)], mode: 0o755, body: "one", linkname: link1},
			entry{name: name2, typ: fuzzTypes[int(type2)%len(fuzzTypes)], mode: 0o755, body: "two", linkname: link2},
			file(name3, "three"))
		if err != nil {
			t.Skip("tar cannot write these entries")
		}
		s := newSandbox(t)
		_, err = modelpkg.Extract(bytes.NewReader(data), "", s.dest)
		checkExtracted(t, s, err)
		for _, name := range []string{name1, name2, name3} {
			if filepath.IsAbs(name) && strings.Contains(name, "modelpkg-evil") {
				if _, statErr := os.Lstat(name); statErr == nil {
					t.Errorf("absolute entry %s written", name)
				}
			}
		}
	})
}
