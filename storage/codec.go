package storage

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"time"
	"unicode/utf8"

	"github.com/cockroachdb/pebble/v2"
	"google.golang.org/protobuf/proto"

	"github.com/troupehq/troupe/domain"
	"github.com/troupehq/troupe/internal/jsonappend"
	"github.com/troupehq/troupe/storage/internal/recordpb"
)

// The codec is the one place that knows how records become bytes. The
// records of the execution pipeline (events, enforcements, executions with
// their history) are protobuf messages (recordpb): every execution writes and
// reads them several times, and JSON's reflection made decoding them the
// largest share of a node's CPU. Anything else, and records written before
// the switch, are JSON: a JSON record starts with '{', which no protobuf
// encoding of these messages does (it would be field 15 as a group), so the
// first byte tells them apart.

func encode(v any) ([]byte, error) {
	m, err := message(v)
	var b []byte
	switch {
	case err != nil:
	case m == nil:
		b, err = json.Marshal(v)
	default:
		b, err = proto.Marshal(m)
	}
	if err != nil {
		return nil, fmt.Errorf("encode %T: %w", v, err)
	}
	return b, nil
}

// set adds v, one of the records stored as protobuf, to the batch. It is
// encoded straight into the batch rather than into bytes of its own that
// the batch copies: the write path sets several records per batch.
func set(b *pebble.Batch, k []byte, v any) error {
	m, err := message(v)
	if err == nil && m == nil {
		err = errors.New("not a record stored as protobuf")
	}
	if err != nil {
		return fmt.Errorf("encode %T: %w", v, err)
	}
	op := b.SetDeferred(len(k), proto.Size(m))
	copy(op.Key, k)
	// Size cached the sizes, so the encoding fills op.Value exactly; should
	// it not, set fails, and the batch with it.
	enc, err := proto.MarshalOptions{UseCachedSize: true}.MarshalAppend(op.Value[:0], m)
	if err == nil && len(enc) != len(op.Value) {
		err = fmt.Errorf("%d bytes, sized for %d", len(enc), len(op.Value))
	}
	if err != nil {
		return fmt.Errorf("encode %T: %w", v, err)
	}
	return op.Finish()
}

// message is the protobuf message v is stored as, or nil if v is stored as
// JSON.
func message(v any) (proto.Message, error) {
	switch r := v.(type) {
	case *domain.Event:
		return eventPB(r)
	case *domain.Enforcement:
		return enforcementPB(r), nil
	case executionRecord:
		return executionPB(r.ex, r.history)
	case *domain.HistoryEntry:
		return historyPB(r, new(recordpb.HistoryEntry)), nil
	}
	return nil, nil
}

// executionRecord is an execution as stored under ex/: the record with its
// latest history entries (see recordHistory). Keeping them in the record
// rather than a key per transition under eh/ spared four of the fifteen
// keys an execution wrote (see docs/performance.md, session 9).
type executionRecord struct {
	ex      *domain.Execution
	history []domain.HistoryEntry
}

// decode copies everything it keeps out of b, so b may be a Pebble buffer
// that is reused once the iterator moves or the Get closer is closed.
func decode[T any](b []byte) (*T, error) {
	v := new(T)
	var err error
	if len(b) > 0 && b[0] == '{' {
		err = json.Unmarshal(b, v)
	} else {
		err = decodePB(b, v)
	}
	if err != nil {
		return nil, fmt.Errorf("decode %T: %w", v, err)
	}
	return v, nil
}

func decodePB(b []byte, v any) error {
	switch r := v.(type) {
	case *domain.Event:
		var m recordpb.Event
		if err := proto.Unmarshal(b, &m); err != nil {
			return err
		}
		return fromEventPB(&m, r)
	case *domain.Enforcement:
		var m recordpb.Enforcement
		if err := proto.Unmarshal(b, &m); err != nil {
			return err
		}
		return fromEnforcementPB(&m, r)
	case *domain.Execution:
		_, err := executionOf(b, r)
		return err
	case *domain.HistoryEntry:
		var m recordpb.HistoryEntry
		if err := proto.Unmarshal(b, &m); err != nil {
			return err
		}
		fromHistoryPB(&m, r)
		return nil
	}
	return fmt.Errorf("%d bytes that are not JSON", len(b))
}

