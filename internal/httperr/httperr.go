// Package httperr writes API.md's error shape (apiv1.ErrorV1) for the management API and the
// gateway, with the code that goes with each HTTP status.
package httperr

import (
	"encoding/json"
	"net/http"

	"github.com/modelplane/modelplane/apiv1"
)

// Code names a status for clients that switch on the code rather than the number.
func Code(status int) string {
	switch status {
	case http.StatusBadRequest:
		return "invalid_argument"
	case http.StatusUnauthorized:
		return "unauthenticated"
	case http.StatusForbidden:
		return "permission_denied"
	case http.StatusNotFound:
		return "not_found"
	case http.StatusMethodNotAllowed:
		return "method_not_allowed"
	case http.StatusConflict:
		return "conflict"
	case http.StatusRequestEntityTooLarge:
		return "payload_too_large"
	case http.StatusUnsupportedMediaType:
		return "unsupported_media_type"
	case http.StatusUnprocessableEntity:
		return "unprocessable"
	case http.StatusTooManyRequests:
		return "rate_limited"
	case http.StatusBadGateway:
		return "bad_gateway"
	case http.StatusServiceUnavailable:
		return "unavailable"
	case http.StatusGatewayTimeout:
		return "timeout"
	}
	if status >= 500 {
		return "internal"
	}
	return "error"
}

// Write answers status with message in the error shape.
func Write(w http.ResponseWriter, status int, message string) {
	b, _ := json.Marshal(apiv1.ErrorV1{Error: apiv1.ErrorDetailV1{Code: Code(status), Message: message}})
	h := w.Header()
	h.Set("Content-Type", "application/json")
	h.Del("Content-Length")
	w.WriteHeader(status)
	_, _ = w.Write(append(b, '\n'))
}
