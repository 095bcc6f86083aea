#include "common/failpoint.h"

#include <signal.h>
#include <stdlib.h>
#include <unistd.h>

#include <atomic>
#include <cstdio>
#include <mutex>
#include <string>

namespace flotilla {
namespace {

struct Armed {
  std::string name;
  long remaining = 0;  // hits left before the kill; 0: disarmed
};

std::once_flag g_env_once;
std::mutex g_mu;
Armed g_armed;                     // guarded by g_mu
std::atomic<bool> g_any{false};    // a point is armed: the fast path's check

void ArmLocked(std::string_view spec) {
  std::string name(spec);
  long n = 1;
  if (auto colon = name.rfind(':'); colon != std::string::npos) {
    n = std::strtol(name.c_str() + colon + 1, nullptr, 10);
    name.resize(colon);
  }
  if (name.empty() || n <= 0) return;
  g_armed = {name, n};
  g_any.store(true, std::memory_order_release);
}

void ReadEnv() {
  const char* spec = getenv("FLOTILLA_FAILPOINT");
  if (spec == nullptr || *spec == '\0') return;
  std::lock_guard<std::mutex> lock(g_mu);
  ArmLocked(spec);
}

}  // namespace

void Failpoint(std::string_view name) {
  std::call_once(g_env_once, ReadEnv);
  if (!g_any.load(std::memory_order_acquire)) return;
  std::lock_guard<std::mutex> lock(g_mu);
  if (g_armed.remaining == 0 || g_armed.name != name) return;
  if (--g_armed.remaining > 0) return;
  // Said on stderr so a test's log shows where the process died.
  std::fprintf(stderr, "failpoint %.*s: killing the process\n", static_cast<int>(name.size()),
               name.data());
  std::fflush(stderr);
  kill(getpid(), SIGKILL);
  _exit(137);  // not reached
}

void ArmFailpointForTest(std::string_view spec) {
  std::call_once(g_env_once, ReadEnv);
  std::lock_guard<std::mutex> lock(g_mu);
  ArmLocked(spec);
}

}  // namespace flotilla
