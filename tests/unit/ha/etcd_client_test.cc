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

}  // namespace
}  // namespace flotilla::etcd
