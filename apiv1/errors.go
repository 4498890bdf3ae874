package apiv1

// ErrorV1 is the body of every error answer, of the management API and of the gateway:
// {"error": {"code": "not_found", "message": "..."}}.
type ErrorV1 struct {
	Error ErrorDetailV1 `json:"error"`
}

// ErrorDetailV1 says what went wrong: a code clients can switch on and a message people can
// read.
type ErrorDetailV1 struct {
	Code    string `json:"code"`
	Message string `json:"message"`
}
