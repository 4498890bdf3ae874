package api

import (
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
	body, err := io.ReadAll(io.LimitReader(c.Request().Body, limit+1))
	if err != nil {
		return nil, Errorf(http.StatusBadRequest, "reading the body: %v", err)
	}
	if int64(len(body)) > limit {
		return nil, Errorf(http.StatusRequestEntityTooLarge, "body over %d bytes", limit)
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