// decodeExecution reads an execution record with the history entries it
// holds: none in a record written before history moved into it.
func decodeExecution(b []byte) (executionRecord, error) {
	if len(b) > 0 && b[0] == '{' {
		ex, err := decode[domain.Execution](b)
		return executionRecord{ex: ex}, err
	}
	r := executionRecord{ex: new(domain.Execution)}
	m, err := executionOf(b, r.ex)
	if err != nil {
		return executionRecord{}, fmt.Errorf("decode %T: %w", r.ex, err)
	}
	if len(m) > 0 {
		r.history = make([]domain.HistoryEntry, len(m))
		for i, h := range m {
			fromHistoryPB(h, &r.history[i])
		}
	}
	return r, nil
}

// executionOf decodes a protobuf execution record into ex and returns the
// history entries it holds, still protobuf: a read of the record alone
// (lists, most reads) leaves them.
func executionOf(b []byte, ex *domain.Execution) ([]*recordpb.HistoryEntry, error) {
	var m recordpb.Execution
	if err := proto.Unmarshal(b, &m); err != nil {
		return nil, err
	}
	return m.History, fromExecutionPB(&m, ex)
}

func eventPB(ev *domain.Event) (*recordpb.Event, error) {
	payload, err := jsonObject(ev.Payload)
	if err != nil {
		return nil, fmt.Errorf("payload: %w", err)
	}
	return &recordpb.Event{Id: idBytes(&ev.ID), Trigger: ev.Trigger, Instance: ev.Instance, PayloadJson: payload,
		Source: ev.Source, Node: ev.Node, CreatedUnixNano: nanos(ev.CreatedAt)}, nil
}

func fromEventPB(m *recordpb.Event, ev *domain.Event) error {
	var err error
	if ev.ID, err = idOf(m.Id, "id"); err != nil {
		return err
	}
	if ev.Payload, err = objectOf(m.PayloadJson); err != nil {
		return fmt.Errorf("payload: %w", err)
	}
	ev.Trigger, ev.Instance, ev.Source, ev.Node, ev.CreatedAt = m.Trigger, m.Instance, m.Source, m.Node, timeOf(m.CreatedUnixNano)
	return nil
}

func enforcementPB(en *domain.Enforcement) *recordpb.Enforcement {
	return &recordpb.Enforcement{Id: idBytes(&en.ID), Event: idBytes(&en.Event), Rule: en.Rule, Action: en.Action,
		Status: string(en.Status), Error: en.Error, Execution: idBytes(&en.Execution), Node: en.Node,
		CreatedUnixNano: nanos(en.CreatedAt)}
}

func fromEnforcementPB(m *recordpb.Enforcement, en *domain.Enforcement) error {
	var err error
	if en.ID, err = idOf(m.Id, "id"); err != nil {
		return err
	}
	if en.Event, err = idOf(m.Event, "event"); err != nil {
		return err
	}
	if en.Execution, err = idOf(m.Execution, "execution"); err != nil {
		return err
	}
	en.Rule, en.Action, en.Status, en.Error = m.Rule, m.Action, domain.EnforcementStatus(m.Status), m.Error
	en.Node, en.CreatedAt = m.Node, timeOf(m.CreatedUnixNano)
	return nil
}

func executionPB(ex *domain.Execution, history []domain.HistoryEntry) (*recordpb.Execution, error) {
	params, err := jsonObject(ex.Parameters)
	if err != nil {
		return nil, fmt.Errorf("parameters: %w", err)
	}
	m := &recordpb.Execution{Id: idBytes(&ex.ID), Action: ex.Action, Runtime: ex.Runtime, Status: string(ex.Status),
		ParametersJson: params, Attempt: int64(ex.Attempt), Seq: ex.Seq, Rule: ex.Rule, Event: idBytes(&ex.Event),
		Enforcement: idBytes(&ex.Enforcement), Node: ex.Node, Worker: ex.Worker, CreatedUnixNano: nanos(ex.CreatedAt),
		StartedUnixNano: nanosOf(ex.StartedAt), FinishedUnixNano: nanosOf(ex.FinishedAt), Error: ex.Error, Secret: ex.Secret,
		RerunOf: idBytes(&ex.RerunOf)}
	if r := ex.Result; r != nil {
		m.Result = &recordpb.Result{ExitCode: int64(r.ExitCode), Stdout: r.Stdout, Stderr: r.Stderr, OutputJson: r.Output}
	}
	// One allocation for the entries, one for the pointers to them.
	entries := make([]recordpb.HistoryEntry, len(history))
	m.History = make([]*recordpb.HistoryEntry, len(history))
	for i := range history {
		m.History[i] = historyPB(&history[i], &entries[i])
	}
	return m, nil
}

