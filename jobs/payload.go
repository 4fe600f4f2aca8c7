package jobs

import (
	"encoding/json"

	"github.com/tandem-run/tandem/internal/strictjson"
)

// DecodePayload decodes a job's payload into v as strictly as the HTTP API decodes a request:
// unknown fields and trailing data are refused. Its error is a *ValidationError naming the field
// at fault ({"payload.ms": "must be an integer, got string"}), so a Kind's Validate can return it
// as is and the client's 400 names the field.
func DecodePayload(payload json.RawMessage, v any) error {
	field, err := strictjson.Decode(payload, v)
	if err == nil {
		return nil
	}
	name := "payload"
	if field != "" {
		name += "." + field
	}
	return &ValidationError{Fields: map[string]string{name: err.Error()}}
}
