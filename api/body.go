package api

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"sort"
	"strings"

	"github.com/labstack/echo/v4"
)

// maxJSONBody bounds a management request's JSON body.
const maxJSONBody = 1 << 20

// readObject reads the request body as a JSON object of known fields, so that a misspelt
// field is a 400 naming it rather than a silently ignored setting.
func readObject(c echo.Context, known ...string) (map[string]json.RawMessage, error) {
	return readObjectUpTo(c, maxJSONBody, known...)
}

// readObjectUpTo is readObject for a body of at most limit bytes.
func readObjectUpTo(c echo.Context, limit int64, known ...string) (map[string]json.RawMessage, error) {
	return readObjectStoring(c, limit, nil, known...)
}

// readObjectStoring is readObjectUpTo for a body whose fields named in binary (top-level
// names) are stored as bytes, so that their strings may hold NUL; every other string of the
// body is refused with it, as checkContent says.
func readObjectStoring(c echo.Context, limit int64, binary []string, known ...string) (map[string]json.RawMessage, error) {
	body, err := io.ReadAll(io.LimitReader(c.Request().Body, limit+1))
	if err != nil {
		return nil, Errorf(http.StatusBadRequest, "reading the body: %v", err)
	}
	if int64(len(body)) > limit {
		return nil, Errorf(http.StatusRequestEntityTooLarge, "body over %d bytes", limit)
	}
	if err := checkContent(body, binary); err != nil {
		return nil, err
	}
	var obj map[string]json.RawMessage
	if err := json.Unmarshal(body, &obj); err != nil || obj == nil {
		return nil, Errorf(http.StatusBadRequest, "the body must be a JSON object: %v", jsonProblem(err))
	}
	for k := range obj {
		if !contains(known, k) {
			sorted := append([]string(nil), known...)
			sort.Strings(sorted)
			return nil, Errorf(http.StatusBadRequest, "%s: unknown field (known: %s)", k, strings.Join(sorted, ", "))
		}
	}
	return obj, nil
}

// maxJSONDepth bounds how deeply a body's JSON nests (the body itself is level 1). No field
// of the API needs more, and PostgreSQL refuses a deep enough jsonb value with a 500.
const maxJSONDepth = 64

// jsonFrame is an object or array checkContent is in: the key or index of the value it is
// at.
type jsonFrame struct {
	obj     bool
	wantKey bool
	key     string
	idx     int
}

// jsonPath writes the frames' position as a field path: source.deployment.labels.team,
// patch_ops[2].content.
func jsonPath(stack []jsonFrame) string {
	var b strings.Builder
	for _, f := range stack {
		if f.obj {
			if b.Len() > 0 {
				b.WriteByte('.')
			}
			b.WriteString(f.key)
		} else {
			fmt.Fprintf(&b, "[%d]", f.idx)
		}
	}
	if b.Len() == 0 {
		return "body"
	}
	return b.String()
}

// checkContent refuses what PostgreSQL cannot store, naming the field: JSON nested deeper
// than maxJSONDepth, and a key or string holding NUL (\u0000), which text and jsonb cannot
// hold. Strings at or under the top-level fields in binary are stored as bytes and may. A
// body that is not valid JSON passes, for Unmarshal to report.
func checkContent(body []byte, binary []string) error {
	dec := json.NewDecoder(bytes.NewReader(body))
	dec.UseNumber()
	var stack []jsonFrame
	endValue := func() {
		if n := len(stack); n > 0 && stack[n-1].obj {
			stack[n-1].wantKey = true
		}
	}
	for {
		tok, err := dec.Token()
		if err != nil {
			return nil // the end, or invalid JSON
		}
		n := len(stack)
		if d, ok := tok.(json.Delim); ok && (d == '}' || d == ']') {
			stack = stack[:n-1]
			endValue()
			continue
		}
		if n > 0 && stack[n-1].obj && stack[n-1].wantKey {
			key, _ := tok.(string)
			if strings.IndexByte(key, 0) >= 0 {
				return Errorf(http.StatusBadRequest, "%s: a key must not contain NUL (\\u0000)", jsonPath(stack[:n-1]))
			}
			stack[n-1].key, stack[n-1].wantKey = key, false
			continue
		}
		if n > 0 && !stack[n-1].obj {
			stack[n-1].idx++
		}
		switch t := tok.(type) {
		case json.Delim:
			if n >= maxJSONDepth {
				return Errorf(http.StatusBadRequest, "%s: nested deeper than %d levels", jsonPath(stack), maxJSONDepth)
			}
			stack = append(stack, jsonFrame{obj: t == '{', wantKey: t == '{', idx: -1})
		case string:
			if strings.IndexByte(t, 0) >= 0 && (n == 0 || !contains(binary, stack[0].key)) {
				return Errorf(http.StatusBadRequest, "%s: must not contain NUL (\\u0000)", jsonPath(stack))
			}
			endValue()
		default:
			endValue()
		}
	}
}

// refuseNULInURL answers 400 naming the path parameter or query parameter that holds NUL:
// each is looked up in PostgreSQL as text, which cannot hold it.
func refuseNULInURL(next echo.HandlerFunc) echo.HandlerFunc {
	return func(c echo.Context) error {
		for i, name := range c.ParamNames() {
			if i < len(c.ParamValues()) && strings.IndexByte(c.ParamValues()[i], 0) >= 0 {
				return Errorf(http.StatusBadRequest, "%s: must not contain NUL (\\u0000)", name)
			}
		}
		for name, values := range c.QueryParams() {
			for _, v := range values {
				if strings.IndexByte(name, 0) >= 0 || strings.IndexByte(v, 0) >= 0 {
					return Errorf(http.StatusBadRequest, "%q: a query parameter must not contain NUL (\\u0000)", name)
				}
			}
		}
		return next(c)
	}
}

func contains(list []string, s string) bool {
	for _, v := range list {
		if v == s {
			return true
		}
	}
	return false
}

func jsonProblem(err error) string {
	if err == nil {
		return "got null"
	}
	var se *json.SyntaxError
	if errors.As(err, &se) {
		return fmt.Sprintf("invalid JSON at byte %d", se.Offset)
	}
	return err.Error()
}

// stringField reads a string field, naming it when it is something else.
func stringField(obj map[string]json.RawMessage, name string) (string, bool, error) {
	raw, ok := obj[name]
	if !ok {
		return "", false, nil
	}
	var s string
	if err := json.Unmarshal(raw, &s); err != nil {
		return "", true, Errorf(http.StatusBadRequest, "%s: must be a string", name)
	}
	return s, true, nil
}

// marshalObject turns a checked object back into JSON for a settings patch.
func marshalObject(obj map[string]json.RawMessage) (json.RawMessage, error) {
	return json.Marshal(obj)
}

// boolField reads an optional boolean field; left out or null, it is def.
func boolField(obj map[string]json.RawMessage, name string, def bool) (bool, error) {
	raw, ok := obj[name]
	if !ok || string(raw) == "null" {
		return def, nil
	}
	return boolValue(raw, name)
}

// boolValue decodes a boolean, naming the field (its dotted path) when it is something else.
func boolValue(raw json.RawMessage, name string) (bool, error) {
	var b bool
	if err := json.Unmarshal(raw, &b); err != nil {
		return false, Errorf(http.StatusBadRequest, "%s: must be true or false", name)
	}
	return b, nil
}
