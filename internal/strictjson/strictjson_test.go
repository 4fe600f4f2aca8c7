package strictjson

import (
	"encoding/json"
	"strings"
	"testing"
)

type item struct {
	Kind     string            `json:"kind"`
	Priority int               `json:"priority"`
	Max      *int              `json:"max"`
	Ratio    float64           `json:"ratio"`
	Payload  json.RawMessage   `json:"payload"`
	Any      any               `json:"any"`
	Env      map[string]string `json:"env"`
	Argv     []string          `json:"argv"`
}

type batch struct {
	Jobs []item `json:"jobs"`
}

// TestDecode: each input is refused with the field at fault named as the API names fields, or
// accepted; the cases are the ways a body can say something other than what it seems to.
func TestDecode(t *testing.T) {
	cases := []struct {
		name, in    string
		field, want string // want "" = accepted
	}{
		{"valid", `{"jobs":[{"kind":"a","priority":1,"max":3,"payload":{"x":[1,{"y":2}]},"env":{"A":"1"}}]}`, "", ""},
		{"malformed", `{"jobs":[`, "", "malformed JSON"},
		{"trailing data", `{"jobs":[]} {}`, "", "trailing data after the JSON value"},
		{"not an object", `[1]`, "", "must be an object, got array"},
		{"unknown field", `{"jobs":[{"kind":"a"},{"kinx":"b"}]}`, "jobs[1].kinx", "unknown field"},
		{"name in another case", `{"jobs":[{"KIND":"a"}]}`, "jobs[0].KIND", "unknown field"},
		{"wrong type", `{"jobs":[{"kind":"a"},{"priority":"high"}]}`, "jobs[1].priority", "must be an integer, got string"},
		{"fraction for an integer", `{"jobs":[{"priority":2.5}]}`, "jobs[0].priority", "must be an integer, got 2.5"},
		{"integer out of range", `{"jobs":[{"priority":1e400}]}`, "jobs[0].priority", "must be an integer, got 1e400"},
		{"huge integer", `{"jobs":[{"priority":99999999999999999999}]}`, "jobs[0].priority", "is out of range, got 99999999999999999999"},
		{"float out of range", `{"jobs":[{"ratio":1e400}]}`, "jobs[0].ratio", "is out of range, got 1e400"},
		{"wrong type in an array", `{"jobs":[{"argv":["a",1]}]}`, "jobs[0].argv[1]", "must be a string, got number"},

		{"duplicate at the top", `{"jobs":[],"jobs":[]}`, "jobs", "duplicate key"},
		{"duplicate in an item", `{"jobs":[{"kind":"a"},{"kind":"noop","kind":"sleep"}]}`, "jobs[1].kind", "duplicate key"},
		{"duplicate spelled with an escape", `{"jobs":[{"k\u0069nd":"a","kind":"b"}]}`, "jobs[0].kind", "duplicate key"},
		{"duplicate in a raw payload", `{"jobs":[{"payload":{"a":{"b":1,"b":2}}}]}`, "jobs[0].payload.a.b", "duplicate key"},
		{"duplicate in an array in a payload", `{"jobs":[{"payload":[{"c":1,"c":1}]}]}`, "jobs[0].payload[0].c", "duplicate key"},
		{"duplicate in a free-form value", `{"jobs":[{"any":{"b":1,"b":2}}]}`, "jobs[0].any.b", "duplicate key"},
		{"duplicate in a map", `{"jobs":[{"env":{"A":"1","A":"2"}}]}`, "jobs[0].env.A", "duplicate key"},
		{"member named like an index", `{"jobs":[{"payload":{"1":{"z":0,"z":0}}}]}`, "jobs[0].payload.1.z", "duplicate key"},

		{"null string", `{"jobs":[{"kind":null}]}`, "jobs[0].kind", "must not be null"},
		{"null integer", `{"jobs":[{"priority":null}]}`, "jobs[0].priority", "must not be null"},
		{"null optional integer", `{"jobs":[{"max":null}]}`, "jobs[0].max", "must not be null"},
		{"null item", `{"jobs":[null]}`, "jobs[0]", "must not be null"},
		{"null array", `{"jobs":null}`, "jobs", "must not be null"},
		{"null map value", `{"jobs":[{"env":{"A":null}}]}`, "jobs[0].env.A", "must not be null"},
		{"null document", `null`, "", "must not be null"},
		{"null raw payload is the receiver's", `{"jobs":[{"payload":null}]}`, "", ""},
		{"null only as text", `{"jobs":[{"kind":"null","env":{"null":"null"}}]}`, "", ""},
		{"null free-form value is the receiver's", `{"jobs":[{"any":null,"payload":{"a":null}}]}`, "", ""},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			var b batch
			field, err := Decode([]byte(tc.in), &b)
			got := ""
			if err != nil {
				got = err.Error()
			}
			if field != tc.field || got != tc.want {
				t.Fatalf("Decode(%s) = %q, %q; want %q, %q", tc.in, field, got, tc.field, tc.want)
			}
		})
	}
}

// BenchmarkDecodeBatch decodes a batch of 100 jobs shaped like an enqueue request.
func BenchmarkDecodeBatch(b *testing.B) {
	body := []byte(`{"jobs":[` + strings.TrimSuffix(strings.Repeat(`{"kind":"sleep","priority":3,"max":5,"payload":{"ms":10,"tags":["a","b"]},"env":{"A":"1"}},`, 100), ",") + `]}`)
	b.SetBytes(int64(len(body)))
	b.ReportAllocs()
	for b.Loop() {
		var v batch
		if _, err := Decode(body, &v); err != nil {
			b.Fatal(err)
		}
	}
}
