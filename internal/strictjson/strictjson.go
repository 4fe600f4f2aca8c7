// Package strictjson decodes one JSON value the way tandem's API does: unknown fields and trailing
// data are refused, and an error names the field at fault in a JSON user's words, not Go's.
package strictjson

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"strings"
)

// Decode decodes data into v. On failure, field is the dotted path of the field at fault ("" for
// the value as a whole) and err says what is wrong with it, such as "must be an integer, got
// string" or "unknown field".
func Decode(data []byte, v any) (field string, err error) {
	d := json.NewDecoder(bytes.NewReader(data))
	d.DisallowUnknownFields()
	if err := d.Decode(v); err != nil {
		var te *json.UnmarshalTypeError
		var se *json.SyntaxError
		switch {
		case errors.As(err, &te):
			return te.Field, fmt.Errorf("must be %s, got %s", jsonKind(te.Type.Kind().String()), te.Value)
		case errors.As(err, &se), errors.Is(err, io.ErrUnexpectedEOF), errors.Is(err, io.EOF):
			return "", errors.New("malformed JSON")
		case strings.HasPrefix(err.Error(), "json: unknown field "):
			return strings.Trim(strings.TrimPrefix(err.Error(), "json: unknown field "), `"`), errors.New("unknown field")
		}
		return "", err
	}
	if d.More() {
		return "", errors.New("trailing data after the JSON value")
	}
	return "", nil
}

// jsonKind names a Go kind the way a JSON user would.
func jsonKind(k string) string {
	switch {
	case strings.HasPrefix(k, "int"), strings.HasPrefix(k, "uint"):
		return "an integer"
	case strings.HasPrefix(k, "float"):
		return "a number"
	case k == "string":
		return "a string"
	case k == "bool":
		return "true or false"
	case k == "slice":
		return "an array"
	case k == "map", k == "struct":
		return "an object"
	}
	return "a " + k
}
