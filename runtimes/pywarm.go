package runtimes

import (
	"bufio"
	"context"
	_ "embed"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"slices"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/troupehq/troupe/domain"
)

// forkServerSource is the python program of the fork server; its header
// describes the protocol this file speaks.
//
//go:embed pywarm.py
var forkServerSource string

// forkServerStderr bounds what is kept of the fork server's own stderr,
// which explains its death when it dies of an exception.
const forkServerStderr = 8 << 10

// warmPython is the python-warm runtime. A python interpreter spends most
// of a short action starting up (site, .pth files, encodings: measured
// ~100 ms of CPU here), so each run is instead a child forked from one
// long-lived interpreter per agent that has done it already, in the manner
// of Python's multiprocessing "forkserver". The child is made what
// `<python> script` would be at start (process group, environment, working
// directory, stdio, argv, sys.path) and runs the script; the modules the
// script imports are still loaded per run.
type warmPython struct {
	// proc is the python runtime's configuration under this runtime's name:
	// its interpreter, environment and output cap, and its checks and
	// encoding of a request.
	proc *process
	mu   sync.Mutex
	srv  *forkServer // nil until the first run; replaced once it has died
}

var (
	_ Runtime   = (*warmPython)(nil)
	_ io.Closer = (*warmPython)(nil)
)

// NewPythonWarm builds the python-warm runtime, with the same resolved
// interpreter as the python runtime: it is available exactly when python
// is. The fork server starts on the first run, and again on the run after
// it died.
func NewPythonWarm(cfg Config) (Runtime, error) {
	p, err := newPython("python-warm", cfg)
	if err != nil {
		return nil, err
	}
	return &warmPython{proc: p}, nil
}

func (w *warmPython) Name() string { return w.proc.name }

func (w *warmPython) Run(ctx context.Context, req Request) Outcome {
	noExit := domain.Result{ExitCode: -1}
	inv, err := w.proc.invocation(req)
	if err != nil {
		return failed(noExit, "%v", err)
	}
	runCtx, cancel := withTimeout(ctx, req.Timeout)
	defer cancel()
	pp, err := openPipes(req.Output.captures(w.proc.maxOutput))
	if err != nil {
		return failed(noExit, "start %s action: %v", w.proc.name, err)
	}
	pp.copy(inv.stdin)
	srv, c, err := w.fork(runCtx, req.EntryPoint, inv.dir, w.proc.environ(req), pp.child)
	pp.closeChild()
	if err != nil {
		pp.finish()
		if o, ok := interrupted(ctx, runCtx, req.Timeout, noExit); ok {
			return o
		}
		return failed(noExit, "start %s action: %v", w.proc.name, err)
	}
	ws, err := srv.wait(runCtx, c)
	pp.finish()
	if err != nil {
		res := result(-1, pp.stdout, pp.stderr)
		if o, ok := interrupted(ctx, runCtx, req.Timeout, res); ok {
			return o
		}
		return failed(res, "%v; the action's process group was killed", err)
	}
	return exited(ctx, runCtx, req.Timeout, ws, pp.stdout, pp.stderr)
}

// fork has the fork server start a child for the script. A server that died
// unnoticed since the last run refuses the request; since it then cannot
// have forked anything, the request goes once to a fresh server. A server
// that dies after taking the request is not retried: the child may have
// begun the action.
func (w *warmPython) fork(ctx context.Context, script, dir string, env []string, stdio [3]*os.File) (*forkServer, child, error) {
	for attempt := 0; ; attempt++ {
		if err := ctx.Err(); err != nil {
			return nil, child{}, err
		}
		srv, err := w.server()
		if err != nil {
			return nil, child{}, err
		}
		c, err := srv.fork(script, dir, env, stdio)
		var refused *sendError
		if err == nil || !errors.As(err, &refused) || attempt > 0 {
			return srv, c, err
		}
		<-srv.dead
	}
}

// server returns the fork server, starting one when there is none or the
// last has died.
func (w *warmPython) server() (*forkServer, error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.srv != nil && !w.srv.gone() {
		return w.srv, nil
	}
	srv, err := startForkServer(w.proc)
	if err != nil {
		return nil, fmt.Errorf("start the python-warm server: %w", err)
	}
	w.srv = srv
	return srv, nil
}

// Close stops the fork server, if one runs; the runs it had forked end
// failed. A later run starts a new one.
func (w *warmPython) Close() error {
	w.mu.Lock()
	srv := w.srv
	w.srv = nil
	w.mu.Unlock()
	if srv != nil {
		srv.stop()
	}
	return nil
}

// forkServer is one running pywarm.py, which forks the children, and the
// children it has forked.
type forkServer struct {
	cmd    *exec.Cmd
	conn   *net.UnixConn
	stderr *capture
	sendMu sync.Mutex // requests go on the socket whole, one at a time

	mu      sync.Mutex
	runs    map[uint64]chan forkReply
	lastRun uint64
	stopped bool // by stop: its end is no failure

	dead chan struct{} // closed once the server has exited; err then says how
	err  error
}

