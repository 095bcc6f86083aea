// Tests of the etcd v3 client (src/store/etcd/etcd_client.cc) against a real
// 3-member etcd cluster: the KV and lease calls, and failover when members
// are killed or paused.

#include "store/etcd/etcd_client.h"

#include <atomic>
#include <chrono>
#include <thread>

#include "absl/strings/str_cat.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "support/etcd_cluster.h"

namespace flotilla::etcd {
namespace {

using ::flotilla::testing::EtcdCluster;
using ::testing::HasSubstr;
using Clock = std::chrono::steady_clock;
using std::chrono::milliseconds;

#define START_CLUSTER_OR_SKIP(cluster)                                   \
  do {                                                                   \
    absl::Status started = (cluster).Start();                            \
    if (started.code() == absl::StatusCode::kUnavailable) {              \
      GTEST_SKIP() << "SKIPPING etcd test: " << started.message();       \
    }                                                                    \
    ASSERT_TRUE(started.ok()) << started;                                \
  } while (0)

class EtcdClientTest : public ::testing::Test {
 protected:
  void SetUp() override {
    START_CLUSTER_OR_SKIP(cluster_);
    auto client = cluster_.Client();
    ASSERT_TRUE(client.ok()) << client.status();
    client_ = *client;
  }
  EtcdCluster cluster_;
  std::shared_ptr<EtcdClient> client_;
};

TEST(EtcdClientCreateTest, NoEndpointIsInvalidArgument) {
  auto client = EtcdClient::Create({});
  EXPECT_EQ(client.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(std::string(client.status().message()), HasSubstr("no endpoint"));
}

TEST(EtcdClientCreateTest, PrefixEnd) {
  EXPECT_EQ(PrefixEnd("/a/"), "/a0");
  EXPECT_EQ(PrefixEnd(std::string("a\xff", 2)), "b");
  EXPECT_EQ(PrefixEnd(""), std::string(1, '\0'));
}

TEST_F(EtcdClientTest, PutRangeDeleteAndBinaryValues) {
  const std::string value("v\0\xff", 3);
  auto rev = client_->Put("/t/b", value);
  ASSERT_TRUE(rev.ok()) << rev.status();
  ASSERT_TRUE(client_->Put("/t/a", "1").ok());
  ASSERT_TRUE(client_->Put("/u", "other").ok());
  auto r = client_->Range("/t/", PrefixEnd("/t/"));
  ASSERT_TRUE(r.ok()) << r.status();
  ASSERT_EQ(r->kvs.size(), 2u);
  EXPECT_EQ(r->kvs[0].key, "/t/a");
  EXPECT_EQ(r->kvs[1].value, value);
  EXPECT_EQ(r->kvs[1].create_revision, *rev);
  auto limited = client_->Range("/t/", PrefixEnd("/t/"), 1);
  ASSERT_TRUE(limited.ok());
  EXPECT_EQ(limited->kvs.size(), 1u);
  EXPECT_TRUE(limited->more);
  auto deleted = client_->Delete("/t/", PrefixEnd("/t/"));
  ASSERT_TRUE(deleted.ok());
  EXPECT_EQ(*deleted, 2);
  EXPECT_TRUE(client_->Range("/t/a", "")->kvs.empty());
}

TEST_F(EtcdClientTest, TxnRunsTheBranchItsComparesChoose) {
  TxnRequest create;
  create.compares.push_back(Compare::Missing("/k"));
  create.success.push_back(Op::Put("/k", "first"));
  create.failure.push_back(Op::Get("/k"));
  auto first = client_->Txn(create);
  ASSERT_TRUE(first.ok()) << first.status();
  EXPECT_TRUE(first->succeeded);
  auto second = client_->Txn(create);
  ASSERT_TRUE(second.ok());
  EXPECT_FALSE(second->succeeded);
  ASSERT_EQ(second->responses.size(), 1u);
  ASSERT_EQ(second->responses[0].kvs.size(), 1u);
  EXPECT_EQ(second->responses[0].kvs[0].value, "first");
  EXPECT_EQ(second->responses[0].kvs[0].create_revision, first->revision);

  TxnRequest too_many;
  for (int i = 0; i < kMaxTxnOps + 1; ++i) too_many.success.push_back(Op::Put(absl::StrCat("/m", i), "x"));
  auto refused = client_->Txn(too_many);
  EXPECT_EQ(refused.status().code(), absl::StatusCode::kInvalidArgument) << refused.status();
  EXPECT_THAT(std::string(refused.status().message()), HasSubstr("too many operations"));
}

TEST_F(EtcdClientTest, LeaseKeepsItsKeysUntilRevoked) {
  auto lease = client_->LeaseGrant(std::chrono::seconds(5));
  ASSERT_TRUE(lease.ok()) << lease.status();
  EXPECT_GE(lease->ttl_s, 5);
  ASSERT_TRUE(client_->Put("/leased", "x", lease->id).ok());
  auto ttl = client_->LeaseKeepAliveOnce(lease->id);
  ASSERT_TRUE(ttl.ok()) << ttl.status();
  EXPECT_GT(*ttl, 0);
  ASSERT_TRUE(client_->LeaseRevoke(lease->id).ok());
  EXPECT_TRUE(client_->Range("/leased", "")->kvs.empty());
  auto gone = client_->LeaseKeepAliveOnce(lease->id);
  EXPECT_EQ(gone.status().code(), absl::StatusCode::kNotFound) << gone.status();
  EXPECT_TRUE(client_->LeaseRevoke(lease->id).ok());  // already gone is fine
}

TEST_F(EtcdClientTest, FailsOverWhenTheCurrentMemberIsKilled) {
  ASSERT_TRUE(client_->Put("/f", "0").ok());
  const std::string current = client_->current_endpoint();
  int idx = 0;
  while (cluster_.endpoint(idx) != current) ++idx;
  ASSERT_TRUE(cluster_.Kill(idx).ok());
  auto start = Clock::now();
  auto put = client_->Put("/f", "1");
  ASSERT_TRUE(put.ok()) << put.status();
  EXPECT_LT(Clock::now() - start, milliseconds(2500));
  EXPECT_NE(client_->current_endpoint(), current);
  EXPECT_EQ(client_->Range("/f", "")->kvs.at(0).value, "1");
  ASSERT_TRUE(cluster_.Restart(idx).ok());
}

TEST_F(EtcdClientTest, APausedMemberCostsOneShareOfTheDeadline) {
  ASSERT_TRUE(client_->Put("/p", "0").ok());
  const std::string current = client_->current_endpoint();
  int idx = 0;
  while (cluster_.endpoint(idx) != current) ++idx;
  ASSERT_TRUE(cluster_.Pause(idx).ok());
  auto r = client_->Range("/p", "", 0, Clock::now() + milliseconds(3000));
  EXPECT_TRUE(r.ok()) << r.status();
  EXPECT_NE(client_->current_endpoint(), current);
  ASSERT_TRUE(cluster_.Resume(idx).ok());
}

TEST_F(EtcdClientTest, NoQuorumIsAClearErrorAtTheDeadline) {
  for (int i = 0; i < 3; ++i) ASSERT_TRUE(cluster_.Pause(i).ok());
  auto start = Clock::now();
  auto r = client_->Range("/x", "", 0, Clock::now() + milliseconds(600));
  auto took = Clock::now() - start;
  for (int i = 0; i < 3; ++i) ASSERT_TRUE(cluster_.Resume(i).ok());
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(r.status().code(), absl::StatusCode::kDeadlineExceeded) << r.status();
  EXPECT_THAT(std::string(r.status().message()), HasSubstr("no endpoint answered"));
  EXPECT_THAT(std::string(r.status().message()), HasSubstr(cluster_.endpoint(2)));
  EXPECT_LT(took, milliseconds(1500));
}

// Writes keep succeeding while one of three members is down (2/3 is a
// quorum), and every acknowledged write is readable afterwards.
TEST_F(EtcdClientTest, WritesContinueWithOneMemberKilled) {
  std::atomic<bool> stop{false};
  std::atomic<int> acked{0};
  std::atomic<int> failed{0};
  std::thread writer([&] {
    for (int i = 0; !stop && i < 100000; ++i) {
      if (client_->Put(absl::StrCat("/w/", i), "v").ok()) {
        acked = i + 1;
      } else {
        ++failed;
        break;
      }
    }
  });
  while (acked < 20) std::this_thread::sleep_for(milliseconds(5));
  ASSERT_TRUE(cluster_.Kill(1).ok());
  int at_kill = acked;
  auto end = Clock::now() + milliseconds(10000);
  while (acked < at_kill + 50 && failed == 0 && Clock::now() < end) {
    std::this_thread::sleep_for(milliseconds(5));
  }
  stop = true;
  writer.join();
  EXPECT_EQ(failed.load(), 0);
  EXPECT_GE(acked.load(), at_kill + 50);
  auto all = client_->Range("/w/", PrefixEnd("/w/"));
  ASSERT_TRUE(all.ok()) << all.status();
  EXPECT_EQ(static_cast<int>(all->kvs.size()), acked.load());
}


// Watch: the first events after a revision, a delete seen as one, nothing
// at the deadline, and a cancel flag that ends the wait early.
TEST_F(EtcdClientTest, WatchSeesChangesFromARevisionAndEndsOnTime) {
  auto put = client_->Put("/w/k", "v1");
  ASSERT_TRUE(put.ok()) << put.status();
  auto r = client_->Range("/w/k", "");
  ASSERT_TRUE(r.ok());
  // From the put's own revision: the put is the first event.
  auto w = client_->Watch("/w/k", "", *put, Clock::now() + milliseconds(3000));
  ASSERT_TRUE(w.ok()) << w.status();
  ASSERT_EQ(w->events.size(), 1u);
  EXPECT_EQ(w->events[0].type, WatchEvent::Type::kPut);
  EXPECT_EQ(w->events[0].kv.value, "v1");

  // From after the read: nothing until the deadline.
  const Clock::time_point t0 = Clock::now();
  w = client_->Watch("/w/k", "", r->revision + 1, Clock::now() + milliseconds(300));
  ASSERT_TRUE(w.ok()) << w.status();
  EXPECT_TRUE(w->events.empty());
  EXPECT_LT(Clock::now() - t0, milliseconds(1500));

  // A delete made while watching.
  std::thread deleter([&] {
    std::this_thread::sleep_for(milliseconds(200));
    (void)client_->Delete("/w/k");
  });
  w = client_->Watch("/w/k", "", r->revision + 1, Clock::now() + milliseconds(5000));
  deleter.join();
  ASSERT_TRUE(w.ok()) << w.status();
  ASSERT_EQ(w->events.size(), 1u);
  EXPECT_EQ(w->events[0].type, WatchEvent::Type::kDelete);
  EXPECT_EQ(w->events[0].kv.key, "/w/k");

  std::atomic<bool> cancel{false};
  std::thread canceller([&] {
    std::this_thread::sleep_for(milliseconds(200));
    cancel = true;
  });
  const Clock::time_point t1 = Clock::now();
  w = client_->Watch("/w/other", "", 0, Clock::now() + milliseconds(10000), &cancel);
  canceller.join();
  ASSERT_TRUE(w.ok()) << w.status();
  EXPECT_TRUE(w->events.empty());
  EXPECT_LT(Clock::now() - t1, milliseconds(1000));
}

// A watch on a killed member fails (the caller falls back to reading), and
// the next one goes to another member.
TEST_F(EtcdClientTest, AWatchMovesOnFromAKilledMember) {
  const std::string first = client_->current_endpoint();
  int idx = 0;
  for (int i = 0; i < 3; ++i) {
    if (cluster_.endpoint(i) == first) idx = i;
  }
  ASSERT_TRUE(cluster_.Kill(idx).ok());
  auto w = client_->Watch("/w/k", "", 0, Clock::now() + milliseconds(1000));
  EXPECT_FALSE(w.ok());
  EXPECT_NE(client_->current_endpoint(), first);
  auto put = client_->Put("/w/k", "v");
  ASSERT_TRUE(put.ok()) << put.status();
  w = client_->Watch("/w/k", "", *put, Clock::now() + milliseconds(3000));
  ASSERT_TRUE(w.ok()) << w.status();
  EXPECT_EQ(w->events.size(), 1u);
}

// A paused member accepts the stream and never confirms the watch: the
// call gives up after the endpoint's share of the default timeout (1 s of
// 3 s here), not at its deadline, and the next call goes elsewhere.
TEST_F(EtcdClientTest, AWatchOnAPausedMemberGivesUpAfterItsShare) {
  const std::string first = client_->current_endpoint();
  int idx = 0;
  for (int i = 0; i < 3; ++i) {
    if (cluster_.endpoint(i) == first) idx = i;
  }
  ASSERT_TRUE(cluster_.Pause(idx).ok());
  const Clock::time_point t0 = Clock::now();
  auto w = client_->Watch("/w/k", "", 0, Clock::now() + milliseconds(8000));
  const auto took = Clock::now() - t0;
  EXPECT_EQ(w.status().code(), absl::StatusCode::kDeadlineExceeded) << w.status();
  EXPECT_LT(took, milliseconds(2500));
  EXPECT_NE(client_->current_endpoint(), first);
  ASSERT_TRUE(cluster_.Resume(idx).ok());
}

}  // namespace
}  // namespace flotilla::etcd
