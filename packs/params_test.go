package packs

import (
	"encoding/json"
	"errors"
	"maps"
	"reflect"
	"strings"
	"sync"
	"testing"

	"github.com/troupehq/troupe/domain"
)

func loadExamples(tb testing.TB) *Catalog {
	tb.Helper()
	c, err := Load([]string{"examples", "testdata/good"}, Options{})
	if err != nil {
		tb.Fatal(err)
	}
	return c
}

// fromJSON decodes params the way the API does, so numbers are float64.
func fromJSON(t *testing.T, s string) map[string]any {
	t.Helper()
	var m map[string]any
	if err := json.Unmarshal([]byte(s), &m); err != nil {
		t.Fatal(err)
	}
	return m
}

func TestValidateParams(t *testing.T) {
	c := loadExamples(t)
	type fail struct{ param, reason string }
	for _, tc := range []struct {
		name   string
		action string
		params string
		want   string // the returned parameters, as JSON
		fails  []fail
	}{
		{name: "default applied", action: "hello.greet", params: `{}`, want: `{"name":"world"}`},
		{name: "null counts as absent", action: "hello.greet", params: `{"name":null}`, want: `{"name":"world"}`},
		{name: "given value kept", action: "hello.greet", params: `{"name":"ada"}`, want: `{"name":"ada"}`},
		{name: "enum default", action: "core.http", params: `{"url":"http://x"}`, want: `{"method":"GET","url":"http://x"}`},
		{name: "any type", action: "core.http", params: `{"url":"u","body":[1,{"a":null}]}`, want: `{"body":[1,{"a":null}],"method":"GET","url":"u"}`},
		{name: "integral float is an integer", action: "hello.deploy", params: `{"service":"web","replicas":3}`, want: `{"replicas":3,"service":"web"}`},
		{name: "integral float with fraction syntax", action: "hello.deploy", params: `{"service":"web","replicas":3.0}`, want: `{"replicas":3,"service":"web"}`},
		{name: "fraction is not an integer", action: "hello.deploy", params: `{"service":"web","replicas":2.5}`,
			fails: []fail{{"replicas", "must be integer, got number"}}},
		{name: "wrong type", action: "hello.deploy", params: `{"service":"web","replicas":"3"}`,
			fails: []fail{{"replicas", "must be integer, got string"}}},
		{name: "missing required", action: "hello.deploy", params: `{}`,
			fails: []fail{{"replicas", "missing required parameter"}, {"service", "missing required parameter"}}},
		{name: "not in enum", action: "core.http", params: `{"url":"u","method":"FETCH"}`,
			fails: []fail{{"method", `must be one of GET, POST, PUT, PATCH, DELETE, HEAD, got "FETCH"`}}},
		{name: "unknown with suggestion", action: "core.http", params: `{"url":"u","methd":"GET"}`,
			fails: []fail{{"methd", "unknown parameter (did you mean method?)"}}},
		{name: "unknown without suggestion", action: "core.noop", params: `{"whatever":1}`,
			fails: []fail{{"whatever", "unknown parameter"}}},
		{name: "object default", action: "good.opts", params: `{}`, want: `{"level":"low","options":{"hosts":["a","b"],"retries":3}}`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			in := fromJSON(t, tc.params)
			before := maps.Clone(in)
			out, err := c.ValidateParams(tc.action, in)
			if !reflect.DeepEqual(in, before) {
				t.Errorf("input changed to %v", in)
			}
			if tc.fails == nil {
				if err != nil {
					t.Fatal(err)
				}
				if got, _ := json.Marshal(out); string(got) != tc.want {
					t.Errorf("got %s, want %s", got, tc.want)
				}
				return
			}
			var errs []error
			if j, ok := err.(interface{ Unwrap() []error }); ok {
				errs = j.Unwrap()
			} else if err != nil {
				errs = []error{err}
			}
			if out != nil || len(errs) != len(tc.fails) {
				t.Fatalf("got %v, %v; want %d errors", out, err, len(tc.fails))
			}
			for i, f := range tc.fails {
				var pe *domain.ParamError
				if !errors.As(errs[i], &pe) || pe.Action != tc.action || pe.Param != f.param || !strings.Contains(pe.Reason, f.reason) {
					t.Errorf("error %d: %v; want parameter %q: %s", i, errs[i], f.param, f.reason)
				}
			}
		})
	}
}

func TestValidateParamsUnknownAction(t *testing.T) {
	c := loadExamples(t)
	if _, err := c.ValidateParams("hello.nope", nil); !errors.Is(err, domain.ErrNotFound) || !strings.Contains(err.Error(), "hello.nope") {
		t.Fatalf("got %v, want a not-found error naming the action", err)
	}
}

func TestValidateParamsDefaultsAreCopies(t *testing.T) {
	c := loadExamples(t)
	var wg sync.WaitGroup
	for range 8 {
		wg.Go(func() {
			for range 100 {
				out, err := c.ValidateParams("good.opts", map[string]any{"level": "high"})
				if err != nil {
					t.Error(err)
					return
				}
				opts := out["options"].(map[string]any)
				if opts["retries"] != 3 {
					t.Errorf("default changed: %v", opts)
					return
				}
				opts["retries"] = 99 // must not leak into the next call
			}
		})
	}
	wg.Wait()
}

func BenchmarkValidateParams(b *testing.B) {
	c := loadExamples(b)
	for _, bc := range []struct {
		action string
		params map[string]any
	}{
		{"hello.deploy", map[string]any{"service": "web", "replicas": float64(3)}},
		{"core.http", map[string]any{"url": "http://example.com", "headers": map[string]any{"accept": "application/json"}, "body": map[string]any{"a": 1.0}}},
	} {
		b.Run(bc.action, func(b *testing.B) {
			b.ReportAllocs()
			b.RunParallel(func(pb *testing.PB) {
				for pb.Next() {
					if _, err := c.ValidateParams(bc.action, bc.params); err != nil {
						b.Fatal(err)
					}
				}
			})
		})
	}
}
