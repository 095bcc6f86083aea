#include "ha/election.h"

#include <algorithm>
#include <thread>
#include <utility>

#include "absl/base/thread_annotations.h"
#include "absl/strings/str_cat.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/time.h"
#include "common/logging.h"

namespace flotilla::ha {
namespace {

using Clock = std::chrono::steady_clock;
using std::chrono::milliseconds;

int64_t Ms(Clock::duration d) { return std::chrono::duration_cast<milliseconds>(d).count(); }

// "<len(id)>:<id><address>": any id, any address.
std::string EncodeLeaderValue(const std::string& id, const std::string& address) {
  return absl::StrCat(id.size(), ":", id, address);
}

}  // namespace

absl::StatusOr<LeaderInfo> DecodeLeaderValue(const std::string& value, int64_t epoch) {
  size_t colon = value.find(':');
  size_t len = 0;
  bool ok = colon != std::string::npos && colon > 0 && colon <= 10;
  for (size_t i = 0; ok && i < colon; ++i) {
    if (value[i] < '0' || value[i] > '9') ok = false;
    len = len * 10 + (value[i] - '0');
  }
  if (!ok || colon + 1 + len > value.size()) {
    return absl::DataLossError(
        "leader key holds no leader written by this version of Flotilla (expected "
        "\"<len>:<id><address>\")");
  }
  return LeaderInfo{value.substr(colon + 1, len), value.substr(colon + 1 + len), epoch};
}

class LeaderElection::Impl {
 public:
  Impl(std::shared_ptr<etcd::EtcdClient> client, ElectionOptions options)
      : client_(std::move(client)), options_(std::move(options)) {
    if (options_.ttl < milliseconds(1000)) options_.ttl = milliseconds(1000);
    if (options_.margin <= milliseconds(0)) options_.margin = options_.ttl / 5;
    if (options_.margin >= options_.ttl) options_.margin = options_.ttl / 2;
    if (options_.poll <= milliseconds(0))
      options_.poll = std::max(options_.ttl / 20, milliseconds(10));
  }

  ~Impl() {
    (void)Resign();
    JoinThread();
  }

  absl::StatusOr<Leadership> Campaign(const std::string& id, const std::string& address,
                                      LostCallback on_lost, const std::atomic<bool>* stop,
                                      etcd::Deadline deadline) {
    {
      absl::MutexLock lock(&mu_);
      if (leading_) {
        return absl::FailedPreconditionError(
            absl::StrCat("campaign of ", id, ": already leading at epoch ", leadership_.epoch));
      }
    }
    JoinThread();  // the thread of an earlier, lost leadership
    const std::string value = EncodeLeaderValue(id, address);
    absl::Status last = absl::DeadlineExceededError("no attempt made");
    auto stopped = [&] { return stop != nullptr && stop->load(); };
    while (!stopped() && Clock::now() < deadline) {
      absl::StatusOr<std::optional<Leadership>> won = TryOnce(id, address, value, deadline);
      if (won.ok() && won->has_value()) {
        StartLeading(**won, std::move(on_lost));
        return **won;
      }
      if (!won.ok()) {
        last = won.status();
        // A standby that cannot reach etcd can never take over: say so, once
        // every few seconds, instead of failing silently.
        if (Clock::now() >= next_complaint_) {
          spdlog::warn("election {}: campaign of {} failed (retrying): {}", options_.key, id,
                       last.message());
          next_complaint_ = Clock::now() + kComplaintInterval;
        }
      }
      WaitForVacancy(stop, deadline);
    }
    if (stopped()) return absl::CancelledError(absl::StrCat("campaign of ", id, " stopped"));
    return absl::DeadlineExceededError(
        absl::StrCat("campaign of ", id, " for ", options_.key,
                     " did not win before its deadline; last: ", last.message()));
  }

  bool IsLeader() const {
    absl::MutexLock lock(&mu_);
    // The deadline is checked here too: the renewal thread may be starved of
    // CPU past it, and a leader that might have lost must not act as one.
    return leading_ && Clock::now() < last_renewal_sent_ + options_.ttl - options_.margin;
  }

  std::optional<Leadership> leadership() const {
    absl::MutexLock lock(&mu_);
    if (!leading_) return std::nullopt;
    return leadership_;
  }

  absl::Status Resign() {
    Leadership held;
    {
      absl::MutexLock lock(&mu_);
      if (!leading_) return absl::OkStatus();
      leading_ = false;
      held = leadership_;
      stop_ = true;
      cv_.SignalAll();
    }
    if (std::this_thread::get_id() != thread_.get_id()) JoinThread();
    const etcd::Deadline deadline = Clock::now() + options_.ttl / 2;
    etcd::TxnRequest txn;
    txn.compares.push_back(etcd::Compare::CreateRevisionIs(held.key, held.epoch));
    txn.success.push_back(etcd::Op::Delete(held.key));
    absl::StatusOr<etcd::TxnResult> deleted = client_->Txn(txn, deadline);
    absl::Status revoked = client_->LeaseRevoke(held.lease_id, deadline);
    if (!deleted.ok()) return deleted.status();
    return revoked;
  }

