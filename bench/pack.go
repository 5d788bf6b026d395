package bench

import (
	"fmt"
	"os"
	"path/filepath"
)

// PackRef is the ref of the generated bench pack.
const PackRef = "bench"

// Webhook names and rules of the generated pack, per workload.
var (
	webhookOf = map[Workload]string{WebhookNoop: "bench-noop", WebhookShell: "bench-shell",
		WebhookPython: "bench-python", WebhookPythonWarm: "bench-python-warm", Fanout: "bench-fanout"}
	ruleOf = map[Workload]string{WebhookNoop: "bench.noop", WebhookShell: "bench.shell",
		WebhookPython: "bench.python", WebhookPythonWarm: "bench.python_warm"}
)

// rules returns the refs of the rules workload w's events match.
func rules(w Workload, n int) []string {
	switch w {
	case Fanout:
		return numbered("bench.fanout_", n)
	case Timers:
		return numbered("bench.timer_", n)
	case Direct:
		return nil
	}
	return []string{ruleOf[w]}
}

func numbered(prefix string, n int) []string {
	out := make([]string, n)
	for i := range out {
		out[i] = fmt.Sprintf("%s%03d", prefix, i)
	}
	return out
}

// WritePack writes the bench pack into dir/bench and returns that path. It
// holds the rules of every webhook workload (with Config.Rules fanout rules)
// and, only when the workload is timers, Config.Rules 1 s timer rules — they
// fire for as long as the pack is loaded. Nodes given with Config.Addrs must
// run with this pack.
func WritePack(dir string, cfg Config) (string, error) {
	root := filepath.Join(dir, PackRef)
	files := map[string]string{
		"pack.yaml": "ref: bench\nversion: 0.1.0\ndescription: Rules and actions of `troupe bench`.\n",
		"actions/echo.yaml": "name: echo\ndescription: Spawns a shell that echoes.\nruntime: shell\n" +
			"cmd: echo ok\ntimeout: 60\n",
		"actions/hello.yaml": "name: hello\ndescription: Spawns python to print ok.\nruntime: python\n" +
			"entry_point: hello.py\ntimeout: 60\n",
		"actions/hello_warm.yaml": "name: hello_warm\ndescription: Forks python from the warm server to print ok.\n" +
			"runtime: python-warm\nentry_point: hello.py\ntimeout: 60\n",
		"actions/hello.py":       "print(\"ok\")\n",
		"rules/noop.yaml":        webhookRule("noop", webhookOf[WebhookNoop], "core.noop"),
		"rules/shell.yaml":       webhookRule("shell", webhookOf[WebhookShell], "bench.echo"),
		"rules/python.yaml":      webhookRule("python", webhookOf[WebhookPython], "bench.hello"),
		"rules/python_warm.yaml": webhookRule("python_warm", webhookOf[WebhookPythonWarm], "bench.hello_warm"),
	}
	for i := range max(cfg.Rules, 1) {
		name := fmt.Sprintf("fanout_%03d", i)
		files["rules/"+name+".yaml"] = webhookRule(name, webhookOf[Fanout], "core.noop")
	}
	if cfg.Workload == Timers {
		for i := range cfg.Rules {
			name := fmt.Sprintf("timer_%03d", i)
			files["rules/"+name+".yaml"] = "name: " + name + "\ntrigger:\n  type: core.intervaltimer\n" +
				"  parameters: {unit: seconds, delta: 1}\naction:\n  ref: core.noop\n"
		}
	}
	for name, content := range files {
		p := filepath.Join(root, name)
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			return "", fmt.Errorf("write bench pack: %w", err)
		}
		if err := os.WriteFile(p, []byte(content), 0o644); err != nil {
			return "", fmt.Errorf("write bench pack: %w", err)
		}
	}
	return root, nil
}

func webhookRule(name, url, action string) string {
	return fmt.Sprintf("name: %s\ntrigger:\n  type: core.webhook\n  parameters: {url: %s}\naction:\n  ref: %s\n", name, url, action)
}
