#include "scheduler/pending_queue.h"

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <string>
#include <utility>
#include <vector>

#include "gmock/gmock.h"
#include "gtest/gtest.h"

namespace flotilla::scheduler {
namespace {

using ::testing::ElementsAre;

std::vector<std::string> Ids(const std::vector<PendingQueue::Entry>& entries) {
  std::vector<std::string> ids;
  for (const auto& e : entries) ids.push_back(e.id);
  return ids;
}

TEST(PendingQueueTest, StartsEmpty) {
  PendingQueue q;
  EXPECT_TRUE(q.empty());
  EXPECT_EQ(q.size(), 0u);
  EXPECT_TRUE(q.Peek(10).empty());
  EXPECT_FALSE(q.Contains("x"));
  EXPECT_FALSE(q.Remove("x"));
}

TEST(PendingQueueTest, HigherPriorityFirst) {
  PendingQueue q;
  EXPECT_TRUE(q.Push({.id = "low", .priority = 1, .seq = 1}));
  EXPECT_TRUE(q.Push({.id = "high", .priority = 90, .seq = 2}));
  EXPECT_TRUE(q.Push({.id = "mid", .priority = 50, .seq = 3}));
  EXPECT_THAT(Ids(q.Peek(10)), ElementsAre("high", "mid", "low"));
}

TEST(PendingQueueTest, FifoWithinPriority) {
  PendingQueue q;
  q.Push({.id = "c", .priority = 5, .seq = 30});
  q.Push({.id = "a", .priority = 5, .seq = 10});
  q.Push({.id = "b", .priority = 5, .seq = 20});
  EXPECT_THAT(Ids(q.Peek(10)), ElementsAre("a", "b", "c"));
}

TEST(PendingQueueTest, IdBreaksFullTies) {
  PendingQueue q;
  q.Push({.id = "zeta", .priority = 5, .seq = 1});
  q.Push({.id = "alpha", .priority = 5, .seq = 1});
  EXPECT_EQ(q.size(), 2u);
  EXPECT_THAT(Ids(q.Peek(10)), ElementsAre("alpha", "zeta"));
}

TEST(PendingQueueTest, MixedOrdering) {
  PendingQueue q;
  q.Push({.id = "p0-old", .priority = 0, .seq = 1});
  q.Push({.id = "p9-new", .priority = 9, .seq = 5});
  q.Push({.id = "p9-old", .priority = 9, .seq = 2});
  q.Push({.id = "p0-new", .priority = 0, .seq = 7});
  q.Push({.id = "neg", .priority = -1, .seq = 0});
  EXPECT_THAT(Ids(q.Peek(10)), ElementsAre("p9-old", "p9-new", "p0-old", "p0-new", "neg"));
}

TEST(PendingQueueTest, PeekRespectsLimitAndDoesNotRemove) {
  PendingQueue q;
  for (int i = 0; i < 5; ++i) {
    q.Push({.id = "e" + std::to_string(i), .priority = 0, .seq = static_cast<uint64_t>(i)});
  }
  EXPECT_THAT(Ids(q.Peek(2)), ElementsAre("e0", "e1"));
  EXPECT_TRUE(q.Peek(0).empty());
  EXPECT_EQ(q.Peek(100).size(), 5u);
  EXPECT_EQ(q.size(), 5u);
}

TEST(PendingQueueTest, PeekReturnsFullEntries) {
  PendingQueue q;
  q.Push({.id = "x", .priority = 42, .seq = 7});
  auto entries = q.Peek(1);
  ASSERT_EQ(entries.size(), 1u);
  EXPECT_EQ(entries[0].id, "x");
  EXPECT_EQ(entries[0].priority, 42);
  EXPECT_EQ(entries[0].seq, 7u);
}

TEST(PendingQueueTest, DuplicateIdIsRefusedAndChangesNothing) {
  PendingQueue q;
  EXPECT_TRUE(q.Push({.id = "x", .priority = 1, .seq = 1}));
  q.Push({.id = "y", .priority = 5, .seq = 2});
  // Same id with a different priority and seq: refused, original kept.
  EXPECT_FALSE(q.Push({.id = "x", .priority = 99, .seq = 3}));
  EXPECT_EQ(q.size(), 2u);
  auto entries = q.Peek(10);
  EXPECT_THAT(Ids(entries), ElementsAre("y", "x"));
  EXPECT_EQ(entries[1].priority, 1);
  EXPECT_EQ(entries[1].seq, 1u);
}

TEST(PendingQueueTest, RemoveTakesOutOnlyThatId) {
  PendingQueue q;
  q.Push({.id = "a", .priority = 3, .seq = 1});
  q.Push({.id = "b", .priority = 3, .seq = 2});
  q.Push({.id = "c", .priority = 3, .seq = 3});
  EXPECT_TRUE(q.Remove("b"));
  EXPECT_FALSE(q.Contains("b"));
  EXPECT_TRUE(q.Contains("a"));
  EXPECT_TRUE(q.Contains("c"));
  EXPECT_EQ(q.size(), 2u);
  EXPECT_THAT(Ids(q.Peek(10)), ElementsAre("a", "c"));
  EXPECT_FALSE(q.Remove("b"));
  EXPECT_EQ(q.size(), 2u);
}

TEST(PendingQueueTest, RemoveThenPushAgainUsesNewPosition) {
  PendingQueue q;
  q.Push({.id = "a", .priority = 1, .seq = 1});
  q.Push({.id = "b", .priority = 1, .seq = 2});
  EXPECT_TRUE(q.Remove("a"));
  EXPECT_TRUE(q.Push({.id = "a", .priority = 1, .seq = 3}));
  EXPECT_THAT(Ids(q.Peek(10)), ElementsAre("b", "a"));
}

TEST(PendingQueueTest, DrainInDispatchOrder) {
  PendingQueue q;
  q.Push({.id = "a", .priority = 0, .seq = 1});
  q.Push({.id = "b", .priority = 10, .seq = 2});
  q.Push({.id = "c", .priority = 10, .seq = 3});
  std::vector<std::string> drained;
  while (!q.empty()) {
    auto head = q.Peek(1);
    ASSERT_EQ(head.size(), 1u);
    drained.push_back(head[0].id);
    ASSERT_TRUE(q.Remove(head[0].id));
  }
  EXPECT_THAT(drained, ElementsAre("b", "c", "a"));
  EXPECT_EQ(q.size(), 0u);
}

TEST(PendingQueueTest, ManyEntriesStayConsistent) {
  PendingQueue q;
  for (int i = 0; i < 1000; ++i) {
    ASSERT_TRUE(q.Push({.id = "e" + std::to_string(i),
                        .priority = i % 7,
                        .seq = static_cast<uint64_t>(1000 - i)}));
  }
  for (int i = 0; i < 1000; i += 2) ASSERT_TRUE(q.Remove("e" + std::to_string(i)));
  EXPECT_EQ(q.size(), 500u);
  auto all = q.Peek(1000);
  ASSERT_EQ(all.size(), 500u);
  for (size_t i = 1; i < all.size(); ++i) {
    const auto& prev = all[i - 1];
    const auto& cur = all[i];
    EXPECT_TRUE(prev.priority > cur.priority ||
                (prev.priority == cur.priority && prev.seq < cur.seq))
        << prev.id << " before " << cur.id;
  }
}

// --- Ageing -----------------------------------------------------------------

PendingQueue::Entry At(std::string id, int priority, uint64_t seq, int64_t enqueued_ms) {
  return {.id = std::move(id), .priority = priority, .seq = seq, .enqueued_ms = enqueued_ms};
}

TEST(PendingQueueAgeingTest, DefaultRateIsOnePointPerTenSeconds) {
  PendingQueue q;
  EXPECT_DOUBLE_EQ(q.options().aging_points_per_second, 0.1);
  EXPECT_DOUBLE_EQ(q.EffectivePriority(At("x", 10, 1, 0), 0), 10);
  EXPECT_DOUBLE_EQ(q.EffectivePriority(At("x", 10, 1, 0), 10'000), 11);
  EXPECT_DOUBLE_EQ(q.EffectivePriority(At("x", 10, 1, 0), 100'000), 20);
  // Capped at 100.
  EXPECT_DOUBLE_EQ(q.EffectivePriority(At("x", 10, 1, 0), 10'000'000), 100);
  // Not yet queued (clock skew): age 0.
  EXPECT_DOUBLE_EQ(q.EffectivePriority(At("x", 10, 1, 5'000), 0), 10);
  EXPECT_EQ(q.AgeToReachCapMs(0), 1'000'000);
  EXPECT_EQ(q.AgeToReachCapMs(90), 100'000);
  EXPECT_EQ(q.AgeToReachCapMs(100), 0);
}

TEST(PendingQueueAgeingTest, OldLowPriorityOvertakesNewHigherPriority) {
  PendingQueue q;
  q.Push(At("old-low", 20, 1, 0));
  q.Push(At("new-high", 50, 2, 250'000));
  // At 250 s the old entry has gained 25 points: 45 < 50.
  EXPECT_THAT(Ids(q.Peek(10, 250'000)), ElementsAre("new-high", "old-low"));
  // At 310 s: 51 vs 56 (the new one aged 6 points too).
  EXPECT_THAT(Ids(q.Peek(10, 310'000)), ElementsAre("new-high", "old-low"));
  // Both age at the same rate, so the gap only closes at the cap: 100 at
  // 800 s for old-low, and at the cap the older entry goes first.
  EXPECT_THAT(Ids(q.Peek(10, 800'000)), ElementsAre("old-low", "new-high"));
  // Without a time there is no ageing.
  EXPECT_THAT(Ids(q.Peek(10)), ElementsAre("new-high", "old-low"));
}

TEST(PendingQueueAgeingTest, AgeingLetsOldEntryPassFreshOnes) {
  PendingQueue q;
  q.Push(At("waited", 30, 1, 0));
  q.Push(At("fresh", 40, 2, 200'000));
  // At 200 s "waited" has 50 effective points, "fresh" 40.
  EXPECT_THAT(Ids(q.Peek(10, 200'000)), ElementsAre("waited", "fresh"));
}

TEST(PendingQueueAgeingTest, FifoWithinPriorityUnderAgeing) {
  PendingQueue q;
  q.Push(At("c", 5, 3, 3'000));
  q.Push(At("a", 5, 1, 1'000));
  q.Push(At("b", 5, 2, 2'000));
  for (int64_t now : {0, 2'500, 60'000, 5'000'000}) {
    EXPECT_THAT(Ids(q.Peek(10, now)), ElementsAre("a", "b", "c")) << "now=" << now;
  }
}

TEST(PendingQueueAgeingTest, ZeroRateIsStrictPriority) {
  PendingQueue q(PendingQueue::Options{.aging_points_per_second = 0});
  q.Push(At("old-low", 0, 1, 0));
  q.Push(At("new-high", 1, 2, 1'000'000'000));
  EXPECT_THAT(Ids(q.Peek(10, 2'000'000'000)), ElementsAre("new-high", "old-low"));
  EXPECT_EQ(q.AgeToReachCapMs(0), -1);
}

TEST(PendingQueueAgeingTest, OptionsValidate) {
  EXPECT_TRUE(PendingQueue::Options{}.Validate().ok());
  EXPECT_TRUE(PendingQueue::Options{.aging_points_per_second = 0}.Validate().ok());
  absl::Status bad = PendingQueue::Options{.aging_points_per_second = -1}.Validate();
  EXPECT_EQ(bad.code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(std::string(bad.message()), ::testing::HasSubstr("aging_points_per_second"));
  EXPECT_FALSE(PendingQueue::Options{.aging_points_per_second = std::nan("")}.Validate().ok());
}

TEST(PendingQueueAgeingTest, RemoveWorksWithAgeing) {
  PendingQueue q;
  q.Push(At("a", 10, 1, 0));
  q.Push(At("b", 80, 2, 0));
  q.Push(At("c", 10, 3, 500));
  EXPECT_TRUE(q.Remove("a"));
  EXPECT_THAT(Ids(q.Peek(10, 1'000)), ElementsAre("b", "c"));
  EXPECT_TRUE(q.Remove("c"));
  EXPECT_TRUE(q.Remove("b"));
  EXPECT_TRUE(q.empty());
  EXPECT_TRUE(q.Peek(10, 1'000).empty());
  // Buckets emptied by Remove do not linger.
  q.Push(At("d", 10, 4, 2'000));
  EXPECT_THAT(Ids(q.Peek(10, 3'000)), ElementsAre("d"));
}

// Simulates a flood: every second `arrivals` priority-90 entries join and the
// single head is dispatched. Returns the second at which `victim_id` was
// dispatched, or -1 if it was still queued at `horizon_s`.
int64_t SecondDispatched(PendingQueue& q, const std::string& victim_id, int arrivals,
                         int64_t horizon_s) {
  uint64_t seq = 1000;
  for (int64_t t = 1; t <= horizon_s; ++t) {
    const int64_t now_ms = t * 1000;
    for (int i = 0; i < arrivals; ++i) {
      q.Push(At("flood-" + std::to_string(seq), 90, seq, now_ms));
      ++seq;
    }
    auto head = q.Peek(1, now_ms);
    if (head.empty()) continue;
    q.Remove(head[0].id);
    if (head[0].id == victim_id) return t;
  }
  return -1;
}

TEST(PendingQueueAgeingTest, PriorityZeroIsNotStarvedByAFlood) {
  // Arrivals (2/s) outpace dispatch (1/s), so the queue grows without bound
  // and is never free of priority-90 work. The bound: the priority-0 entry is
  // at the cap after (100 - 0) / 0.1 = 1000 s; from then on only entries
  // queued before it may pass it, and there are none (it was queued first),
  // so it goes out at the first dispatch at or after 1000 s.
  PendingQueue q;
  q.Push(At("low", 0, 1, 0));
  const int64_t bound_s = q.AgeToReachCapMs(0) / 1000;
  ASSERT_EQ(bound_s, 1000);
  int64_t dispatched = SecondDispatched(q, "low", /*arrivals=*/2, /*horizon_s=*/3000);
  ASSERT_NE(dispatched, -1) << "priority-0 entry starved";
  EXPECT_LE(dispatched, bound_s);
  EXPECT_GT(q.size(), 900u);  // the flood really was a flood
}

TEST(PendingQueueAgeingTest, BacklogAheadAddsToTheBound) {
  // 50 priority-90 entries were queued before the priority-0 one. They are
  // older, so they go first at the cap; the bound becomes 1000 s plus 50
  // dispatches. (Here they actually leave during the first 50 s.)
  PendingQueue q;
  for (int i = 0; i < 50; ++i) {
    q.Push(At("backlog-" + std::to_string(i), 90, static_cast<uint64_t>(i), 0));
  }
  q.Push(At("low", 0, 100, 0));
  int64_t dispatched = SecondDispatched(q, "low", /*arrivals=*/2, /*horizon_s=*/3000);
  ASSERT_NE(dispatched, -1);
  EXPECT_LE(dispatched, q.AgeToReachCapMs(0) / 1000 + 50);
}

TEST(PendingQueueAgeingTest, WithoutAgeingTheFloodStarvesPriorityZero) {
  PendingQueue q(PendingQueue::Options{.aging_points_per_second = 0});
  q.Push(At("low", 0, 1, 0));
  EXPECT_EQ(SecondDispatched(q, "low", /*arrivals=*/2, /*horizon_s=*/3000), -1);
}

TEST(PendingQueueAgeingTest, PeekOrderMatchesFullSortOnLargeQueue) {
  PendingQueue q;
  std::vector<PendingQueue::Entry> all;
  uint64_t state = 12345;
  auto next = [&state] {
    state = state * 6364136223846793005ULL + 1442695040888963407ULL;
    return state >> 33;
  };
  for (int i = 0; i < 20'000; ++i) {
    auto e = At("e" + std::to_string(i), static_cast<int>(next() % 101), static_cast<uint64_t>(i),
                static_cast<int64_t>(next() % 2'000'000));
    all.push_back(e);
    ASSERT_TRUE(q.Push(e));
  }
  const int64_t now = 2'000'000;
  std::sort(all.begin(), all.end(), [&](const auto& a, const auto& b) {
    double ea = q.EffectivePriority(a, now), eb = q.EffectivePriority(b, now);
    if (ea != eb) return ea > eb;
    if (a.enqueued_ms != b.enqueued_ms) return a.enqueued_ms < b.enqueued_ms;
    if (a.seq != b.seq) return a.seq < b.seq;
    return a.id < b.id;
  });
  auto peeked = q.Peek(500, now);
  ASSERT_EQ(peeked.size(), 500u);
  for (size_t i = 0; i < peeked.size(); ++i) ASSERT_EQ(peeked[i].id, all[i].id) << i;
  EXPECT_EQ(q.Peek(30'000, now).size(), 20'000u);
}

TEST(PriorityClassTest, Bands) {
  EXPECT_EQ(ClassOf(0), PriorityClass::kBatch);
  EXPECT_EQ(ClassOf(29), PriorityClass::kBatch);
  EXPECT_EQ(ClassOf(30), PriorityClass::kNormal);
  EXPECT_EQ(ClassOf(69), PriorityClass::kNormal);
  EXPECT_EQ(ClassOf(70), PriorityClass::kUrgent);
  EXPECT_EQ(ClassOf(100), PriorityClass::kUrgent);
  EXPECT_EQ(ClassOf(-5), PriorityClass::kBatch);
  EXPECT_EQ(ClassOf(150), PriorityClass::kUrgent);
  EXPECT_STREQ(ToString(PriorityClass::kBatch), "batch");
  EXPECT_STREQ(ToString(PriorityClass::kNormal), "normal");
  EXPECT_STREQ(ToString(PriorityClass::kUrgent), "urgent");
}

}  // namespace
}  // namespace flotilla::scheduler

namespace flotilla::scheduler {
namespace {

TEST(PendingQueueTest, PeekIfPassesOverRefusedEntriesWithinTheScanBound) {
  PendingQueue q;
  for (int i = 0; i < 5; ++i) q.Push({.id = "a" + std::to_string(i), .priority = 50, .seq = static_cast<uint64_t>(i)});
  q.Push({.id = "b0", .priority = 50, .seq = 10});
  q.Push({.id = "b1", .priority = 10, .seq = 11});
  auto not_a = [](const PendingQueue::Entry& e) { return e.id[0] != 'a'; };
  // Order kept among the taken; the refused ones do not count toward limit.
  EXPECT_THAT(Ids(q.PeekIf(10, 0, 100, not_a)), ElementsAre("b0", "b1"));
  EXPECT_THAT(Ids(q.PeekIf(1, 0, 100, not_a)), ElementsAre("b0"));
  // Only the first max_scan entries are looked at.
  EXPECT_TRUE(q.PeekIf(10, 0, 5, not_a).empty());
  EXPECT_THAT(Ids(q.PeekIf(10, 0, 6, not_a)), ElementsAre("b0"));
  // Accepting everything is Peek.
  auto all = [](const PendingQueue::Entry&) { return true; };
  EXPECT_EQ(Ids(q.PeekIf(4, 0, 100, all)), Ids(q.Peek(4, 0)));
}

}  // namespace
}  // namespace flotilla::scheduler
