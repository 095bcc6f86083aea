#include "store/etcd/etcd_client.h"

#include <grpcpp/grpcpp.h>

#include <algorithm>
#include <atomic>
#include <condition_variable>
#include <mutex>
#include <thread>
#include <utility>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "absl/strings/escaping.h"
#include "etcd/rpc.grpc.pb.h"
#include "etcd/watch.grpc.pb.h"

namespace flotilla::etcd {

std::string PrefixEnd(const std::string& prefix) {
  std::string end = prefix;
  while (!end.empty()) {
    unsigned char last = static_cast<unsigned char>(end.back());
    if (last < 0xff) {
      end.back() = static_cast<char>(last + 1);
      return end;
    }
    end.pop_back();
  }
  // Every key: etcd reads "\0" as "to the end of the keyspace".
  return std::string(1, '\0');
}

Compare Compare::CreateRevisionIs(std::string key, int64_t rev) {
  return {std::move(key), Target::kCreateRevision, Result::kEqual, rev, ""};
}
Compare Compare::ModRevisionIs(std::string key, int64_t rev) {
  return {std::move(key), Target::kModRevision, Result::kEqual, rev, ""};
}
Compare Compare::ValueIs(std::string key, std::string value) {
  return {std::move(key), Target::kValue, Result::kEqual, 0, std::move(value)};
}
Compare Compare::Missing(std::string key) { return CreateRevisionIs(std::move(key), 0); }

Op Op::Put(std::string key, std::string value, int64_t lease) {
  return {Type::kPut, std::move(key), std::move(value), "", lease};
}
Op Op::Delete(std::string key, std::string range_end) {
  return {Type::kDelete, std::move(key), "", std::move(range_end), 0};
}
Op Op::Get(std::string key, std::string range_end) {
  return {Type::kRange, std::move(key), "", std::move(range_end), 0};
}

namespace {

namespace pb = ::etcdserverpb;
using Clock = std::chrono::steady_clock;

// The smallest share of a deadline one attempt gets: below it a healthy
// member cannot answer either.
constexpr std::chrono::milliseconds kMinAttempt{50};

KeyValue FromProto(const pb::KeyValue& kv) {
  return {kv.key(), kv.value(), kv.create_revision(), kv.mod_revision(), kv.version(), kv.lease()};
}

// Keys are bytes; errors show them printable.
std::string Printable(const std::string& key) {
  return absl::CHexEscape(key.size() > 200 ? key.substr(0, 200) + "..." : key);
}

void ToProto(const Compare& c, pb::Compare* out) {
  out->set_key(c.key);
  switch (c.result) {
    case Compare::Result::kEqual: out->set_result(pb::Compare::EQUAL); break;
    case Compare::Result::kGreater: out->set_result(pb::Compare::GREATER); break;
    case Compare::Result::kLess: out->set_result(pb::Compare::LESS); break;
    case Compare::Result::kNotEqual: out->set_result(pb::Compare::NOT_EQUAL); break;
  }
  switch (c.target) {
    case Compare::Target::kVersion:
      out->set_target(pb::Compare::VERSION);
      out->set_version(c.number);
      break;
    case Compare::Target::kCreateRevision:
      out->set_target(pb::Compare::CREATE);
      out->set_create_revision(c.number);
      break;
    case Compare::Target::kModRevision:
      out->set_target(pb::Compare::MOD);
      out->set_mod_revision(c.number);
      break;
    case Compare::Target::kValue:
      out->set_target(pb::Compare::VALUE);
      out->set_value(c.value);
      break;
    case Compare::Target::kLease:
      out->set_target(pb::Compare::LEASE);
      out->set_lease(c.number);
      break;
  }
}

void ToProto(const Op& op, pb::RequestOp* out) {
  switch (op.type) {
    case Op::Type::kPut: {
      pb::PutRequest* put = out->mutable_request_put();
      put->set_key(op.key);
      put->set_value(op.value);
      put->set_lease(op.lease);
      break;
    }
    case Op::Type::kDelete: {
      pb::DeleteRangeRequest* del = out->mutable_request_delete_range();
      del->set_key(op.key);
      del->set_range_end(op.range_end);
      break;
    }
    case Op::Type::kRange: {
      pb::RangeRequest* range = out->mutable_request_range();
      range->set_key(op.key);
      range->set_range_end(op.range_end);
      break;
    }
  }
}

bool Retryable(grpc::StatusCode code) {
  return code == grpc::StatusCode::UNAVAILABLE || code == grpc::StatusCode::DEADLINE_EXCEEDED;
}

class GrpcEtcdClient final : public EtcdClient {
 public:
  explicit GrpcEtcdClient(EtcdClientOptions options) : options_(std::move(options)) {
    grpc::ChannelArguments args;
    // A restarted member is found again within a second or so, not after
    // gRPC's default backoff of up to two minutes. (Lowering the initial and
    // minimum backoff as well made reconnects fail: gRPC takes the minimum as
    // its connect timeout.)
    args.SetInt(GRPC_ARG_MAX_RECONNECT_BACKOFF_MS, 1000);
    args.SetMaxReceiveMessageSize(-1);
    // The endpoint is our own choice per attempt; one subchannel per channel.
    for (const std::string& endpoint : options_.endpoints) {
      auto channel =
          grpc::CreateCustomChannel(endpoint, grpc::InsecureChannelCredentials(), args);
      members_.push_back({endpoint, pb::KV::NewStub(channel), pb::Lease::NewStub(channel),
                          pb::Watch::NewStub(channel), channel});
    }
  }

