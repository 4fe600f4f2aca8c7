// Package strictjson decodes one JSON value the way tandem's API does, and names the field at
// fault in a JSON user's words, not Go's. It refuses:
//
//   - a member the Go type does not have (names match exactly: "Kind" is not "kind");
//   - a name given twice in one object, at any depth, inside free-form values too;
//   - null, except where the Go type is an interface or json.RawMessage (there the receiver sees
//     the null and decides): null is not a way to say "the default", leaving the field out is;
//   - anything after the value.
//
// It uses github.com/go-json-experiment/json (what Go ships as encoding/json/v2 behind
// GOEXPERIMENT=jsonv2), which refuses duplicate names and matches names exactly by default and
// reports where an error lies as a JSON Pointer; encoding/json does neither.
package strictjson

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"reflect"
	"strconv"
	"strings"

	jsonv2 "github.com/go-json-experiment/json"
	"github.com/go-json-experiment/json/jsontext"
)

// Errors Decode returns that callers may branch on (to add a hint, say).
var (
	// ErrUnknownField means the Go type has no member of that name.
	ErrUnknownField = errors.New("unknown field")
	// ErrDuplicateKey means an object gives the name twice.
	ErrDuplicateKey = errors.New("duplicate key")
	// ErrNull means a null where the Go type cannot hold one.
	ErrNull = errors.New("must not be null")
)

// ValueError is what a type's own UnmarshalJSON returns to say, in the API's words, what is
// wrong with a value it refused (`must be a whole number or "auto", got 2.5`): Decode returns it
// as the field's error, where it would otherwise name the Go type's kind.
type ValueError string

func (e ValueError) Error() string { return string(e) }

var rawMessage = reflect.TypeFor[json.RawMessage]()

// refuseNull is consulted for every value: it refuses a JSON null unless the target can hold
// one, and otherwise leaves the value to the default decoding.
func refuseNull(d *jsontext.Decoder, v any) error {
	if d.PeekKind() != 'n' {
		return jsonv2.SkipFunc
	}
	if t := reflect.TypeOf(v).Elem(); t.Kind() == reflect.Interface || t == rawMessage {
		return jsonv2.SkipFunc
	}
	return ErrNull
}

var (
	options         = jsonv2.RejectUnknownMembers(true)
	optionsWithNull = jsonv2.JoinOptions(options, jsonv2.WithUnmarshalers(jsonv2.UnmarshalFromFunc(refuseNull)))
)

// Decode decodes data into v. On failure, field is the path of the field at fault, written as the
// API names fields ("priority", "jobs[1].kind", "payload.argv[0]"; "" for the value as a whole), and
// err says what is wrong with it, such as "must be an integer, got string" or "unknown field".
func Decode(data []byte, v any) (field string, err error) {
	// refuseNull runs for every value and allocates for each (2.5 times the allocations of a batch
	// of 100 jobs, BenchmarkDecodeBatch); a document without "null" anywhere needs no such check.
	opts := options
	if bytes.Contains(data, []byte("null")) {
		opts = optionsWithNull
	}
	err = jsonv2.Unmarshal(data, v, opts)
	if err == nil {
		return "", nil
	}
	var se *jsonv2.SemanticError
	var sy *jsontext.SyntacticError
	switch {
	case errors.As(err, &se):
		field = fieldName(data, se.JSONPointer)
		var ve ValueError
		switch {
		case errors.Is(se.Err, jsonv2.ErrUnknownName):
			return field, ErrUnknownField
		case errors.Is(se.Err, ErrNull):
			return field, ErrNull
		case errors.As(se.Err, &ve):
			return field, ve
		case se.GoType != nil && se.JSONKind != 0:
			return field, typeError(se)
		}
		return field, errors.New("malformed JSON")
	case errors.As(err, &sy):
		switch {
		case errors.Is(sy.Err, jsontext.ErrDuplicateName):
			return fieldName(data, sy.JSONPointer), ErrDuplicateKey
		case strings.Contains(sy.Err.Error(), "after top-level value"):
			return "", errors.New("trailing data after the JSON value")
		}
		return "", errors.New("malformed JSON")
	}
	return "", fmt.Errorf("malformed JSON: %w", err)
}

// typeError says what a value should have been and what it was.
func typeError(se *jsonv2.SemanticError) error {
	t := se.GoType
	for t.Kind() == reflect.Pointer {
		t = t.Elem()
	}
	want := jsonKind(t.Kind())
	if se.JSONKind == '0' && (want == "an integer" || want == "a number") {
		// A number of the wrong form or size: show it, so 2.5 and 1e400 say what they are.
		v := string(se.JSONValue)
		if len(v) > 32 {
			v = v[:32] + "..."
		}
		if want == "an integer" && strings.ContainsAny(v, ".eE") {
			return fmt.Errorf("must be an integer, got %s", v)
		}
		return fmt.Errorf("is out of range, got %s", v)
	}
	return fmt.Errorf("must be %s, got %s", want, kindName(se.JSONKind))
}

// kindName names a JSON value's kind.
func kindName(k jsontext.Kind) string {
	switch k {
	case '"':
		return "string"
	case '0':
		return "number"
	case 't':
		return "true"
	case 'f':
		return "false"
	case '{':
		return "object"
	case '[':
		return "array"
	}
	return k.String()
}

// jsonKind names a Go kind the way a JSON user would.
func jsonKind(k reflect.Kind) string {
	switch k {
	case reflect.Int, reflect.Int8, reflect.Int16, reflect.Int32, reflect.Int64,
		reflect.Uint, reflect.Uint8, reflect.Uint16, reflect.Uint32, reflect.Uint64, reflect.Uintptr:
		return "an integer"
	case reflect.Float32, reflect.Float64:
		return "a number"
	case reflect.String:
		return "a string"
	case reflect.Bool:
		return "true or false"
	case reflect.Slice, reflect.Array:
		return "an array"
	case reflect.Map, reflect.Struct:
		return "an object"
	}
	return "a " + k.String()
}

// fieldName writes a JSON Pointer ("/jobs/1/kind") as the API names fields ("jobs[1].kind"). A
// pointer cannot tell an array index from an object member named "1", so it follows the pointer
// through data to see which each token is. Only error answers pay for this.
func fieldName(data []byte, p jsontext.Pointer) string {
	var node any
	_ = json.Unmarshal(data, &node) // a document with a duplicate name still parses this way
	var b strings.Builder
	for tok := range p.Tokens() {
		switch n := node.(type) {
		case []any:
			i, err := strconv.Atoi(tok)
			if err == nil && i >= 0 && i < len(n) {
				fmt.Fprintf(&b, "[%d]", i)
				node = n[i]
				continue
			}
		case map[string]any:
			node = n[tok]
		default:
			node = nil
		}
		if b.Len() > 0 {
			b.WriteByte('.')
		}
		b.WriteString(tok)
	}
	return b.String()
}
