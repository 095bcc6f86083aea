// Time for the shells (services, agents, the manager's loops).
//
// Pure cores never read a clock: they take time as an argument. Shells take a
// `Clock*` so that tests can substitute a FakeClock and advance time instead
// of sleeping. NowUnixMs()/MonotonicUs() below are the real clock's reads for
// code that has no Clock injected (CLI, one-shot tools).
#pragma once

#include <atomic>
#include <chrono>
#include <cstdint>

namespace flotilla {

inline int64_t NowUnixMs() {
  return std::chrono::duration_cast<std::chrono::milliseconds>(
             std::chrono::system_clock::now().time_since_epoch())
      .count();
}

// Monotonic microseconds, for measuring durations.
inline int64_t MonotonicUs() {
  return std::chrono::duration_cast<std::chrono::microseconds>(
             std::chrono::steady_clock::now().time_since_epoch())
      .count();
}

// The one time source of a component. Thread-safe.
class Clock {
 public:
  virtual ~Clock() = default;
  // Wall-clock milliseconds since the Unix epoch: timestamps that are stored
  // or shown.
  virtual int64_t UnixMs() const = 0;
  // Monotonic milliseconds: leases, deadlines, durations.
  virtual int64_t MonoMs() const = 0;

  // The process's real clock (never destroyed).
  static Clock* Real();
};

class RealClock final : public Clock {
 public:
  int64_t UnixMs() const override { return NowUnixMs(); }
  int64_t MonoMs() const override { return MonotonicUs() / 1000; }
};

inline Clock* Clock::Real() {
  static RealClock* real = new RealClock();
  return real;
}

// A clock that moves only when told to. Starts at a fixed, plausible date.
class FakeClock final : public Clock {
 public:
  explicit FakeClock(int64_t unix_ms = 1'800'000'000'000, int64_t mono_ms = 1'000'000)
      : unix_ms_(unix_ms), mono_ms_(mono_ms) {}
  int64_t UnixMs() const override { return unix_ms_.load(); }
  int64_t MonoMs() const override { return mono_ms_.load(); }
  void Advance(std::chrono::milliseconds d) {
    unix_ms_ += d.count();
    mono_ms_ += d.count();
  }

 private:
  std::atomic<int64_t> unix_ms_;
  std::atomic<int64_t> mono_ms_;
};

}  // namespace flotilla
