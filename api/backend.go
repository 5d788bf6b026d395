package api

import (
	"context"

	"github.com/troupehq/troupe/domain"
)

// Backend is what the HTTP layer needs from a node.
type Backend interface {
	// Webhook durably accepts one event for webhook `name` and returns its ID; domain.ErrNotFound (wrapped) if no enabled rule listens on that webhook.
	Webhook(ctx context.Context, name string, headers map[string]string, body any) (domain.ID, error)
	// Run creates an ad-hoc execution (status requested). Errors: domain.ErrNotFound for an unknown action; *domain.ParamError for invalid parameters.
	Run(ctx context.Context, action string, params map[string]any) (*domain.Execution, error)
	// Rerun creates an execution of execution id's action with its
	// parameters, params overriding them one by one, marked as a re-run of
	// it. Errors: those of Run, and domain.ErrNotFound for an unknown execution.
	Rerun(ctx context.Context, id domain.ID, params map[string]any) (*domain.Execution, error)
	Execution(ctx context.Context, id domain.ID) (*domain.Execution, []domain.HistoryEntry, error)
	// WaitExecution blocks until the execution is terminal or ctx ends, then returns its current record and history.
	WaitExecution(ctx context.Context, id domain.ID) (*domain.Execution, []domain.HistoryEntry, error)
	// Output calls fn with what execution id's action prints (stream
	// "stdout" or "stderr"), past from, as it prints it, until the
	// execution is terminal, and returns its terminal record. When a retry
	// starts another attempt, fn gets stream "attempt" with its number and
	// that attempt's output from its start. With
	// IsLocal(ctx) it follows only a run in progress on this node and
	// returns a nil record once that run's output ends, or
	// domain.ErrNotFound when no run of id is in progress here.
	Output(ctx context.Context, id domain.ID, from OutputFrom, fn func(stream string, chunk []byte) error) (*domain.Execution, error)
	// Finished returns every execution this node owns that reaches a
	// terminal status from now on, in commit order, until ctx ends. The
	// channel is closed when ctx ends, or before when the reader fell so
	// far behind that records were dropped. With after not zero, it also
	// returns the IDs of those that finished since execution after, oldest
	// first (Fanout.Subscribe), or an error when that one is forgotten.
	Finished(ctx context.Context, after domain.ID) (missed []domain.ID, finished <-chan *domain.Execution, err error)
	Executions(ctx context.Context, q ListQuery) (Page[*domain.Execution], error)
	Event(ctx context.Context, id domain.ID) (*domain.Event, error)
	Events(ctx context.Context, q ListQuery) (Page[*domain.Event], error)
	Enforcement(ctx context.Context, id domain.ID) (*domain.Enforcement, error)
	Enforcements(ctx context.Context, q ListQuery) (Page[*domain.Enforcement], error)
	Packs() []*domain.Pack // the loaded catalog; rules/actions/triggers/sensors endpoints derive from it
	// PackViews is Packs with where each came from and each member's copy
	// (domain.Pack's Source, Installed*, Members).
	PackViews(ctx context.Context) ([]*domain.Pack, error)
	// InstallPack validates and installs a pack archive (gzipped tar) on
	// every member; changed is false when those files were installed already.
	InstallPack(ctx context.Context, archive []byte) (p *domain.Pack, changed bool, err error)
	// RemovePack uninstalls a pack from every member.
	RemovePack(ctx context.Context, ref string) error
	// Ready is nil once recovery finished, packs are loaded and the node
	// has joined its cluster; otherwise the reason (GET /readyz).
	Ready() error
	// Members is this node's view of the cluster, itself included.
	Members(ctx context.Context) ([]MemberView, error)
}

// ListQuery selects one page of a list; empty fields do not filter. The
// server has validated every field before a Backend sees it.
type ListQuery struct {
	Action, Status, Rule, Trigger, Event string
	// Pack filters the catalog lists (rules, actions, triggers, sensors,
	// packs), which the server answers from Backend.Packs; record lists
	// never carry it.
	Pack  string
	Limit int
	// Cursor is the Next of the previous page. For record lists it is the ID
	// of the last item returned (the server rejects anything else), so a
	// Backend resumes after it in ID, hence time, order.
	Cursor string
}

// Page is one page of a list. Next is empty on the last page.
type Page[T any] struct {
	Items []T    `json:"items"`
	Next  string `json:"next"`
	// Partial is set when some nodes could not be asked; Unreachable names them.
	Partial     bool     `json:"partial,omitempty"`
	Unreachable []string `json:"unreachable,omitempty"`
}

// Query parameter names of the list endpoints, in the order clients send them.
var queryParams = []string{"action", "status", "rule", "trigger", "event", "pack", "cursor"}

// Field returns the field behind list query parameter name, nil if there is
// none; the server, the client and the CLI flags share this one mapping.
func (q *ListQuery) Field(name string) *string {
	switch name {
	case "action":
		return &q.Action
	case "status":
		return &q.Status
	case "rule":
		return &q.Rule
	case "trigger":
		return &q.Trigger
	case "event":
		return &q.Event
	case "pack":
		return &q.Pack
	case "cursor":
		return &q.Cursor
	}
	return nil
}
