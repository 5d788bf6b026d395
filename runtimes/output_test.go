package runtimes

import (
	"strings"
	"testing"
	"time"

	"github.com/troupehq/troupe/domain"
)

// follow reads o as a tail would, from the start until it ends, and
// returns what it read of each stream, chunk by chunk.
func follow(t *testing.T, o *Output) (stdout, stderr []string) {
	t.Helper()
	deadline := time.After(30 * time.Second)
	var outN, errN int
	for {
		out, errb, ended, more := o.Since(outN, errN)
		if len(out) > 0 {
			stdout, outN = append(stdout, string(out)), outN+len(out)
		}
		if len(errb) > 0 {
			stderr, errN = append(stderr, string(errb)), errN+len(errb)
		}
		if ended {
			return stdout, stderr
		}
		select {
		case <-more:
		case <-deadline:
			t.Fatalf("output did not end; read %q and %q", stdout, stderr)
		}
	}
}

// TestOutputFollowsARun: a reader following a shell action's output sees
// its first line while the action still runs, and in the end every byte
// that the result keeps, stderr apart, the cap's truncation included.
func TestOutputFollowsARun(t *testing.T) {
	cfg := testConfig(t)
	cfg.MaxOutput = 64
	rt := newShell(t, cfg)
	o := NewOutput()
	type read struct{ stdout, stderr []string }
	reads := make(chan read)
	go func() {
		out, errs := follow(t, o)
		reads <- read{out, errs}
	}()
	done := make(chan Outcome)
	go func() {
		got := rt.Run(t.Context(), Request{Cmd: "echo one; echo oops >&2; sleep 1; head -c 100 /dev/zero | tr '\\0' a", Timeout: time.Minute, Output: o})
		o.End()
		done <- got
	}()
	first := make(chan struct{})
	go func() {
		for {
			if out, _, _, more := o.Since(0, 0); strings.Contains(string(out), "one") {
				close(first)
				return
			} else if more == nil {
				return
			} else {
				<-more
			}
		}
	}()
	select {
	case <-first:
	case got := <-done:
		t.Fatalf("the run ended (%+v) before its first line could be read", got)
	}
	got := <-done
	checkOutcome(t, got, domain.StatusSucceeded, "")
	r := <-reads
	if strings.Join(r.stdout, "") != got.Result.Stdout[:64] || strings.Join(r.stderr, "") != got.Result.Stderr {
		t.Errorf("followed stdout %q stderr %q; the result kept %q and %q", r.stdout, r.stderr, got.Result.Stdout, got.Result.Stderr)
	}
	if len(r.stdout) < 2 {
		t.Errorf("stdout came in %d chunk(s) %q; want the first line apart from the rest", len(r.stdout), r.stdout)
	}
}

// TestOutputHoldsSplitCharacters: a character that a write splits is held
// back until the rest of it is written, and given whole once the run ends.
func TestOutputHoldsSplitCharacters(t *testing.T) {
	o := NewOutput()
	stdout, _ := o.captures(1 << 10)
	é := "é"
	for _, tc := range []struct {
		write, want string
	}{
		{"h" + é[:1], "h"},
		{é[1:] + "llo " + "€"[:2], "héllo "},
		{"€"[2:], "héllo €"},
		{"x" + é[:1], "héllo €x"},
	} {
		stdout.Write([]byte(tc.write))
		if out, _, _, _ := o.Since(0, 0); string(out) != tc.want {
			t.Errorf("after writing %q: %q, want %q", tc.write, out, tc.want)
		}
	}
	o.End()
	if out, _, ended, _ := o.Since(0, 0); !ended || string(out) != "héllo €x"+é[:1] {
		t.Errorf("ended: %q (ended %v); want every byte", out, ended)
	}
}

// TestLiveOutputs: a run's output is found by execution ID and attempt
// until it ends, and a later attempt of the same execution is not
// forgotten by the end of an earlier one.
func TestLiveOutputs(t *testing.T) {
	var l Live
	first := l.Start("e1", 1)
	if o, ok := l.Get("e1", 1); !ok || o != first {
		t.Fatalf("Get(e1, 1) = %p, %v; want the started output", o, ok)
	}
	second := l.Start("e1", 2)
	if _, ok := l.Get("e1", 1); ok {
		t.Error("attempt 1's output is found once attempt 2 started")
	}
	l.End("e1", first)
	if o, ok := l.Get("e1", 2); !ok || o != second {
		t.Errorf("ending the first attempt forgot the second: %p, %v", o, ok)
	}
	l.End("e1", second)
	if _, ok := l.Get("e1", 2); ok {
		t.Error("an ended run's output is still found")
	}
	if _, _, ended, _ := first.Since(0, 0); !ended {
		t.Error("End did not end the output")
	}
}