  absl::StatusOr<RangeResult> Range(const std::string& key, const std::string& range_end,
                                    int64_t limit, std::optional<Deadline> deadline) override {
    return DoRange(key, range_end, limit, /*keys_only=*/false, deadline);
  }

  absl::StatusOr<RangeResult> RangeKeys(const std::string& key, const std::string& range_end,
                                        int64_t limit, std::optional<Deadline> deadline) override {
    return DoRange(key, range_end, limit, /*keys_only=*/true, deadline);
  }

  absl::StatusOr<RangeResult> DoRange(const std::string& key, const std::string& range_end,
                                      int64_t limit, bool keys_only,
                                      std::optional<Deadline> deadline) {
    pb::RangeRequest req;
    req.set_key(key);
    req.set_range_end(range_end);
    req.set_limit(limit);
    req.set_keys_only(keys_only);
    pb::RangeResponse resp;
    absl::Status status = Call("range", key, deadline, [&](Member& m, grpc::ClientContext* ctx) {
      return m.kv->Range(ctx, req, &resp);
    });
    if (!status.ok()) return status;
    RangeResult out;
    out.revision = resp.header().revision();
    out.more = resp.more();
    out.kvs.reserve(resp.kvs_size());
    for (const pb::KeyValue& kv : resp.kvs()) out.kvs.push_back(FromProto(kv));
    return out;
  }

  absl::StatusOr<int64_t> Put(const std::string& key, const std::string& value, int64_t lease,
                              std::optional<Deadline> deadline) override {
    pb::PutRequest req;
    req.set_key(key);
    req.set_value(value);
    req.set_lease(lease);
    pb::PutResponse resp;
    absl::Status status = Call("put", key, deadline, [&](Member& m, grpc::ClientContext* ctx) {
      return m.kv->Put(ctx, req, &resp);
    });
    if (!status.ok()) return status;
    return resp.header().revision();
  }

  absl::StatusOr<int64_t> Delete(const std::string& key, const std::string& range_end,
                                 std::optional<Deadline> deadline) override {
    pb::DeleteRangeRequest req;
    req.set_key(key);
    req.set_range_end(range_end);
    pb::DeleteRangeResponse resp;
    absl::Status status = Call("delete", key, deadline, [&](Member& m, grpc::ClientContext* ctx) {
      return m.kv->DeleteRange(ctx, req, &resp);
    });
    if (!status.ok()) return status;
    return resp.deleted();
  }

