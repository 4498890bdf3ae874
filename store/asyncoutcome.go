package store

import (
	"fmt"
	"net/http"
	"strings"
	"unicode/utf8"

	"github.com/modelplane/modelplane"
)

// AttemptOutcome is the judgement of a finished attempt.
type AttemptOutcome struct {
	Succeeded bool
	// Retryable: a later attempt may pass.
	Retryable bool
	// Error says why it failed.
	Error modelplane.AsyncError
}

// ClassifyAttempt judges a finished attempt: a 2xx answer succeeds; no answer, 429, 500, 502,
// 503, 504 and a lost gateway may pass on a later attempt; any other answer, and an output
// too large to keep, fail the request at once.
func ClassifyAttempt(att AsyncAttempt) AttemptOutcome {
	var out AttemptOutcome
	code := att.StatusCode
	switch {
	case att.ErrorCode == modelplane.CodeModelOutputTooLarge:
	case att.ErrorCode == modelplane.CodeGatewayLost:
		out.Retryable = true
	case code >= 200 && code <= 299:
		out.Succeeded = true
		return out
	case code == 0, code == http.StatusTooManyRequests, code == http.StatusInternalServerError,
		code == http.StatusBadGateway, code == http.StatusServiceUnavailable, code == http.StatusGatewayTimeout:
		out.Retryable = true
	}
	out.Error = modelplane.AsyncError{Code: attemptErrorCode(att), Message: attemptErrorMessage(att), Attempt: att.Attempt}
	return out
}

// attemptErrorCode is the code of a failed attempt: the gateway's when it gave one, else the
// one the answer's status calls for.
func attemptErrorCode(att AsyncAttempt) modelplane.ErrorCode {
	switch code := att.StatusCode; {
	case att.ErrorCode != "":
		return att.ErrorCode
	case code == 0:
		return modelplane.CodeModelUnavailable
	case code == http.StatusGatewayTimeout:
		return modelplane.CodeModelPredictTimeout
	case code == http.StatusTooManyRequests, code >= 500:
		// A model that is overloaded has nothing against the input.
		return modelplane.CodeModelPredictError
	case code >= 400:
		return modelplane.CodeModelInvalidInput
	}
	return modelplane.CodeModelPredictError
}

// maxErrorBody bounds how much of a model's error answer is quoted in the error message.
const maxErrorBody = 500

// attemptErrorMessage says what went wrong with an attempt: the gateway's error when it gave
// one, else the status the model answered and the start of what it said.
func attemptErrorMessage(att AsyncAttempt) string {
	if att.Error != "" {
		return att.Error
	}
	if att.StatusCode == 0 {
		return "the deployment gave no answer"
	}
	msg := fmt.Sprintf("the model answered %d %s", att.StatusCode, http.StatusText(att.StatusCode))
	body := strings.TrimSpace(string(att.Output))
	if body == "" || !utf8.ValidString(body) {
		return msg
	}
	if len(body) > maxErrorBody {
		cut := maxErrorBody
		for cut > 0 && !utf8.RuneStart(body[cut]) {
			cut--
		}
		body = body[:cut] + "..."
	}
	return msg + ": " + body
}
