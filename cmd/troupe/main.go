// Command troupe is Troupe's one binary: `troupe agent` runs a node, and
// every other subcommand is a client of a node's HTTP API.
package main

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/signal"
	"syscall"

	"github.com/spf13/cobra"

	"github.com/troupehq/troupe/domain"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	code := execute(ctx, os.Args[1:], os.Stdout, os.Stderr)
	stop()
	os.Exit(code)
}

// Exit codes of every command.
const (
	exitOK           = 0
	exitUnsuccessful = 1 // an execution ended in a terminal status other than succeeded
	exitError        = 2 // usage or API error
)

// execute runs the command line args and returns the process exit code.
func execute(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	root := newRootCommand(stdout, stderr)
	root.SetArgs(args)
	err := root.ExecuteContext(ctx)
	code := exitCode(err)
	if code == exitError {
		fmt.Fprintf(stderr, "troupe: %v\n", err)
	}
	return code
}

// statusError reports an execution that ended other than succeeded. Its
// summary is already printed, so it exits quietly.
type statusError struct{ status domain.Status }

func (e *statusError) Error() string { return "execution " + e.status.String() }

func exitCode(err error) int {
	var se *statusError
	switch {
	case err == nil:
		return exitOK
	case errors.As(err, &se):
		return exitUnsuccessful
	}
	return exitError
}

// cli holds the root's persistent flags and where commands write.
type cli struct {
	addr, output   string
	stdout, stderr io.Writer
}

func newRootCommand(stdout, stderr io.Writer) *cobra.Command {
	o := &cli{stdout: stdout, stderr: stderr}
	root := &cobra.Command{
		Use:   "troupe",
		Short: "Troupe runs actions when events happen, across a cluster of nodes",
		Long: "Troupe runs actions when events happen, across a cluster of nodes.\n\n" +
			"`troupe agent` runs a node; every other command is a client of a node's HTTP API.\n" +
			"Exit codes: 0 success, 1 an execution ended other than succeeded, 2 usage or API error.",
		SilenceErrors: true, // execute prints them, once, as "troupe: ..."
		SilenceUsage:  true,
		PersistentPreRunE: func(*cobra.Command, []string) error {
			if o.output != "table" && o.output != "json" {
				return fmt.Errorf("invalid output %q: want table or json", o.output)
			}
			return nil
		},
	}
	root.SetOut(stdout)
	root.SetErr(stderr)
	pf := root.PersistentFlags()
	pf.StringVar(&o.addr, "addr", cmp.Or(os.Getenv("TROUPE_ADDR"), "http://127.0.0.1:8080"), "base URL of a node's HTTP API (env TROUPE_ADDR)")
	pf.StringVarP(&o.output, "output", "o", "table", "output format: table or json")
	root.AddCommand(newAgentCommand(), newRunCommand(o), newMembersCommand(o))
	root.AddCommand(resourceCommands(o)...)
	root.AddCommand(newBenchCommand(o))
	return root
}
