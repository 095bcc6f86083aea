// RedisServer: a real redis-server for tests, on 127.0.0.1 at a free port,
// with no persistence and a private temporary directory. Started by Start(),
// stopped (SIGTERM, then SIGKILL, by pid) and cleaned up by Stop() or the
// destructor. The child also gets PR_SET_PDEATHSIG, so a crashed test
// binary does not leave it behind.
#pragma once

#include <arpa/inet.h>
#include <hiredis/hiredis.h>
#include <netinet/in.h>
#include <signal.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/types.h>
#include <sys/wait.h>
#include <unistd.h>

#include <atomic>
#include <chrono>
#include <cstdlib>
#include <filesystem>
#include <string>
#include <thread>
#include <vector>

#include "absl/status/status.h"
#include "absl/strings/str_cat.h"
#include "gtest/gtest.h"

namespace flotilla::kv::testing {

// The path of redis-server, or "" if it is not installed.
inline std::string FindRedisServer() {
  for (const char* candidate : {"/usr/bin/redis-server", "/usr/local/bin/redis-server"}) {
    if (access(candidate, X_OK) == 0) return candidate;
  }
  if (const char* path = std::getenv("PATH")) {
    std::string dirs = path;
    size_t start = 0;
    while (start <= dirs.size()) {
      size_t end = dirs.find(':', start);
      if (end == std::string::npos) end = dirs.size();
      std::string candidate = dirs.substr(start, end - start) + "/redis-server";
      if (access(candidate.c_str(), X_OK) == 0) return candidate;
      start = end + 1;
    }
  }
  return "";
}

// A loopback TCP port that was free a moment ago (bound to port 0, then
// closed); nothing listens there until someone binds it.
inline int FreeLoopbackPort() {
  int fd = socket(AF_INET, SOCK_STREAM, 0);
  if (fd < 0) return -1;
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  addr.sin_port = 0;
  socklen_t len = sizeof(addr);
  int port = -1;
  if (bind(fd, reinterpret_cast<sockaddr*>(&addr), sizeof(addr)) == 0 &&
      getsockname(fd, reinterpret_cast<sockaddr*>(&addr), &len) == 0) {
    port = ntohs(addr.sin_port);
  }
  close(fd);
  return port;
}

class RedisServer {
 public:
  RedisServer() = default;
  ~RedisServer() { Stop(); }

  RedisServer(const RedisServer&) = delete;
  RedisServer& operator=(const RedisServer&) = delete;

  // Starts a server on port (0 = a free one) and waits up to 5 s for PING.
  absl::Status Start(int port = 0) {
    const std::string binary = FindRedisServer();
    if (binary.empty()) return absl::NotFoundError("redis-server is not installed");
    if (dir_.empty()) {
      std::string pattern =
          (std::filesystem::path(::testing::TempDir()) / "redis_test_XXXXXX").string();
      if (mkdtemp(pattern.data()) == nullptr) return absl::InternalError("mkdtemp failed");
      dir_ = pattern;
    }
    for (int attempt = 0; attempt < 3; ++attempt) {
      port_ = port != 0 ? port : FreeLoopbackPort();
      std::vector<std::string> args = {binary,
                                       "--port",
                                       std::to_string(port_),
                                       "--bind",
                                       "127.0.0.1",
                                       "--protected-mode",
                                       "yes",
                                       "--save",
                                       "",
                                       "--appendonly",
                                       "no",
                                       "--daemonize",
                                       "no",
                                       "--dir",
                                       dir_,
                                       "--logfile",
                                       dir_ + "/redis.log"};
      // Built before fork: the child of a threaded process may not allocate.
      std::vector<char*> argv;
      for (std::string& arg : args) argv.push_back(arg.data());
      argv.push_back(nullptr);
      pid_ = fork();
      if (pid_ < 0) return absl::InternalError("fork failed");
      if (pid_ == 0) {
        prctl(PR_SET_PDEATHSIG, SIGKILL);
        execv(argv[0], argv.data());
        _exit(127);
      }
      if (WaitForPing()) return absl::OkStatus();
      Stop();
      if (port != 0) break;  // A fixed port: no point in retrying elsewhere.
    }
    return absl::UnavailableError(absl::StrCat(
        "redis-server did not answer PING on 127.0.0.1:", port_, "; see ", dir_, "/redis.log"));
  }

