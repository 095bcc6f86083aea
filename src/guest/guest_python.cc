// The Python fork server, after SOCK (Oakes et al., "SOCK: Rapid Task
// Provisioning with Serverless-Optimized Containers", ATC '18): one python3
// process, started once per sandbox, imports the template's modules and
// then forks once per task, so a task pays for a fork instead of an
// interpreter start and its imports.
//
// Guest → server, over a unix stream socketpair: [u32 LE length][payload]
// with the task's stdin, stdout, stderr and working-directory fds attached
// to the length (SCM_RIGHTS). The payload is NUL-separated: "c" and the
// code, or "f" and a script path; the argc; sys.argv; then "KEY=VALUE"
// environment entries. NUL cannot occur inside any of them (Python source,
// exec arguments and the environment all exclude it), and the guest checks.
//
// Server → guest, text lines: "ready", "error <why>" (preload failed),
// "pid <pid>" once the task is forked, and
// "exit <pid> <wait status> <user us> <system us> <maxrss KiB>" when it ends.
//
// Who learns the exit status: the task is the server's child, so the
// server waits for it (os.wait4) and reports status and rusage; a
// subreaper only receives orphans, and double-forking to orphan every task
// on purpose would cost a second fork of a large process per task. The
// guest signals the task directly by pid (its own process group, made with
// setsid in the child) for timeouts and cancels. When the task ends, its
// leftover descendants are orphans that re-parent to the guest (PID 1 or a
// subreaper), which kills and reaps them as in exec mode. If the server
// dies mid-task, the task itself re-parents to the guest, which then reaps
// it directly; the server is started again for the next Python task. The
// server looks at the task's exit (waitid WNOWAIT) before it reaps it, so a
// task that kills the server and exits at once is still a zombie for the
// guest to reap; only a server killed between its reap and its report (by
// a task's descendant) loses the status, and the guest then reports the
// task killed rather than wait for it until its timeout.
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#include "guest/guest.h"

extern char** environ;

