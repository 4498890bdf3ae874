package api

import (
	"errors"
	"fmt"
	"log/slog"
	"net/http"

	"github.com/labstack/echo/v4"

	"github.com/modelplane/modelplane/apiv1"
	"github.com/modelplane/modelplane/internal/httperr"
	"github.com/modelplane/modelplane/store"
)

// Error is an error with the HTTP status and code a client sees. Handlers return it for
// failures that are the caller's (bad input, missing rows, conflicts).
type Error struct {
	Status  int
	Code    string
	Message string
}

func (e *Error) Error() string { return e.Message }

// Errorf makes an Error with a formatted message and the status's standard code.
func Errorf(status int, format string, args ...any) *Error {
	return &Error{Status: status, Code: httperr.Code(status), Message: fmt.Sprintf(format, args...)}
}

// toError maps any error a handler returned to what the client sees. Domain errors are
// matched here and nowhere else.
func toError(err error) (e *Error, internal bool) {
	var apiErr *Error
	var httpErr *echo.HTTPError
	var storeErr *store.Error
	switch {
	case errors.As(err, &apiErr):
		return apiErr, false
	case errors.Is(err, store.ErrNotFound):
		return Errorf(http.StatusNotFound, "not found"), false
	case errors.As(err, &storeErr) && errors.Is(err, store.ErrConflict):
		return Errorf(http.StatusConflict, "conflict: %s", storeErr.Detail), false
	case errors.As(err, &storeErr) && errors.Is(err, store.ErrConstraint):
		return Errorf(http.StatusUnprocessableEntity, "%s", storeErr.Detail), false
	case errors.As(err, &storeErr) && errors.Is(err, store.ErrUnstorable):
		// A backstop: the body checks refuse such content first, naming the field.
		return Errorf(http.StatusBadRequest, "the request holds content the database cannot store: %s", storeErr.Detail), false
	case errors.As(err, &httpErr):
		msg := http.StatusText(httpErr.Code)
		if s, ok := httpErr.Message.(string); ok && s != "" {
			msg = s
		}
		return &Error{Status: httpErr.Code, Code: httperr.Code(httpErr.Code), Message: msg}, httpErr.Code >= 500
	}
	return Errorf(http.StatusInternalServerError, "internal error"), true
}

// errorHandler is the central echo error handler: every failure leaves in API.md's shape,
// and only unexpected ones are logged (with what the client did not see).
func errorHandler(log *slog.Logger) echo.HTTPErrorHandler {
	return func(err error, c echo.Context) {
		if c.Response().Committed {
			return
		}
		e, internal := toError(err)
		if internal {
			log.ErrorContext(c.Request().Context(), "request failed", "method", c.Request().Method, "path", c.Path(),
				"request_id", c.Response().Header().Get(echo.HeaderXRequestID), "err", err)
		}
		if e.Status == http.StatusUnauthorized {
			c.Response().Header().Set(echo.HeaderWWWAuthenticate, `Api-Key, Bearer`)
		}
		var werr error
		if c.Request().Method == http.MethodHead {
			werr = c.NoContent(e.Status)
		} else {
			werr = c.JSON(e.Status, apiv1.ErrorV1{Error: apiv1.ErrorDetailV1{Code: e.Code, Message: e.Message}})
		}
		if werr != nil {
			log.WarnContext(c.Request().Context(), "writing error response", "err", werr)
		}
	}
}
