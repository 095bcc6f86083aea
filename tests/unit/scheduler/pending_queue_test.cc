#include "scheduler/pending_queue.h"

#include <string>
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

}  // namespace
}  // namespace flotilla::scheduler
