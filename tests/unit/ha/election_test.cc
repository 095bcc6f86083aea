// Tests of LeaderElection (src/ha/election.cc) against a real 3-member etcd
// cluster: one winner, takeover on resign, stepping down before the lease can
// expire when renewals fail or etcd is unreachable, and a deleted key.

#include "ha/election.h"

#include <atomic>
#include <chrono>
#include <condition_variable>
#include <mutex>
#include <optional>
#include <thread>

#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "support/cut_off_etcd_client.h"
#include "support/etcd_cluster.h"

namespace flotilla::ha {
namespace {

using ::flotilla::testing::EtcdCluster;
using ::testing::HasSubstr;
using Clock = std::chrono::steady_clock;
using std::chrono::milliseconds;
using ::flotilla::testing::CutOffClient;

// What on_lost reported, and when.
struct LostSignal {
  std::mutex mu;
  std::condition_variable cv;
  std::optional<absl::Status> why;
  Clock::time_point at;

  LeaderElection::LostCallback Callback() {
    return [this](const absl::Status& status) {
      std::lock_guard<std::mutex> lock(mu);
      why = status;
      at = Clock::now();
      cv.notify_all();
    };
  }
  bool Wait(milliseconds timeout) {
    std::unique_lock<std::mutex> lock(mu);
    return cv.wait_for(lock, timeout, [&] { return why.has_value(); });
  }
};

constexpr milliseconds kTtl{2000};

class ElectionTest : public ::testing::Test {
 protected:
  void SetUp() override {
    absl::Status started = cluster_.Start();
    if (started.code() == absl::StatusCode::kUnavailable) {
      GTEST_SKIP() << "SKIPPING etcd test: " << started.message();
    }
    ASSERT_TRUE(started.ok()) << started;
    auto client = cluster_.Client();
    ASSERT_TRUE(client.ok()) << client.status();
    client_ = *client;
  }
  ElectionOptions Options() {
    ElectionOptions o;
    o.key = "/test/leader";
    o.ttl = kTtl;
    return o;
  }
  static etcd::Deadline In(milliseconds d) { return Clock::now() + d; }

