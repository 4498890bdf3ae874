package patch_test

import (
	"bytes"
	"encoding/json"
	"errors"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/modelplane/modelplane/patch"
)

// fuzzTree is the package the patch fuzz targets start from.
var fuzzTree = tree{
	"config.yaml":      cfgEnvAB,
	"model/model.py":   "v1",
	"model/util.py":    "u",
	"model-extra.py":   "e",
	"data/sub/x.bin":   binary,
	"data/sub/keep.py": "k",
	"empty/":           "",
}

// fuzzSandbox is a package directory beside a directory outside it. The package also holds
// "out", a symlink to the outside directory that its point does not know: a patch that
// writes through it writes outside the package.
type fuzzSandbox struct {
	base, pkg, outside string
}

// newFuzzSandbox makes the sandbox and returns it with the package's point.
func newFuzzSandbox(t *testing.T) (fuzzSandbox, patch.Point) {
	t.Helper()
	base := t.TempDir()
	s := fuzzSandbox{base: base, pkg: filepath.Join(base, "pkg"), outside: filepath.Join(base, "outside")}
	fuzzTree.writeInto(t, s.pkg)
	prev, err := patch.FromDir(s.pkg)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.Mkdir(s.outside, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink("../outside", filepath.Join(s.pkg, "out")); err != nil {
		t.Fatal(err)
	}
	return s, prev
}

// check fails unless everything under the sandbox is the package's, the outside directory
// is still empty and "out" still points to it.
func (s fuzzSandbox) check(t *testing.T) {
	t.Helper()
	err := filepath.WalkDir(s.base, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if p != s.base && p != s.outside && p != s.pkg && !strings.HasPrefix(p, s.pkg+string(filepath.Separator)) {
			t.Errorf("%s is outside the package", p)
		}
		return nil
	})
	if err != nil {
		t.Fatalf("walking the sandbox: %v", err)
	}
	if entries, _ := os.ReadDir(s.outside); len(entries) > 0 {
		t.Errorf("%d entries written outside the package", len(entries))
	}
	if target, err := os.Readlink(filepath.Join(s.pkg, "out")); err != nil || target != "../outside" {
		t.Errorf("the symlink out was changed: %q, %v", target, err)
	}
}

// decodeStrict decodes as the API does a request's fields (strictJSON): unknown fields are
// refused.
func decodeStrict(raw []byte, v any) error {
	dec := json.NewDecoder(bytes.NewReader(raw))
	dec.DisallowUnknownFields()
	return dec.Decode(v)
}

// FuzzNextApply decodes a request's patch_ops and takes them from the fuzz package's point:
// Next refuses with a *patch.Error or accepts; what it accepts folds to a FileSet that
// Check accepts, and that Apply carries out inside the package only, giving the point Next
// said, or refuses.
func FuzzNextApply(f *testing.F) {
	for _, s := range []string{
		`[{"type":"model_code","action":"ADD","path":"model/new.py","content":"x","hot_reload":true}]`,
		`[{"type":"model_code","action":"UPDATE","path":"model/model.py","content_bytes":"AP8="}]`,
		`[{"type":"model_code","action":"REMOVE","path":"data"}]`,
		`[{"type":"model_code","action":"REMOVE","path":"model/model.py"},{"type":"model_code","action":"ADD","path":"model/model.py"},{"type":"model_code","action":"ADD","path":"model/model.py/x","content":""}]`,
		`[{"type":"model_code","action":"ADD","path":"out"},{"type":"model_code","action":"ADD","path":"out/evil","content":"x"}]`,
		`[{"type":"model_code","action":"ADD","path":"../evil","content":"x"}]`,
		`[{"type":"model_code","action":"ADD","path":"empty/.git","content":"x"}]`,
		`[{"type":"config","action":"UPDATE","content":"model_name: m\nenvironment_variables: {A: \"1\"}\n"},{"type":"environment_variable","action":"REMOVE","name":"B"}]`,
		`[{"type":"environment_variable","action":"UPDATE","name":"A","value":"2"}]`,
		`[{"type":"config","action":"UPDATE","content":"model_name: [\n"}]`,
		`[{"type":"model_code","action":"ADD","path":"x","content":"a","content_bytes":"YQ=="}]`,
		`[]`, `null`, `{}`, `[{"type":"model_code","extra":1}]`,
	} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, opsJSON []byte) {
		var ops []patch.Op
		if decodeStrict(opsJSON, &ops) != nil {
			return
		}
		s, prev := newFuzzSandbox(t)
		next, err := patch.Next(prev, ops)
		if err != nil {
			var pe *patch.Error
			if !errors.As(err, &pe) {
				t.Fatalf("Next's error %v (%T) is not a *patch.Error", err, err)
			}
			return
		}
		set := patch.Fold(ops)
		if err := set.Check(); err != nil {
			t.Fatalf("Next accepted the ops, but their FileSet fails Check: %v", err)
		}
		applyErr := patch.Apply(s.pkg, set)
		s.check(t)
		if applyErr != nil {
			return
		}
		if err := os.Remove(filepath.Join(s.pkg, "out")); err != nil {
			t.Fatal(err)
		}
		got, err := patch.FromDir(s.pkg)
		if err != nil {
			t.Fatalf("FromDir after Apply: %v", err)
		}
		if got.Hash() != next.Hash() {
			t.Fatalf("Apply gave %v, Next said %v", got, next)
		}
	})
}

