// Records and checks shared by the Store tests (store_conformance_test.cc,
// sqlite_store_test.cc, etcd_store_test.cc): ids and payloads with NUL and
// high bytes in them, so a backend that mangles binary data fails.
#pragma once

#include <cstdint>
#include <string>

#include "gtest/gtest.h"
#include "model/model.h"
#include "store/store.h"

namespace flotilla::store::testing {

using model::ExecutionState;

inline std::string Binary(const std::string& tag) {
  std::string s = tag;
  s.push_back('\0');
  s.append("\x01\xff\x00tail", 7);
  s.push_back('\0');
  return s;
}

inline ExecutionRecord MakeExecution(const std::string& id,
                              ExecutionState state = ExecutionState::kQueued) {
  ExecutionRecord rec;
  rec.id = id;
  rec.user_id = "alice";
  rec.priority = 7;
  rec.request = Binary("request-" + id);
  rec.state = state;
  rec.submitted_ms = 1000;
  return rec;
}

inline AttemptRecord Attempt(const std::string& id, uint32_t n, const std::string& node_id = "") {
  AttemptRecord a;
  a.execution_id = id;
  a.attempt = n;
  a.node_id = node_id;
  return a;
}

inline NodeRecord Node(const std::string& id, const std::string& spec = "") {
  NodeRecord n;
  n.id = id;
  n.spec = spec;
  return n;
}

inline void ExpectSameExecution(const ExecutionRecord& a, const ExecutionRecord& b) {
  EXPECT_EQ(a.id, b.id);
  EXPECT_EQ(a.seq, b.seq);
  EXPECT_EQ(a.user_id, b.user_id);
  EXPECT_EQ(a.priority, b.priority);
  EXPECT_EQ(a.request, b.request);
  EXPECT_EQ(a.state, b.state);
  EXPECT_EQ(a.attempt, b.attempt);
  EXPECT_EQ(a.node_id, b.node_id);
  EXPECT_EQ(a.placement, b.placement);
  EXPECT_EQ(a.error, b.error);
  EXPECT_EQ(a.cancel_requested, b.cancel_requested);
  EXPECT_EQ(a.submitted_ms, b.submitted_ms);
  EXPECT_EQ(a.assigned_ms, b.assigned_ms);
  EXPECT_EQ(a.started_ms, b.started_ms);
  EXPECT_EQ(a.finished_ms, b.finished_ms);
}

}  // namespace flotilla::store::testing
