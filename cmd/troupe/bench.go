package main

import (
	"cmp"
	"errors"
	"fmt"
	"os"
	"slices"
	"strings"

	"github.com/spf13/cobra"

	"github.com/troupehq/troupe/bench"
)

func newBenchCommand(o *cli) *cobra.Command {
	cfg := bench.DefaultConfig()
	var workload, jsonFile, writePack, compareBinary string
	runs := 1
	var addrs, compareArgs []string
	names := make([]string, len(bench.Workloads))
	for i, w := range bench.Workloads {
		names[i] = string(w)
	}
	cmd := &cobra.Command{
		Use:   "bench",
		Short: "Measure throughput and latency of a workload",
		Long: `Measure throughput and latency of a workload.

By default bench starts --nodes troupe agents itself (this executable, or
--troupe-binary), on 127.0.0.1 with temporary data dirs and a generated
"bench" pack, and kills them when done. With --addr it drives running
nodes instead; they must already run with the bench pack: write it with
--write-pack DIR (same --rules and --workload timers if wanted) and start
them with --packs DIR/bench.

Before the load, it measures the machine's ceilings: spawning /bin/sh -c true
and python3 -c pass from 4 goroutines, and Pebble Sync commits from 64
writers (--ceiling-duration 0 skips them). After the load it waits for the
accepted work to finish (--drain), then reads the execution records and
reports events/s, executions/s, latency from acceptance to terminal status,
lost and duplicated work, and each node's CPU, peak RSS and storage (from
/proc for nodes it started, from /metrics for running ones).

To compare two builds or settings on a shared machine, whose load moves the
figures by a tenth from one minute to the next, --compare-binary and
--compare-agent-arg run --runs pairs of node sets started two ways, in turn
(A B, B A, …), and report B's figures over A's pair by pair.

Workloads: ` + strings.Join(names, ", ") + `.`,
		Example: "  troupe bench --workload webhook-noop --concurrency 128 --duration 10s --json out.json\n" +
			"  troupe bench --workload webhook-shell --rate 500 --duration 30s\n" +
			"  troupe bench --write-pack /tmp/bp && troupe agent --packs /tmp/bp/bench … && troupe bench --addr 127.0.0.1:8080\n" +
			"  troupe bench --runs 5 --troupe-binary ./troupe-old --compare-binary ./troupe-new",
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			w, err := bench.ParseWorkload(workload)
			if err != nil {
				return err
			}
			cfg.Workload, cfg.Addrs = w, addrs
			if writePack != "" {
				dir, err := bench.WritePack(writePack, cfg)
				if err != nil {
					return err
				}
				_, err = fmt.Fprintf(o.stdout, "wrote %s; start nodes with --packs %s\n", dir, dir)
				return err
			}
			if cfg.Binary == "" {
				if cfg.Binary, err = os.Executable(); err != nil {
					return fmt.Errorf("find the troupe executable (give --troupe-binary): %w", err)
				}
			}
			if runs < 1 {
				return fmt.Errorf("--runs %d: give at least 1", runs)
			}
			cfg.Progress = o.stderr
			if compareBinary != "" || len(compareArgs) > 0 {
				return compare(cmd, o, cfg, compareBinary, compareArgs, runs, jsonFile)
			}
			var results []bench.Result
			for i := range runs {
				res, err := bench.Run(cmd.Context(), cfg)
				fmt.Fprint(o.stderr, "\r\033[K")
				if err != nil {
					return err
				}
				results = append(results, res)
				if o.output != "json" {
					if runs > 1 {
						fmt.Fprintf(o.stdout, "run %d of %d\n", i+1, runs)
					}
					if err := res.WriteTable(o.stdout); err != nil {
						return err
					}
					fmt.Fprintln(o.stdout)
				}
			}
			// One run keeps the shape it always had; several add their medians.
			var out any = results[0]
			if runs > 1 {
				m := bench.MediansOf(results)
				out = struct {
					Runs    []bench.Result `json:"runs"`
					Medians bench.Medians  `json:"medians"`
				}{results, m}
				if o.output != "json" {
					if err := m.WriteTable(o.stdout); err != nil {
						return err
					}
				}
			}
			if o.output == "json" {
				if err := writeJSON(o.stdout, out); err != nil {
					return err
				}
			}
			if jsonFile != "" {
				return writeJSONFile(jsonFile, out)
			}
			return nil
		},
	}
	f := cmd.Flags()
	f.StringVar(&workload, "workload", string(cfg.Workload), "what to send and run: "+strings.Join(names, ", "))
	f.IntVar(&cfg.Nodes, "nodes", cfg.Nodes, "nodes to start on 127.0.0.1 (ignored with --addr)")
	f.StringSliceVar(&addrs, "addr", nil, "HTTP address of a running node to drive, repeatable; its nodes must run the bench pack (see --write-pack)")
	f.Float64Var(&cfg.Rate, "rate", 0, "open loop: requests per second (0: closed loop of --concurrency clients)")
	f.IntVar(&cfg.Concurrency, "concurrency", cfg.Concurrency, "closed loop: clients, each waiting for its executions before the next request; open loop: most requests in flight")
	f.IntVar(&cfg.ClientProcs, "client-procs", cfg.ClientProcs, "processors (GOMAXPROCS) bench uses while it drives the load; raise it when the nodes run on other machines")
	f.DurationVar(&cfg.Duration, "duration", cfg.Duration, "how long load is measured, after the warmup")
	f.DurationVar(&cfg.Warmup, "warmup", cfg.Warmup, "load before measuring starts")
	f.DurationVar(&cfg.Drain, "drain", cfg.Drain, "how long to wait after the load for accepted work to finish; what is still unfinished is lost")
	f.IntVar(&cfg.Rules, "rules", cfg.Rules, "rules of the fanout and timers workloads")
	f.DurationVar(&cfg.CeilingDuration, "ceiling-duration", cfg.CeilingDuration, "how long each ceiling is measured (0 skips them)")
	f.StringVar(&cfg.Binary, "troupe-binary", "", "troupe executable that starts the nodes (default: this one)")
	f.StringArrayVar(&cfg.AgentArgs, "agent-arg", nil, "extra flag for every started node, repeatable (e.g. --agent-arg=--slots=16)")
	f.StringVar(&jsonFile, "json", "", "also write the results as JSON to this file")
	f.IntVar(&runs, "runs", runs, "run everything (ceilings, fresh nodes, load) this many times and also report each figure's median; when comparing, this many pairs")
	f.StringVar(&writePack, "write-pack", "", "write the bench pack into this directory and exit")
	f.StringVar(&compareBinary, "compare-binary", "", "compare: also run nodes of this troupe executable (B) against --troupe-binary's (A), --runs pairs in turn, and report B ÷ A")
	f.StringArrayVar(&compareArgs, "compare-agent-arg", nil, "compare: extra flag for B's nodes only, repeatable (e.g. --compare-agent-arg=--slots=32)")
	return cmd
}

