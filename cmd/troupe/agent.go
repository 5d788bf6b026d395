package main

import (
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"net/http/pprof"
	"os"
	"os/signal"
	"runtime/debug"
	"strconv"
	"syscall"

	"github.com/spf13/cobra"

	"github.com/troupehq/troupe/runtimes"
)

func newAgentCommand() *cobra.Command {
	var (
		configFile  string
		dev, checkC bool
	)
	cmd := &cobra.Command{
		Use:   "agent",
		Short: "Run a Troupe node",
		Long: `Run a Troupe node: sensors, rules, executions and a worker, with the HTTP API.

Settings come from defaults, then --config FILE (YAML), then TROUPE_* environment
variables, then flags. --dev only changes defaults: data in ./troupe-data, the
example packs in packs/examples, text logs.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if v, ok := os.LookupEnv("TROUPE_DEV"); ok && !cmd.Flags().Changed("dev") {
				var err error
				if dev, err = strconv.ParseBool(v); err != nil {
					return fmt.Errorf("environment TROUPE_DEV: %q is not true or false", v)
				}
			}
			if v, ok := os.LookupEnv("TROUPE_CONFIG"); ok && configFile == "" {
				configFile = v
			}
			cfg, err := loadAgentConfig(cmd.Flags(), dev, configFile)
			if err != nil {
				return fmt.Errorf("invalid configuration:\n%w", err)
			}
			cmd.SilenceUsage = true
			if checkC {
				return checkConfig(cmd, cfg)
			}
			return runAgent(cfg)
		},
	}
	f := cmd.Flags()
	f.StringVar(&configFile, "config", "", "YAML config file; unknown keys are errors [env TROUPE_CONFIG]")
	f.BoolVar(&dev, "dev", false, "development defaults: ./troupe-data, packs/examples, text logs [env TROUPE_DEV]")
	f.BoolVar(&checkC, "check-config", false, "validate the configuration and packs, then exit")
	bindFlags(f)
	return cmd
}

// checkConfig validates everything a start would, without opening storage.
func checkConfig(cmd *cobra.Command, cfg agentConfig) error {
	reg, err := runtimes.NewRegistry(cfg.runtimes(), cfg.Runtimes)
	if err != nil {
		return err
	}
	cat, err := loadCatalog(cfg, reg)
	if err != nil {
		return err
	}
	for _, w := range cat.Warnings() {
		fmt.Fprintln(cmd.ErrOrStderr(), "warning:", w.Error())
	}
	fmt.Fprintf(cmd.OutOrStdout(), "configuration ok: node %s, %d packs, %d rules, %d actions, runtimes %v\n",
		cfg.NodeName, len(cat.Packs()), len(cat.Rules()), len(cat.Actions()), reg.Names())
	return nil
}

// agentGCPercent is the collector's target (GOGC) of an agent whose
// environment does not set one. A node allocates ~200 objects per
// execution, and at Go's default of 100 collecting took ~9 % of its CPU
// under load. At 150, in 5 interleaved pairs of webhook-noop, node CPU per
// execution fell 4.6 % (by 1-7 % in every pair) and executions/s rose
// 4.9 %, for a peak RSS over 60 s of 209 MiB instead of 186; 200 saved
// little more (5.3 %) for 235 MiB.
const agentGCPercent = 150

func runAgent(cfg agentConfig) error {
	if _, set := os.LookupEnv("GOGC"); !set {
		debug.SetGCPercent(agentGCPercent)
	}
	log := cfg.logger()
	if cfg.PprofAddr != "" {
		if err := servePprof(cfg.PprofAddr, log); err != nil {
			return err
		}
	}
	n, err := startNode(cfg, log)
	if err != nil {
		return err
	}
	sigs := make(chan os.Signal, 1)
	signal.Notify(sigs, syscall.SIGTERM, os.Interrupt)
	sig := <-sigs
	log.Info("shutting down; a second signal stops at once", "signal", sig.String(), "timeout", cfg.Shutdown)
	go func() {
		<-sigs
		log.Warn("second signal: exiting without waiting; unfinished executions are resolved at next start")
		os.Exit(1)
	}()
	n.stop(cfg.Shutdown)
	return nil
}

// servePprof serves Go's profiles on a listener of their own, so an operator
// can keep them off the address the API is exposed on.
func servePprof(addr string, log *slog.Logger) error {
	l, err := net.Listen("tcp", addr)
	if err != nil {
		return fmt.Errorf("pprof_addr: %w", err)
	}
	mux := http.NewServeMux()
	mux.HandleFunc("/debug/pprof/", pprof.Index)
	mux.HandleFunc("/debug/pprof/cmdline", pprof.Cmdline)
	mux.HandleFunc("/debug/pprof/profile", pprof.Profile)
	mux.HandleFunc("/debug/pprof/symbol", pprof.Symbol)
	mux.HandleFunc("/debug/pprof/trace", pprof.Trace)
	log.Info("serving pprof", "addr", l.Addr().String())
	go func() {
		if err := http.Serve(l, mux); err != nil {
			log.Error("pprof server stopped", "err", err)
		}
	}()
	return nil
}
