// Internals of flotilla-guest shared by its .cc files: an owned fd, errors
// with context, the working directory's safe file operations, and the
// Python fork server. Not a public interface: the guest's contract is the
// protocol in protocol.h.
//
// The guest is single-threaded and links -static against libc only, so
// nothing here uses abseil, iostreams or threads.
#pragma once

#include "common/unique_fd.h"

#include <sys/types.h>

#include <cstdint>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "guest/protocol.h"

namespace flotilla::guest {

// Writes "flotilla-guest: <message>\n" to stderr.
void Log(const char* format, ...) __attribute__((format(printf, 1, 2)));

// "<op> `<object>`: <strerror(err)>", the crun style of error.
std::string ErrnoMessage(std::string_view op, std::string_view object, int err);

int64_t MonotonicUs();

// An owned file descriptor.
using Fd = ::flotilla::UniqueFd;

// Why a task could not start: errno of the failed step (0 if none) and a
// message that names the step and the object.
struct StartError {
  int err = 0;
  std::string message;
};

// --- The working directory (guest_workdir.cc). Every operation goes
// through the directory's fd with O_NOFOLLOW on each path component, so a
// symlink planted by a task never makes the guest write or delete outside
// it. ---

// Returns true if `path` is relative, has no "..", no empty component and
// no NUL; "" is accepted only if allow_empty.
bool ValidateRelativePath(std::string_view path, bool allow_empty, std::string* error);

// Opens the directory `rel` beneath root_fd (creating missing components),
// never following a symlink. Returns an invalid Fd and fills *error if not.
Fd OpenDirBeneath(int root_fd, std::string_view rel, StartError* error);

// Writes a task file beneath root_fd with its mode (not masked by umask).
bool WriteFileBeneath(int root_fd, const RunFile& file, StartError* error);

// Removes everything inside root_fd, including read-only files and
// directories a task chmod'ed, and restores root_fd's mode to `root_mode`.
// Returns false with *error if something could not be removed.
bool CleanDirectory(int root_fd, mode_t root_mode, std::string* error);

// --- The Python fork server (guest_python.cc). ---

// A python3 interpreter, started once, that has imported the preload
// modules and forks once per task. The guest learns the task's pid from it
// (to signal its process group) and the task's wait status and rusage when
// it ends; see guest_python.cc for why.
class PythonServer {
 public:
  PythonServer(std::string python, std::vector<std::string> preload)
      : python_(std::move(python)), preload_(std::move(preload)) {}
  ~PythonServer();

  bool running() const { return pid_ > 0 && sock_.valid(); }
  pid_t pid() const { return pid_; }
  int sock() const { return sock_.get(); }

  // Starts the server unless it runs; waits for its preloads (bounded).
  bool Ensure(StartError* error);

  // Starts one task: argv is the python3 command line, fds are the task's
  // stdin, stdout, stderr and working directory. Returns the task's pid.
  bool Launch(const std::vector<std::string>& argv,
              const std::vector<std::pair<std::string, std::string>>& env, const int fds[4],
              pid_t* pid, StartError* error);

  // What a read of the server socket during a task brought.
  struct TaskEnd {
    int wait_status = 0;
    int64_t cpu_us = 0;
    int64_t max_rss_bytes = 0;
  };
  enum class Event { kNothing, kTaskEnded, kDied };
  Event OnReadable(pid_t task_pid, TaskEnd* end);
  // The same for a line already buffered: a fast task's "exit" line can
  // arrive in the same read as its "pid" line.
  bool has_buffered_line() const { return inbox_.find('\n') != std::string::npos; }
  Event TakeBuffered(pid_t task_pid, TaskEnd* end);

  // Called by the guest's reaper when it reaped the server process.
  void OnReaped() { Forget(); }
  // SIGKILLs the server; the guest's reaper collects it.
  void Kill();

 private:
  bool ReadLine(int64_t deadline_us, std::string* line);
  void Forget();

  const std::string python_;
  const std::vector<std::string> preload_;
  pid_t pid_ = 0;
  Fd sock_;
  std::string inbox_;
};

}  // namespace flotilla::guest
