// Checkpoint, transfer and restore times of a sandbox container holding a
// Python process of 1, 64 and 256 MB of (random, so incompressible and
// never-zero) memory. "Transfer" is a copy of the image directory to another
// directory on the same disk, the lower bound of shipping it to another
// agent. Prints a markdown table; medians of --runs (default 3).
//
//   flotilla_checkpoint_bench [--runs N]
#include <poll.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <string>
#include <vector>

#include "absl/strings/str_cat.h"
#include "checkpoint/channel.h"
#include "checkpoint/checkpointer.h"

using namespace flotilla;
using Clock = std::chrono::steady_clock;

namespace {

double Ms(Clock::duration d) { return std::chrono::duration<double, std::milli>(d).count(); }

double Median(std::vector<double> v) {
  std::sort(v.begin(), v.end());
  return v[v.size() / 2];
}

bool WaitLine(int fd) {
  for (int i = 0; i < 600; ++i) {
    pollfd p = {fd, POLLIN, 0};
    if (poll(&p, 1, 100) > 0) {
      char c;
      while (read(fd, &c, 1) == 1 && c != '\n') {
      }
      return true;
    }
  }
  return false;
}

}  // namespace

int main(int argc, char** argv) {
  int runs = 3;
  for (int i = 1; i + 1 < argc; ++i) {
    if (std::strcmp(argv[i], "--runs") == 0) runs = std::atoi(argv[i + 1]);
  }
  sandbox::HostLayout paths;
  paths.runtime_dir = absl::StrCat("/run/flotilla-bench.", getpid());
  paths.cgroup_parent = absl::StrCat("flotilla-bench.", getpid());
  auto layout = sandbox::DetectHostLayout(paths);
  if (!layout.ok()) {
    std::fprintf(stderr, "%s\n", layout.status().ToString().c_str());
    return 1;
  }
  checkpoint::CriuOptions options;
  options.state_dir = absl::StrCat("/tmp/flotilla-bench.", getpid(), ".criu");
  auto checkpointer = checkpoint::NewCriuCheckpointer(options);
  std::printf("| process memory | image | checkpoint | transfer (local copy) | restore |\n");
  std::printf("|---|---|---|---|---|\n");
  for (int mb : {1, 64, 256}) {
    std::vector<double> dump, copy, restore;
    int64_t bytes = 0;
    for (int run = 0; run < runs; ++run) {
      sandbox::ContainerSpec spec;
      spec.id = absl::StrCat("bench-", mb, "-", run);
      spec.program_path = "/usr/bin/python3";
      spec.argv = {"python3", "-c",
                   absl::StrCat("import os, socket\ns = socket.socket(fileno=3)\n"
                                "data = os.urandom(",
                                mb, " << 20)\ns.sendall(b'ready\\n')\nimport time\n"
                                "while True: time.sleep(1)\n")};
      spec.limits.memory_bytes = int64_t{1} << 30;
      spec.workdir_bytes = 16 << 20;
      auto source = checkpoint::LaunchCheckpointable(spec, *layout);
      if (!source.ok() || !WaitLine(source->channel.get())) {
        std::fprintf(stderr, "launch: %s\n", source.status().ToString().c_str());
        return 1;
      }
      const std::string dir = absl::StrCat("/tmp/flotilla-bench.", getpid(), ".img");
      const std::string shipped = dir + ".shipped";
      checkpoint::CheckpointRequest request;
      request.init_pid = source->container->pid();
      request.id = spec.id;
      request.image_dir = dir;
      request.after = checkpoint::AfterCheckpoint::kKill;
      auto t0 = Clock::now();
      auto image = checkpointer->Checkpoint(request);
      auto t1 = Clock::now();
      if (!image.ok()) {
        std::fprintf(stderr, "%s\n", image.status().ToString().c_str());
        return 1;
      }
      source->container.reset();
      std::filesystem::copy(dir, shipped, std::filesystem::copy_options::recursive);
      auto t2 = Clock::now();
      checkpoint::RestoreRequest r;
      r.image_dir = shipped;
      r.id = spec.id + "-r";
      r.layout = *layout;
      r.limits.memory_bytes = int64_t{1} << 30;
      auto restored = checkpointer->Restore(r);
      auto t3 = Clock::now();
      if (!restored.ok()) {
        std::fprintf(stderr, "%s\n", restored.status().ToString().c_str());
        return 1;
      }
      restored->container.reset();
      bytes = image->bytes;
      dump.push_back(Ms(t1 - t0));
      copy.push_back(Ms(t2 - t1));
      restore.push_back(Ms(t3 - t2));
      std::filesystem::remove_all(dir);
      std::filesystem::remove_all(shipped);
    }
    std::printf("| %d MB | %.1f MB | %.0f ms | %.0f ms | %.0f ms |\n", mb, bytes / 1048576.0,
                Median(dump), Median(copy), Median(restore));
  }
  std::filesystem::remove_all(options.state_dir);
  std::filesystem::remove_all(paths.runtime_dir);
  // The (empty) cgroup parents of this run in every hierarchy.
  auto remove_parent = [&](const std::string& mount, const std::string& own) {
    rmdir((mount + (own == "/" ? "" : own) + "/" + paths.cgroup_parent).c_str());
  };
  if (!layout->cgroups.unified.empty()) remove_parent(layout->cgroups.unified, layout->cgroups.own_unified);
  for (const auto& [controller, mount] : layout->cgroups.v1) {
    auto own = layout->cgroups.own_v1.find(controller);
    remove_parent(mount, own == layout->cgroups.own_v1.end() ? "/" : own->second);
  }
  return 0;
}