namespace flotilla::guest {
namespace {

constexpr int64_t kStartTimeoutUs = 60'000'000;  // imports of a large template
constexpr int64_t kLaunchTimeoutUs = 10'000'000;
constexpr char kDefaultPath[] = "/usr/local/bin:/usr/bin:/bin";

// The server; run as `python3 -c SCRIPT <socket fd> <comma-separated modules>`.
constexpr char kServerScript[] = R"PY(
import os, sys, socket, struct, array

def _set_dumpable(value):
    # A task runs as our uid: without this it could write into the server's
    # memory through /proc/<pid>/mem and take over later tasks.
    try:
        import ctypes
        ctypes.CDLL(None, use_errno=True).prctl(4, value, 0, 0, 0)  # PR_SET_DUMPABLE
    except Exception:
        pass

def _recv_exact(sock, n):
    data = b''
    while len(data) < n:
        chunk = sock.recv(n - len(data))
        if not chunk:
            raise EOFError
        data += chunk
    return data

def _recv_request(sock):
    fds = array.array('i')
    head, anc, _, _ = sock.recvmsg(4, socket.CMSG_SPACE(4 * fds.itemsize))
    if not head:
        raise EOFError
    for level, kind, data in anc:
        if level == socket.SOL_SOCKET and kind == socket.SCM_RIGHTS:
            fds.frombytes(data[:len(data) - len(data) % fds.itemsize])
    head += _recv_exact(sock, 4 - len(head))
    (n,) = struct.unpack('<I', head)
    return list(fds), _recv_exact(sock, n)

def _exit_code(code):
    if code is None:
        return 0
    if isinstance(code, int):
        return code & 0xff
    try:
        sys.stderr.write(str(code) + '\n')
    except Exception:
        pass
    return 1

def _child(sock, fds, payload):
    code = 1
    try:
        os.setsid()
        sock.close()
        _set_dumpable(1)
        stdin, stdout, stderr, cwd = fds
        os.dup2(stdin, 0)
        os.dup2(stdout, 1)
        os.dup2(stderr, 2)
        os.fchdir(cwd)
        for fd in fds:
            if fd > 2:
                os.close(fd)
        fields = [f.decode('utf-8', 'surrogateescape') for f in payload.split(b'\0')]
        kind, text, argc = fields[0], fields[1], int(fields[2])
        argv, env = fields[3:3 + argc], fields[3 + argc:]
        os.environ.clear()
        for kv in env:
            key, _, value = kv.partition('=')
            os.environ[key] = value
        sys.stdin = sys.__stdin__ = open(0, 'r', closefd=False)
        sys.stdout = sys.__stdout__ = open(1, 'w', closefd=False)
        sys.stderr = sys.__stderr__ = open(2, 'w', buffering=1, closefd=False,
                                           errors='backslashreplace')
        sys.argv = argv
        import types, builtins
        main = types.ModuleType('__main__')
        main.__dict__['__builtins__'] = builtins
        sys.modules['__main__'] = main
        if kind == 'c':
            filename, source = '<string>', text
            sys.path[0] = ''
        else:
            filename = text
            try:
                with open(text, 'rb') as f:
                    source = f.read()
            except OSError as e:
                sys.stderr.write("python3: can't open file %r: [Errno %d] %s\n"
                                 % (text, e.errno, e.strerror))
                sys.stderr.flush()
                os._exit(2)
            main.__file__ = text
            sys.path[0] = os.path.dirname(os.path.abspath(text))
        code = 0
        try:
            exec(compile(source, filename, 'exec'), main.__dict__)
        except SystemExit as e:
            code = _exit_code(e.code)
        except BaseException:
            import traceback
            traceback.print_exc()
            code = 1
        try:
            import threading, atexit
            threading._shutdown()
            atexit._run_exitfuncs()
        except BaseException:
            pass
        for stream in (sys.stdout, sys.stderr):
            try:
                stream.flush()
            except BaseException:
                pass
    finally:
        os._exit(code)

def main():
    sock = socket.socket(fileno=int(sys.argv[1]))
    _set_dumpable(0)
    # What every task's child uses, imported once here rather than per task.
    import types, builtins, threading, atexit, traceback, io, resource
    for name in filter(None, sys.argv[2].split(',')):
        try:
            __import__(name)
        except BaseException as e:
            msg = 'preloading `%s` failed: %s: %s' % (name, type(e).__name__, e)
            sock.sendall(b'error ' + msg.replace('\n', ' ').encode('utf-8', 'replace') + b'\n')
            return 1
    # compile() builds the AST types on first use (milliseconds): pay that
    # once here. gc.freeze keeps the collector out of the inherited objects,
    # so a child's collections do not copy every page it shares with us.
    exec(compile('pass', '<warmup>', 'exec'), {})
    import gc
    gc.collect()
    gc.freeze()
    sock.sendall(b'ready\n')
    while True:
        try:
            fds, payload = _recv_request(sock)
        except EOFError:
            return 0
        for stream in (sys.stdout, sys.stderr):
            stream.flush()
        # The child runs no task code before the guest has its pid: a task
        # that kills this server at once (kill(-1)) would otherwise end
        # unknown to the guest, which waits for it until its timeout.
        go_r, go_w = os.pipe()
        pid = os.fork()
        if pid == 0:
            os.close(go_w)
            try:
                os.read(go_r, 1)
            except OSError:
                pass
            os.close(go_r)
            _child(sock, fds, payload)
        os.close(go_r)
        for fd in fds:
            os.close(fd)
        sock.sendall(b'pid %d\n' % pid)
        os.close(go_w)
        # Seen before it is reaped: a task that kills this server (kill(-1))
        # and exits at once could otherwise be reaped here just before the
        # server dies, its status lost with it. Killed now, the server leaves
        # the task a zombie that re-parents to the guest, which reaps it.
        os.waitid(os.P_PID, pid, os.WEXITED | os.WNOWAIT)
        _, status, ru = os.wait4(pid, 0)
        sock.sendall(b'exit %d %d %d %d %d\n' % (pid, status, int(ru.ru_utime * 1e6),
                                                 int(ru.ru_stime * 1e6), ru.ru_maxrss))

sys.exit(main())
)PY";

std::string FindPython(const std::string& configured, StartError* error) {
  if (configured.find('/') != std::string::npos) {
    if (access(configured.c_str(), X_OK) == 0) return configured;
    error->err = errno;
    error->message = "python fork server: " + ErrnoMessage("python", configured, errno);
    return {};
  }
  const char* env_path = getenv("PATH");
  std::string search = env_path != nullptr ? env_path : kDefaultPath;
  size_t start = 0;
  while (start <= search.size()) {
    size_t colon = search.find(':', start);
    if (colon == std::string::npos) colon = search.size();
    std::string dir = search.substr(start, colon - start);
    std::string candidate = (dir.empty() ? std::string(".") : dir) + "/" + configured;
    if (access(candidate.c_str(), X_OK) == 0) return candidate;
    start = colon + 1;
  }
  error->err = ENOENT;
  error->message = "python fork server: `" + configured + "` was not found in PATH (" + search +
                   "); install python3 in the sandbox image or run the task in exec mode";
  return {};
}

bool Fail(StartError* error, int err, std::string message) {
  error->err = err;
  error->message = std::move(message);
  return false;
}

}  // namespace

