#include "manager/result_assembler.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <limits>
#include <string>
#include <vector>

namespace flotilla::manager {
namespace {

using ::testing::HasSubstr;
using Kind = SliceOutcome::Kind;
using Clock = ResultAssembler::Clock;

const Clock::time_point kT0 = Clock::time_point() + std::chrono::hours(1);

v1::ExecutionResult Result(const std::string& id, uint32_t attempt, size_t stdout_bytes) {
  v1::ExecutionResult r;
  r.set_execution_id(id);
  r.set_attempt(attempt);
  r.set_termination(v1::TERMINATION_EXITED);
  std::string out(stdout_bytes, '\0');
  for (size_t i = 0; i < out.size(); ++i) out[i] = static_cast<char>('a' + i % 23);
  r.set_stdout(out);
  r.set_stderr("warning\n");
  return r;
}

// A slice [offset, offset + n) of `bytes`, which belong to `id`/`attempt`.
ResultSlice Slice(const std::string& id, uint32_t attempt, const std::string& bytes,
                  int64_t offset, int64_t n) {
  ResultSlice s;
  s.execution_id = id;
  s.attempt = attempt;
  s.offset = offset;
  s.total_bytes = static_cast<int64_t>(bytes.size());
  s.data = std::string_view(bytes).substr(static_cast<size_t>(offset), static_cast<size_t>(n));
  s.last = offset + n == s.total_bytes;
  return s;
}

TEST(ResultAssemblerTest, InOrderSlicesGiveBackTheWholeResult) {
  ResultAssembler a;
  const v1::ExecutionResult r = Result("e1", 2, 100000);
  const std::string bytes = r.SerializeAsString();
  const int64_t total = static_cast<int64_t>(bytes.size());

  SliceOutcome o = a.Add("n1", Slice("e1", 2, bytes, 0, 40000), kT0);
  EXPECT_EQ(o.kind, Kind::kPartial);
  EXPECT_EQ(o.next_offset, 40000);
  EXPECT_EQ(a.entries(), 1u);
  EXPECT_EQ(a.buffered_bytes(), total);

  o = a.Add("n1", Slice("e1", 2, bytes, 40000, 40000), kT0);
  EXPECT_EQ(o.kind, Kind::kPartial);
  EXPECT_EQ(o.next_offset, 80000);

  o = a.Add("n1", Slice("e1", 2, bytes, 80000, total - 80000), kT0);
  ASSERT_EQ(o.kind, Kind::kComplete) << o.error;
  ASSERT_TRUE(o.result.has_value());
  EXPECT_EQ(o.result->SerializeAsString(), bytes);
  EXPECT_EQ(o.next_offset, total);
  EXPECT_EQ(a.entries(), 0u);
  EXPECT_EQ(a.buffered_bytes(), 0);
}

TEST(ResultAssemblerTest, OutOfOrderAndRepeatedSlicesAssembleOnce) {
  ResultAssembler a;
  const std::string bytes = Result("e1", 1, 30000).SerializeAsString();
  const int64_t total = static_cast<int64_t>(bytes.size());

  // The tail first (a manager restart lost the head): the answer asks for 0.
  SliceOutcome o = a.Add("n1", Slice("e1", 1, bytes, 20000, total - 20000), kT0);
  EXPECT_EQ(o.kind, Kind::kPartial);
  EXPECT_EQ(o.next_offset, 0);
  o = a.Add("n1", Slice("e1", 1, bytes, 0, 10000), kT0);
  EXPECT_EQ(o.next_offset, 10000);
  // The same slice again, and one overlapping what is held: no harm.
  o = a.Add("n1", Slice("e1", 1, bytes, 0, 10000), kT0);
  EXPECT_EQ(o.kind, Kind::kPartial);
  EXPECT_EQ(o.next_offset, 10000);
  o = a.Add("n1", Slice("e1", 1, bytes, 5000, 10000), kT0);
  EXPECT_EQ(o.next_offset, 15000);
  // The gap's rest joins both ranges.
  o = a.Add("n1", Slice("e1", 1, bytes, 15000, 5000), kT0);
  ASSERT_EQ(o.kind, Kind::kComplete) << o.error;
  EXPECT_EQ(o.result->SerializeAsString(), bytes);
  EXPECT_EQ(a.buffered_bytes(), 0);
}

TEST(ResultAssemblerTest, ASliceThatChangesBytesAlreadyHeldIsRejected) {
  ResultAssembler a;
  const std::string bytes = Result("e1", 1, 30000).SerializeAsString();
  ASSERT_EQ(a.Add("n1", Slice("e1", 1, bytes, 0, 10000), kT0).kind, Kind::kPartial);
  std::string other = bytes;
  other[5000] ^= 0x55;
  SliceOutcome o = a.Add("n1", Slice("e1", 1, other, 0, 10000), kT0);
  EXPECT_EQ(o.kind, Kind::kRejected);
  EXPECT_THAT(o.error, HasSubstr("differs from the bytes already received"));
  EXPECT_EQ(a.entries(), 0u);
  EXPECT_EQ(a.buffered_bytes(), 0);
}

TEST(ResultAssemblerTest, HostileSlicesAreRejectedBeforeAnythingIsStored) {
  ResultAssembler a;
  const std::string bytes(1000, 'x');
  struct Case {
    const char* what;
    ResultSlice slice;
    const char* error;
  };
  auto base = [&] { return Slice("e1", 1, bytes, 0, 100); };
  std::vector<Case> cases;
  {
    ResultSlice s = base();
    s.execution_id = "";
    cases.push_back({"no id", s, "needs an execution id"});
  }
  {
    ResultSlice s = base();
    s.execution_id = std::string(300, 'i');
    cases.push_back({"long id", s, "needs an execution id"});
  }
  {
    ResultSlice s = base();
    s.attempt = 0;
    cases.push_back({"attempt 0", s, "has attempt 0"});
  }
  {
    ResultSlice s = base();
    s.total_bytes = 0;
    cases.push_back({"no total", s, "total_bytes 0 must be > 0"});
  }
  {
    ResultSlice s = base();
    s.total_bytes = -5;
    cases.push_back({"negative total", s, "must be > 0"});
  }
  {
    ResultSlice s = base();
    s.offset = -1;
    cases.push_back({"negative offset", s, "lies outside"});
  }
  {
    ResultSlice s = base();
    s.offset = 950;  // 950 + 100 > 1000
    cases.push_back({"past the end", s, "lies outside"});
  }
  {
    ResultSlice s = base();
    s.offset = std::numeric_limits<int64_t>::max() - 10;  // offset + size overflows
    cases.push_back({"overflowing offset", s, "lies outside"});
  }
  {
    ResultSlice s = base();
    s.total_bytes = 50;  // the slice alone is larger than the total
    cases.push_back({"slice larger than total", s, "lies outside"});
  }
  {
    ResultSlice s = base();
    s.data = {};
    cases.push_back({"empty", s, "an empty chunk"});
  }
  {
    ResultSlice s = base();
    s.last = true;
    cases.push_back({"early last", s, "the last chunk ends at 100, not at 1000"});
  }
  {
    ResultSlice s = base();
    s.total_bytes = (int64_t{32} << 20) + 1;
    cases.push_back({"over the cap", s, "accepts results of at most 33554432 bytes"});
  }
  for (const Case& c : cases) {
    SliceOutcome o = a.Add("n1", c.slice, kT0);
    EXPECT_EQ(o.kind, Kind::kRejected) << c.what;
    EXPECT_THAT(o.error, HasSubstr(c.error)) << c.what;
  }
  EXPECT_EQ(a.entries(), 0u);
  EXPECT_EQ(a.buffered_bytes(), 0);
}

TEST(ResultAssemblerTest, AResultOverTheHardCapIsRefusedWithTheCap) {
  ResultAssemblerOptions o;
  o.max_result_bytes = 50000;
  ResultAssembler a(o);
  const std::string bytes = Result("big", 1, 60000).SerializeAsString();
  SliceOutcome out = a.Add("n1", Slice("big", 1, bytes, 0, 1000), kT0);
  EXPECT_EQ(out.kind, Kind::kRejected);
  EXPECT_THAT(out.error, HasSubstr("[big] attempt 1 is "));
  EXPECT_THAT(out.error, HasSubstr("at most 50000 bytes"));
  EXPECT_EQ(a.entries(), 0u);
}

TEST(ResultAssemblerTest, BytesThatDoNotParseOrNameAnotherExecutionAreRejected) {
  ResultAssembler a;
  const std::string garbage = "\x07\x07\x07\x07";  // field 0, wire type 7: invalid
  SliceOutcome o = a.Add("n1", Slice("e1", 1, garbage, 0, 4), kT0);
  EXPECT_EQ(o.kind, Kind::kRejected);
  EXPECT_THAT(o.error, HasSubstr("do not parse as an ExecutionResult"));

  const std::string other = Result("e2", 1, 100).SerializeAsString();
  o = a.Add("n1", Slice("e1", 1, other, 0, static_cast<int64_t>(other.size())), kT0);
  EXPECT_EQ(o.kind, Kind::kRejected);
  EXPECT_THAT(o.error, HasSubstr("assemble into the result of [e2] attempt 1"));
  EXPECT_EQ(a.entries(), 0u);
  EXPECT_EQ(a.buffered_bytes(), 0);
}

TEST(ResultAssemblerTest, NewResultsBeyondTheBoundsAreToldToComeBackLater) {
  ResultAssemblerOptions opt;
  opt.max_entries = 2;
  opt.max_buffered_bytes = 100000;
  ResultAssembler a(opt);
  const std::string b1 = Result("e1", 1, 30000).SerializeAsString();
  const std::string b2 = Result("e2", 1, 30000).SerializeAsString();
  const std::string b3 = Result("e3", 1, 30000).SerializeAsString();
  const std::string huge = Result("e4", 1, 70000).SerializeAsString();
  ASSERT_EQ(a.Add("n1", Slice("e1", 1, b1, 0, 1000), kT0).kind, Kind::kPartial);
  // Over the byte budget (30 KB held + 70 KB new > 100 KB).
  SliceOutcome o = a.Add("n1", Slice("e4", 1, huge, 0, 1000), kT0);
  EXPECT_EQ(o.kind, Kind::kBusy);
  EXPECT_EQ(o.next_offset, 0);
  EXPECT_THAT(o.error, HasSubstr("send the result of [e4] attempt 1 again later"));
  ASSERT_EQ(a.Add("n1", Slice("e2", 1, b2, 0, 1000), kT0).kind, Kind::kPartial);
  // Over the entry count.
  EXPECT_EQ(a.Add("n2", Slice("e3", 1, b3, 0, 1000), kT0).kind, Kind::kBusy);
  // Results already started reserved their room: they finish.
  o = a.Add("n1", Slice("e1", 1, b1, 1000, static_cast<int64_t>(b1.size()) - 1000), kT0);
  EXPECT_EQ(o.kind, Kind::kComplete) << o.error;
  // And their room is free again.
  EXPECT_EQ(a.Add("n2", Slice("e3", 1, b3, 0, 1000), kT0).kind, Kind::kPartial);
}

TEST(ResultAssemblerTest, AnIdlePartialResultExpires) {
  ResultAssemblerOptions opt;
  opt.idle_expiry = std::chrono::seconds(60);
  ResultAssembler a(opt);
  const std::string bytes = Result("e1", 1, 30000).SerializeAsString();
  ASSERT_EQ(a.Add("n1", Slice("e1", 1, bytes, 0, 10000), kT0).kind, Kind::kPartial);
  // Touched within the expiry: kept.
  const auto t1 = kT0 + std::chrono::seconds(50);
  EXPECT_EQ(a.Add("n1", Slice("e1", 1, bytes, 10000, 10000), t1).next_offset, 20000);
  // Another result's slice long after: the idle one is dropped first.
  const std::string other = Result("e2", 1, 100).SerializeAsString();
  const auto t2 = t1 + std::chrono::seconds(61);
  EXPECT_EQ(a.Add("n1", Slice("e2", 1, other, 0, 10), t2).kind, Kind::kPartial);
  EXPECT_EQ(a.entries(), 1u);
  EXPECT_EQ(a.buffered_bytes(), static_cast<int64_t>(other.size()));
  // The agent's next slice of e1 starts it over: it is asked for offset 0.
  EXPECT_EQ(a.Add("n1", Slice("e1", 1, bytes, 20000, 5000), t2).next_offset, 0);
}

TEST(ResultAssemblerTest, NodesAttemptsAndTotalsKeepSeparateEntries) {
  ResultAssembler a;
  const std::string bytes = Result("e1", 1, 20000).SerializeAsString();
  ASSERT_EQ(a.Add("n1", Slice("e1", 1, bytes, 0, 10000), kT0).next_offset, 10000);
  // The same execution from another node is another partial result.
  EXPECT_EQ(a.Add("n2", Slice("e1", 1, bytes, 10000, 5000), kT0).next_offset, 0);
  EXPECT_EQ(a.entries(), 2u);
  // A different total for (n1, e1, 1): the agent serialized anew; start over.
  const std::string again = Result("e1", 1, 25000).SerializeAsString();
  EXPECT_EQ(a.Add("n1", Slice("e1", 1, again, 0, 5000), kT0).next_offset, 5000);
  EXPECT_EQ(a.entries(), 2u);
  EXPECT_EQ(a.buffered_bytes(),
            static_cast<int64_t>(bytes.size()) + static_cast<int64_t>(again.size()));
}

TEST(ResultAssemblerTest, TooScatteredSlicesAreNotKept) {
  ResultAssemblerOptions opt;
  opt.max_ranges = 2;
  ResultAssembler a(opt);
  const std::string bytes = Result("e1", 1, 30000).SerializeAsString();
  ASSERT_EQ(a.Add("n1", Slice("e1", 1, bytes, 0, 100), kT0).next_offset, 100);
  ASSERT_EQ(a.Add("n1", Slice("e1", 1, bytes, 1000, 100), kT0).next_offset, 100);
  // A third disjoint range is not stored; the answer says where to go on.
  SliceOutcome o = a.Add("n1", Slice("e1", 1, bytes, 5000, 100), kT0);
  EXPECT_EQ(o.kind, Kind::kPartial);
  EXPECT_EQ(o.next_offset, 100);
  // One that joins a held range is.
  EXPECT_EQ(a.Add("n1", Slice("e1", 1, bytes, 100, 900), kT0).next_offset, 1100);
}

// ------------------------------------------------------------ the handler

struct Recorder {
  std::vector<v1::SendResultsRequest> calls;
  absl::Status fail;
  int drop_verdicts = 0;
  absl::StatusOr<v1::SendResultsResponse> operator()(const v1::SendResultsRequest& r) {
    calls.push_back(r);
    if (!fail.ok()) return fail;
    v1::SendResultsResponse resp;
    for (int i = drop_verdicts; i < r.results_size(); ++i) {
      resp.add_verdicts(r.results(i).attempt() == 9 ? v1::RESULT_STALE : v1::RESULT_ACCEPTED);
    }
    return resp;
  }
};

v1::ResultChunk Chunk(const std::string& id, uint32_t attempt, const std::string& bytes,
                      int64_t offset, int64_t n) {
  v1::ResultChunk c;
  c.set_execution_id(id);
  c.set_attempt(attempt);
  c.set_offset(offset);
  c.set_total_bytes(static_cast<int64_t>(bytes.size()));
  c.set_data(bytes.substr(static_cast<size_t>(offset), static_cast<size_t>(n)));
  c.set_last(offset + n == static_cast<int64_t>(bytes.size()));
  return c;
}

TEST(HandleSendResultsTest, WholeResultsGoStraightThrough) {
  ResultAssembler a;
  Recorder rec;
  v1::SendResultsRequest req;
  req.set_node_id("n1");
  *req.add_results() = Result("e1", 1, 10);
  auto resp = HandleSendResults(a, req, kT0, std::ref(rec));
  ASSERT_TRUE(resp.ok()) << resp.status();
  ASSERT_EQ(rec.calls.size(), 1u);
  EXPECT_EQ(resp->verdicts_size(), 1);
  EXPECT_EQ(resp->chunks_size(), 0);
}

TEST(HandleSendResultsTest, PartialChunksAreAnsweredHereAndTheLastGetsTheRealVerdict) {
  ResultAssembler a;
  Recorder rec;
  const v1::ExecutionResult big = Result("big", 1, 50000);
  const std::string bytes = big.SerializeAsString();
  const auto total = static_cast<int64_t>(bytes.size());

  v1::SendResultsRequest first;
  first.set_node_id("n1");
  *first.add_results() = Result("small", 1, 10);
  *first.add_chunks() = Chunk("big", 1, bytes, 0, 30000);
  auto resp = HandleSendResults(a, first, kT0, std::ref(rec));
  ASSERT_TRUE(resp.ok()) << resp.status();
  ASSERT_EQ(rec.calls.size(), 1u);
  EXPECT_EQ(rec.calls[0].results_size(), 1);  // only the small one
  ASSERT_EQ(resp->verdicts_size(), 1);
  EXPECT_EQ(resp->verdicts(0), v1::RESULT_ACCEPTED);
  ASSERT_EQ(resp->chunks_size(), 1);
  EXPECT_EQ(resp->chunks(0).verdict(), v1::RESULT_PARTIAL);
  EXPECT_EQ(resp->chunks(0).next_offset(), 30000);

  v1::SendResultsRequest second;
  second.set_node_id("n1");
  *second.add_chunks() = Chunk("big", 1, bytes, 30000, total - 30000);
  resp = HandleSendResults(a, second, kT0, std::ref(rec));
  ASSERT_TRUE(resp.ok()) << resp.status();
  ASSERT_EQ(rec.calls.size(), 2u);
  ASSERT_EQ(rec.calls[1].results_size(), 1);
  EXPECT_EQ(rec.calls[1].results(0).SerializeAsString(), bytes);
  EXPECT_EQ(rec.calls[1].node_id(), "n1");
  EXPECT_EQ(resp->verdicts_size(), 0);
  ASSERT_EQ(resp->chunks_size(), 1);
  EXPECT_EQ(resp->chunks(0).verdict(), v1::RESULT_ACCEPTED);
  EXPECT_EQ(resp->chunks(0).next_offset(), total);
}

TEST(HandleSendResultsTest, RejectedAndStaleChunksSayWhy) {
  ResultAssembler a;
  Recorder rec;
  const std::string stale = Result("old", 9, 100).SerializeAsString();
  v1::SendResultsRequest req;
  req.set_node_id("n1");
  *req.add_chunks() = Chunk("old", 9, stale, 0, static_cast<int64_t>(stale.size()));
  v1::ResultChunk bad = Chunk("old", 9, stale, 0, 10);
  bad.set_offset(-3);
  *req.add_chunks() = bad;
  auto resp = HandleSendResults(a, req, kT0, std::ref(rec));
  ASSERT_TRUE(resp.ok()) << resp.status();
  ASSERT_EQ(resp->chunks_size(), 2);
  EXPECT_EQ(resp->chunks(0).verdict(), v1::RESULT_STALE);
  EXPECT_EQ(resp->chunks(1).verdict(), v1::RESULT_REJECTED);
  EXPECT_THAT(resp->chunks(1).error(), HasSubstr("lies outside"));
}

TEST(HandleSendResultsTest, TheManagersErrorsComeBackAsErrors) {
  ResultAssembler a;
  const std::string bytes = Result("e1", 1, 100).SerializeAsString();
  v1::SendResultsRequest req;
  req.set_node_id("n1");
  *req.add_chunks() = Chunk("e1", 1, bytes, 0, static_cast<int64_t>(bytes.size()));

  Recorder failing;
  failing.fail = absl::UnavailableError("shutting down");
  auto resp = HandleSendResults(a, req, kT0, std::ref(failing));
  EXPECT_EQ(resp.status().code(), absl::StatusCode::kUnavailable);

  Recorder short_answer;
  short_answer.drop_verdicts = 1;
  resp = HandleSendResults(a, req, kT0, std::ref(short_answer));
  EXPECT_EQ(resp.status().code(), absl::StatusCode::kInternal);
  EXPECT_THAT(resp.status().message(), HasSubstr("recording 1 results gave 0 verdicts"));
}

}  // namespace
}  // namespace flotilla::manager
