package api

import (
	"maps"
	"time"

	"github.com/troupehq/troupe/domain"
)

// Masked replaces the value of every secret parameter in API output.
const Masked = "********"

// ExecutionView is the JSON form of an execution with its history, the one
// shape the server sends and the client decodes.
type ExecutionView struct {
	ID          domain.ID      `json:"id"`
	Action      string         `json:"action"`
	Runtime     string         `json:"runtime"`
	Status      domain.Status  `json:"status"`
	Parameters  map[string]any `json:"parameters"`
	Attempt     int            `json:"attempt"`
	Rule        string         `json:"rule,omitempty"`
	Event       domain.ID      `json:"event,omitzero"`
	Enforcement domain.ID      `json:"enforcement,omitzero"`
	Node        string         `json:"node"`
	Worker      string         `json:"worker,omitempty"`
	CreatedAt   time.Time      `json:"created_at"`
	StartedAt   *time.Time     `json:"started_at"`
	FinishedAt  *time.Time     `json:"finished_at"`
	Error       string         `json:"error,omitempty"`
	Result      *domain.Result `json:"result"`
	RerunOf     domain.ID      `json:"rerun_of,omitzero"`
	// History is the committed transitions, oldest first; lists leave it out.
	History []domain.HistoryEntry `json:"history,omitempty"`
}

// Duration is how long the execution has run: from start to finish, or to
// now while it runs; zero before it starts.
func (v *ExecutionView) Duration() time.Duration {
	switch {
	case v.StartedAt == nil:
		return 0
	case v.FinishedAt == nil:
		return time.Since(*v.StartedAt)
	}
	return v.FinishedAt.Sub(*v.StartedAt)
}

func executionView(e *domain.Execution, history []domain.HistoryEntry) *ExecutionView {
	return &ExecutionView{
		ID: e.ID, Action: e.Action, Runtime: e.Runtime, Status: e.Status,
		Parameters: mask(e.Parameters, e.Secret), Attempt: e.Attempt,
		Rule: e.Rule, Event: e.Event, Enforcement: e.Enforcement,
		Node: e.Node, Worker: e.Worker,
		CreatedAt: e.CreatedAt, StartedAt: e.StartedAt, FinishedAt: e.FinishedAt,
		Error: e.Error, Result: e.Result, RerunOf: e.RerunOf, History: history,
	}
}

func executionItem(e *domain.Execution) *ExecutionView { return executionView(e, nil) }

// mask returns params with the values of the secret names replaced; the
// record itself is never modified.
func mask(params map[string]any, secret []string) map[string]any {
	var out map[string]any
	for _, name := range secret {
		if _, ok := params[name]; ok {
			if out == nil {
				out = maps.Clone(params)
			}
			out[name] = Masked
		}
	}
	if out == nil {
		return params
	}
	return out
}

// maskCatalog copies packs with secret parameter defaults of actions, and the
// values rules pass to secret parameters, masked.
func maskCatalog(packs []*domain.Pack) []*domain.Pack {
	secret := map[string][]string{}
	for _, p := range packs {
		for _, a := range p.Actions {
			secret[a.Ref] = a.SecretParams()
		}
	}
	out := make([]*domain.Pack, len(packs))
	for i, p := range packs {
		cp := *p
		cp.Actions = make([]*domain.Action, len(p.Actions))
		for j, a := range p.Actions {
			ca := *a
			ca.Parameters = maps.Clone(a.Parameters)
			for _, name := range secret[a.Ref] {
				if prm := *ca.Parameters[name]; prm.Default != nil {
					prm.Default = Masked
					ca.Parameters[name] = &prm
				}
			}
			cp.Actions[j] = &ca
		}
		cp.Rules = make([]*domain.Rule, len(p.Rules))
		for j, r := range p.Rules {
			cr := *r
			cr.Action.Parameters = mask(r.Action.Parameters, secret[r.Action.Ref])
			cp.Rules[j] = &cr
		}
		out[i] = &cp
	}
	return out
}

// MemberView is one member of the cluster as a node sees it.
type MemberView struct {
	Name       string   `json:"name"`
	Status     string   `json:"status"` // alive, suspect, dead, left
	GossipAddr string   `json:"gossip_addr"`
	RemoteAddr string   `json:"remote_addr"`
	APIAddr    string   `json:"api_addr"`
	Roles      []string `json:"roles"`
	Runtimes   []string `json:"runtimes"`
	Slots      int      `json:"slots"`
	SlotsUsed  int      `json:"slots_used"`
	SlotsFree  int      `json:"slots_free"`
	Self       bool     `json:"self,omitempty"`
}

// Execution converts a view back into a record, for a node that merges
// other nodes' answers into its own; secret values stay masked.
func (v *ExecutionView) Execution() *domain.Execution {
	return &domain.Execution{ID: v.ID, Action: v.Action, Runtime: v.Runtime, Status: v.Status, Parameters: v.Parameters,
		Attempt: v.Attempt, Rule: v.Rule, Event: v.Event, Enforcement: v.Enforcement, Node: v.Node, Worker: v.Worker,
		CreatedAt: v.CreatedAt, StartedAt: v.StartedAt, FinishedAt: v.FinishedAt, Error: v.Error, Result: v.Result,
		RerunOf: v.RerunOf}
}