  absl::StatusOr<std::optional<LeaderInfo>> Observe(std::optional<etcd::Deadline> deadline) {
    absl::StatusOr<etcd::RangeResult> r = client_->Range(options_.key, "", 0, deadline);
    if (!r.ok()) return r.status();
    if (r->kvs.empty()) return std::optional<LeaderInfo>();
    absl::StatusOr<LeaderInfo> info = DecodeLeaderValue(r->kvs[0].value, r->kvs[0].create_revision);
    if (!info.ok()) return info.status();
    return std::optional<LeaderInfo>(*std::move(info));
  }

 private:
  // One attempt: a fresh lease and "create the key if missing". nullopt if
  // someone else holds the key.
  absl::StatusOr<std::optional<Leadership>> TryOnce(const std::string& id,
                                                    const std::string& address,
                                                    const std::string& value,
                                                    etcd::Deadline deadline) {
    const etcd::Deadline call = std::min(deadline, Clock::now() + options_.ttl / 2);
    const auto ttl_s = std::chrono::ceil<std::chrono::seconds>(options_.ttl);
    const Clock::time_point sent = Clock::now();
    absl::StatusOr<etcd::Lease> lease = client_->LeaseGrant(ttl_s, call);
    if (!lease.ok()) return lease.status();
    etcd::TxnRequest txn;
    txn.compares.push_back(etcd::Compare::Missing(options_.key));
    txn.success.push_back(etcd::Op::Put(options_.key, value, lease->id));
    txn.failure.push_back(etcd::Op::Get(options_.key));
    absl::StatusOr<etcd::TxnResult> r = client_->Txn(txn, call);
    if (!r.ok()) {
      (void)client_->LeaseRevoke(lease->id, call);
      return r.status();
    }
    Leadership won{options_.key, 0, lease->id, id, address};
    if (r->succeeded) {
      won.epoch = r->revision;
    } else if (!r->responses.empty() && !r->responses[0].kvs.empty() &&
               r->responses[0].kvs[0].lease == lease->id) {
      // Our own put, applied by an attempt the client retried elsewhere.
      won.epoch = r->responses[0].kvs[0].create_revision;
    } else {
      (void)client_->LeaseRevoke(lease->id, call);
      return std::optional<Leadership>();
    }
    absl::MutexLock lock(&mu_);
    last_renewal_sent_ = sent;
    return std::optional<Leadership>(won);
  }

  // Returns once the key looks free, or on stop / deadline. Reads the key,
  // then watches it from just after that read: etcd tells of the delete (a
  // resignation, or the leader's lease expiring at etcd) as it happens, where
  // polling heard of it up to a poll interval later and cost a read every
  // interval. Each watch lasts at most ttl/2 (its deadline; then the key is
  // read again, which also finds a member that stopped answering after it
  // confirmed the watch: a paused one keeps the stream open and silent), and
  // if the watch cannot be set up the loop falls back to reading the key
  // every options_.poll.
  void WaitForVacancy(const std::atomic<bool>* stop, etcd::Deadline deadline) {
    auto stopped = [&] { return stop != nullptr && stop->load(); };
    while (!stopped() && Clock::now() < deadline) {
      absl::StatusOr<etcd::RangeResult> r =
          client_->Range(options_.key, "", 0, std::min(deadline, Clock::now() + options_.ttl / 2));
      if (r.ok() && r->kvs.empty()) return;
      if (!r.ok()) {
        Complain("cannot read the leader key", r.status());
        std::this_thread::sleep_until(std::min(deadline, Clock::now() + options_.poll));
        continue;
      }
      int64_t from = r->revision + 1;
      const etcd::Deadline slice_end =
          std::min(deadline, Clock::now() + std::min<Clock::duration>(options_.ttl / 2, kWatchSlice));
      while (!stopped() && Clock::now() < slice_end) {
        absl::StatusOr<etcd::WatchResult> w =
            client_->Watch(options_.key, "", from, slice_end, stop);
        if (!w.ok()) {
          Complain("cannot watch the leader key (polling instead)", w.status());
          std::this_thread::sleep_until(std::min(slice_end, Clock::now() + options_.poll));
          break;
        }
        if (w->compacted) break;  // read it again
        for (const etcd::WatchEvent& e : w->events) {
          if (e.type == etcd::WatchEvent::Type::kDelete) return;
          from = e.kv.mod_revision + 1;
        }
        if (w->events.empty()) break;  // the slice is over (or stop)
      }
    }
  }

  void Complain(const char* what, const absl::Status& why) {
    if (Clock::now() < next_complaint_) return;
    spdlog::warn("election {}: {} (retrying): {}", options_.key, what, why.message());
    next_complaint_ = Clock::now() + kComplaintInterval;
  }

  void StartLeading(const Leadership& won, LostCallback on_lost) {
    {
      absl::MutexLock lock(&mu_);
      leading_ = true;
      stop_ = false;
      leadership_ = won;
    }
    spdlog::info("election {}: {} leads at epoch {} (lease {:x}, ttl {} ms)", won.key,
                 won.candidate_id, won.epoch, won.lease_id, Ms(options_.ttl));
    thread_ = std::thread([this, won, on_lost = std::move(on_lost)] { Renew(won, on_lost); });
  }

