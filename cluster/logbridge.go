package cluster

import (
	"context"
	"log/slog"
	"regexp"
	"strings"
)

// logBridge is the io.Writer behind memberlist's *log.Logger. It turns
// memberlist's "[LEVEL] memberlist: text" lines into slog records with
// levels, adds a hint to the lines an operator would otherwise have to
// decode, and passes on the two facts memberlist only reports in its log:
// that this node's probe of a member failed (memberlist marks it suspect but
// exposes no suspect state — Node.State is never set, memberlist#266), and
// that this node refuted a suspicion of itself.
//
// memberlist writes some of these lines with its node lock held, so Write
// only logs and enqueues.
type logBridge struct {
	logger *slog.Logger
	events *inbox
}

var (
	mlLevel       = regexp.MustCompile(`^\[(DEBUG|INFO|WARN|ERR|ERROR)\] ?`)
	mlProbeFailed = regexp.MustCompile(`Suspect (\S+) has failed, no acks received`)
	mlRefuting    = regexp.MustCompile(`Refuting an? (suspect|dead) message`)
)

// hints explain the memberlist lines whose cause is not in the line.
var hints = []struct{ substr, hint string }{
	{"decrypt", "gossip from a peer could not be decrypted: is the gossip key the same on every node?"},
	{"encryption is configured but", "a peer sent unencrypted gossip to this node, which has a key: is the gossip key the same on every node?"},
	{"encryption is not configured", "a peer sent encrypted gossip to this node, which has no key: is the gossip key the same on every node?"},
	{"Conflicting address", "two processes claim one node name, or a node restarted on a new address before its old life was declared dead (it is accepted once the old one is)"},
}

func (b *logBridge) Write(p []byte) (int, error) {
	for _, line := range strings.Split(strings.TrimRight(string(p), "\n"), "\n") {
		b.line(line)
	}
	return len(p), nil
}

func (b *logBridge) line(line string) {
	level := slog.LevelInfo
	if m := mlLevel.FindStringSubmatch(line); m != nil {
		switch m[1] {
		case "DEBUG":
			level = slog.LevelDebug
		case "WARN":
			level = slog.LevelWarn
		case "ERR", "ERROR":
			level = slog.LevelError
		}
		line = line[len(m[0]):]
	}
	line = strings.TrimPrefix(line, "memberlist: ")
	if m := mlProbeFailed.FindStringSubmatch(line); m != nil {
		b.events.put(event{kind: evProbeFailed, name: m[1]})
	}
	if mlRefuting.MatchString(line) {
		b.events.put(event{kind: evRefuted})
	}
	// Our merge and alive delegates already logged why they refused, once
	// per peer and minute; memberlist repeats it for every message.
	if strings.Contains(line, refusalMarker) {
		level = slog.LevelDebug
	}
	if !b.logger.Enabled(context.Background(), level) {
		return
	}
	attrs := []any{"source", "memberlist"}
	for _, h := range hints {
		if strings.Contains(line, h.substr) {
			attrs = append(attrs, "hint", h.hint)
			break
		}
	}
	b.logger.Log(context.Background(), level, line, attrs...)
}
