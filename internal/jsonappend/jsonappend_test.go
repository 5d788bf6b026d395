package jsonappend

import (
	"bytes"
	"encoding/json"
	"math"
	"math/rand/v2"
	"testing"
	"time"
)

// Every function must give exactly Marshal's bytes: the stream and the
// stored records would otherwise read differently from the rest.
func TestSameAsMarshal(t *testing.T) {
	rng := rand.New(rand.NewPCG(1, 2))
	alphabet := []string{"a", "Z", "0", " ", "\"", "\\", "/", "<", ">", "&", "\n", "\t", "\r", "\b", "\f", "\x01", "\x1f", "\x7f",
		"é", "€", "😀", "\u2028", "\u2029", "\xff", "\xe2\x80", "\ufffd"}
	str := func() string {
		var b []byte
		for range rng.IntN(10) {
			b = append(b, alphabet[rng.IntN(len(alphabet))]...)
		}
		return string(b)
	}
	floats := []float64{0, math.Copysign(0, -1), 1, -1.5, 123.456, 1e-6, 9.99e-7, 1e-7, 1e20, 1e21, 1.5e300, -2.5e-300, 5e-324, math.MaxFloat64, 0.1, 1.0 / 3}
	var value func(depth int) any
	value = func(depth int) any {
		switch k := rng.IntN(9); {
		case k == 0:
			return nil
		case k == 1:
			return rng.IntN(2) == 0
		case k == 2:
			return str()
		case k == 3:
			return floats[rng.IntN(len(floats))]
		case k == 4:
			return rng.NormFloat64() * math.Pow(10, float64(rng.IntN(60)-30))
		case k == 5:
			return rng.IntN(2000) - 1000
		case k == 6 && depth < 3:
			var s []any
			if rng.IntN(5) > 0 {
				s = []any{}
			}
			for range rng.IntN(4) {
				s = append(s, value(depth+1))
			}
			return s
		case k >= 7 && depth < 3:
			var m map[string]any
			if rng.IntN(5) > 0 {
				m = map[string]any{}
			}
			for range rng.IntN(5) {
				if m == nil {
					m = map[string]any{}
				}
				m[str()] = value(depth + 1)
			}
			return m
		}
		return str()
	}
	for i := range 3000 {
		v := value(0)
		want, err := json.Marshal(v)
		if err != nil {
			t.Fatal(err)
		}
		got, ok := Value([]byte("x"), v)
		if !ok || !bytes.Equal(got, append([]byte("x"), want...)) {
			t.Fatalf("value %d %#v:\n got %s (%v)\nwant x%s", i, v, got, ok, want)
		}
	}
	for _, v := range []any{math.NaN(), math.Inf(1), []any{1, int8(2)}, map[string]any{"a": struct{}{}}} {
		if _, ok := Value(nil, v); ok {
			t.Errorf("%#v written, which Marshal refuses or this package does not know", v)
		}
	}
	for _, raw := range []string{`{}`, `null`, `{"a":[1,2.5,"x\\"y"],"b":{}}`, `"\u003c"`, `{ "a": 1 }`, "[1,\n2]", `{"a":"<"}`,
		`"&"`, "\"\u2028\"", `not json`, `{"a":`} {
		want, wantErr := json.Marshal(json.RawMessage(raw))
		got, ok := Raw([]byte("x"), []byte(raw))
		if ok && (wantErr != nil || !bytes.Equal(got, append([]byte("x"), want...))) {
			t.Errorf("raw %q: got %s, want x%s (%v)", raw, got, want, wantErr)
		}
		if !ok && wantErr == nil && bytes.Equal(want, []byte(raw)) {
			t.Errorf("raw %q: refused, though Marshal copies it as it is", raw)
		}
	}
	for _, tm := range []time.Time{{}, time.Date(2026, 11, 26, 18, 0, 0, 123456789, time.UTC),
		time.Date(1, 2, 3, 4, 5, 6, 0, time.FixedZone("x", -5*3600-30*60)), time.Date(9999, 12, 31, 23, 59, 59, 1, time.Local)} {
		want, _ := json.Marshal(tm)
		if got, ok := Time(nil, tm); !ok || !bytes.Equal(got, want) {
			t.Errorf("time %v: got %s, want %s", tm, got, want)
		}
	}
	if _, ok := Time(nil, time.Date(10000, 1, 1, 0, 0, 0, 0, time.UTC)); ok {
		t.Error("year 10000 written, which MarshalJSON refuses")
	}
}