  absl::StatusOr<TxnResult> Txn(const TxnRequest& txn, std::optional<Deadline> deadline) override {
    pb::TxnRequest req;
    for (const Compare& c : txn.compares) ToProto(c, req.add_compare());
    for (const Op& op : txn.success) ToProto(op, req.add_success());
    for (const Op& op : txn.failure) ToProto(op, req.add_failure());
    const std::string first_key =
        txn.success.empty() ? std::string() : txn.success.front().key;
    const std::string what = absl::StrCat("txn (", txn.compares.size(), " compares, ",
                                          txn.success.size(), " ops)");
    pb::TxnResponse resp;
    absl::Status status = Call(what, first_key, deadline, [&](Member& m, grpc::ClientContext* ctx) {
      return m.kv->Txn(ctx, req, &resp);
    });
    if (!status.ok()) return status;
    TxnResult out;
    out.succeeded = resp.succeeded();
    out.revision = resp.header().revision();
    for (const pb::ResponseOp& r : resp.responses()) {
      TxnResult::OpResult op;
      if (r.has_response_range()) {
        for (const pb::KeyValue& kv : r.response_range().kvs()) op.kvs.push_back(FromProto(kv));
      } else if (r.has_response_delete_range()) {
        op.deleted = r.response_delete_range().deleted();
      }
      out.responses.push_back(std::move(op));
    }
    return out;
  }

  absl::StatusOr<Lease> LeaseGrant(std::chrono::seconds ttl,
                                   std::optional<Deadline> deadline) override {
    pb::LeaseGrantRequest req;
    req.set_ttl(ttl.count());
    pb::LeaseGrantResponse resp;
    absl::Status status =
        Call("lease grant", "", deadline, [&](Member& m, grpc::ClientContext* ctx) {
          return m.lease->LeaseGrant(ctx, req, &resp);
        });
    if (!status.ok()) return status;
    if (!resp.error().empty()) {
      return absl::UnavailableError(absl::StrCat("etcd lease grant: ", resp.error()));
    }
    return Lease{resp.id(), resp.ttl()};
  }

  absl::Status LeaseRevoke(int64_t lease, std::optional<Deadline> deadline) override {
    pb::LeaseRevokeRequest req;
    req.set_id(lease);
    pb::LeaseRevokeResponse resp;
    absl::Status status = Call(absl::StrCat("lease revoke ", absl::Hex(lease)), "", deadline,
                               [&](Member& m, grpc::ClientContext* ctx) {
                                 return m.lease->LeaseRevoke(ctx, req, &resp);
                               });
    // Already expired (or revoked by an earlier attempt that timed out).
    if (status.code() == absl::StatusCode::kNotFound) return absl::OkStatus();
    return status;
  }

  absl::StatusOr<int64_t> LeaseKeepAliveOnce(int64_t lease,
                                             std::optional<Deadline> deadline) override {
    pb::LeaseKeepAliveResponse resp;
    const std::string what = absl::StrCat("lease keepalive ", absl::Hex(lease));
    absl::Status status = Call(what, "", deadline, [&](Member& m, grpc::ClientContext* ctx) {
      // One request, one response, on a stream of its own: the stream is
      // etcd's only keepalive API, and a fresh one per renewal keeps the
      // deadline and the failover of every other call.
      auto stream = m.lease->LeaseKeepAlive(ctx);
      pb::LeaseKeepAliveRequest req;
      req.set_id(lease);
      if (!stream->Write(req) || !stream->Read(&resp)) {
        stream->WritesDone();
        grpc::Status st = stream->Finish();
        if (st.ok()) return grpc::Status(grpc::StatusCode::UNAVAILABLE, "stream ended");
        return st;
      }
      ctx->TryCancel();
      stream->Finish();  // CANCELLED by us
      return grpc::Status::OK;
    });
    if (!status.ok()) return status;
    if (resp.ttl() <= 0) {
      return absl::NotFoundError(absl::StrCat("etcd lease ", absl::Hex(lease),
                                              " has expired or was revoked"));
    }
    return resp.ttl();
  }

