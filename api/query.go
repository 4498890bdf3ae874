package api

import (
	"net/http"
	"strconv"
	"strings"
	"time"

	"github.com/labstack/echo/v4"
)

// queryList reads a list parameter, sent repeated (?a=x&a=y) as Baseten's clients do, or
// comma-separated; empty items are dropped.
func queryList(c echo.Context, name string) []string {
	var out []string
	for _, v := range c.QueryParams()[name] {
		for _, item := range strings.Split(v, ",") {
			if item = strings.TrimSpace(item); item != "" {
				out = append(out, item)
			}
		}
	}
	return out
}

// queryEpochMillis reads a time sent as milliseconds since the epoch; nil when not sent.
func queryEpochMillis(c echo.Context, name string) (*time.Time, error) {
	v := c.QueryParam(name)
	if v == "" || v == "null" {
		return nil, nil
	}
	ms, err := strconv.ParseInt(v, 10, 64)
	if err != nil || ms < 0 {
		return nil, Errorf(http.StatusBadRequest, "%s: must be milliseconds since the epoch, not %q", name, v)
	}
	t := time.UnixMilli(ms).UTC()
	return &t, nil
}

// queryEnum reads a parameter that must be one of values; def when not sent.
func queryEnum[T ~string](c echo.Context, name string, def T, values []T) (T, error) {
	v := c.QueryParam(name)
	if v == "" {
		return def, nil
	}
	for _, ok := range values {
		if T(v) == ok {
			return ok, nil
		}
	}
	return def, Errorf(http.StatusBadRequest, "%s: must be one of %s, not %q", name, join(values), v)
}

// queryEnumList reads a list parameter whose items must be among values.
func queryEnumList[T ~string](c echo.Context, name string, values []T) ([]T, error) {
	var out []T
	for _, v := range queryList(c, name) {
		found := false
		for _, ok := range values {
			if T(v) == ok {
				out, found = append(out, ok), true
				break
			}
		}
		if !found {
			return nil, Errorf(http.StatusBadRequest, "%s: %q is not one of %s", name, v, join(values))
		}
	}
	return out, nil
}

func join[T ~string](values []T) string {
	s := make([]string, len(values))
	for i, v := range values {
		s[i] = string(v)
	}
	return strings.Join(s, ", ")
}

// queryRFC3339 reads a time sent as RFC 3339 (2026-01-02T15:04:05Z); def when not sent.
func queryRFC3339(c echo.Context, name string, def time.Time) (time.Time, error) {
	v := c.QueryParam(name)
	if v == "" {
		return def, nil
	}
	t, err := time.Parse(time.RFC3339Nano, v)
	if err != nil && strings.Contains(v, " ") {
		// A "+01:00" offset sent unescaped arrives as " 01:00".
		t, err = time.Parse(time.RFC3339Nano, strings.ReplaceAll(v, " ", "+"))
	}
	if err != nil {
		return def, Errorf(http.StatusBadRequest, "%s: must be an RFC 3339 time such as 2026-01-02T15:04:05Z, not %q", name, v)
	}
	return t.UTC(), nil
}