// historyPB fills m from h and returns it.
func historyPB(h *domain.HistoryEntry, m *recordpb.HistoryEntry) *recordpb.HistoryEntry {
	m.Status, m.AtUnixNano, m.Attempt, m.Seq, m.Node, m.Error = string(h.Status), nanos(h.At), int64(h.Attempt), h.Seq, h.Node, h.Error
	return m
}

func fromExecutionPB(m *recordpb.Execution, ex *domain.Execution) error {
	var err error
	if ex.ID, err = idOf(m.Id, "id"); err != nil {
		return err
	}
	if ex.Event, err = idOf(m.Event, "event"); err != nil {
		return err
	}
	if ex.Enforcement, err = idOf(m.Enforcement, "enforcement"); err != nil {
		return err
	}
	if ex.RerunOf, err = idOf(m.RerunOf, "rerun_of"); err != nil {
		return err
	}
	if ex.Parameters, err = objectOf(m.ParametersJson); err != nil {
		return fmt.Errorf("parameters: %w", err)
	}
	ex.Action, ex.Runtime, ex.Status, ex.Attempt, ex.Seq = m.Action, m.Runtime, domain.Status(m.Status), int(m.Attempt), m.Seq
	ex.Rule, ex.Node, ex.Worker, ex.Error, ex.Secret = m.Rule, m.Node, m.Worker, m.Error, m.Secret
	ex.CreatedAt, ex.StartedAt, ex.FinishedAt = timeOf(m.CreatedUnixNano), timePtr(m.StartedUnixNano), timePtr(m.FinishedUnixNano)
	if r := m.Result; r != nil {
		ex.Result = &domain.Result{ExitCode: int(r.ExitCode), Stdout: r.Stdout, Stderr: r.Stderr, Output: r.OutputJson}
	}
	return nil
}

func fromHistoryPB(m *recordpb.HistoryEntry, h *domain.HistoryEntry) {
	*h = domain.HistoryEntry{Status: domain.Status(m.Status), At: timeOf(m.AtUnixNano), Attempt: int(m.Attempt),
		Seq: m.Seq, Node: m.Node, Error: m.Error}
}

// jsonObject encodes a JSON-object field; nil stays absent, so that it
// decodes to nil again. An event's payload and an execution's parameters
// are what JSON decoding built, which jsonappend writes without the
// reflection (two allocations per map entry) of json.Marshal; anything else
// goes to json.Marshal.
func jsonObject(v map[string]any) ([]byte, error) {
	if v == nil {
		return nil, nil
	}
	if len(v) == 0 {
		return []byte("{}"), nil
	}
	if b, ok := jsonappend.Value(nil, v); ok {
		return b, nil
	}
	return json.Marshal(v)
}

func objectOf(b []byte) (map[string]any, error) {
	switch {
	case len(b) == 0:
		return nil, nil
	case string(b) == "{}":
		return map[string]any{}, nil
	}
	var v map[string]any
	if err := json.Unmarshal(b, &v); err != nil {
		return nil, err
	}
	return v, nil
}

func nanos(t time.Time) int64 {
	if t.IsZero() {
		return 0
	}
	return t.UnixNano()
}

func nanosOf(t *time.Time) int64 {
	if t == nil {
		return 0
	}
	return nanos(*t)
}

func timeOf(n int64) time.Time {
	if n == 0 {
		return time.Time{}
	}
	return time.Unix(0, n).UTC()
}

