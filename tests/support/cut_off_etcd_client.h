// CutOffClient: the real etcd client, with every call made to fail
// (UNAVAILABLE) while `cut` is set: a process cut off from etcd while the
// rest of the world still reaches it.
#pragma once

#include <atomic>
#include <memory>
#include <string>
#include <vector>

#include "store/etcd/etcd_client.h"

namespace flotilla::testing {

class CutOffClient final : public etcd::EtcdClient {
 public:
  explicit CutOffClient(std::shared_ptr<etcd::EtcdClient> real) : real_(std::move(real)) {}
  std::atomic<bool> cut{false};

  absl::StatusOr<etcd::RangeResult> Range(const std::string& key, const std::string& end,
                                          int64_t limit, std::optional<etcd::Deadline> d) override {
    if (cut) return absl::UnavailableError("cut off (test)");
    return real_->Range(key, end, limit, d);
  }
  absl::StatusOr<int64_t> Put(const std::string& key, const std::string& value, int64_t lease,
                              std::optional<etcd::Deadline> d) override {
    if (cut) return absl::UnavailableError("cut off (test)");
    return real_->Put(key, value, lease, d);
  }
  absl::StatusOr<int64_t> Delete(const std::string& key, const std::string& end,
                                 std::optional<etcd::Deadline> d) override {
    if (cut) return absl::UnavailableError("cut off (test)");
    return real_->Delete(key, end, d);
  }
  absl::StatusOr<etcd::TxnResult> Txn(const etcd::TxnRequest& txn,
                                      std::optional<etcd::Deadline> d) override {
    if (cut) return absl::UnavailableError("cut off (test)");
    return real_->Txn(txn, d);
  }
  absl::StatusOr<etcd::Lease> LeaseGrant(std::chrono::seconds ttl,
                                         std::optional<etcd::Deadline> d) override {
    if (cut) return absl::UnavailableError("cut off (test)");
    return real_->LeaseGrant(ttl, d);
  }
  absl::Status LeaseRevoke(int64_t lease, std::optional<etcd::Deadline> d) override {
    if (cut) return absl::UnavailableError("cut off (test)");
    return real_->LeaseRevoke(lease, d);
  }
  absl::StatusOr<int64_t> LeaseKeepAliveOnce(int64_t lease,
                                             std::optional<etcd::Deadline> d) override {
    if (cut) return absl::UnavailableError("cut off (test)");
    return real_->LeaseKeepAliveOnce(lease, d);
  }
  absl::StatusOr<etcd::WatchResult> Watch(const std::string& key, const std::string& end,
                                          int64_t start_revision, etcd::Deadline d,
                                          const std::atomic<bool>* cancel) override {
    if (cut) return absl::UnavailableError("cut off (test)");
    return real_->Watch(key, end, start_revision, d, cancel);
  }
  std::vector<std::string> endpoints() const override { return real_->endpoints(); }
  std::string current_endpoint() const override { return real_->current_endpoint(); }

 private:
  std::shared_ptr<etcd::EtcdClient> real_;
};

}  // namespace flotilla::testing