  absl::StatusOr<WatchResult> Watch(const std::string& key, const std::string& range_end,
                                    int64_t start_revision, Deadline deadline,
                                    const std::atomic<bool>* cancel) override {
    const size_t idx = current_.load() % members_.size();
    Member& m = members_[idx];
    const std::string what = absl::StrCat("etcd watch ", Printable(key), " at ", m.endpoint);
    if (Clock::now() >= deadline) return WatchResult{};
    grpc::ClientContext ctx;
    ctx.set_deadline(std::chrono::system_clock::now() + (deadline - Clock::now()));
    // A member that does not confirm the watch within one endpoint's share
    // of the default timeout (as Call gives it) is taken for gone: a paused
    // one accepts the stream and never answers.
    const Deadline confirm_by =
        Clock::now() + std::max<Clock::duration>(
                           options_.default_timeout / static_cast<int64_t>(members_.size()),
                           kMinAttempt);
    std::atomic<bool> confirmed{false};
    // The sync stream cannot wait for `cancel` or the confirmation; a helper
    // cancels the call, and is joined before returning.
    std::mutex mu;
    std::condition_variable cv;
    bool done = false;
    std::thread canceller([&] {
      std::unique_lock<std::mutex> lock(mu);
      while (!done && !(cancel != nullptr && cancel->load()) && Clock::now() < deadline &&
             (confirmed.load() || Clock::now() < confirm_by)) {
        cv.wait_for(lock, std::chrono::milliseconds(50));
      }
      if (!done) ctx.TryCancel();
    });
    auto finish = [&] {
      {
        std::lock_guard<std::mutex> lock(mu);
        done = true;
      }
      cv.notify_all();
      if (canceller.joinable()) canceller.join();
    };
    std::unique_ptr<grpc::ClientReaderWriter<pb::WatchRequest, pb::WatchResponse>> stream =
        m.watch->Watch(&ctx);
    pb::WatchRequest req;
    pb::WatchCreateRequest* create = req.mutable_create_request();
    create->set_key(key);
    create->set_range_end(range_end);
    create->set_start_revision(start_revision);
    WatchResult out;
    bool created = false;
    pb::WatchResponse resp;
    bool wrote = stream->Write(req);
    while (wrote && stream->Read(&resp)) {
      if (resp.created()) {
        created = true;
        confirmed = true;
      }
      if (resp.compact_revision() > 0) {
        out.compacted = true;
        out.compact_revision = resp.compact_revision();
        break;
      }
      if (resp.canceled()) break;
      if (resp.events_size() > 0) {
        for (const pb::Event& e : resp.events()) {
          out.events.push_back({e.type() == pb::Event::DELETE ? WatchEvent::Type::kDelete
                                                              : WatchEvent::Type::kPut,
                                FromProto(e.kv())});
        }
        break;
      }
    }
    ctx.TryCancel();
    grpc::Status st = stream->Finish();
    finish();
    if (out.compacted || !out.events.empty()) return out;
    if (created) {
      // Confirmed, then ended: the deadline, `cancel`, or a member that went
      // away; the caller reads the key again in any case.
      if (st.error_code() == grpc::StatusCode::DEADLINE_EXCEEDED ||
          st.error_code() == grpc::StatusCode::CANCELLED || st.ok()) {
        return out;
      }
    } else if (cancel != nullptr && cancel->load()) {
      return out;
    } else if (Clock::now() >= confirm_by && Clock::now() < deadline) {
      current_.store((idx + 1) % members_.size());
      return absl::DeadlineExceededError(
          absl::StrCat(what, " was not confirmed within ",
                       std::chrono::duration_cast<std::chrono::milliseconds>(
                           options_.default_timeout / static_cast<int64_t>(members_.size()))
                           .count(),
                       " ms; is the member paused?"));
    }
    current_.store((idx + 1) % members_.size());
    const grpc::StatusCode code = st.ok() ? grpc::StatusCode::UNAVAILABLE : st.error_code();
    std::string message = absl::StrCat(what, created ? " ended: " : " was not confirmed: ",
                                       st.ok() ? std::string("stream closed") : st.error_message());
    if (code == grpc::StatusCode::DEADLINE_EXCEEDED) return absl::DeadlineExceededError(message);
    if (Retryable(code) || code == grpc::StatusCode::CANCELLED) {
      return absl::UnavailableError(message);
    }
    return absl::Status(static_cast<absl::StatusCode>(code), message);
  }

