# The fork server of Troupe's python-warm runtime (see pywarm.go).
#
# The agent runs this program as `<python> - troupe-python-warm`, its source
# on stdin and one end of a unix stream socket on fd 3. Interpreter start-up
# (site, .pth files, encodings) is paid once, here; each action then runs in
# a child forked from this process. Whatever the server holds at a fork,
# every child inherits, so it imports only the standard library modules it
# needs itself, never an action's, and runs no thread.
#
# Requests (agent -> server): a header of body length (u32) and run id (u64),
# big-endian, sent with three file descriptors (SCM_RIGHTS): the run's stdin,
# stdout and stderr. The body is NUL-separated: script path, working
# directory, then the environment as KEY=value entries.
#
# Replies (server -> agent), 13 bytes: run id (u64), kind (u8), value (i32).
# "P": the child was forked, value is its pid, always before its "X"; "X": the
# child ended, value is its raw wait status; "E": the fork failed, value is
# the errno.

import array
import atexit
import builtins
import errno
import gc
import importlib.machinery
import io
import json  # noqa: F401  every action reads its parameters as JSON: ~3 ms a run saved
import os
import select
import signal
import socket
import struct
import sys

# The environment as the interpreter left it after start-up, which may have
# added to what the agent gave it (LC_CTYPE, when it coerces a C locale).
STARTUP_ENV = dict(os.environb)

HEADER = struct.Struct(">IQ")
REPLY = struct.Struct(">QBi")

if sys.platform.startswith("linux"):
    import ctypes

    PR_SET_PDEATHSIG = 1
    prctl = ctypes.CDLL(None, use_errno=True).prctl
else:
    prctl = None


def main():
    sock = socket.socket(fileno=3)
    sock.setblocking(True)
    # SIGCHLD only wakes the loop; children are reaped there.
    wake, wake_w = os.pipe()
    os.set_blocking(wake, False)
    os.set_blocking(wake_w, False)
    signal.set_wakeup_fd(wake_w, warn_on_full_buffer=False)
    signal.signal(signal.SIGCHLD, lambda signum, frame: None)
    server = os.getpid()
    # Collections in the children then skip the objects inherited from here,
    # sparing the pages they share with the server.
    gc.freeze()
    job = serve(sock, wake)
    if job is None:
        return
    # From here on this process is one action's child.
    fds, fields = job
    os.setpgid(0, 0)
    if prctl is not None:
        # Die with the server, as process runs die with the agent; a server
        # that died before this line left the child nobody to report to.
        prctl(PR_SET_PDEATHSIG, signal.SIGKILL)
        if os.getppid() != server:
            os._exit(1)
    signal.set_wakeup_fd(-1)
    signal.signal(signal.SIGCHLD, signal.SIG_DFL)
    sock.close()
    os.close(wake)
    os.close(wake_w)
    become(fds, fields)


def serve(sock, wake):
    """Forks a child per request until the agent goes away. Returns None in
    the server, and (stdio fds, request fields) in a child."""
    children = {}  # pid -> run id
    try:
        while True:
            ready, _, _ = select.select([sock, wake], [], [])
            if wake in ready:
                drain(wake)
                reap(sock, children)
            if sock not in ready:
                continue
            request = receive(sock)
            if request is None:
                break
            run, fds, fields = request
            if len(fds) != 3:
                close(fds)  # the server ran out of descriptors
                reply(sock, run, b"E", errno.EMFILE)
                continue
            try:
                pid = os.fork()
            except OSError as e:
                close(fds)
                reply(sock, run, b"E", e.errno)
                continue
            if pid == 0:
                return fds, fields
            # Both sides set the group, so that the agent may kill it as soon
            # as it hears the pid, whichever of the two ran first.
            try:
                os.setpgid(pid, pid)
            except OSError:
                pass  # the child is gone already
            close(fds)
            children[pid] = run
            reply(sock, run, b"P", pid)
    except ConnectionError:
        pass
    # The agent closed its end: the runs it was waiting for are over.
    for pid in children:
        try:
            os.killpg(pid, signal.SIGKILL)
        except OSError:
            pass
    return None


def receive(sock):
    """Reads one request: (run id, fds, fields), or None at end of stream."""
    fds = array.array("i")
    head = b""
    while len(head) < HEADER.size:
        data, ancillary, _, _ = sock.recvmsg(HEADER.size - len(head), socket.CMSG_LEN(3 * fds.itemsize))
        if not data:
            return None
        for level, kind, payload in ancillary:
            if level == socket.SOL_SOCKET and kind == socket.SCM_RIGHTS:
                fds.frombytes(payload[: len(payload) - len(payload) % fds.itemsize])
        head += data
    size, run = HEADER.unpack(head)
    body = bytearray()
    while len(body) < size:
        chunk = sock.recv(size - len(body))
        if not chunk:
            return None
        body += chunk
    return run, list(fds), bytes(body).split(b"\0")


