package api

import (
	"bytes"
	"encoding/json"
	"math/rand/v2"
	"testing"
	"time"

	"github.com/troupehq/troupe/domain"
)

// appendExecution must give exactly json.Marshal's bytes, for every shape
// of view and every string, or clients would read the stream differently
// from the rest of the API.
func TestAppendExecutionIsMarshal(t *testing.T) {
	at := time.Date(2026, 11, 26, 18, 0, 0, 123456789, time.UTC)
	started, finished := at.Add(time.Millisecond), at.In(time.FixedZone("x", -5*3600)).Add(time.Second)
	full := ExecutionView{ID: domain.NewID(at), Action: "pack.act", Runtime: "shell", Status: domain.StatusFailed,
		Parameters: map[string]any{"cmd": "echo <b> & \"q\"", "n": 2.5, "list": []any{true, nil, "x"}}, Attempt: 2,
		Rule: "pack.rule", Event: domain.NewID(at), Enforcement: domain.NewID(at), Node: "n1", Worker: "w1",
		CreatedAt: at, StartedAt: &started, FinishedAt: &finished, Error: "exit 3\n",
		Result:  &domain.Result{ExitCode: 3, Stdout: "line\tone\r\n", Stderr: "\x00\x1f\u2028\u2029\xff", Output: json.RawMessage(`{"a":[1,2],"b":"c"}`)},
		RerunOf: domain.NewID(at),
		History: []domain.HistoryEntry{{Status: domain.StatusRequested, At: at, Attempt: 1, Seq: 1, Node: "n1"}}}
	views := []ExecutionView{full, {}, {ID: full.ID, Parameters: map[string]any{}, CreatedAt: at, Result: &domain.Result{}}}
	for _, out := range []string{`{ "a": 1 }`, `{"a":"<"}`, `"\u2028"`, `[1, 2]`, `null`, `not json`} {
		v := full
		v.Result = &domain.Result{Stdout: "x", Output: json.RawMessage(out)}
		views = append(views, v)
	}
	bad := full
	bad.CreatedAt = time.Date(10000, 1, 1, 0, 0, 0, 0, time.UTC)
	views = append(views, bad)

	rng := rand.New(rand.NewPCG(1, 2))
	alphabet := []string{"a", "Z", "0", " ", "\"", "\\", "/", "<", ">", "&", "\n", "\t", "\b", "\f", "\x01", "\x7f", "é", "€", "😀", "\u2028", "\u2029", "\xff", "\xe2\x80", "\ufffd"}
	str := func() string {
		var b []byte
		for range rng.IntN(12) {
			b = append(b, alphabet[rng.IntN(len(alphabet))]...)
		}
		return string(b)
	}
	for range 500 {
		v := full
		v.Action, v.Rule, v.Node, v.Worker, v.Error = str(), str(), str(), str(), str()
		v.Result = &domain.Result{ExitCode: rng.IntN(300) - 150, Stdout: str(), Stderr: str()}
		v.Parameters = map[string]any{str(): str()}
		views = append(views, v)
	}

	for i := range views {
		want, wantErr := json.Marshal(&views[i])
		got, err := appendExecution([]byte("prefix"), &views[i])
		if (err != nil) != (wantErr != nil) {
			t.Fatalf("view %d: error %v, json.Marshal's %v", i, err, wantErr)
		}
		if err == nil && !bytes.Equal(got, append([]byte("prefix"), want...)) {
			t.Fatalf("view %d:\n got %s\nwant prefix%s", i, got, want)
		}
	}
}

func BenchmarkAppendExecution(b *testing.B) {
	at := time.Now().UTC()
	s, f := at.Add(time.Millisecond), at.Add(2*time.Millisecond)
	v := ExecutionView{ID: domain.NewID(at), Action: "core.noop", Runtime: "builtin", Status: domain.StatusSucceeded,
		Parameters: map[string]any{}, Attempt: 1, Rule: "bench.noop", Event: domain.NewID(at), Enforcement: domain.NewID(at),
		Node: "bench-1", Worker: "bench-1", CreatedAt: at, StartedAt: &s, FinishedAt: &f, Result: &domain.Result{Output: json.RawMessage(`{}`)}}
	b.Run("append", func(b *testing.B) {
		b.ReportAllocs()
		var buf []byte
		for b.Loop() {
			buf, _ = appendExecution(buf[:0], &v)
		}
	})
	b.Run("json.Marshal", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			_, _ = json.Marshal(&v)
		}
	})
}