// FuzzApplyFileSet carries out a FileSet as the agent receives it over the wire: Apply
// refuses it or carries it out inside the package only.
func FuzzApplyFileSet(f *testing.F) {
	for _, s := range []string{
		`{"remove":["data"],"dirs":["new"],"files":[{"path":"new/a.py","content":"eA=="},{"path":"config.yaml","content":"bW9kZWxfbmFtZTogbQo="}]}`,
		`{"dirs":["out/sub"]}`,
		`{"files":[{"path":"out/evil","content":""}]}`,
		`{"remove":["out"]}`,
		`{"remove":["out/.."]}`,
		`{"files":[{"path":"../evil","content":""}]}`,
		`{"files":[{"path":"/tmp/evil","content":""}]}`,
		`{"files":[{"path":"model/model.py/x","content":""}]}`,
		`{"files":[{"path":"empty","content":""}]}`,
		`{}`,
	} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, setJSON []byte) {
		var set patch.FileSet
		if decodeStrict(setJSON, &set) != nil {
			return
		}
		s, _ := newFuzzSandbox(t)
		_ = patch.Apply(s.pkg, set)
		s.check(t)
	})
}

// FuzzPointValidate decodes a request's next_patch_point: Validate never panics, and a point
// it accepts hashes, and is valid again once it has been through JSON.
func FuzzPointValidate(f *testing.F) {
	for _, s := range []string{
		`{"content_hashes":{"model":null,"model/model.py":"` + strings.Repeat("a", 64) + `"},"config":"model_name: m\n","requirements":["six"]}`,
		`{"content_hashes":{"model/model.py":"` + strings.Repeat("a", 64) + `"},"config":"model_name: m\n"}`,
		`{"content_hashes":{"../x":null},"config":"model_name: m\n"}`,
		`{"content_hashes":{"config.yaml":null},"config":"model_name: m\n"}`,
		`{"content_hashes":{"a/.git":null,"a":null},"config":"model_name: m\n"}`,
		`{"content_hashes":{},"config":""}`,
		`{"content_hashes":null}`,
	} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, pointJSON []byte) {
		var p patch.Point
		if decodeStrict(pointJSON, &p) != nil {
			return
		}
		if p.Validate() != nil {
			return
		}
		_ = p.Hash()
		b, err := json.Marshal(p)
		if err != nil {
			t.Fatalf("a valid point does not encode: %v", err)
		}
		var again patch.Point
		if err := decodeStrict(b, &again); err != nil {
			t.Fatalf("a valid point does not decode again: %v", err)
		}
		if err := again.Validate(); err != nil {
			t.Fatalf("a valid point is not valid after JSON: %v", err)
		}
		if again.Hash() != p.Hash() {
			t.Fatalf("a valid point hashes differently after JSON")
		}
	})
}