PythonServer::~PythonServer() { Kill(); }

void PythonServer::Forget() {
  pid_ = 0;
  sock_.Reset();
  inbox_.clear();
}

void PythonServer::Kill() {
  if (pid_ > 0) kill(pid_, SIGKILL);
  Forget();
}

bool PythonServer::ReadLine(int64_t deadline_us, std::string* line) {
  while (true) {
    size_t nl = inbox_.find('\n');
    if (nl != std::string::npos) {
      line->assign(inbox_, 0, nl);
      inbox_.erase(0, nl + 1);
      return true;
    }
    int64_t left = deadline_us - MonotonicUs();
    if (left <= 0) return false;
    pollfd p{sock_.get(), POLLIN, 0};
    int rc = poll(&p, 1, static_cast<int>(left / 1000 + 1));
    if (rc < 0 && errno != EINTR) return false;
    if (rc <= 0) continue;
    char buf[4096];
    ssize_t n = read(sock_.get(), buf, sizeof(buf));
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) return false;
    inbox_.append(buf, static_cast<size_t>(n));
  }
}

bool PythonServer::Ensure(StartError* error) {
  if (running()) return true;
  Kill();
  std::string python = FindPython(python_, error);
  if (python.empty()) return false;

  int sv[2];
  if (socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv) < 0) {
    return Fail(error, errno, ErrnoMessage("python fork server: socketpair", "", errno));
  }
  Fd ours(sv[0]), theirs(sv[1]);
  std::string modules;
  for (const std::string& m : preload_) modules += (modules.empty() ? "" : ",") + m;
  std::vector<std::string> args = {python, "-c", kServerScript, "3", modules};
  std::vector<char*> argv;
  for (std::string& a : args) argv.push_back(a.data());
  argv.push_back(nullptr);

  pid_t pid = fork();
  if (pid < 0) return Fail(error, errno, ErrnoMessage("python fork server: fork", "", errno));
  if (pid == 0) {
    sigset_t none;
    sigemptyset(&none);
    sigprocmask(SIG_SETMASK, &none, nullptr);
    signal(SIGPIPE, SIG_DFL);
    setsid();  // its own group: killing a task's group never hits the server
    int fd = theirs.get();
    if (fd == 3) {
      fcntl(3, F_SETFD, 0);
    } else if (dup2(fd, 3) < 0) {
      _exit(127);
    }
    int null_fd = open("/dev/null", O_RDONLY | O_CLOEXEC);
    if (null_fd >= 0) dup2(null_fd, STDIN_FILENO);
    dup2(STDERR_FILENO, STDOUT_FILENO);
    if (chdir("/") < 0) _exit(127);
    syscall(SYS_close_range, 4u, ~0u, 0u);
    execve(python.c_str(), argv.data(), environ);
    _exit(127);
  }
  theirs.Reset();
  pid_ = pid;
  sock_ = std::move(ours);
  std::string line;
  if (!ReadLine(MonotonicUs() + kStartTimeoutUs, &line)) {
    Kill();
    return Fail(error, 0,
                "python fork server: `" + python +
                    "` exited or did not answer during startup (its stderr is the guest's)");
  }
  if (line.rfind("error ", 0) == 0) {
    Kill();
    return Fail(error, 0, "python fork server: " + line.substr(6));
  }
  if (line != "ready") {
    Kill();
    return Fail(error, 0, "python fork server: unexpected startup line `" + line + "`");
  }
  Log("python fork server %d ready (%zu modules preloaded)", pid_, preload_.size());
  return true;
}