// child is one forked run: its ID in the protocol, its pid (which is also
// its process group) and where the server's replies about it arrive.
type child struct {
	id      uint64
	pid     int
	replies chan forkReply
}

type forkReply struct {
	kind  byte // 'P' forked, 'X' exited, 'E' fork failed
	value int32
}

const replySize = 13 // run id u64, kind u8, value i32

// sendError is a request the server never received whole, so it cannot
// have forked a child for it.
type sendError struct{ err error }

func (e *sendError) Error() string { return "send request to the python-warm server: " + e.err.Error() }
func (e *sendError) Unwrap() error { return e.err }

func startForkServer(p *process) (*forkServer, error) {
	ours, theirs, err := socketPair()
	if err != nil {
		return nil, err
	}
	defer theirs.Close()
	fc, err := net.FileConn(ours)
	ours.Close()
	if err != nil {
		return nil, err
	}
	s := &forkServer{conn: fc.(*net.UnixConn), stderr: &capture{max: forkServerStderr},
		runs: map[uint64]chan forkReply{}, dead: make(chan struct{})}
	// The arguments only name the process for ps; the program comes on stdin.
	s.cmd = exec.Command(p.path, "-", "troupe-python-warm")
	s.cmd.Dir = p.tmpDir
	// The children's /proc environ is this one, so Reap finds them by the
	// run marker here; each child then sets the environment of its run.
	s.cmd.Env = slices.Clone(p.env)
	if p.runDir != "" {
		s.cmd.Env = append(s.cmd.Env, runMarker+p.runDir)
	}
	s.cmd.Stdin = strings.NewReader(forkServerSource)
	s.cmd.Stderr = s.stderr
	s.cmd.ExtraFiles = []*os.File{theirs}
	s.cmd.SysProcAttr = sysProcAttr()
	s.cmd.WaitDelay = pipeGrace
	if err := s.cmd.Start(); err != nil {
		s.conn.Close()
		return nil, err
	}
	go s.receive()
	return s, nil
}

// socketPair is a connected pair of unix stream sockets, close-on-exec from
// birth, so that no action the agent spawns meanwhile holds the server's
// end: the agent learns of the server's death by the end of the stream.
func socketPair() (ours, theirs *os.File, err error) {
	syscall.ForkLock.RLock()
	fds, err := syscall.Socketpair(syscall.AF_UNIX, syscall.SOCK_STREAM, 0)
	if err == nil {
		syscall.CloseOnExec(fds[0])
		syscall.CloseOnExec(fds[1])
	}
	syscall.ForkLock.RUnlock()
	if err != nil {
		return nil, nil, fmt.Errorf("socketpair: %w", err)
	}
	return os.NewFile(uintptr(fds[0]), "python-warm"), os.NewFile(uintptr(fds[1]), "python-warm server"), nil
}

// receive hands each reply to the run it is about, until the server's end
// closes; every reply is delivered before dead is closed.
func (s *forkServer) receive() {
	r := bufio.NewReader(s.conn)
	var b [replySize]byte
	for {
		if _, err := io.ReadFull(r, b[:]); err != nil {
			break
		}
		s.mu.Lock()
		ch := s.runs[binary.BigEndian.Uint64(b[:8])]
		s.mu.Unlock()
		if ch != nil { // buffered for a child's two replies
			ch <- forkReply{kind: b[8], value: int32(binary.BigEndian.Uint32(b[9:]))}
		}
	}
	// A server that closed its end yet lives on is of no further use.
	kill := time.AfterFunc(pipeGrace, func() { s.cmd.Process.Kill() })
	s.cmd.Wait()
	kill.Stop()
	s.conn.Close()
	s.mu.Lock()
	if s.stopped {
		s.err = errors.New("the python-warm server was stopped")
	} else {
		s.err = fmt.Errorf("the python-warm server (pid %d) exited (%s)", s.cmd.Process.Pid, s.cmd.ProcessState)
		if msg := strings.TrimSpace(s.stderr.String()); msg != "" {
			s.err = fmt.Errorf("%w: %s", s.err, msg)
		}
	}
	s.mu.Unlock()
	close(s.dead)
}

func (s *forkServer) gone() bool {
	select {
	case <-s.dead:
		return true
	default:
		return false
	}
}

// stop makes the server kill its children and exit, and waits for it.
func (s *forkServer) stop() {
	s.mu.Lock()
	s.stopped = true
	s.mu.Unlock()
	s.conn.CloseWrite()
	<-s.dead
}

