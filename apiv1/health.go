package apiv1

// HealthV1 answers /healthz ({"status": "ok"}) and /readyz, whose Checks say what each
// dependency answered ("ok" or the error).
type HealthV1 struct {
	Status string            `json:"status"`
	Checks map[string]string `json:"checks,omitempty"`
}