  void Renew(const Leadership& held, const LostCallback& on_lost) {
    const auto interval = options_.ttl / 3;
    const auto give_up_after = options_.ttl - options_.margin;
    Clock::time_point next = Clock::now() + interval;
    absl::Status why;
    mu_.Lock();
    while (true) {
      Clock::time_point give_up = last_renewal_sent_ + give_up_after;
      const Clock::time_point wake = std::min(next, give_up);
      while (!stop_ && Clock::now() < wake) {
        cv_.WaitWithTimeout(&mu_, absl::FromChrono(wake - Clock::now()));
      }
      if (stop_) {
        mu_.Unlock();
        return;
      }
      const Clock::time_point now = Clock::now();
      if (now >= give_up) {
        why = absl::UnavailableError(absl::StrCat(
            "lost leadership of ", held.key, " at epoch ", held.epoch, ": no lease renewal for ",
            Ms(now - last_renewal_sent_), " ms (ttl ", Ms(options_.ttl), " ms, margin ",
            Ms(options_.margin), " ms); etcd unreachable?"));
        break;
      }
      if (now < next) continue;
      mu_.Unlock();
      const etcd::Deadline call = std::min(give_up, now + interval);
      absl::StatusOr<int64_t> ttl = client_->LeaseKeepAliveOnce(held.lease_id, call);
      absl::StatusOr<etcd::RangeResult> key;
      if (ttl.ok()) key = client_->Range(held.key, "", 0, call);
      mu_.Lock();
      if (stop_) {
        mu_.Unlock();
        return;
      }
      if (ttl.status().code() == absl::StatusCode::kNotFound) {
        why = absl::FailedPreconditionError(absl::StrCat("lost leadership of ", held.key,
                                                         " at epoch ", held.epoch, ": ",
                                                         ttl.status().message()));
        break;
      }
      if (!ttl.ok()) {
        next = Clock::now() + std::max(interval / 5, milliseconds(20));
        continue;
      }
      if (key.ok() && (key->kvs.empty() || key->kvs[0].create_revision != held.epoch)) {
        why = absl::FailedPreconditionError(absl::StrCat(
            "lost leadership of ", held.key, " at epoch ", held.epoch, ": the key ",
            key->kvs.empty() ? std::string("was deleted")
                             : absl::StrCat("now belongs to epoch ", key->kvs[0].create_revision)));
        break;
      }
      last_renewal_sent_ = now;
      next = now + interval;
    }
    leading_ = false;
    mu_.Unlock();
    spdlog::warn("election: {}", why.message());
    if (on_lost) on_lost(why);
    (void)client_->LeaseRevoke(held.lease_id, Clock::now() + milliseconds(200));
  }

  void JoinThread() {
    if (thread_.joinable() && std::this_thread::get_id() != thread_.get_id()) thread_.join();
  }

  const std::shared_ptr<etcd::EtcdClient> client_;
  ElectionOptions options_;

  mutable absl::Mutex mu_;
  absl::CondVar cv_;  // stop_ set
  bool leading_ ABSL_GUARDED_BY(mu_) = false;
  bool stop_ ABSL_GUARDED_BY(mu_) = false;
  Leadership leadership_ ABSL_GUARDED_BY(mu_);
  Clock::time_point last_renewal_sent_ ABSL_GUARDED_BY(mu_);
  // When a failing campaign may log again (only the campaigning thread uses it).
  static constexpr Clock::duration kComplaintInterval = std::chrono::seconds(5);
  // The longest one watch of the leader key lasts before the key is read
  // again (ttl/2 if shorter).
  static constexpr Clock::duration kWatchSlice = std::chrono::seconds(5);
  Clock::time_point next_complaint_{};
  // The renewal thread of the leadership held last; started by Campaign,
  // joined by the next Campaign, Resign or the destructor.
  std::thread thread_;
};

LeaderElection::LeaderElection(std::shared_ptr<etcd::EtcdClient> client, ElectionOptions options)
    : impl_(std::make_unique<Impl>(std::move(client), std::move(options))) {}
LeaderElection::~LeaderElection() = default;

absl::StatusOr<Leadership> LeaderElection::Campaign(const std::string& candidate_id,
                                                    const std::string& address,
                                                    LostCallback on_lost,
                                                    const std::atomic<bool>* stop,
                                                    etcd::Deadline deadline) {
  return impl_->Campaign(candidate_id, address, std::move(on_lost), stop, deadline);
}
bool LeaderElection::IsLeader() const { return impl_->IsLeader(); }
std::optional<Leadership> LeaderElection::leadership() const { return impl_->leadership(); }
absl::Status LeaderElection::Resign() { return impl_->Resign(); }
absl::StatusOr<std::optional<LeaderInfo>> LeaderElection::Observe(
    std::optional<etcd::Deadline> deadline) {
  return impl_->Observe(deadline);
}

}  // namespace flotilla::ha
