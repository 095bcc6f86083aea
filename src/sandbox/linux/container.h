// Container: one isolated process tree on Linux, the building block of the
// Linux sandbox. Its init (the program of ContainerSpec, normally
// flotilla-guest) runs as PID 1 of new pid, mount, ipc, uts, cgroup and
// (unless the host network is asked for) net namespaces, in a root assembled
// from read-only binds (mounts.h), as an unprivileged uid with no
// capabilities, no_new_privs and a seccomp denylist (caps.h, seccomp.h),
// lowered rlimits (rlimits.h), only the fds it was given (fds.h), and in
// cgroups that cap cpu, memory and pids and can kill or freeze the whole
// tree at once (cgroups.h).
//
// Ownership: a Container owns its init's pidfd, its cgroups and its
// directory under the runtime dir. Destroying it kills every process in its
// cgroups, reaps the init and removes the groups and the directory; a Launch
// that fails half-way leaves nothing behind either.
//
// Thread-safety: Kill, Freeze, Thaw, Usage and UpdateLimits may be called from any thread,
// also while another thread is in Wait; Wait itself from one thread at a time.
#pragma once

#include <sys/types.h>

#include <chrono>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "sandbox/linux/cgroups.h"
#include "sandbox/linux/fds.h"
#include "sandbox/linux/mounts.h"
#include "sandbox/linux/namespaces.h"
#include "sandbox/linux/rlimits.h"

namespace flotilla::sandbox {

using isolation::CgroupLimits;
using isolation::CgroupMode;
using isolation::FdMapping;
using isolation::NetworkNamespace;
using isolation::RlimitSetting;
using ContainerUsage = isolation::CgroupUsage;

// Where things are on the host, as parameters (Firecracker's jailer does the
// same) so tests can move them.
struct HostLayout {
  std::string proc_dir = "/proc";
  std::string cgroup_root = "/sys/fs/cgroup";
  // Each container gets the empty directory <runtime_dir>/<id> to build its
  // root on (inside its own mount namespace); removed afterwards.
  std::string runtime_dir = "/run/flotilla";
  // Containers' cgroups go to <hierarchy>/<the agent's own group>/<cgroup_parent>/<id>.
  std::string cgroup_parent = "flotilla";
  isolation::CgroupHost cgroups;  // filled in by DetectHostLayout
};

// Returns `paths` with the cgroup layout found under paths.cgroup_root.
absl::StatusOr<HostLayout> DetectHostLayout(HostLayout paths);

struct ContainerSpec {
  std::string id;  // [A-Za-z0-9._-]+, unique among live containers; names dirs and cgroups

  // Root filesystem: read-only binds of these host paths (symlinks such as
  // Debian's /bin -> usr/bin are recreated; missing paths skipped) plus a
  // generated /etc ...
  std::vector<std::string> host_binds = {"/usr", "/lib", "/lib64", "/lib32", "/bin", "/sbin"};
  // ... or, if set, the top-level entries of this template rootfs, read-only,
  // with the template's own /etc.
  std::string template_rootfs;
  std::string hostname = "sandbox";
  std::string workdir = "/work";  // a tmpfs of workdir_bytes; the init's cwd
  uint64_t workdir_bytes = 256 << 20;
  uint64_t tmp_bytes = 64 << 20;
  uint64_t shm_bytes = 16 << 20;
  bool dev_pts = true;
  bool proc_subset_pid = false;
  // More host paths in the root and device nodes in its /dev (mounts.h).
  std::vector<isolation::BindMount> binds;
  std::vector<isolation::DeviceNode> devices;

  NetworkNamespace network = NetworkNamespace::kNew;
  CgroupLimits limits;
  uid_t uid = 65534;  // must not be 0
  gid_t gid = 65534;
  std::string user_name = "sandbox";
  std::vector<RlimitSetting> rlimits = isolation::DefaultRlimits();  // only ever lowered

  // The program: an fd of the executable (O_PATH is enough; need not lie
  // inside the root, e.g. the static guest binary; not owned) or, if
  // program_fd < 0, a path inside the new root. The fd is run with
  // execveat(AT_EMPTY_PATH) and is not passed on, so it must be a binary, not
  // a #! script (whose interpreter would need the fd by path).
  int program_fd = -1;
  std::string program_path;
  std::vector<std::string> argv;           // argv[0] included
  std::map<std::string, std::string> env;  // exactly the environment
  // The fds the program gets (e.g. a socket at 3). Any of 0, 1, 2 not listed
  // is /dev/null. Sources are the caller's and stay owned by it.
  std::vector<FdMapping> fds;
  bool seccomp = true;
  // Sent to the program when the thread that launched it exits
  // (PR_SET_PDEATHSIG); 0: none.
  int parent_death_signal = 0;
};

struct ContainerExit {
  bool signaled = false;
  int code = 0;    // exit code, if !signaled
  int signal = 0;  // the killing signal, if signaled
};

class Container {
 public:
  // Starts the container and returns once its program was exec'd. An error
  // names the container, the step, the object and errno, e.g.
  // "container ex-1: pivot_root `/run/flotilla/ex-1`: Invalid argument".
  static absl::StatusOr<std::unique_ptr<Container>> Launch(const ContainerSpec& spec,
                                                           const HostLayout& layout);
  // Takes over a process tree restored from a checkpoint (checkpoint/):
  // `pid` is its init, a child of the caller, already inside `cgroups`;
  // `root_dir` is the (now unmounted, empty) directory it was restored on,
  // removed by the destructor like a launched container's.
  static absl::StatusOr<std::unique_ptr<Container>> AdoptRestored(
      std::string id, pid_t pid, std::unique_ptr<isolation::CgroupSet> cgroups,
      std::string root_dir);
  ~Container();
  Container(const Container&) = delete;
  Container& operator=(const Container&) = delete;

  const std::string& id() const { return id_; }
  pid_t pid() const { return pid_; }  // the init's pid in the caller's pid namespace
  int pidfd() const { return pidfd_.get(); }

  // SIGKILLs every process of the container (cgroup.kill, or freeze and kill
  // each pid where there is no cgroup v2) and returns once none is left.
  absl::Status Kill();
  // Stops / resumes every process of the container; Freeze returns once all
  // are frozen.
  absl::Status Freeze();
  absl::Status Thaw();
  // Waits up to `timeout` for the init to exit and reaps it. Returns
  // DeadlineExceeded if it is still running; after it exited, returns the
  // same ContainerExit again. The init's exit takes the rest of its pid
  // namespace with it.
  absl::StatusOr<ContainerExit> Wait(std::chrono::milliseconds timeout);
  absl::StatusOr<ContainerUsage> Usage() const;
  // Raises or lowers the memory and cpu limits in place (fields of 0 stay).
  absl::Status UpdateLimits(const isolation::CgroupLimits& limits);

  std::vector<std::string> CgroupDirsForTest() const { return cgroups_->Dirs(); }
  const std::string& root_dir() const { return root_dir_; }

 private:
  explicit Container(std::string id) : id_(std::move(id)) {}

  std::string id_;
  std::string root_dir_;  // created by us, removed in the destructor
  std::unique_ptr<isolation::CgroupSet> cgroups_;
  std::string proc_dir_ = "/proc";  // the layout's: read by Usage
  pid_t pid_ = 0;
  isolation::UniqueFd pidfd_;
  std::optional<ContainerExit> exit_;
};

}  // namespace flotilla::sandbox