  EtcdCluster cluster_;
  std::shared_ptr<etcd::EtcdClient> client_;
};

TEST_F(ElectionTest, OneOfTwoWinsAndTheOtherTakesOverWhenItResigns) {
  LeaderElection a(client_, Options());
  LeaderElection b(client_, Options());
  auto won = a.Campaign("a", "10.0.0.1:7070", nullptr, nullptr, In(milliseconds(5000)));
  ASSERT_TRUE(won.ok()) << won.status();
  EXPECT_TRUE(a.IsLeader());
  EXPECT_EQ(won->key, "/test/leader");
  EXPECT_GT(won->epoch, 0);

  auto observed = b.Observe();
  ASSERT_TRUE(observed.ok() && observed->has_value()) << observed.status();
  EXPECT_EQ((*observed)->id, "a");
  EXPECT_EQ((*observed)->address, "10.0.0.1:7070");
  EXPECT_EQ((*observed)->epoch, won->epoch);

  std::atomic<bool> b_done{false};
  absl::StatusOr<Leadership> b_won = absl::UnknownError("not run");
  std::thread campaign([&] {
    b_won = b.Campaign("b", "10.0.0.2:7070", nullptr, nullptr, In(milliseconds(10000)));
    b_done = true;
  });
  // b must not win while a leads; a few renewals pass meanwhile.
  std::this_thread::sleep_for(kTtl);
  EXPECT_FALSE(b_done.load());
  EXPECT_TRUE(a.IsLeader());

  auto resigned_at = Clock::now();
  ASSERT_TRUE(a.Resign().ok());
  EXPECT_FALSE(a.IsLeader());
  campaign.join();
  ASSERT_TRUE(b_won.ok()) << b_won.status();
  EXPECT_LT(Clock::now() - resigned_at, milliseconds(1500));
  EXPECT_GT(b_won->epoch, won->epoch);
  EXPECT_TRUE(b.IsLeader());
  auto now_leader = a.Observe();
  ASSERT_TRUE(now_leader.ok() && now_leader->has_value());
  EXPECT_EQ((*now_leader)->id, "b");
  EXPECT_EQ((*now_leader)->epoch, b_won->epoch);

  EXPECT_EQ(b.Campaign("b", "", nullptr, nullptr, In(milliseconds(100))).status().code(),
            absl::StatusCode::kFailedPrecondition);
}

TEST_F(ElectionTest, ALeaderThatCannotRenewStepsDownBeforeAnotherWins) {
  auto cut_client = std::make_shared<CutOffClient>(client_);
  LeaderElection a(cut_client, Options());
  LeaderElection b(client_, Options());
  LostSignal lost;
  auto won = a.Campaign("a", "addr-a", lost.Callback(), nullptr, In(milliseconds(5000)));
  ASSERT_TRUE(won.ok()) << won.status();

  Clock::time_point b_won_at;
  absl::StatusOr<Leadership> b_won = absl::UnknownError("not run");
  std::thread campaign([&] {
    b_won = b.Campaign("b", "addr-b", nullptr, nullptr, In(milliseconds(15000)));
    b_won_at = Clock::now();
  });
  const Clock::time_point cut_at = Clock::now();
  cut_client->cut = true;

  ASSERT_TRUE(lost.Wait(kTtl + milliseconds(500)));
  EXPECT_FALSE(a.IsLeader());
  EXPECT_THAT(std::string(lost.why->message()), HasSubstr("no lease renewal"));
  EXPECT_LE(lost.at - cut_at, kTtl);
  campaign.join();
  ASSERT_TRUE(b_won.ok()) << b_won.status();
  EXPECT_GT(b_won->epoch, won->epoch);
  // The old leader gave up before the new one could win.
  EXPECT_LT(lost.at, b_won_at);
  // etcd expires leases in a sweep every 500 ms; the loser polls every ttl/20.
  EXPECT_LT(b_won_at - cut_at, kTtl + milliseconds(2000));
}

TEST_F(ElectionTest, LossIsNotifiedWithinTheTtlWhenNoMemberAnswers) {
  LeaderElection a(client_, Options());
  LostSignal lost;
  ASSERT_TRUE(a.Campaign("a", "addr", lost.Callback(), nullptr, In(milliseconds(5000))).ok());
  const Clock::time_point paused_at = Clock::now();
  for (int i = 0; i < 3; ++i) ASSERT_TRUE(cluster_.Pause(i).ok());
  bool notified = lost.Wait(kTtl + milliseconds(1000));
  for (int i = 0; i < 3; ++i) ASSERT_TRUE(cluster_.Resume(i).ok());
  ASSERT_TRUE(notified);
  EXPECT_LE(lost.at - paused_at, kTtl);
  EXPECT_FALSE(a.IsLeader());
}

TEST_F(ElectionTest, ADeletedKeyEndsLeadership) {
  LeaderElection a(client_, Options());
  LostSignal lost;
  auto won = a.Campaign("a", "addr", lost.Callback(), nullptr, In(milliseconds(5000)));
  ASSERT_TRUE(won.ok()) << won.status();
  ASSERT_TRUE(client_->Delete("/test/leader").ok());
  ASSERT_TRUE(lost.Wait(kTtl));
  EXPECT_EQ(lost.why->code(), absl::StatusCode::kFailedPrecondition);
  EXPECT_THAT(std::string(lost.why->message()), HasSubstr("deleted"));
  EXPECT_FALSE(a.IsLeader());
  // It can campaign again, and wins a later epoch.
  auto again = a.Campaign("a", "addr", nullptr, nullptr, In(milliseconds(5000)));
  ASSERT_TRUE(again.ok()) << again.status();
  EXPECT_GT(again->epoch, won->epoch);
}

TEST_F(ElectionTest, CampaignEndsOnStopAndOnDeadline) {
  LeaderElection a(client_, Options());
  LeaderElection b(client_, Options());
  ASSERT_TRUE(a.Campaign("a", "addr", nullptr, nullptr, In(milliseconds(5000))).ok());
  auto start = Clock::now();
  auto late = b.Campaign("b", "addr", nullptr, nullptr, In(milliseconds(300)));
  EXPECT_EQ(late.status().code(), absl::StatusCode::kDeadlineExceeded) << late.status();
  EXPECT_LT(Clock::now() - start, milliseconds(1500));
  std::atomic<bool> stop{false};
  std::thread stopper([&] {
    std::this_thread::sleep_for(milliseconds(200));
    stop = true;
  });
  auto stopped = b.Campaign("b", "addr", nullptr, &stop, In(milliseconds(10000)));
  stopper.join();
  EXPECT_EQ(stopped.status().code(), absl::StatusCode::kCancelled) << stopped.status();
  EXPECT_FALSE(b.IsLeader());
}

// Any one of the three members may die, the raft leader among them: the
// renewals fail over to the others and leadership holds.
TEST_F(ElectionTest, LeadershipHoldsWhileAnyOneMemberIsKilled) {
  ElectionOptions options = Options();
  options.ttl = milliseconds(3000);
  LeaderElection a(client_, options);
  LostSignal lost;
  auto won = a.Campaign("a", "addr", lost.Callback(), nullptr, In(milliseconds(5000)));
  ASSERT_TRUE(won.ok()) << won.status();
  for (int i = 0; i < 3; ++i) {
    ASSERT_TRUE(cluster_.Kill(i).ok());
    // Three renewal intervals: a renewal has to get through meanwhile.
    EXPECT_FALSE(lost.Wait(options.ttl)) << "member " << i << ": " << *lost.why;
    EXPECT_TRUE(a.IsLeader()) << "member " << i << " killed";
    ASSERT_TRUE(cluster_.Restart(i).ok());
  }
  auto observed = a.Observe();
  ASSERT_TRUE(observed.ok() && observed->has_value());
  EXPECT_EQ((*observed)->epoch, won->epoch);
}

// A standby hears the leader key go through its watch: with the fallback
// poll set to 30 s it still takes over within moments of the resignation.
TEST_F(ElectionTest, AStandbyWatchingTheKeyTakesOverAtOnce) {
  ElectionOptions slow_poll = Options();
  slow_poll.poll = milliseconds(30000);
  LeaderElection a(client_, Options());
  LeaderElection b(client_, slow_poll);
  ASSERT_TRUE(a.Campaign("a", "", nullptr, nullptr, In(milliseconds(5000))).ok());
  absl::StatusOr<Leadership> b_won = absl::UnknownError("not run");
  Clock::time_point b_won_at;
  std::thread campaign([&] {
    b_won = b.Campaign("b", "", nullptr, nullptr, In(milliseconds(20000)));
    b_won_at = Clock::now();
  });
  std::this_thread::sleep_for(milliseconds(500));  // b is watching by now
  const Clock::time_point resigned_at = Clock::now();
  ASSERT_TRUE(a.Resign().ok());
  campaign.join();
  ASSERT_TRUE(b_won.ok()) << b_won.status();
  const auto took = std::chrono::duration_cast<milliseconds>(b_won_at - resigned_at);
  std::cerr << "standby led " << took.count() << " ms after the resignation\n";
  EXPECT_LT(took, milliseconds(1000));
}

// The leader's lease expiring at etcd (a leader killed: nobody resigns)
// deletes the key; the watching standby campaigns at once.
TEST_F(ElectionTest, AStandbyTakesOverWhenTheLeadersLeaseExpires) {
  ElectionOptions slow_poll = Options();
  slow_poll.poll = milliseconds(30000);
  auto cut = std::make_shared<CutOffClient>(client_);
  LeaderElection a(cut, Options());
  LeaderElection b(client_, slow_poll);
  ASSERT_TRUE(a.Campaign("a", "", nullptr, nullptr, In(milliseconds(5000))).ok());
  std::thread campaign_b;
  absl::StatusOr<Leadership> b_won = absl::UnknownError("not run");
  campaign_b = std::thread(
      [&] { b_won = b.Campaign("b", "", nullptr, nullptr, In(milliseconds(20000))); });
  std::this_thread::sleep_for(milliseconds(300));
  const Clock::time_point cut_at = Clock::now();
  cut->cut = true;  // a's renewals stop; etcd expires its lease within the TTL
  campaign_b.join();
  ASSERT_TRUE(b_won.ok()) << b_won.status();
  EXPECT_LT(Clock::now() - cut_at, kTtl + milliseconds(1500));
}

// Where the watch cannot be set up, the standby reads the key every `poll`.
class NoWatchClient final : public etcd::EtcdClient {
 public:
  explicit NoWatchClient(std::shared_ptr<etcd::EtcdClient> real) : real_(std::move(real)) {}
  std::atomic<int> watches{0};
  absl::StatusOr<etcd::RangeResult> Range(const std::string& key, const std::string& end,
                                          int64_t limit, std::optional<etcd::Deadline> d) override {
    return real_->Range(key, end, limit, d);
  }
  absl::StatusOr<int64_t> Put(const std::string& key, const std::string& value, int64_t lease,
                              std::optional<etcd::Deadline> d) override {
    return real_->Put(key, value, lease, d);
  }
  absl::StatusOr<int64_t> Delete(const std::string& key, const std::string& end,
                                 std::optional<etcd::Deadline> d) override {
    return real_->Delete(key, end, d);
  }
  absl::StatusOr<etcd::TxnResult> Txn(const etcd::TxnRequest& txn,
                                      std::optional<etcd::Deadline> d) override {
    return real_->Txn(txn, d);
  }
  absl::StatusOr<etcd::Lease> LeaseGrant(std::chrono::seconds ttl,
                                         std::optional<etcd::Deadline> d) override {
    return real_->LeaseGrant(ttl, d);
  }
  absl::Status LeaseRevoke(int64_t lease, std::optional<etcd::Deadline> d) override {
    return real_->LeaseRevoke(lease, d);
  }
  absl::StatusOr<int64_t> LeaseKeepAliveOnce(int64_t lease,
                                             std::optional<etcd::Deadline> d) override {
    return real_->LeaseKeepAliveOnce(lease, d);
  }
  absl::StatusOr<etcd::WatchResult> Watch(const std::string&, const std::string&, int64_t,
                                          etcd::Deadline, const std::atomic<bool>*) override {
    ++watches;
    return absl::UnavailableError("watch refused (test)");
  }
  std::vector<std::string> endpoints() const override { return real_->endpoints(); }
  std::string current_endpoint() const override { return real_->current_endpoint(); }

