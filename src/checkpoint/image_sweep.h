// ImageSweep: removes checkpoint images, snapshots and failed-dump logs an
// agent left in its image directory, once they are older than a retention.
//
// Each path that makes an image also removes it when done (migration: on
// success and on every failure), so the sweep is for what those could not
// remove: a crash, a killed agent, a snapshot nobody fetched.
//
// Thread-safety: a free function; removing a directory another thread is
// still writing is the caller's concern (the retention should be far longer
// than any transfer).
#pragma once

#include <chrono>
#include <string>

#include "absl/status/statusor.h"

namespace flotilla::checkpoint {

// Removes every entry directly below `root` whose newest modification time
// (its own, or for a directory that of its newest direct child) is before
// `now - max_age`. Returns how many entries went; a missing `root` is 0.
absl::StatusOr<int> SweepImages(const std::string& root,
                                std::chrono::system_clock::time_point now,
                                std::chrono::seconds max_age);

}  // namespace flotilla::checkpoint
