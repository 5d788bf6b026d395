package sensor

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"log/slog"
	"os/exec"
	"path/filepath"
	"slices"
	"syscall"
	"time"

	"github.com/asynkron/protoactor-go/actor"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/troupehq/troupe/actors/protocol"
	"github.com/troupehq/troupe/domain"
)

// maxLine bounds one event line of a script sensor.
const maxLine = 1 << 20

// supervisor keeps one script sensor running: it restarts the process with
// exponential backoff when it exits, forwards each valid line as an event
// and logs (never dies of) malformed ones.
type supervisor struct {
	cfg    Config
	sensor *domain.Sensor
	log    *slog.Logger
	cancel context.CancelFunc
}

func (s *supervisor) Receive(ctx actor.Context) {
	switch ctx.Message().(type) {
	case *actor.Started:
		runCtx, cancel := context.WithCancel(context.Background())
		s.cancel = cancel
		go s.loop(runCtx, ctx.ActorSystem())
	case *actor.Stopping:
		s.cancel()
	}
}

func (s *supervisor) loop(ctx context.Context, system *actor.ActorSystem) {
	backoff := time.Second
	up := s.cfg.Metrics.SensorUp.WithLabelValues(s.sensor.Ref)
	for ctx.Err() == nil {
		began := time.Now()
		err := s.runOnce(ctx, system, up)
		up.Set(0)
		if ctx.Err() != nil {
			return
		}
		s.cfg.Metrics.SensorRestarts.WithLabelValues(s.sensor.Ref).Inc()
		if time.Since(began) > s.cfg.MaxBackoff {
			backoff = time.Second // it ran well for a while: start over
		}
		s.log.Warn("sensor exited; restarting", "err", err, "in", backoff)
		select {
		case <-ctx.Done():
			return
		case <-time.After(backoff):
		}
		backoff = min(2*backoff, s.cfg.MaxBackoff)
	}
}

func (s *supervisor) runOnce(ctx context.Context, system *actor.ActorSystem, up prometheus.Gauge) error {
	interp, err := s.cfg.Interpreter(s.sensor.Runtime)
	if err != nil {
		return err
	}
	cmd := exec.CommandContext(ctx, interp[0], append(interp[1:], s.sensor.EntryPoint)...)
	cmd.Dir = filepath.Dir(s.sensor.EntryPoint)
	cmd.Env = s.cfg.Env
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGKILL}
	cmd.Cancel = func() error { return syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL) }
	cmd.WaitDelay = 2 * time.Second
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		return err
	}
	stderr, err := cmd.StderrPipe()
	if err != nil {
		return err
	}
	if err := cmd.Start(); err != nil {
		return fmt.Errorf("start %s: %w", s.sensor.EntryPoint, err)
	}
	s.log.Info("sensor started", "pid", cmd.Process.Pid)
	up.Set(1)
	go func() {
		sc := bufio.NewScanner(stderr)
		sc.Buffer(make([]byte, 0, 4096), maxLine)
		for sc.Scan() {
			s.log.Warn("sensor stderr", "line", sc.Text())
		}
	}()
	sc := bufio.NewScanner(stdout)
	sc.Buffer(make([]byte, 0, 4096), maxLine)
	for line := 1; sc.Scan(); line++ {
		ev, err := s.parse(sc.Bytes())
		if err != nil {
			s.log.Warn("sensor line skipped", "line", line, "err", err)
			continue
		}
		rules, err := s.cfg.accept(system, protocol.ID(ev.Id))
		if err != nil {
			s.log.Error("sensor event not accepted", "line", line, "err", err)
			continue
		}
		// Waiting for the acceptance makes a fast sensor feel backpressure
		// instead of piling events up in memory.
		res, err := system.Root.RequestFuture(rules, ev, 30*time.Second).Result()
		if acc, ok := res.(*protocol.EventAccepted); err != nil || (ok && acc.Error != "") {
			s.log.Error("sensor event not accepted", "line", line, "err", err, "reason", acc)
		}
	}
	if err := sc.Err(); err != nil {
		s.log.Warn("reading sensor output", "err", err)
	}
	return cmd.Wait()
}

// parse turns one line `{"trigger": REF, "payload": {…}}` into an event.
func (s *supervisor) parse(line []byte) (*protocol.Event, error) {
	var msg struct {
		Trigger string         `json:"trigger"`
		Payload map[string]any `json:"payload"`
	}
	if err := json.Unmarshal(line, &msg); err != nil {
		return nil, fmt.Errorf("not a JSON object {\"trigger\": …, \"payload\": {…}}: %w", err)
	}
	if !slices.Contains(s.sensor.TriggerTypes, msg.Trigger) {
		return nil, fmt.Errorf("trigger %q is not one of this sensor's trigger_types %v", msg.Trigger, s.sensor.TriggerTypes)
	}
	if msg.Payload == nil {
		msg.Payload = map[string]any{}
	}
	now := time.Now().UTC()
	return protocol.NewEvent(&domain.Event{ID: domain.NewID(now), Trigger: msg.Trigger,
		Instance: domain.TriggerInstance(msg.Trigger, nil), Payload: msg.Payload,
		Source: "sensor " + s.sensor.Ref, CreatedAt: now})
}