 private:
  std::shared_ptr<etcd::EtcdClient> real_;
};

TEST_F(ElectionTest, WithoutAWatchTheStandbyFallsBackToPolling) {
  auto no_watch = std::make_shared<NoWatchClient>(client_);
  ElectionOptions o = Options();
  o.poll = milliseconds(100);
  LeaderElection a(client_, Options());
  LeaderElection b(no_watch, o);
  ASSERT_TRUE(a.Campaign("a", "", nullptr, nullptr, In(milliseconds(5000))).ok());
  absl::StatusOr<Leadership> b_won = absl::UnknownError("not run");
  std::thread campaign([&] { b_won = b.Campaign("b", "", nullptr, nullptr, In(milliseconds(20000))); });
  std::this_thread::sleep_for(milliseconds(500));
  const Clock::time_point resigned_at = Clock::now();
  ASSERT_TRUE(a.Resign().ok());
  campaign.join();
  ASSERT_TRUE(b_won.ok()) << b_won.status();
  const auto took = std::chrono::duration_cast<milliseconds>(Clock::now() - resigned_at);
  std::cerr << "standby (polling every 100 ms) led " << took.count()
            << " ms after the resignation\n";
  EXPECT_LT(took, milliseconds(1000));
  EXPECT_GT(no_watch->watches.load(), 0);
}

// A standby's campaign stops promptly when asked, even mid-watch.
TEST_F(ElectionTest, AWatchingStandbyStopsPromptly) {
  LeaderElection a(client_, Options());
  LeaderElection b(client_, Options());
  ASSERT_TRUE(a.Campaign("a", "", nullptr, nullptr, In(milliseconds(5000))).ok());
  std::atomic<bool> stop{false};
  absl::StatusOr<Leadership> b_won = absl::UnknownError("not run");
  std::thread campaign([&] { b_won = b.Campaign("b", "", nullptr, &stop, In(milliseconds(20000))); });
  std::this_thread::sleep_for(milliseconds(500));
  const Clock::time_point stopped_at = Clock::now();
  stop = true;
  campaign.join();
  EXPECT_EQ(b_won.status().code(), absl::StatusCode::kCancelled) << b_won.status();
  EXPECT_LT(Clock::now() - stopped_at, milliseconds(500));
}

TEST(LeaderValueTest, RoundTripsAndRejectsGarbage) {
  auto info = DecodeLeaderValue("3:m:1[::1]:7070", 42);
  ASSERT_TRUE(info.ok());
  EXPECT_EQ(info->id, "m:1");
  EXPECT_EQ(info->address, "[::1]:7070");
  EXPECT_EQ(info->epoch, 42);
  EXPECT_FALSE(DecodeLeaderValue("garbage", 1).ok());
  EXPECT_FALSE(DecodeLeaderValue("9:short", 1).ok());
}

}  // namespace
}  // namespace flotilla::ha
