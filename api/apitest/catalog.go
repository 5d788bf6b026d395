package apitest

import (
	"time"

	"github.com/troupehq/troupe/domain"
)

// Catalog returns a small catalog for tests: the core triggers and a "demo"
// pack whose action demo.echo has a required, a defaulted and a secret
// parameter, and whose rules listen on webhook "hook" (enabled) and "off"
// (disabled).
func Catalog() []*domain.Pack {
	echo := &domain.Action{
		Ref: "demo.echo", Pack: "demo", Name: "echo", Runtime: "shell", Cmd: "echo {{ message }}",
		Description: "Print a message.", Timeout: 30 * time.Second,
		Parameters: map[string]*domain.Param{
			"message":  {Type: "string", Required: true},
			"greeting": {Type: "string", Default: "hello"},
			"password": {Type: "string", Secret: true, Default: "default-secret"},
		},
		ParamOrder: []string{"message", "greeting", "password"},
	}
	hook := func(name, url string, enabled bool) *domain.Rule {
		return &domain.Rule{
			Ref: "demo." + name, Pack: "demo", Name: name, Enabled: enabled,
			Trigger: domain.RuleTrigger{Type: "core.webhook", Parameters: map[string]any{"url": url}},
			Action:  domain.RuleAction{Ref: "demo.echo", Parameters: map[string]any{"message": "{{ trigger.body.msg }}", "password": "rule-secret"}},
		}
	}
	return []*domain.Pack{
		{
			Ref: "core", Version: "1.0.0", Description: "Built-in triggers and actions.",
			Actions: []*domain.Action{{Ref: "core.noop", Pack: "core", Name: "noop", Runtime: "builtin"}},
			Triggers: []*domain.Trigger{
				{Ref: "core.intervaltimer", Pack: "core", Name: "intervaltimer"},
				{Ref: "core.webhook", Pack: "core", Name: "webhook", Description: "An HTTP POST to /api/v1/webhooks/{url}."},
			},
		},
		{
			Ref: "demo", Version: "0.1.0", Actions: []*domain.Action{echo},
			Rules: []*domain.Rule{hook("on_hook", "hook", true), hook("off_hook", "off", false)},
			Sensors: []*domain.Sensor{{
				Ref: "demo.watch", Pack: "demo", Name: "watch", Runtime: "python",
				EntryPoint: "/packs/demo/sensors/watch.py", TriggerTypes: []string{"demo.change"}, Enabled: true,
			}},
		},
	}
}