// compare runs --runs pairs of nodes started two ways (A: --troupe-binary
// and --agent-arg; B: --compare-binary and --compare-agent-arg too) and
// prints each run, each side's medians and B's figures over A's.
func compare(cmd *cobra.Command, o *cli, a bench.Config, binary string, args []string, pairs int, jsonFile string) error {
	if len(a.Addrs) > 0 {
		return errors.New("--compare-binary and --compare-agent-arg start the nodes of each side; they do not go with --addr")
	}
	b := a
	b.Binary = cmp.Or(binary, a.Binary)
	b.AgentArgs = append(slices.Clone(a.AgentArgs), args...)
	describe := func(c bench.Config) string { return strings.Join(append([]string{c.Binary}, c.AgentArgs...), " ") }
	c, err := bench.Compare(cmd.Context(), a, b, pairs, func(side string, pair int, r bench.Result) error {
		fmt.Fprint(o.stderr, "\r\033[K")
		if o.output == "json" {
			return nil
		}
		fmt.Fprintf(o.stdout, "pair %d of %d, %s\n", pair+1, pairs, side)
		if err := r.WriteTable(o.stdout); err != nil {
			return err
		}
		_, err := fmt.Fprintln(o.stdout)
		return err
	})
	if err != nil {
		return err
	}
	if o.output == "json" {
		if err := writeJSON(o.stdout, c); err != nil {
			return err
		}
	} else if err := c.WriteTable(o.stdout, describe(a), describe(b)); err != nil {
		return err
	}
	if jsonFile != "" {
		return writeJSONFile(jsonFile, c)
	}
	return nil
}

// writeJSONFile writes v to file as the -o json output would print it.
func writeJSONFile(file string, v any) error {
	f, err := os.Create(file)
	if err != nil {
		return fmt.Errorf("write results: %w", err)
	}
	if err := writeJSON(f, v); err != nil {
		f.Close()
		return fmt.Errorf("write results to %s: %w", file, err)
	}
	if err := f.Close(); err != nil {
		return fmt.Errorf("write results to %s: %w", file, err)
	}
	return nil
}