// fork asks for a child running script in dir with env and the given stdin,
// stdout and stderr, and waits until it is forked.
func (s *forkServer) fork(script, dir string, env []string, stdio [3]*os.File) (child, error) {
	c := child{replies: make(chan forkReply, 2)}
	s.mu.Lock()
	s.lastRun++
	c.id = s.lastRun
	s.runs[c.id] = c.replies
	s.mu.Unlock()
	if err := s.send(c.id, append([]string{script, dir}, env...), stdio); err != nil {
		// Part of a request may be on the stream, which the server could
		// only misread from there on.
		s.cmd.Process.Kill()
		s.forget(c.id)
		return c, &sendError{err}
	}
	r, ok := s.reply(c, nil)
	switch {
	case !ok:
		s.forget(c.id)
		return c, s.err
	case r.kind == 'E':
		s.forget(c.id)
		return c, fmt.Errorf("fork: %w", syscall.Errno(r.value))
	}
	c.pid = int(r.value)
	return c, nil
}

// send writes one request, the stdio descriptors riding with its first
// bytes. The child's ends are put in blocking mode by Fd, as a process
// expects of its stdio.
func (s *forkServer) send(id uint64, fields []string, stdio [3]*os.File) error {
	body := strings.Join(fields, "\x00")
	msg := make([]byte, 12, 12+len(body))
	binary.BigEndian.PutUint32(msg, uint32(len(body)))
	binary.BigEndian.PutUint64(msg[4:], id)
	msg = append(msg, body...)
	rights := syscall.UnixRights(int(stdio[0].Fd()), int(stdio[1].Fd()), int(stdio[2].Fd()))
	s.sendMu.Lock()
	defer s.sendMu.Unlock()
	n, _, err := s.conn.WriteMsgUnix(msg, rights, nil)
	if err == nil && n < len(msg) {
		_, err = s.conn.Write(msg[n:])
	}
	return err
}

// reply waits for the server's next reply about c, or for stop to close;
// ok is false once the server died without sending one.
func (s *forkServer) reply(c child, stop <-chan struct{}) (r forkReply, ok bool) {
	select {
	case r = <-c.replies:
		return r, true
	case <-stop:
		return r, false
	case <-s.dead:
		select { // sent before it died
		case r = <-c.replies:
			return r, true
		default:
			return r, false
		}
	}
}

// wait returns c's wait status. When ctx ends first, it kills c's process
// group and waits on for the status; when the server dies first, nothing
// is left to reap c, so it kills the group and returns why.
func (s *forkServer) wait(ctx context.Context, c child) (syscall.WaitStatus, error) {
	defer s.forget(c.id)
	for {
		r, ok := s.reply(c, ctx.Done())
		switch {
		case ok:
			return syscall.WaitStatus(uint32(r.value)), nil
		case !s.gone():
			killGroup(c.pid)
			ctx = context.Background()
		default:
			killGroup(c.pid)
			return 0, s.err
		}
	}
}

func (s *forkServer) forget(id uint64) {
	s.mu.Lock()
	delete(s.runs, id)
	s.mu.Unlock()
}

// pipes connect a forked child's stdin, stdout and stderr to the agent, as
// exec does for process runs: the child's ends go to the server with the
// request, and the agent writes the parameters and captures the output.
type pipes struct {
	child          [3]*os.File // stdin's read end, stdout's and stderr's write ends
	ours           [3]*os.File
	stdout, stderr *capture
	copying        sync.WaitGroup
}

func openPipes(stdout, stderr *capture) (*pipes, error) {
	pp := &pipes{stdout: stdout, stderr: stderr}
	for i := range pp.child {
		r, w, err := os.Pipe()
		if err != nil {
			pp.closeChild()
			for _, f := range pp.ours {
				f.Close()
			}
			return nil, err
		}
		if i == 0 {
			pp.child[i], pp.ours[i] = r, w
		} else {
			pp.child[i], pp.ours[i] = w, r
		}
	}
	return pp, nil
}

// copy writes stdin and reads the output until the child's ends close.
func (pp *pipes) copy(stdin []byte) {
	pp.copying.Add(3)
	go func() {
		defer pp.copying.Done()
		pp.ours[0].Write(stdin) // a child that exits without reading it is no error
		pp.ours[0].Close()
	}()
	go pp.read(pp.stdout, pp.ours[1])
	go pp.read(pp.stderr, pp.ours[2])
}

func (pp *pipes) read(c *capture, r io.Reader) {
	defer pp.copying.Done()
	c.ReadFrom(r)
}

// closeChild closes the agent's copies of the child's ends once the server
// holds its own, so that the output ends when the child's does.
func (pp *pipes) closeChild() {
	for _, f := range pp.child {
		if f != nil {
			f.Close()
		}
	}
}

// finish waits for the copying to end, after the child has: a background
// process still holding the pipes gets pipeGrace, like exec's WaitDelay for
// process runs, and then the pipes are closed.
func (pp *pipes) finish() {
	cut := time.AfterFunc(pipeGrace, func() {
		for _, f := range pp.ours {
			f.SetDeadline(time.Now())
		}
	})
	pp.copying.Wait()
	cut.Stop()
	for _, f := range pp.ours {
		f.Close()
	}
}
