// RedisClient: the hiredis connection pool under RedisKv and RedisQueue.
//
// Connections are made on demand up to RedisOptions::max_connections and
// kept for reuse; a caller blocked in a long command (XREAD BLOCK) holds one
// for that long, which is why there is a pool rather than one connection.
// Connecting is retried RedisOptions::connect_attempts times with a growing
// pause. A command that fails on the wire (the server closed the connection,
// a timeout) discards its connection; it is retried once on a fresh one only
// if the caller marked it Retry::kSafe (reads, and writes that are harmless
// to repeat), because a write that failed on the wire may or may not have
// been applied.
//
// Every error names the command (and script), the server address and
// Redis's or the socket's own error text, e.g.
//   redis EVALSHA kv_put on 127.0.0.1:6379: ERR ...
//   redis HMGET: redis connect 127.0.0.1:1: Connection refused (3 attempts)
// Wire and connect failures are Unavailable; error replies are Internal
// unless the caller inspects them (CommandAllowingErrorReply).
//
// Thread-safety: all methods may be called concurrently.
#pragma once

#include <hiredis/hiredis.h>

#include <cstdint>
#include <map>
#include <memory>
#include <string>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "absl/synchronization/mutex.h"

namespace flotilla::kv {

struct RedisOptions {
  std::string host = "127.0.0.1";
  int port = 6379;
  // Sent with AUTH on every new connection when not empty.
  std::string password;
  // SELECTed on every new connection when not 0.
  int db = 0;
  // Every key this client writes starts with "<key_prefix>:".
  std::string key_prefix = "flotilla";
  int64_t connect_timeout_ms = 1000;
  // Per command; a blocking command gets its block time on top.
  int64_t command_timeout_ms = 2000;
  int connect_attempts = 3;
  // The pause after the first failed connect; it doubles after each.
  int64_t connect_backoff_ms = 20;
  int max_connections = 32;
};

// Validates options; InvalidArgument names the field.
absl::Status ValidateRedisOptions(const RedisOptions& options);

struct ReplyDeleter {
  void operator()(redisReply* reply) const { freeReplyObject(reply); }
};
using RedisReplyPtr = std::unique_ptr<redisReply, ReplyDeleter>;

// A Lua script, loaded into the server on first use and run with EVALSHA.
struct RedisScript {
  // Names the script in errors ("kv_put").
  const char* name;
  const char* source;
};

class RedisClient {
 public:
  enum class Retry { kSafe, kNever };

  // Connects once and PINGs, so a wrong address fails here.
  static absl::StatusOr<std::unique_ptr<RedisClient>> Connect(const RedisOptions& options);
  ~RedisClient();

  RedisClient(const RedisClient&) = delete;
  RedisClient& operator=(const RedisClient&) = delete;

  const RedisOptions& options() const { return options_; }
  // "host:port", for messages.
  const std::string& address() const { return address_; }

  // Runs args (args[0] is the command) and returns its reply; an error reply
  // becomes Internal. block_ms > 0 extends the socket timeout for commands
  // that block on the server (XREAD BLOCK block_ms).
  absl::StatusOr<RedisReplyPtr> Command(const std::vector<std::string>& args, Retry retry,
                                        int64_t block_ms = 0);
  // Like Command, but returns error replies to the caller as replies.
  absl::StatusOr<RedisReplyPtr> CommandAllowingErrorReply(const std::vector<std::string>& args,
                                                          Retry retry, int64_t block_ms = 0);

  // Runs script with keys and args via EVALSHA, loading it when the server
  // does not have it (first use, or after a restart or SCRIPT FLUSH).
  absl::StatusOr<RedisReplyPtr> Eval(const RedisScript& script,
                                     const std::vector<std::string>& keys,
                                     const std::vector<std::string>& args, Retry retry);

 private:
  struct ContextDeleter {
    void operator()(redisContext* context) const { redisFree(context); }
  };
  using ContextPtr = std::unique_ptr<redisContext, ContextDeleter>;

  explicit RedisClient(const RedisOptions& options);

  absl::StatusOr<ContextPtr> NewConnection();
  absl::StatusOr<ContextPtr> Acquire();
  // Returns a healthy connection to the pool, or frees a broken one (null).
  void Release(ContextPtr context);
  absl::StatusOr<RedisReplyPtr> RunOnce(const std::vector<std::string>& args, int64_t block_ms,
                                        absl::string_view what);
  absl::StatusOr<std::string> LoadScript(const RedisScript& script);

  const RedisOptions options_;
  const std::string address_;

  absl::Mutex mu_;
  std::vector<ContextPtr> idle_ ABSL_GUARDED_BY(mu_);
  int open_ ABSL_GUARDED_BY(mu_) = 0;
  // Script name -> SHA1 returned by SCRIPT LOAD.
  std::map<std::string, std::string> script_shas_ ABSL_GUARDED_BY(mu_);
};

// Reply helpers: each returns Internal naming `what` when the reply does not
// have the expected shape.
absl::StatusOr<int64_t> ReplyInteger(const redisReply* reply, absl::string_view what);
// Accepts an integer or a string holding one.
absl::StatusOr<int64_t> ReplyNumber(const redisReply* reply, absl::string_view what);
std::string ReplyString(const redisReply* reply);
// A short description of a reply for error messages.
std::string DescribeReply(const redisReply* reply);

}  // namespace flotilla::kv