bool PythonServer::Launch(const std::vector<std::string>& argv,
                          const std::vector<std::pair<std::string, std::string>>& env,
                          const int fds[4], pid_t* pid, StartError* error) {
  // argv is a python3 command line: [python3, -c, CODE, ARGS...] or
  // [python3, SCRIPT, ARGS...]; sys.argv follows python's own rules.
  std::string kind, text;
  std::vector<std::string> sys_argv;
  if (argv.size() >= 3 && argv[1] == "-c") {
    kind = "c";
    text = argv[2];
    sys_argv.push_back("-c");
    sys_argv.insert(sys_argv.end(), argv.begin() + 3, argv.end());
  } else if (argv.size() >= 2 && !argv[1].empty() && argv[1][0] != '-') {
    kind = "f";
    text = argv[1];
    sys_argv.assign(argv.begin() + 1, argv.end());
  } else {
    return Fail(error, EINVAL,
                "python fork-server mode runs `python3 -c CODE [ARGS...]` or "
                "`python3 SCRIPT [ARGS...]`; use exec mode for other command lines");
  }
  std::string payload = kind;
  payload.push_back('\0');
  payload += text;
  payload.push_back('\0');
  payload += std::to_string(sys_argv.size());
  for (const std::string& a : sys_argv) {
    payload.push_back('\0');
    payload += a;
  }
  for (const auto& [key, value] : env) {
    payload.push_back('\0');
    payload += key + "=" + value;
  }
  if (text.find('\0') != std::string::npos) {
    return Fail(error, EINVAL, "python source contains a NUL byte");
  }

  uint32_t n = static_cast<uint32_t>(payload.size());
  unsigned char head[4] = {static_cast<unsigned char>(n), static_cast<unsigned char>(n >> 8),
                           static_cast<unsigned char>(n >> 16),
                           static_cast<unsigned char>(n >> 24)};
  iovec iov{head, sizeof(head)};
  alignas(cmsghdr) char control[CMSG_SPACE(4 * sizeof(int))] = {};
  msghdr msg{};
  msg.msg_iov = &iov;
  msg.msg_iovlen = 1;
  msg.msg_control = control;
  msg.msg_controllen = sizeof(control);
  cmsghdr* cmsg = CMSG_FIRSTHDR(&msg);
  cmsg->cmsg_level = SOL_SOCKET;
  cmsg->cmsg_type = SCM_RIGHTS;
  cmsg->cmsg_len = CMSG_LEN(4 * sizeof(int));
  memcpy(CMSG_DATA(cmsg), fds, 4 * sizeof(int));
  ssize_t sent;
  do {
    sent = sendmsg(sock_.get(), &msg, MSG_NOSIGNAL);
  } while (sent < 0 && errno == EINTR);
  std::string write_error;
  if (sent != static_cast<ssize_t>(sizeof(head)) ||
      !WriteFully(sock_.get(), payload, static_cast<int>(kLaunchTimeoutUs / 1000), &write_error)) {
    int err = sent < 0 ? errno : EPIPE;
    Kill();
    return Fail(error, err, "python fork server: sending the task failed; it will be restarted");
  }
  std::string line;
  if (!ReadLine(MonotonicUs() + kLaunchTimeoutUs, &line) || line.rfind("pid ", 0) != 0) {
    Kill();
    return Fail(error, 0, "python fork server: no pid for the task (the server died or hung)");
  }
  *pid = static_cast<pid_t>(atoi(line.c_str() + 4));
  if (*pid <= 0) {
    Kill();
    return Fail(error, 0, "python fork server: bad pid line `" + line + "`");
  }
  return true;
}

PythonServer::Event PythonServer::OnReadable(pid_t task_pid, TaskEnd* end) {
  char buf[4096];
  ssize_t n = read(sock_.get(), buf, sizeof(buf));
  if (n < 0 && (errno == EINTR || errno == EAGAIN)) return Event::kNothing;
  if (n <= 0) {
    Kill();
    return Event::kDied;
  }
  inbox_.append(buf, static_cast<size_t>(n));
  return TakeBuffered(task_pid, end);
}

PythonServer::Event PythonServer::TakeBuffered(pid_t task_pid, TaskEnd* end) {
  size_t nl = inbox_.find('\n');
  if (nl == std::string::npos) return Event::kNothing;
  std::string line = inbox_.substr(0, nl);
  inbox_.erase(0, nl + 1);
  long long pid = 0, status = 0, user_us = 0, sys_us = 0, rss_kib = 0;
  if (sscanf(line.c_str(), "exit %lld %lld %lld %lld %lld", &pid, &status, &user_us, &sys_us,
             &rss_kib) != 5 ||
      pid != task_pid) {
    Log("python fork server: unexpected line `%s`; restarting it", line.c_str());
    Kill();
    return Event::kDied;
  }
  end->wait_status = static_cast<int>(status);
  end->cpu_us = user_us + sys_us;
  end->max_rss_bytes = rss_kib * 1024;
  return Event::kTaskEnded;
}

}  // namespace flotilla::guest
