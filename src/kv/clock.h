// Clock: the time source of the embedded shared-state stores (MemoryKv's TTLs,
// MemoryQueue's visibility deadlines), so that tests control time instead of
// sleeping. Only the embedded backends take one: the Redis backends use the
// Redis server's own clock (PEXPIREAT, stream idle times).
//
// Thread-safety: implementations are safe to call from any thread.
#pragma once

#include <atomic>
#include <cstdint>

#include "common/clock.h"

namespace flotilla::kv {

class Clock {
 public:
  virtual ~Clock() = default;

  // Returns the current time in milliseconds since the Unix epoch.
  virtual int64_t NowMs() const = 0;
};

// The wall clock.
class RealClock final : public Clock {
 public:
  int64_t NowMs() const override { return NowUnixMs(); }
};

// A clock that moves only when told to; for tests and the simulator.
class ManualClock final : public Clock {
 public:
  explicit ManualClock(int64_t start_ms = 1'000'000) : now_ms_(start_ms) {}

  int64_t NowMs() const override { return now_ms_.load(std::memory_order_acquire); }
  void AdvanceMs(int64_t delta_ms) { now_ms_.fetch_add(delta_ms, std::memory_order_acq_rel); }
  void SetMs(int64_t now_ms) { now_ms_.store(now_ms, std::memory_order_release); }

 private:
  std::atomic<int64_t> now_ms_;
};

}  // namespace flotilla::kv
