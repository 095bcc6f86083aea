// Wall-clock reads for the shells (services, agents). Pure cores never call
// these: they take time as an argument.
#pragma once

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

}  // namespace flotilla
