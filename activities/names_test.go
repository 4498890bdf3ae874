package activities_test

import (
	"go/ast"
	"go/parser"
	"go/token"
	"reflect"
	"slices"
	"strconv"
	"strings"
	"testing"

	"github.com/modelplane/modelplane/activities"
)

// TestActivityNames_AreTheRegisteredMethods holds the workflows, which schedule activities by
// the names in contract/activitynames.go, to the methods the worker registers: a renamed
// method, or a name with a typo, would otherwise fail only when a workflow reaches it.
func TestActivityNames_AreTheRegisteredMethods(t *testing.T) {
	f, err := parser.ParseFile(token.NewFileSet(), "../workflows/contract/activitynames.go", nil, 0)
	if err != nil {
		t.Fatal(err)
	}
	var named []string
	ast.Inspect(f, func(n ast.Node) bool {
		spec, ok := n.(*ast.ValueSpec)
		if !ok {
			return true
		}
		for i, id := range spec.Names {
			lit, ok := spec.Values[i].(*ast.BasicLit)
			if !ok {
				t.Fatalf("%s is not a string literal", id.Name)
			}
			value, _ := strconv.Unquote(lit.Value)
			if id.Name != "Activity"+value {
				t.Errorf("constant %s names activity %q: want Activity%s", id.Name, value, value)
			}
			named = append(named, value)
		}
		return false
	})

	typ := reflect.TypeFor[*activities.Activities]()
	var methods []string
	for i := range typ.NumMethod() {
		methods = append(methods, typ.Method(i).Name)
	}
	for _, name := range named {
		if !slices.Contains(methods, name) {
			t.Errorf("contract names activity %q, but *activities.Activities has no such method", name)
		}
	}
	for _, m := range methods {
		if !slices.Contains(named, m) {
			t.Errorf("the worker registers activity %s, but contract/activitynames.go does not name it: add Activity%s", m, m)
		}
	}
	if len(named) == 0 || t.Failed() {
		t.Logf("named: %s", strings.Join(named, " "))
	}
}