def reap(sock, children):
    while children:
        try:
            pid, status = os.waitpid(-1, os.WNOHANG)
        except ChildProcessError:
            return
        if pid == 0:
            return
        run = children.pop(pid, None)
        if run is not None:
            reply(sock, run, b"X", status)


def reply(sock, run, kind, value):
    sock.sendall(REPLY.pack(run, kind[0], value))


def drain(fd):
    try:
        while os.read(fd, 512):
            pass
    except BlockingIOError:
        pass


def close(fds):
    for fd in fds:
        os.close(fd)


def become(fds, fields):
    """Makes this child what `python <script>` would be at start, then runs
    the script."""
    for target, fd in enumerate(fds):
        os.dup2(fd, target)
        os.close(fd)
    sys.stdin = sys.__stdin__ = stdio(0, "rb", sys.__stdin__)
    sys.stdout = sys.__stdout__ = stdio(1, "wb", sys.__stdout__)
    sys.stderr = sys.__stderr__ = stdio(2, "wb", sys.__stderr__)

    path, directory = os.fsdecode(fields[0]), os.fsdecode(fields[1])
    env = {}
    for entry in fields[2:]:
        key, _, value = entry.partition(b"=")
        env.setdefault(key, value)  # of duplicate names the first wins, as at start-up
    # The run's environment is the server's plus the run's own entries, so
    # what start-up changed in the server it would have changed here too.
    env.update(STARTUP_ENV)
    os.environb.clear()
    os.environb.update(env)
    os.chdir(directory)
    sys.argv = [path]
    if not getattr(sys.flags, "safe_path", False):
        sys.path[0] = os.path.dirname(os.path.realpath(path))

    module = type(sys)("__main__")
    module.__file__, module.__cached__, module.__builtins__ = path, None, builtins
    module.__loader__ = importlib.machinery.SourceFileLoader("__main__", path)
    sys.modules["__main__"] = module
    inherited = set(sys.modules)
    status = run(path, module)
    del module  # for the collection at shut-down
    shut_down(inherited)
    if status is None:
        # An uncaught KeyboardInterrupt ends python by SIGINT once it has
        # shut down, so that its parent sees the signal.
        signal.signal(signal.SIGINT, signal.SIG_DFL)
        os.kill(os.getpid(), signal.SIGINT)
        status = 128 + signal.SIGINT  # as python does when SIGINT is blocked
    os._exit(status)


def stdio(fd, mode, like):
    """A standard stream on fd made as the interpreter makes it at start-up,
    with the encoding, error handler and buffering it chose for like."""
    unbuffered = like.write_through and mode == "wb"
    buffer = io.open(fd, mode, buffering=0 if unbuffered else -1, closefd=False)
    raw = buffer if unbuffered else buffer.raw
    raw.name = like.name
    line_buffering = not like.write_through and (fd == 2 or raw.isatty())
    return io.TextIOWrapper(buffer, like.encoding, like.errors, "\n", line_buffering, like.write_through)


def run(path, module):
    """Runs the script as python runs its main script, and returns the exit
    status, or None for an uncaught KeyboardInterrupt."""
    try:
        try:
            with open(path, "rb") as f:
                source = f.read()
        except OSError as e:
            print(f"{sys.executable}: can't open file {path!r}: [Errno {e.errno}] {e.strerror}", file=sys.stderr)
            return 2
        exec(compile(source, path, "exec", dont_inherit=True), module.__dict__)
    except SystemExit as e:
        return exit_status(e.code)
    except BaseException as e:
        # Without this frame, the traceback is the one python would print
        # (which prints the exception's own, whatever the hook is given).
        e.with_traceback(e.__traceback__.tb_next)
        sys.excepthook(type(e), e, e.__traceback__)
        return None if isinstance(e, KeyboardInterrupt) else 1
    return 0


def exit_status(code):
    """The exit status python makes of SystemExit(code)."""
    if code is None:
        return 0
    if isinstance(code, int):
        # A C long, then the low byte; what does not fit a long is -1.
        return code & 0xFF if -(1 << 63) <= code < 1 << 63 else 0xFF
    try:
        print(code, file=sys.stderr)
    except Exception:
        pass
    return 1


def shut_down(inherited):
    """Does what python's shut-down does that a script can notice: wait for
    its threads, run its atexit functions, finalize what the script's own
    modules (__main__ and those it imported) hold, flush stdio. The modules
    inherited from the server are not torn down: that would touch, and so
    copy, every page of the server's heap, which measured as most of a
    run's cost (~10 ms). Python does not promise to finalize objects alive
    at exit anyway."""
    threading = sys.modules.get("threading")
    if threading is not None:
        threading._shutdown()
    atexit._run_exitfuncs()
    # As python does first: drop the modules, then collect, so that the
    # finalizers of what only they kept alive run with their namespaces whole.
    for name in list(sys.modules):
        if name == "__main__" or name not in inherited:
            sys.modules[name] = None
    gc.collect()
    for stream in (sys.stdout, sys.stderr):
        try:
            stream.flush()
        except Exception:
            pass


main()