func timePtr(n int64) *time.Time {
	if n == 0 {
		return nil
	}
	t := timeOf(n)
	return &t
}

// idOf reads a stored ID; a field of the wrong length is corruption.
func idOf(b []byte, what string) (domain.ID, error) {
	var id domain.ID
	if len(b) == 0 {
		return id, nil
	}
	if len(b) != len(id) {
		return id, fmt.Errorf("%s: %d bytes, want %d", what, len(b), len(id))
	}
	copy(id[:], b)
	return id, nil
}

// idBytes slices the ID in place rather than a copy of it, which would
// escape to the heap: three allocations per execution written. The message
// it goes into is encoded at once and dropped.
func idBytes(id *domain.ID) []byte {
	if id.IsZero() {
		return nil
	}
	return id[:]
}

// The write path caches the executions it stores (see live) as a read
// would return them. Decoding what was just encoded gives that, at the
// price of a second pass through the codec; the functions below give it
// from the record instead, doing to each field what the round trip does:
// times become Unix nanoseconds in UTC, read as unset when zero; empty
// lists and bytes are read as nil; parameters go through JSON. Every other
// field comes back exactly (protobuf refuses strings that are not UTF-8
// rather than changing them). What they return shares nothing a caller
// could still change. TestLiveMatchesTheDisk holds them to the codec.

// asStored makes ex, a copy of a record that was just encoded, what
// decoding that encoding gives.
func asStored(ex *domain.Execution) error {
	params, err := storedParams(ex.Parameters)
	if err != nil {
		return fmt.Errorf("parameters: %w", err)
	}
	ex.Parameters, ex.Secret, ex.Result = params, storedStrings(ex.Secret), storedResult(ex.Result)
	ex.CreatedAt, ex.StartedAt, ex.FinishedAt = storedTime(ex.CreatedAt), storedTimePtr(ex.StartedAt), storedTimePtr(ex.FinishedAt)
	return nil
}

func storedTime(t time.Time) time.Time { return timeOf(nanos(t)) }

func storedTimePtr(t *time.Time) *time.Time { return timePtr(nanosOf(t)) }

func storedResult(r *domain.Result) *domain.Result {
	if r == nil {
		return nil
	}
	s := *r
	s.Output = nil
	if len(r.Output) > 0 {
		s.Output = bytes.Clone(r.Output)
	}
	return &s
}

func storedStrings(s []string) []string {
	if len(s) == 0 {
		return nil
	}
	return slices.Clone(s)
}

// storedParams copies parameters that are already what decoding JSON gives,
// and takes the others (ints, []string, json.Number...) through JSON.
func storedParams(params map[string]any) (map[string]any, error) {
	if params == nil {
		return nil, nil
	}
	if p, ok := decodedCopy(params, 0); ok {
		return p.(map[string]any), nil
	}
	b, err := jsonObject(params)
	if err != nil {
		return nil, err
	}
	return objectOf(b)
}

// maxDecodedDepth bounds the walk of decodedCopy; deeper values take the
// JSON round trip, which is exact by definition.
const maxDecodedDepth = 32

// decodedCopy copies v if it is made only of what encoding/json decodes into
// an any (nil, bool, float64, UTF-8 strings, and non-nil []any and
// map[string]any of those), which a JSON round trip keeps as it is. (A
// float that is not finite fails the encoding, which comes first.)
func decodedCopy(v any, depth int) (any, bool) {
	if depth > maxDecodedDepth {
		return nil, false
	}
	switch v := v.(type) {
	case nil, bool, float64:
		return v, true
	case string:
		return v, utf8.ValidString(v)
	case []any:
		if v == nil {
			return nil, false
		}
		out := make([]any, len(v))
		for i, e := range v {
			c, ok := decodedCopy(e, depth+1)
			if !ok {
				return nil, false
			}
			out[i] = c
		}
		return out, true
	case map[string]any:
		if v == nil {
			return nil, false
		}
		out := make(map[string]any, len(v))
		for k, e := range v {
			c, ok := decodedCopy(e, depth+1)
			if !ok || !utf8.ValidString(k) {
				return nil, false
			}
			out[k] = c
		}
		return out, true
	}
	return nil, false
}
