package main

import (
	"strconv"
	"strings"

	"github.com/spf13/cobra"

	"github.com/troupehq/troupe/api"
)

func newMembersCommand(o *cli) *cobra.Command {
	return &cobra.Command{
		Use:   "members",
		Short: "List the cluster's members as the node sees them",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			ms, err := o.client().Members(cmd.Context())
			if err != nil {
				return err
			}
			if o.output == "json" {
				return writeJSON(o.stdout, api.Page[api.MemberView]{Items: ms})
			}
			return printTable(o.stdout, ms, []column[api.MemberView]{
				{"NAME", func(m api.MemberView) string {
					if m.Self {
						return m.Name + " (self)"
					}
					return m.Name
				}},
				{"STATUS", func(m api.MemberView) string { return m.Status }},
				{"ROLES", func(m api.MemberView) string { return strings.Join(m.Roles, ",") }},
				{"RUNTIMES", func(m api.MemberView) string { return strings.Join(m.Runtimes, ",") }},
				{"SLOTS USED/FREE", func(m api.MemberView) string {
					return strconv.Itoa(m.SlotsUsed) + "/" + strconv.Itoa(m.SlotsFree)
				}},
				{"API", func(m api.MemberView) string { return m.APIAddr }},
				{"GOSSIP", func(m api.MemberView) string { return m.GossipAddr }},
			})
		},
	}
}
