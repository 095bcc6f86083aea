#include "agent/result_outbox.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <string>

namespace flotilla::agent {
namespace {

using ::testing::HasSubstr;

constexpr size_t kBudget = 64 * 1024;

v1::ExecutionResult Result(const std::string& id, size_t stdout_bytes, uint32_t attempt = 1) {
  v1::ExecutionResult r;
  r.set_execution_id(id);
  r.set_attempt(attempt);
  r.set_termination(v1::TERMINATION_EXITED);
  std::string out(stdout_bytes, '\0');
  for (size_t i = 0; i < out.size(); ++i) out[i] = static_cast<char>('A' + i % 26);
  r.set_stdout(out);
  return r;
}

// Answers every whole result and every chunk with `verdict`; chunks that are
// not last with PARTIAL and the next offset.
v1::SendResultsResponse Answer(const v1::SendResultsRequest& req, v1::ResultVerdict verdict) {
  v1::SendResultsResponse resp;
  for (int i = 0; i < req.results_size(); ++i) resp.add_verdicts(verdict);
  for (const auto& c : req.chunks()) {
    auto* ack = resp.add_chunks();
    ack->set_verdict(c.last() ? verdict : v1::RESULT_PARTIAL);
    ack->set_next_offset(c.offset() + static_cast<int64_t>(c.data().size()));
  }
  return resp;
}

TEST(ResultOutboxTest, SmallResultsTravelInBatchesUnderTheBudgetOldestFirst) {
  ResultOutbox box(kBudget);
  for (int i = 0; i < 10; ++i) box.Add(Result("e" + std::to_string(i), 20000));
  std::vector<std::string> sent;
  while (!box.empty()) {
    v1::SendResultsRequest req;
    ASSERT_TRUE(box.NextBatch(&req));
    EXPECT_LE(req.ByteSizeLong(), kBudget);
    EXPECT_EQ(req.chunks_size(), 0);
    EXPECT_EQ(req.results_size(), 3);  // 3 x 20 KB fit 64 KiB, 4 do not
    for (const auto& r : req.results()) sent.push_back(r.execution_id());
    auto applied = box.Apply(req, Answer(req, v1::RESULT_ACCEPTED));
    EXPECT_FALSE(applied.back_off);
    EXPECT_EQ(applied.done.size(), static_cast<size_t>(req.results_size()));
    if (box.size() < 3) break;
  }
  EXPECT_EQ(box.size(), 1u);
  EXPECT_EQ(sent.front(), "e0");
  EXPECT_EQ(sent.back(), "e8");
}

TEST(ResultOutboxTest, ALargeResultTravelsInSlicesFromWhereTheManagerIs) {
  ResultOutbox box(kBudget);
  const v1::ExecutionResult big = Result("big", 200000);
  const std::string encoded = big.SerializeAsString();
  box.Add(big);
  std::string assembled;
  int calls = 0;
  while (!box.empty()) {
    ASSERT_LT(++calls, 20);
    v1::SendResultsRequest req;
    ASSERT_TRUE(box.NextBatch(&req));
    EXPECT_LE(req.ByteSizeLong(), kBudget);
    ASSERT_EQ(req.results_size(), 0);
    ASSERT_EQ(req.chunks_size(), 1);
    const auto& c = req.chunks(0);
    EXPECT_EQ(c.execution_id(), "big");
    EXPECT_EQ(c.attempt(), 1u);
    EXPECT_EQ(c.total_bytes(), static_cast<int64_t>(encoded.size()));
    EXPECT_EQ(c.offset(), static_cast<int64_t>(assembled.size()));
    assembled += c.data();
    EXPECT_EQ(c.last(), assembled.size() == encoded.size());
    auto applied = box.Apply(req, Answer(req, v1::RESULT_ACCEPTED));
    EXPECT_FALSE(applied.back_off);
    if (c.last()) {
      ASSERT_EQ(applied.done.size(), 1u);
      EXPECT_EQ(applied.done[0].verdict, v1::RESULT_ACCEPTED);
    }
  }
  EXPECT_EQ(calls, 4);  // 200 KB in slices of almost 64 KiB
  EXPECT_EQ(assembled, encoded);
}

TEST(ResultOutboxTest, AManagerThatLostTheSlicesGetsThemAgainFromItsOffset) {
  ResultOutbox box(kBudget);
  box.Add(Result("big", 200000));
  v1::SendResultsRequest req;
  ASSERT_TRUE(box.NextBatch(&req));
  ASSERT_FALSE(box.Apply(req, Answer(req, v1::RESULT_ACCEPTED)).back_off);
  v1::SendResultsRequest second;
  ASSERT_TRUE(box.NextBatch(&second));
  EXPECT_GT(second.chunks(0).offset(), 0);
  // The manager restarted: it holds nothing and asks for offset 0.
  v1::SendResultsResponse restart;
  auto* ack = restart.add_chunks();
  ack->set_verdict(v1::RESULT_PARTIAL);
  ack->set_next_offset(0);
  EXPECT_TRUE(box.Apply(second, restart).back_off);  // no progress: pause
  v1::SendResultsRequest third;
  ASSERT_TRUE(box.NextBatch(&third));
  EXPECT_EQ(third.chunks(0).offset(), 0);
  EXPECT_EQ(third.chunks(0).data(), req.chunks(0).data());
}

TEST(ResultOutboxTest, BusyMeansBackOffAndSendAgainFromTheOffsetGiven) {
  ResultOutbox box(kBudget);
  box.Add(Result("big", 200000));
  v1::SendResultsRequest req;
  ASSERT_TRUE(box.NextBatch(&req));
  v1::SendResultsResponse busy;
  auto* ack = busy.add_chunks();
  ack->set_verdict(v1::RESULT_BUSY);
  ack->set_next_offset(0);
  ack->set_error("the manager already buffers 64 partial results");
  auto applied = box.Apply(req, busy);
  EXPECT_TRUE(applied.back_off);
  EXPECT_TRUE(applied.done.empty());
  EXPECT_EQ(box.size(), 1u);
  v1::SendResultsRequest again;
  ASSERT_TRUE(box.NextBatch(&again));
  EXPECT_EQ(again.chunks(0).offset(), 0);
}

TEST(ResultOutboxTest, ARefusedResultIsCutToFitOneCallAndSaysWhy) {
  ResultOutbox box(kBudget);
  v1::ExecutionResult big = Result("big", 200000);
  big.set_stderr(std::string(100000, 'e'));
  box.Add(big);
  v1::SendResultsRequest req;
  ASSERT_TRUE(box.NextBatch(&req));
  v1::SendResultsResponse refused;
  auto* ack = refused.add_chunks();
  ack->set_verdict(v1::RESULT_REJECTED);
  ack->set_error("the result of [big] attempt 1 is 300000 bytes; this manager accepts at most 1");
  EXPECT_FALSE(box.Apply(req, refused).back_off);

  v1::SendResultsRequest cut;
  ASSERT_TRUE(box.NextBatch(&cut));
  ASSERT_EQ(cut.chunks_size(), 0);
  ASSERT_EQ(cut.results_size(), 1);
  EXPECT_LE(cut.ByteSizeLong(), kBudget);
  const auto& r = cut.results(0);
  EXPECT_TRUE(r.stdout_truncated());
  EXPECT_TRUE(r.stderr_truncated());
  EXPECT_EQ(r.stdout(), big.stdout().substr(0, r.stdout().size()));
  EXPECT_GT(r.stdout().size(), 10000u);
  EXPECT_THAT(r.error(), HasSubstr("the manager refused the whole result"));
  EXPECT_THAT(r.error(), HasSubstr("this manager accepts at most 1"));
  auto applied = box.Apply(cut, Answer(cut, v1::RESULT_ACCEPTED));
  ASSERT_EQ(applied.done.size(), 1u);
  EXPECT_TRUE(box.empty());
}

TEST(ResultOutboxTest, AMalformedAnswerChangesNothing) {
  ResultOutbox box(kBudget);
  box.Add(Result("a", 100));
  box.Add(Result("b", 100));
  v1::SendResultsRequest req;
  ASSERT_TRUE(box.NextBatch(&req));
  ASSERT_EQ(req.results_size(), 2);
  v1::SendResultsResponse old_manager;  // one verdict short
  old_manager.add_verdicts(v1::RESULT_ACCEPTED);
  auto applied = box.Apply(req, old_manager);
  EXPECT_TRUE(applied.back_off);
  EXPECT_TRUE(applied.done.empty());
  EXPECT_EQ(box.size(), 2u);
  // An unknown verdict keeps the result too.
  v1::SendResultsResponse unknown;
  unknown.add_verdicts(v1::RESULT_ACCEPTED);
  unknown.add_verdicts(v1::RESULT_VERDICT_UNSPECIFIED);
  applied = box.Apply(req, unknown);
  EXPECT_TRUE(applied.back_off);
  ASSERT_EQ(applied.done.size(), 1u);
  EXPECT_EQ(applied.done[0].execution_id, "a");
  EXPECT_EQ(box.size(), 1u);
}

TEST(ResultOutboxTest, ResultsAddedWhileABatchIsOutStayQueued) {
  ResultOutbox box(kBudget);
  box.Add(Result("a", 100));
  v1::SendResultsRequest req;
  ASSERT_TRUE(box.NextBatch(&req));
  box.Add(Result("b", 100));
  box.Add(Result("a", 100, /*attempt=*/2));
  auto applied = box.Apply(req, Answer(req, v1::RESULT_STALE));
  ASSERT_EQ(applied.done.size(), 1u);
  EXPECT_EQ(applied.done[0].verdict, v1::RESULT_STALE);
  EXPECT_EQ(box.size(), 2u);
  v1::SendResultsRequest next;
  ASSERT_TRUE(box.NextBatch(&next));
  ASSERT_EQ(next.results_size(), 2);
  EXPECT_EQ(next.results(0).execution_id(), "b");
  EXPECT_EQ(next.results(1).attempt(), 2u);
}

TEST(ResultOutboxTest, AResultThatFitsAloneIsNotOvertaken) {
  ResultOutbox box(kBudget);
  box.Add(Result("first", 40000));
  box.Add(Result("second", 40000));  // does not fit beside the first
  box.Add(Result("third", 100));     // would, but must wait its turn
  v1::SendResultsRequest req;
  ASSERT_TRUE(box.NextBatch(&req));
  ASSERT_EQ(req.results_size(), 1);
  EXPECT_EQ(req.results(0).execution_id(), "first");
}

}  // namespace
}  // namespace flotilla::agent
