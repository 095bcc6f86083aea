#include "kv/redis_client.h"

#include <sys/time.h>

#include <utility>

#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/time/clock.h"
#include "absl/time/time.h"
#include "common/status_macros.h"

namespace flotilla::kv {
namespace {

timeval ToTimeval(int64_t ms) {
  timeval tv;
  tv.tv_sec = ms / 1000;
  tv.tv_usec = (ms % 1000) * 1000;
  return tv;
}

}  // namespace

absl::Status ValidateRedisOptions(const RedisOptions& options) {
  if (options.host.empty()) return absl::InvalidArgumentError("redis host must not be empty");
  if (options.port <= 0 || options.port > 65535) {
    return absl::InvalidArgumentError(
        absl::StrFormat("redis port %d is out of range 1..65535", options.port));
  }
  if (options.key_prefix.empty()) {
    return absl::InvalidArgumentError("redis key_prefix must not be empty");
  }
  if (options.key_prefix.find_first_of("{}") != std::string::npos) {
    return absl::InvalidArgumentError(
        absl::StrFormat("redis key_prefix \"%s\" must not contain '{' or '}'", options.key_prefix));
  }
  if (options.connect_timeout_ms <= 0 || options.command_timeout_ms <= 0) {
    return absl::InvalidArgumentError(absl::StrFormat(
        "redis connect_timeout_ms (%d) and command_timeout_ms (%d) must be positive",
        options.connect_timeout_ms, options.command_timeout_ms));
  }
  if (options.connect_attempts < 1 || options.max_connections < 1) {
    return absl::InvalidArgumentError(
        absl::StrFormat("redis connect_attempts (%d) and max_connections (%d) must be at least 1",
                        options.connect_attempts, options.max_connections));
  }
  if (options.db < 0) {
    return absl::InvalidArgumentError(absl::StrFormat("redis db %d is negative", options.db));
  }
  return absl::OkStatus();
}

RedisClient::RedisClient(const RedisOptions& options)
    : options_(options), address_(absl::StrCat(options.host, ":", options.port)) {}

RedisClient::~RedisClient() = default;

absl::StatusOr<std::unique_ptr<RedisClient>> RedisClient::Connect(const RedisOptions& options) {
  RETURN_IF_ERROR(ValidateRedisOptions(options));
  std::unique_ptr<RedisClient> client(new RedisClient(options));
  ASSIGN_OR_RETURN(RedisReplyPtr pong, client->Command({"PING"}, Retry::kSafe));
  (void)pong;
  return client;
}

absl::StatusOr<RedisClient::ContextPtr> RedisClient::NewConnection() {
  std::string last_error;
  int64_t backoff_ms = options_.connect_backoff_ms;
  for (int attempt = 1; attempt <= options_.connect_attempts; ++attempt) {
    if (attempt > 1) {
      absl::SleepFor(absl::Milliseconds(backoff_ms));
      backoff_ms *= 2;
    }
    ContextPtr context(redisConnectWithTimeout(options_.host.c_str(), options_.port,
                                               ToTimeval(options_.connect_timeout_ms)));
    if (context == nullptr) {
      last_error = "out of memory allocating a hiredis context";
      continue;
    }
    if (context->err != 0) {
      last_error = context->errstr;
      continue;
    }
    if (redisSetTimeout(context.get(), ToTimeval(options_.command_timeout_ms)) != REDIS_OK) {
      last_error = absl::StrCat("setting the socket timeout: ", context->errstr);
      continue;
    }
    if (!options_.password.empty() || options_.db != 0) {
      std::vector<std::vector<std::string>> setup;
      if (!options_.password.empty()) setup.push_back({"AUTH", options_.password});
      if (options_.db != 0) setup.push_back({"SELECT", absl::StrCat(options_.db)});
      for (const auto& args : setup) {
        std::vector<const char*> argv;
        std::vector<size_t> lengths;
        for (const std::string& arg : args) {
          argv.push_back(arg.data());
          lengths.push_back(arg.size());
        }
        RedisReplyPtr reply(static_cast<redisReply*>(redisCommandArgv(
            context.get(), static_cast<int>(argv.size()), argv.data(), lengths.data())));
        if (reply == nullptr) {
          return absl::UnavailableError(
              absl::StrCat("redis ", args[0], " on ", address_, ": ", context->errstr));
        }
        if (reply->type == REDIS_REPLY_ERROR) {
          return absl::FailedPreconditionError(
              absl::StrCat("redis ", args[0], " on ", address_, ": ", ReplyString(reply.get()),
                           "; check RedisOptions::", args[0] == "AUTH" ? "password" : "db"));
        }
      }
    }
    return context;
  }
  return absl::UnavailableError(absl::StrFormat("redis connect %s: %s (%d attempt%s)", address_,
                                                last_error, options_.connect_attempts,
                                                options_.connect_attempts == 1 ? "" : "s"));
}

absl::StatusOr<RedisClient::ContextPtr> RedisClient::Acquire() {
  {
    absl::MutexLock lock(&mu_);
    auto can_acquire = [this]() {
      mu_.AssertHeld();
      return !idle_.empty() || open_ < options_.max_connections;
    };
    const absl::Time deadline = absl::Now() + absl::Milliseconds(options_.command_timeout_ms);
    if (!mu_.AwaitWithDeadline(absl::Condition(&can_acquire), deadline)) {
      return absl::ResourceExhaustedError(absl::StrFormat(
          "redis %s: all %d connections busy for %d ms; raise RedisOptions::max_connections",
          address_, options_.max_connections, options_.command_timeout_ms));
    }
    if (!idle_.empty()) {
      ContextPtr context = std::move(idle_.back());
      idle_.pop_back();
      return context;
    }
    ++open_;
  }
  absl::StatusOr<ContextPtr> context = NewConnection();
  if (!context.ok()) {
    absl::MutexLock lock(&mu_);
    --open_;
  }
  return context;
}

void RedisClient::Release(ContextPtr context) {
  absl::MutexLock lock(&mu_);
  if (context == nullptr) {
    --open_;
    return;
  }
  idle_.push_back(std::move(context));
}

absl::StatusOr<RedisReplyPtr> RedisClient::RunOnce(const std::vector<std::string>& args,
                                                   int64_t block_ms, absl::string_view what) {
  absl::StatusOr<ContextPtr> acquired = Acquire();
  if (!acquired.ok()) return Annotate(acquired.status(), absl::StrCat("redis ", what));
  ContextPtr context = std::move(acquired).value();
  if (block_ms > 0 && redisSetTimeout(context.get(), ToTimeval(options_.command_timeout_ms +
                                                               block_ms)) != REDIS_OK) {
    std::string error = context->errstr;
    Release(nullptr);
    return absl::UnavailableError(
        absl::StrCat("redis ", what, " on ", address_, ": setting the socket timeout: ", error));
  }
  std::vector<const char*> argv;
  std::vector<size_t> lengths;
  argv.reserve(args.size());
  lengths.reserve(args.size());
  for (const std::string& arg : args) {
    argv.push_back(arg.data());
    lengths.push_back(arg.size());
  }
  RedisReplyPtr reply(static_cast<redisReply*>(
      redisCommandArgv(context.get(), static_cast<int>(argv.size()), argv.data(), lengths.data())));
  if (reply == nullptr || context->err != 0) {
    // hiredis leaves a context unusable after any I/O or protocol error.
    std::string error = context->err != 0 ? context->errstr : "no reply";
    if (context->err == REDIS_ERR_IO && error.empty()) error = "I/O error";
    Release(nullptr);
    return absl::UnavailableError(absl::StrCat("redis ", what, " on ", address_, ": ", error));
  }
  if (block_ms > 0 &&
      redisSetTimeout(context.get(), ToTimeval(options_.command_timeout_ms)) != REDIS_OK) {
    Release(nullptr);
    return reply;
  }
  Release(std::move(context));
  return reply;
}

absl::StatusOr<RedisReplyPtr> RedisClient::CommandAllowingErrorReply(
    const std::vector<std::string>& args, Retry retry, int64_t block_ms) {
  const std::string what = args.empty() ? "" : args[0];
  absl::StatusOr<RedisReplyPtr> reply = RunOnce(args, block_ms, what);
  if (reply.ok() || retry == Retry::kNever || !absl::IsUnavailable(reply.status())) return reply;
  // Once more on a fresh connection: the failed one may have been closed by
  // a server restart while it sat in the pool.
  return RunOnce(args, block_ms, what);
}

absl::StatusOr<RedisReplyPtr> RedisClient::Command(const std::vector<std::string>& args,
                                                   Retry retry, int64_t block_ms) {
  ASSIGN_OR_RETURN(RedisReplyPtr reply, CommandAllowingErrorReply(args, retry, block_ms));
  if (reply->type == REDIS_REPLY_ERROR) {
    return absl::InternalError(
        absl::StrCat("redis ", args[0], " on ", address_, ": ", ReplyString(reply.get())));
  }
  return reply;
}

absl::StatusOr<std::string> RedisClient::LoadScript(const RedisScript& script) {
  ASSIGN_OR_RETURN(RedisReplyPtr reply,
                   CommandAllowingErrorReply({"SCRIPT", "LOAD", script.source}, Retry::kSafe));
  if (reply->type != REDIS_REPLY_STRING) {
    return absl::InternalError(absl::StrCat("redis SCRIPT LOAD ", script.name, " on ", address_,
                                            ": ", DescribeReply(reply.get())));
  }
  std::string sha = ReplyString(reply.get());
  absl::MutexLock lock(&mu_);
  script_shas_[script.name] = sha;
  return sha;
}

absl::StatusOr<RedisReplyPtr> RedisClient::Eval(const RedisScript& script,
                                                const std::vector<std::string>& keys,
                                                const std::vector<std::string>& args, Retry retry) {
  std::string sha;
  {
    absl::MutexLock lock(&mu_);
    auto it = script_shas_.find(script.name);
    if (it != script_shas_.end()) sha = it->second;
  }
  if (sha.empty()) {
    ASSIGN_OR_RETURN(sha, LoadScript(script));
  }
  const std::string what = absl::StrCat("EVALSHA ", script.name);
  for (int attempt = 0; attempt < 2; ++attempt) {
    std::vector<std::string> argv = {"EVALSHA", sha, absl::StrCat(keys.size())};
    argv.insert(argv.end(), keys.begin(), keys.end());
    argv.insert(argv.end(), args.begin(), args.end());
    absl::StatusOr<RedisReplyPtr> reply = RunOnce(argv, 0, what);
    if (!reply.ok() && retry == Retry::kSafe && absl::IsUnavailable(reply.status())) {
      reply = RunOnce(argv, 0, what);
    }
    if (!reply.ok()) return reply.status();
    if ((*reply)->type != REDIS_REPLY_ERROR) return reply;
    std::string error = ReplyString(reply->get());
    // The script did not run, so loading it and running again is safe.
    if (attempt == 0 && absl::StartsWith(error, "NOSCRIPT")) {
      ASSIGN_OR_RETURN(sha, LoadScript(script));
      continue;
    }
    return absl::InternalError(absl::StrCat("redis ", what, " on ", address_, ": ", error));
  }
  return absl::InternalError(
      absl::StrCat("redis ", what, " on ", address_, ": NOSCRIPT after SCRIPT LOAD"));
}

absl::StatusOr<int64_t> ReplyInteger(const redisReply* reply, absl::string_view what) {
  if (reply == nullptr || reply->type != REDIS_REPLY_INTEGER) {
    return absl::InternalError(
        absl::StrCat("redis ", what, ": expected an integer reply, got ", DescribeReply(reply)));
  }
  return reply->integer;
}

absl::StatusOr<int64_t> ReplyNumber(const redisReply* reply, absl::string_view what) {
  if (reply != nullptr && reply->type == REDIS_REPLY_INTEGER) return reply->integer;
  int64_t value = 0;
  if (reply != nullptr && reply->type == REDIS_REPLY_STRING &&
      absl::SimpleAtoi(absl::string_view(reply->str, reply->len), &value)) {
    return value;
  }
  return absl::InternalError(
      absl::StrCat("redis ", what, ": expected a number, got ", DescribeReply(reply)));
}

std::string ReplyString(const redisReply* reply) {
  if (reply == nullptr || reply->str == nullptr) return "";
  return std::string(reply->str, reply->len);
}

std::string DescribeReply(const redisReply* reply) {
  if (reply == nullptr) return "no reply";
  switch (reply->type) {
    case REDIS_REPLY_STRING:
      return absl::StrCat("string(", reply->len, " bytes)");
    case REDIS_REPLY_ARRAY:
      return absl::StrCat("array(", reply->elements, ")");
    case REDIS_REPLY_INTEGER:
      return absl::StrCat("integer ", reply->integer);
    case REDIS_REPLY_NIL:
      return "nil";
    case REDIS_REPLY_STATUS:
      return absl::StrCat("status ", ReplyString(reply));
    case REDIS_REPLY_ERROR:
      return absl::StrCat("error ", ReplyString(reply));
  }
  return absl::StrCat("reply type ", reply->type);
}

}  // namespace flotilla::kv