  // Stops the server (keeps the directory, so Start can bring it back).
  void Stop() {
    if (pid_ <= 0) return;
    kill(pid_, SIGTERM);
    for (int i = 0; i < 200; ++i) {
      if (waitpid(pid_, nullptr, WNOHANG) == pid_) {
        pid_ = -1;
        return;
      }
      std::this_thread::sleep_for(std::chrono::milliseconds(10));
    }
    kill(pid_, SIGKILL);
    waitpid(pid_, nullptr, 0);
    pid_ = -1;
  }

  void RemoveDir() {
    if (dir_.empty()) return;
    std::error_code ec;
    std::filesystem::remove_all(dir_, ec);
    dir_.clear();
  }

  int port() const { return port_; }
  bool running() const { return pid_ > 0; }

 private:
  bool WaitForPing() {
    const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(5);
    while (std::chrono::steady_clock::now() < deadline) {
      if (waitpid(pid_, nullptr, WNOHANG) == pid_) {  // Exited: e.g. the port was taken.
        pid_ = -1;
        return false;
      }
      timeval tv{0, 200'000};
      redisContext* context = redisConnectWithTimeout("127.0.0.1", port_, tv);
      if (context != nullptr && context->err == 0) {
        auto* reply = static_cast<redisReply*>(redisCommand(context, "PING"));
        bool ok = reply != nullptr && reply->type == REDIS_REPLY_STATUS;
        if (reply != nullptr) freeReplyObject(reply);
        redisFree(context);
        if (ok) return true;
      } else if (context != nullptr) {
        redisFree(context);
      }
      std::this_thread::sleep_for(std::chrono::milliseconds(10));
    }
    return false;
  }

  pid_t pid_ = -1;
  int port_ = 0;
  std::string dir_;
};

// One server for the whole test binary, started on first use and stopped
// when the binary exits. Call it first from the main thread (a fixture's
// SetUp): PR_SET_PDEATHSIG fires when the *thread* that forked exits. Returns nullptr if
// redis-server is not installed; fails the calling test if it is installed but would not start.
inline RedisServer* SharedRedisServer() {
  struct Holder {
    RedisServer server;
    absl::Status status;
    Holder() { status = server.Start(); }
    ~Holder() {
      server.Stop();
      server.RemoveDir();
    }
  };
  static Holder* holder = new Holder();  // Deleted by the atexit below.
  static bool registered = [] {
    std::atexit([] { delete holder; });
    return true;
  }();
  (void)registered;
  if (absl::IsNotFound(holder->status)) return nullptr;
  EXPECT_TRUE(holder->status.ok()) << holder->status;
  return holder->status.ok() ? &holder->server : nullptr;
}

// Skips the current test loudly when redis-server is absent.
#define FLOTILLA_REQUIRE_REDIS(server)                                                     \
  if ((server) == nullptr) {                                                               \
    if (::flotilla::kv::testing::FindRedisServer().empty()) {                              \
      GTEST_SKIP() << "*** redis-server NOT INSTALLED: Redis backend NOT TESTED. Install " \
                      "the redis-server package. ***";                                     \
    }                                                                                      \
    FAIL() << "redis-server is installed but did not start";                               \
  }

// The backends every contract suite runs against. kDurableMemory: MemoryKv
// persisting through a SQLite Store (durable_backend.h), for the KvStore
// suites.
enum class Backend { kMemory, kRedis, kDurableMemory };

inline std::string BackendName(const ::testing::TestParamInfo<Backend>& info) {
  switch (info.param) {
    case Backend::kMemory:
      return "Memory";
    case Backend::kRedis:
      return "Redis";
    case Backend::kDurableMemory:
      return "DurableMemory";
  }
  return "Unknown";
}

// A key prefix no other store in this process (or an earlier run) uses.
inline std::string UniquePrefix(const std::string& tag) {
  static std::atomic<int> counter{0};
  return absl::StrCat(tag, getpid(), "_", counter.fetch_add(1));
}

}  // namespace flotilla::kv::testing
