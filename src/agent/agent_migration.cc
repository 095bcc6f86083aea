// Migration on the agent's side: checkpoint a running attempt and stream its
// image to the target (source), restore it paused and resume it once the
// manager has switched the execution (target), snapshots.
//
// Exactly one copy is live at any time: the source is paused and frozen from
// its checkpoint until the manager's verdict; the target's copy stays paused
// until the manager says it owns the execution. Every failure before that
// verdict resumes the source; a source that hears nothing resumes by itself
// after kVerdictTimeout (the manager cancels it through ReportStatus if the
// execution had moved after all).
#include <grpcpp/grpcpp.h>
#include <sys/stat.h>
#include <unistd.h>

#include <filesystem>
#include <fstream>
#include <thread>

#include "absl/strings/str_cat.h"
#include "agent/agent.h"

#include "auth/migration_token.h"
#include "auth/pki.h"
#include "agent/agent_task.h"
#include "checkpoint/image_auth.h"
#include "checkpoint/image_sweep.h"
#include "common/clock.h"
#include "common/ids.h"
#include "common/logging.h"
#include "common/status_macros.h"
#include "wire/channel.h"
#include "wire/convert.h"
#include "wire/grpc_status.h"

namespace flotilla::agent {

namespace {

constexpr auto kVerdictTimeout = std::chrono::seconds(60);
constexpr auto kTransferTimeout = std::chrono::seconds(300);
constexpr size_t kImageChunk = 1 << 20;
// Images and snapshots older than this are leftovers (a crash, a snapshot
// nobody fetched): far longer than kTransferTimeout + kVerdictTimeout.
constexpr auto kImageRetention = std::chrono::minutes(30);

// The one key that authenticates a migration's image between the source
// and the target agent (checkpoint/image_auth.h): the manager's migration
// token for this stream (auth/migration_token.h), which only the manager,
// the source and the target see (over mutual TLS), and which the target has
// verified before it reads the image. A node in development mode
// (transport.insecure) gets no token; its key is derived from values both
// agents know, which still catches corrupt, truncated and stale images and
// images of another attempt, but not a forger who knows the ids.
std::string MigrationImageKey(const std::string& token, const std::string& execution_id,
                              uint32_t attempt) {
  if (!token.empty()) return token;
  return absl::StrCat("flotilla-insecure-migration/", execution_id, "/", attempt);
}

void SweepLeftoverImages(const std::string& root) {
  auto removed = checkpoint::SweepImages(root, std::chrono::system_clock::now(), kImageRetention);
  if (!removed.ok()) {
    spdlog::warn("sweeping old checkpoint images in {}: {}", root, removed.status().message());
  } else if (*removed > 0) {
    spdlog::info("removed {} checkpoint image(s) older than {} min from {}", *removed,
                 kImageRetention.count(), root);
  }
}

std::string Key(const std::string& id, uint32_t attempt) { return absl::StrCat(id, "/", attempt); }

int64_t MicrosSince(std::chrono::steady_clock::time_point t) {
  return std::chrono::duration_cast<std::chrono::microseconds>(std::chrono::steady_clock::now() - t)
      .count();
}

bool SafeName(const std::string& s) {
  if (s.empty() || s.size() > 128) return false;
  for (char c : s) {
    if (!isalnum(static_cast<unsigned char>(c)) && c != '-' && c != '_' && c != '.') return false;
  }
  return s != "." && s != "..";
}

// A path inside the image directory: relative, no "..", no empty parts.
bool SafeRelativePath(const std::string& p) {
  if (p.empty() || p.front() == '/' || p.size() > 1024) return false;
  for (const auto& part : std::filesystem::path(p)) {
    if (part == ".." || part == "." || part.empty()) return false;
  }
  return true;
}

// What a failed checkpoint left of the task, for its error. DataLoss: the
// checkpointer's tool was killed and the task died with it (see
// checkpoint/checkpointer.h), or the guest broke its protocol; either way
// its own run reports it as failed.
std::string AfterFailedCheckpoint(const absl::Status& st) {
  return absl::IsDataLoss(st) ? " (the task did not survive it)" : " (the task carries on)";
}

}  // namespace

struct Agent::Incoming {
  std::string migration_id;
  std::shared_ptr<Task> task;
  std::string image_dir;
  // guarded by Agent::mu_
  bool restored = false;  // the copy exists, paused
  bool failed = false;    // RunRestored ended before restoring; error says why
  absl::Status error;
  int64_t restore_us = 0;
  bool decided = false;
  bool go = false;
};

std::string Agent::ImageRoot() const {
  return config_.checkpoint.image_dir.empty() ? config_.work_dir + "/checkpoints"
                                              : config_.checkpoint.image_dir;
}

// ------------------------------------------------------------------ source

absl::StatusOr<v1::MigrateTaskResponse> Agent::MigrateTask(const v1::MigrateTaskRequest& req) {
  if (!SafeName(req.migration_id())) {
    return absl::InvalidArgumentError("MigrateTask needs a migration id of [A-Za-z0-9._-]");
  }
  if (req.target_address().empty()) return absl::InvalidArgumentError("MigrateTask needs a target");
  const std::string key = Key(req.execution_id(), req.attempt());
  const bool faults = config_.checkpoint.fault_injection;
  std::shared_ptr<Task> task;
  {
    std::lock_guard<std::mutex> lock(mu_);
    auto it = tasks_.find(key);
    if (it == tasks_.end() || it->second->finished) {
      return absl::NotFoundError(
          absl::StrCat("attempt ", key, " is not running on node ", config_.node_id));
    }
    task = it->second;
    if (outgoing_.count(req.migration_id())) {
      return absl::AlreadyExistsError(absl::StrCat("migration ", req.migration_id(), " is under way"));
    }
  }
  SweepLeftoverImages(ImageRoot());
  std::error_code ec;
  std::filesystem::create_directories(ImageRoot(), ec);
  const std::string dir = absl::StrCat(ImageRoot(), "/", req.migration_id(), ".out");
  std::filesystem::remove_all(dir, ec);

  v1::MigrateTaskResponse resp;
  auto t0 = std::chrono::steady_clock::now();
  absl::StatusOr<sandbox::TaskCheckpoint> taken = sandbox_->Checkpoint(key, dir);
  if (!taken.ok()) {
    return Annotate(taken.status(), absl::StrCat("checkpoint of ", key, " on ", config_.node_id,
                                                 AfterFailedCheckpoint(taken.status())));
  }
  sandbox::TaskCheckpoint cp = std::move(*taken);
  resp.set_image_bytes(cp.image_bytes);
  resp.set_checkpoint_us(MicrosSince(t0));
  {
    std::lock_guard<std::mutex> lock(mu_);
    task->held = true;
  }
  // From here the source is held: every way out below resumes it unless the
  // target has a restored copy.
  auto give_up = [&](absl::Status why) {
    {
      std::lock_guard<std::mutex> lock(mu_);
      task->held = false;
    }
    if (absl::Status st = sandbox_->EndCheckpoint(key, false); !st.ok()) {
      spdlog::warn("[{}] resuming after a failed migration: {}", key, st.message());
    }
    std::filesystem::remove_all(dir, ec);
    spdlog::warn("[{}] migration {} to {} failed, the task carries on here: {}", key,
                 req.migration_id(), req.target_node_id(), why.message());
    return why;
  };
  if (faults && req.fail_after() == "checkpoint") {
    return give_up(absl::InternalError("fault injected after the checkpoint"));
  }
  if (absl::Status st =
          checkpoint::SignImage(
              dir, MigrationImageKey(req.token(), req.execution_id(), req.attempt()));
      !st.ok()) {
    return give_up(Annotate(st, "signing the image"));
  }
  if (auto bytes = checkpoint::ImageBytes(dir); bytes.ok()) cp.image_bytes = *bytes;
  resp.set_image_bytes(cp.image_bytes);

  auto t1 = std::chrono::steady_clock::now();
  auto stub = v1::AgentService::NewStub(
      wire::NewChannel(req.target_address(), {.max_send_bytes = 64 << 20},
                       peer_credentials_.credentials,
                       config_.transport.insecure ? "" : auth::NodeName(req.target_node_id())));
  grpc::ClientContext ctx;
  ctx.set_deadline(std::chrono::system_clock::now() + kTransferTimeout);
  v1::RestoreTaskResponse restored;
  auto writer = stub->RestoreTask(&ctx, &restored);
  v1::RestoreTaskChunk head;
  auto* h = head.mutable_header();
  h->set_migration_id(req.migration_id());
  h->set_execution_id(req.execution_id());
  h->set_attempt(req.attempt());
  *h->mutable_request() = task->request;
  h->set_source_node_id(config_.node_id);
  h->set_token(req.token());
  h->set_stdout(cp.stdout_data);
  h->set_stderr(cp.stderr_data);
  h->set_memory_limit_bytes(cp.memory_limit_bytes);
  h->set_cpu_limit_millis(cp.cpu_limit_millis);
  h->set_image_bytes(cp.image_bytes);
  if (faults && req.fail_after() == "restore") h->set_fail_after("restore");
  bool sent = writer->Write(head);
  int files = 0;
  std::string buf(kImageChunk, '\0');
  for (auto it = std::filesystem::recursive_directory_iterator(dir, ec);
       sent && it != std::filesystem::recursive_directory_iterator(); it.increment(ec)) {
    if (ec) break;
    if (!it->is_regular_file()) continue;
    if (faults && req.fail_after() == "transfer" && ++files > 1) {
      ctx.TryCancel();  // the target sees a broken stream half-way
      sent = false;
      break;
    }
    const std::string rel = std::filesystem::relative(it->path(), dir).string();
    struct stat st {};
    stat(it->path().c_str(), &st);
    std::ifstream in(it->path(), std::ios::binary);
    bool first = true;
    while (sent && (first || in)) {
      in.read(buf.data(), static_cast<std::streamsize>(buf.size()));
      const auto n = in.gcount();
      if (n <= 0 && !first) break;
      v1::RestoreTaskChunk c;
      c.mutable_file()->set_path(rel);
      c.mutable_file()->set_mode(st.st_mode & 07777);
      c.mutable_file()->set_data(buf.data(), static_cast<size_t>(std::max<std::streamsize>(n, 0)));
      sent = writer->Write(c);
      first = false;
    }
  }
  if (ec) sent = false;
  if (sent) writer->WritesDone();
  grpc::Status st = writer->Finish();
  resp.set_transfer_us(MicrosSince(t1) - restored.restore_us());
  resp.set_restore_us(restored.restore_us());
  if (!sent || !st.ok()) {
    absl::Status why = st.ok() ? absl::UnavailableError("the image stream broke")
                               : wire::FromGrpcStatus(st, "RestoreTask on " + req.target_node_id());
    if (ec) why = absl::InternalError(absl::StrCat("reading the image: ", ec.message()));
    return give_up(why);
  }
  std::filesystem::remove_all(dir, ec);  // the target has its own copy now
  {
    std::lock_guard<std::mutex> lock(mu_);
    outgoing_[req.migration_id()] = Outgoing{key, false};
  }
  // The manager decides; a verdict that never comes resumes the source.
  SpawnWorker([this, id = req.migration_id(), key] {
    std::unique_lock<std::mutex> lock(mu_);
    cv_.wait_for(lock, kVerdictTimeout, [&] {
      auto it = outgoing_.find(id);
      return stopping_ || it == outgoing_.end() || it->second.decided;
    });
    auto it = outgoing_.find(id);
    if (it == outgoing_.end() || it->second.decided) return;
    outgoing_.erase(it);
    if (auto t = tasks_.find(key); t != tasks_.end()) t->second->held = false;
    lock.unlock();
    spdlog::warn("[{}] no verdict on migration {} in {} s: the task carries on here", key, id,
                 kVerdictTimeout.count());
    (void)sandbox_->EndCheckpoint(key, false);
  });
  spdlog::info("[{}] checkpointed ({} bytes in {} ms) and restored on {} ({} ms); held for the "
               "manager's verdict",
               key, resp.image_bytes(), resp.checkpoint_us() / 1000, req.target_node_id(),
               resp.restore_us() / 1000);
  return resp;
}

absl::Status Agent::FinishMigration(const v1::FinishMigrationRequest& req) {
  std::unique_lock<std::mutex> lock(mu_);
  if (auto out = outgoing_.find(req.migration_id()); out != outgoing_.end()) {
    const std::string key = out->second.key;
    out->second.decided = true;
    outgoing_.erase(out);
    cv_.notify_all();
    auto t = tasks_.find(key);
    if (t != tasks_.end()) t->second->held = false;
    if (req.moved() && t != tasks_.end()) {
      t->second->migrated = true;
      t->second->moved_to = "another node";
    }
    lock.unlock();
    // Killing the held copy makes its Run return; FinishTask drops it.
    return sandbox_->EndCheckpoint(key, req.moved());
  }
  auto in = incoming_.find(req.migration_id());
  if (in == incoming_.end()) {
    return absl::NotFoundError(absl::StrCat("no migration ", req.migration_id(), " on node ",
                                            config_.node_id));
  }
  std::shared_ptr<Incoming> inc = in->second;
  if (!inc->restored || inc->decided) {
    return absl::FailedPreconditionError(
        absl::StrCat("migration ", req.migration_id(), " has no restored copy waiting here"));
  }
  inc->decided = true;
  inc->go = req.moved();
  if (req.moved()) {
    // From now on the node runs the attempt like any other: it is reported,
    // reserved, sampled, and its result goes to the manager.
    const std::string key = Key(inc->task->id, inc->task->attempt);
    tasks_[key] = inc->task;
    reserved_ += inc->task->resources;
    ++running_threads_;
  }
  cv_.notify_all();
  return absl::OkStatus();
}

// ------------------------------------------------------------------ target

absl::Status Agent::CheckMigrationToken(const v1::RestoreTaskHeader& h, const std::string& source) {
  if (h.source_node_id() != source) {
    return absl::PermissionDeniedError(absl::StrCat(
        "RestoreTask: node ", source, " may not send an image as node '", h.source_node_id(), "'"));
  }
  std::string key;
  {
    std::lock_guard<std::mutex> lock(mu_);
    key = migration_key_;
  }
  const int64_t now = NowUnixMs();
  auto claims = auth::VerifyMigrationToken(key, h.token(), now);
  if (!claims.ok()) return Annotate(claims.status(), "RestoreTask");
  if (claims->target_node_id() != config_.node_id || claims->source_node_id() != source ||
      claims->migration_id() != h.migration_id() || claims->execution_id() != h.execution_id() ||
      claims->attempt() != h.attempt()) {
    return absl::PermissionDeniedError(absl::StrCat(
        "RestoreTask: the migration token is for ", claims->migration_id(), " (",
        claims->execution_id(), " attempt ", claims->attempt(), ", ", claims->source_node_id(),
        " to ", claims->target_node_id(), "), not this stream"));
  }
  if (!used_tokens_.Use(claims->migration_id(), claims->expires_unix_ms(), now)) {
    return absl::PermissionDeniedError(absl::StrCat(
        "RestoreTask: the migration token of ", claims->migration_id(), " was used already"));
  }
  return absl::OkStatus();
}

absl::StatusOr<v1::RestoreTaskResponse> Agent::RestoreTask(
    const std::function<bool(v1::RestoreTaskChunk*)>& next, const std::string& source) {
  v1::RestoreTaskChunk chunk;
  if (!next(&chunk) || !chunk.has_header()) {
    return absl::InvalidArgumentError("RestoreTask: the first message must be the header");
  }
  const v1::RestoreTaskHeader h = chunk.header();
  if (!config_.transport.insecure) RETURN_IF_ERROR(CheckMigrationToken(h, source));
  if (!SafeName(h.migration_id()) || h.execution_id().empty() || h.attempt() == 0) {
    return absl::InvalidArgumentError("RestoreTask: the header needs a migration id, an execution "
                                      "id and an attempt");
  }
  SweepLeftoverImages(ImageRoot());
  std::error_code ec;
  std::filesystem::create_directories(ImageRoot(), ec);
  const std::string dir = absl::StrCat(ImageRoot(), "/", h.migration_id(), ".in");
  std::filesystem::remove_all(dir, ec);
  if (!std::filesystem::create_directory(dir, ec)) {
    return absl::InternalError(absl::StrCat("RestoreTask: mkdir ", dir, ": ", ec.message()));
  }
  auto cleanup = [&](absl::Status st) {
    std::filesystem::remove_all(dir, ec);
    return st;
  };
  // The image's files, in order; a new path starts a new file.
  std::ofstream out;
  std::string current;
  int64_t received = 0;
  while (next(&chunk)) {
    if (!chunk.has_file()) return cleanup(absl::InvalidArgumentError("RestoreTask: a second header"));
    const auto& f = chunk.file();
    if (!SafeRelativePath(f.path())) {
      return cleanup(absl::InvalidArgumentError(
          absl::StrCat("RestoreTask: the image names a path outside it: '", f.path(), "'")));
    }
    if (received + static_cast<int64_t>(f.data().size()) > h.image_bytes()) {
      return cleanup(absl::InvalidArgumentError(absl::StrCat(
          "RestoreTask: the image stream is longer than the ", h.image_bytes(), " bytes announced")));
    }
    if (f.path() != current) {
      out.close();
      const std::filesystem::path p = std::filesystem::path(dir) / f.path();
      std::filesystem::create_directories(p.parent_path(), ec);
      out.open(p, std::ios::binary | std::ios::trunc);
      if (!out) return cleanup(absl::InternalError(absl::StrCat("RestoreTask: cannot write ", p.string())));
      chmod(p.c_str(), f.mode() & 0777);
      current = f.path();
    }
    out.write(f.data().data(), static_cast<std::streamsize>(f.data().size()));
    received += static_cast<int64_t>(f.data().size());
  }
  out.close();
  if (!out.good() && !current.empty()) {
    return cleanup(absl::DataLossError("RestoreTask: writing the image failed"));
  }
  if (received != h.image_bytes()) {
    // A broken stream (the source gave up, or the network) ends the reads early.
    return cleanup(absl::DataLossError(absl::StrCat(
        "RestoreTask: the image stream ended after ", received, " of ", h.image_bytes(), " bytes")));
  }
  // Nothing of the image is used before it is known to be the source's.
  if (absl::Status st =
          checkpoint::VerifyImage(
              dir, MigrationImageKey(h.token(), h.execution_id(), h.attempt()));
      !st.ok()) {
    return cleanup(Annotate(st, "RestoreTask"));
  }

  auto task = std::make_shared<Task>();
  task->id = h.execution_id();
  task->attempt = h.attempt();
  task->request = h.request();
  task->resources = wire::FromProto(h.request().resources());
  auto inc = std::make_shared<Incoming>();
  inc->migration_id = h.migration_id();
  inc->task = task;
  inc->image_dir = dir;
  {
    std::lock_guard<std::mutex> lock(mu_);
    if (stopping_) return cleanup(absl::UnavailableError("the agent is shutting down"));
    if (tasks_.count(Key(task->id, task->attempt)) || incoming_.count(h.migration_id())) {
      return cleanup(absl::AlreadyExistsError(absl::StrCat(
          "attempt ", Key(task->id, task->attempt), " is already on node ", config_.node_id)));
    }
    incoming_[h.migration_id()] = inc;
  }
  sandbox::TaskSpec spec = SpecFor(*task, task->request);
  sandbox::TaskCheckpoint from;
  from.image_dir = dir;
  from.image_bytes = received;
  from.stdout_data = h.stdout();
  from.stderr_data = h.stderr();
  from.memory_limit_bytes = h.memory_limit_bytes();
  from.cpu_limit_millis = h.cpu_limit_millis();
  SpawnWorker([this, task, inc, spec = std::move(spec), from = std::move(from)]() mutable {
    RunRestoredTask(task, inc, std::move(spec), std::move(from));
  });

  std::unique_lock<std::mutex> lock(mu_);
  cv_.wait(lock, [&] { return inc->restored || inc->failed; });
  if (inc->failed) return inc->error;
  if (config_.checkpoint.fault_injection && h.fail_after() == "restore") {
    inc->decided = true;
    inc->go = false;
    cv_.notify_all();
    return absl::InternalError("fault injected after the restore");
  }
  v1::RestoreTaskResponse resp;
  resp.set_restore_us(inc->restore_us);
  spdlog::info("[{}] restored from {} ({} bytes, {} ms); paused until the manager switches it here",
               Key(task->id, task->attempt), h.source_node_id(), received, inc->restore_us / 1000);
  return resp;
}

void Agent::RunRestoredTask(std::shared_ptr<Task> task, std::shared_ptr<Incoming> inc,
                            sandbox::TaskSpec spec, sandbox::TaskCheckpoint from) {
  const auto t0 = std::chrono::steady_clock::now();
  const int64_t started = NowUnixMs();
  // Called once the copy exists: report it, then wait for the verdict.
  auto go = [&]() {
    std::unique_lock<std::mutex> lock(mu_);
    inc->restored = true;
    inc->restore_us = MicrosSince(t0);
    cv_.notify_all();
    cv_.wait_for(lock, kVerdictTimeout, [&] { return inc->decided || stopping_; });
    if (!inc->decided) {
      inc->decided = true;
      spdlog::warn("[{}] no verdict on migration {}: discarding the restored copy", spec.id,
                   inc->migration_id);
    }
    return inc->go;
  };
  Sink sink(this, *task);
  absl::StatusOr<sandbox::TaskOutcome> outcome =
      sandbox_->RunRestored(spec, from, [&] {
        const bool ok = go();
        if (ok && sampler_) {
          sampler_->Track(spec.id, task->id, task->attempt, task->resources.memory_bytes);
        }
        return ok;
      }, sink, task->cancel);
  if (sampler_) sampler_->Untrack(spec.id);
  std::error_code ec;
  std::filesystem::remove_all(inc->image_dir, ec);
  bool went;
  {
    std::lock_guard<std::mutex> lock(mu_);
    incoming_.erase(inc->migration_id);
    went = inc->go;
    if (!inc->restored) {
      inc->failed = true;
      inc->error = outcome.ok() ? absl::InternalError("the restore ended without a copy")
                                : outcome.status();
      cv_.notify_all();
      return;
    }
  }
  if (!went) return;  // discarded: it never ran here
  FinishTask(task, started, std::move(outcome));
}

// ---------------------------------------------------------------- snapshot

absl::StatusOr<v1::CheckpointTaskResponse> Agent::CheckpointTask(
    const v1::CheckpointTaskRequest& req) {
  std::string key;
  {
    std::lock_guard<std::mutex> lock(mu_);
    for (const auto& [k, t] : tasks_) {
      if (t->id == req.execution_id() && (req.attempt() == 0 || t->attempt == req.attempt()) &&
          !t->finished) {
        key = k;
      }
    }
  }
  if (key.empty()) {
    return absl::NotFoundError(
        absl::StrCat("execution ", req.execution_id(), " is not running on node ", config_.node_id));
  }
  SweepLeftoverImages(ImageRoot());
  std::error_code ec;
  std::filesystem::create_directories(ImageRoot(), ec);
  const std::string dir = absl::StrCat(ImageRoot(), "/", req.execution_id(), "-", NowUnixMs());
  absl::StatusOr<sandbox::TaskCheckpoint> taken = sandbox_->Checkpoint(key, dir);
  if (!taken.ok()) {
    return Annotate(taken.status(), absl::StrCat("checkpoint of ", key, " on ", config_.node_id,
                                                 AfterFailedCheckpoint(taken.status())));
  }
  const sandbox::TaskCheckpoint& cp = *taken;
  RETURN_IF_ERROR(sandbox_->EndCheckpoint(key, false));
  v1::CheckpointTaskResponse resp;
  resp.set_image_dir(cp.image_dir);
  resp.set_image_bytes(cp.image_bytes);
  resp.set_checkpoint_us(cp.checkpoint_us);
  spdlog::info("[{}] checkpoint taken: {} ({} bytes, {} ms); the task carries on", key,
               cp.image_dir, cp.image_bytes, cp.checkpoint_us / 1000);
  return resp;
}

}  // namespace flotilla::agent