  std::vector<std::string> endpoints() const override { return options_.endpoints; }
  std::string current_endpoint() const override {
    return members_[current_.load() % members_.size()].endpoint;
  }

 private:
  struct Member {
    std::string endpoint;
    std::unique_ptr<pb::KV::Stub> kv;
    std::unique_ptr<pb::Lease::Stub> lease;
    std::unique_ptr<pb::Watch::Stub> watch;
    std::shared_ptr<grpc::Channel> channel;
  };

  template <typename Fn>
  absl::Status Call(const std::string& what, const std::string& key,
                    std::optional<Deadline> deadline, Fn&& fn) {
    const Deadline end = deadline.value_or(Clock::now() + options_.default_timeout);
    const size_t n = members_.size();
    const size_t start = current_.load();
    std::vector<std::string> errors;
    grpc::StatusCode last = grpc::StatusCode::DEADLINE_EXCEEDED;
    for (size_t k = 0; k < n; ++k) {
      const Deadline now = Clock::now();
      if (now >= end) break;
      const size_t idx = (start + k) % n;
      Member& m = members_[idx];
      // An equal share of what is left per untried endpoint.
      auto share = std::max<Clock::duration>((end - now) / static_cast<int64_t>(n - k), kMinAttempt);
      grpc::ClientContext ctx;
      // gRPC takes system_clock deadlines only.
      ctx.set_deadline(std::chrono::system_clock::now() + (std::min(end, now + share) - now));
      grpc::Status st = fn(m, &ctx);
      if (st.ok()) {
        current_.store(idx);
        return absl::OkStatus();
      }
      if (!Retryable(st.error_code())) {
        current_.store(idx);
        return absl::Status(static_cast<absl::StatusCode>(st.error_code()),
                            absl::StrCat("etcd ", what, key.empty() ? "" : " ",
                                         key.empty() ? "" : Printable(key), " at ", m.endpoint,
                                         ": ", st.error_message()));
      }
      last = st.error_code();
      errors.push_back(absl::StrCat(m.endpoint, ": ", st.error_message()));
      // The next call starts at the next endpoint too.
      current_.store((idx + 1) % n);
    }
    std::string message =
        absl::StrCat("etcd ", what, key.empty() ? "" : " ", key.empty() ? "" : Printable(key),
                     ": no endpoint answered in time (",
                     errors.empty() ? "deadline already passed" : absl::StrJoin(errors, "; "),
                     "); check that a quorum of etcd members is up and reachable");
    return last == grpc::StatusCode::UNAVAILABLE ? absl::UnavailableError(message)
                                                 : absl::DeadlineExceededError(message);
  }

  const EtcdClientOptions options_;
  std::vector<Member> members_;
  std::atomic<size_t> current_{0};
};

}  // namespace

absl::StatusOr<std::unique_ptr<EtcdClient>> EtcdClient::Create(EtcdClientOptions options) {
  if (options.endpoints.empty()) {
    return absl::InvalidArgumentError(
        "etcd client: no endpoint given; pass the client URLs of the etcd members as host:port");
  }
  for (std::string& e : options.endpoints) {
    // etcd's own flags name members by URL; gRPC wants host:port.
    if (e.rfind("http://", 0) == 0) e = e.substr(7);
    if (e.rfind("https://", 0) == 0) {
      return absl::InvalidArgumentError(absl::StrCat(
          "etcd client: endpoint ", e, " uses TLS, which this client does not speak yet"));
    }
    if (e.empty()) return absl::InvalidArgumentError("etcd client: an endpoint is empty");
  }
  if (options.default_timeout <= std::chrono::milliseconds(0)) {
    return absl::InvalidArgumentError("etcd client: default_timeout must be positive");
  }
  return std::unique_ptr<EtcdClient>(new GrpcEtcdClient(std::move(options)));
}

}  // namespace flotilla::etcd
