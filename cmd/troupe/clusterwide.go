package main

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"net/http"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/troupehq/troupe/api"
	"github.com/troupehq/troupe/cluster"
	"github.com/troupehq/troupe/domain"
)

// peerTimeout bounds how long a cluster-wide answer waits for one member;
// a member that does not answer in time is reported, not waited for.
const peerTimeout = 5 * time.Second

var peerHTTP = &http.Client{Transport: &http.Transport{MaxIdleConnsPerHost: 16}}

type peer struct {
	name   string
	client *api.Client
}

// peers are the other live members that serve an API, asked for their own
// records only.
func (b *backend) peers() []peer {
	var ps []peer
	for _, m := range b.n.gossip.Alive() {
		if m.Name != b.n.cfg.NodeName && m.APIAddr != "" {
			ps = append(ps, peer{m.Name, &api.Client{Addr: "http://" + m.APIAddr, HTTP: peerHTTP, Local: true}})
		}
	}
	return ps
}

// clusterList merges one page of a list from this node and every peer,
// newest first. Every source returns at most a page after the same cursor,
// so the first `limit` of their union, by ID, is the true page; the cursor
// of the next one is the last ID shown.
func clusterList[T any](ctx context.Context, b *backend, q api.ListQuery, id func(T) domain.ID,
	local func(api.ListQuery) (api.Page[T], error), remote func(*api.Client, context.Context, api.ListQuery) (api.Page[T], error)) (api.Page[T], error) {
	own, err := local(q)
	if err != nil || api.IsLocal(ctx) {
		return own, err
	}
	if q.Limit <= 0 {
		q.Limit = api.DefaultLimit
	}
	var (
		mu   sync.Mutex
		all  = own.Items
		more = own.Next != ""
		out  api.Page[T]
		wg   sync.WaitGroup
	)
	for _, p := range b.peers() {
		wg.Add(1)
		go func() {
			defer wg.Done()
			pctx, cancel := context.WithTimeout(ctx, peerTimeout)
			defer cancel()
			page, err := remote(p.client, pctx, q)
			mu.Lock()
			defer mu.Unlock()
			if err != nil {
				b.n.log.Warn("member did not answer a cluster-wide list", "member", p.name, "err", err)
				out.Partial, out.Unreachable = true, append(out.Unreachable, p.name)
				return
			}
			all = append(all, page.Items...)
			more = more || page.Next != ""
		}()
	}
	wg.Wait()
	slices.SortFunc(all, func(x, y T) int { a, b := id(x), id(y); return -cmp.Compare(string(a[:]), string(b[:])) })
	if len(all) > q.Limit {
		all, more = all[:q.Limit], true
	}
	out.Items = all
	if more && len(all) > 0 {
		out.Next = id(all[len(all)-1]).String()
	}
	slices.Sort(out.Unreachable)
	return out, nil
}

// clusterGet looks a record up here, then on every peer: records live on
// the node that accepted them.
func clusterGet[T any](ctx context.Context, b *backend, local func() (T, error), remote func(context.Context, *api.Client) (T, error)) (T, error) {
	v, err := local()
	if !errors.Is(err, domain.ErrNotFound) || api.IsLocal(ctx) {
		return v, err
	}
	type answer struct {
		v   T
		err error
	}
	peers := b.peers()
	answers := make(chan answer, len(peers))
	pctx, cancel := context.WithCancel(ctx)
	defer cancel()
	for _, p := range peers {
		go func() {
			v, err := remote(pctx, p.client)
			answers <- answer{v, err}
		}()
	}
	var unreachable []error
	for range peers {
		a := <-answers
		switch {
		case a.err == nil:
			return a.v, nil
		case !isNotFound(a.err):
			unreachable = append(unreachable, a.err)
		}
	}
	if len(unreachable) > 0 {
		return v, errors.Join(append([]error{err, errors.New("and some members could not be asked:")}, unreachable...)...)
	}
	return v, err
}

// apiGate refuses the API's clients on a member without the api role,
// naming the members that serve it (api.Config.NotServed); nil on a member
// with the role.
func (n *node) apiGate() func() error {
	if n.cfg.hasRole(cluster.RoleAPI) {
		return nil
	}
	return func() error {
		var serving []string
		for _, m := range n.gossip.Alive() {
			if m.HasRole(cluster.RoleAPI) && m.APIAddr != "" {
				serving = append(serving, fmt.Sprintf("%s at http://%s", m.Name, m.APIAddr))
			}
		}
		ask := "no live member serves it"
		if len(serving) > 0 {
			ask = "ask " + strings.Join(serving, ", ")
		}
		return api.NewError(api.CodeMisdirected, "node %s does not serve the API (its roles: %s); %s",
			n.cfg.NodeName, strings.Join(n.cfg.Roles, ", "), ask)
	}
}

func isNotFound(err error) bool {
	var ae *api.Error
	return errors.As(err, &ae) && ae.Status == http.StatusNotFound
}

func (b *backend) Members(context.Context) ([]api.MemberView, error) {
	var out []api.MemberView
	for _, m := range b.n.gossip.Members() {
		roles := make([]string, len(m.Roles))
		for i, r := range m.Roles {
			roles[i] = string(r)
		}
		out = append(out, api.MemberView{Name: m.Name, Status: string(m.Status), GossipAddr: m.GossipAddr,
			RemoteAddr: m.RemoteAddr, APIAddr: m.APIAddr, Roles: roles, Runtimes: m.Runtimes,
			Slots: m.Slots, SlotsUsed: m.SlotsUsed, SlotsFree: max(m.Slots-m.SlotsUsed, 0), Self: m.Self})
	}
	return out, nil
}
