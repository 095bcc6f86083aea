// WatchHub on plain values: what each stream is pushed as an execution's
// state, attempt, node and output change, and how streams end.
#include "manager/watch_hub.h"

#include <optional>
#include <string>
#include <vector>

#include "gmock/gmock.h"
#include "gtest/gtest.h"

namespace flotilla::manager {
namespace {

using ::testing::SizeIs;

class RecordingSink : public WatchSink {
 public:
  void Push(std::vector<v1::WatchEvent> events, std::optional<absl::Status> end) override {
    for (auto& e : events) this->events.push_back(std::move(e));
    if (end) this->end = end;
  }
  std::vector<v1::WatchEvent> events;
  std::optional<absl::Status> end;
};

struct Exec {
  std::string out, err;
  WatchView View(v1::ExecutionState state, uint32_t attempt, const std::string& node) {
    WatchView v;
    v.id = "ex-1";
    v.state = state;
    v.attempt = attempt;
    v.node_id = node;
    v.output[0] = &out;
    v.output[1] = &err;
    return v;
  }
};

TEST(WatchHubTest, FirstEventIsTheCurrentStateThenOnlyWhatIsNew) {
  WatchHub hub;
  Exec ex;
  RecordingSink sink;
  ASSERT_TRUE(hub.Add(ex.View(v1::EXECUTION_QUEUED, 0, ""), true, &sink).ok());
  ASSERT_THAT(sink.events, SizeIs(1));
  EXPECT_EQ(sink.events[0].state(), v1::EXECUTION_QUEUED);
  hub.Notify(ex.View(v1::EXECUTION_QUEUED, 0, ""));
  EXPECT_THAT(sink.events, SizeIs(1)) << "nothing changed, nothing pushed";
  hub.Notify(ex.View(v1::EXECUTION_RUNNING, 1, "n1"));
  ex.out = "hello ";
  hub.Notify(ex.View(v1::EXECUTION_RUNNING, 1, "n1"));
  ex.out += "world";
  hub.Notify(ex.View(v1::EXECUTION_RUNNING, 1, "n1"));
  ASSERT_THAT(sink.events, SizeIs(4));
  EXPECT_EQ(sink.events[1].node_id(), "n1");
  EXPECT_EQ(sink.events[2].output().data(), "hello ");
  EXPECT_EQ(sink.events[3].output().offset(), 6);
  EXPECT_EQ(sink.events[3].output().data(), "world");
  EXPECT_FALSE(sink.end.has_value());
}

TEST(WatchHubTest, NewAttemptRestartsOutputAndMigrationKeepsIt) {
  WatchHub hub;
  Exec ex;
  RecordingSink sink;
  ex.out = "abc";
  ASSERT_TRUE(hub.Add(ex.View(v1::EXECUTION_RUNNING, 1, "n1"), true, &sink).ok());
  ex.out = "abcdef";
  hub.Notify(ex.View(v1::EXECUTION_RUNNING, 1, "n2"));  // migrated: same attempt
  EXPECT_EQ(sink.events.back().output().offset(), 3);
  ex.out = "x";
  hub.Notify(ex.View(v1::EXECUTION_RUNNING, 2, "n3"));  // re-run: from the start
  EXPECT_EQ(sink.events.back().output().offset(), 0);
  EXPECT_EQ(sink.events.back().output().data(), "x");
}

TEST(WatchHubTest, FinalEventEndsEveryStreamAndWithoutOutputNoChunks) {
  WatchHub hub;
  Exec ex;
  RecordingSink with, without;
  ASSERT_TRUE(hub.Add(ex.View(v1::EXECUTION_RUNNING, 1, "n1"), true, &with).ok());
  ASSERT_TRUE(hub.Add(ex.View(v1::EXECUTION_RUNNING, 1, "n1"), false, &without).ok());
  ex.out = "data";
  hub.Notify(ex.View(v1::EXECUTION_RUNNING, 1, "n1"));
  EXPECT_THAT(without.events, SizeIs(1));
  v1::Execution done;
  done.set_id("ex-1");
  done.set_state(v1::EXECUTION_SUCCEEDED);
  WatchView v = ex.View(v1::EXECUTION_SUCCEEDED, 1, "n1");
  v.final_execution = &done;
  hub.Notify(v);
  ASSERT_TRUE(with.end.has_value());
  EXPECT_TRUE(with.end->ok());
  EXPECT_TRUE(with.events.back().has_execution());
  EXPECT_TRUE(without.end.has_value());
  EXPECT_EQ(hub.size(), 0u);
  EXPECT_FALSE(hub.Watched("ex-1"));
}

TEST(WatchHubTest, RemoveAndCloseAllAndBounds) {
  WatchHub hub;
  Exec ex;
  std::vector<RecordingSink> sinks(WatchHub::kMaxPerExecution + 1);
  for (size_t i = 0; i < WatchHub::kMaxPerExecution; ++i) {
    ASSERT_TRUE(hub.Add(ex.View(v1::EXECUTION_QUEUED, 0, ""), false, &sinks[i]).ok());
  }
  absl::Status over = hub.Add(ex.View(v1::EXECUTION_QUEUED, 0, ""), false, &sinks.back());
  EXPECT_EQ(over.code(), absl::StatusCode::kResourceExhausted);
  hub.Remove("ex-1", &sinks[0]);
  EXPECT_EQ(hub.size(), WatchHub::kMaxPerExecution - 1);
  hub.CloseAll(absl::UnavailableError("stopping"));
  EXPECT_FALSE(sinks[0].end.has_value()) << "a removed stream is not pushed to";
  ASSERT_TRUE(sinks[1].end.has_value());
  EXPECT_EQ(sinks[1].end->code(), absl::StatusCode::kUnavailable);
  EXPECT_EQ(hub.size(), 0u);
}

}  // namespace
}  // namespace flotilla::manager
