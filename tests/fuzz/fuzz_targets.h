// Fuzz targets: one pure entry point per parser of hostile input, in
// libFuzzer's shape. Each returns 0 and must neither crash, hang, leak nor
// trip a sanitizer on any input; where a parser promises a round trip, the
// target checks it and traps when it breaks.
//
// They are built twice: into libFuzzer binaries with clang (`make fuzz`,
// scripts/fuzz), and into fuzz_replay_test, which runs every target over
// its committed corpus (tests/fuzz/corpus/<target>/) with the normal
// compiler in `make test`.
#pragma once

#include <cstddef>
#include <cstdint>

namespace flotilla::fuzz {

// Guest frames (guest/protocol.h): FrameReader over the bytes, each frame
// through its type's decoder, and decoded messages re-encoded and decoded.
int FuzzGuestProtocol(const uint8_t* data, size_t size);

// A `flotilla submit` request file (cli/request_file.h).
int FuzzRequestYaml(const uint8_t* data, size_t size);

// A checkpoint manifest (checkpoint/externals.h): Parse, ValidateManifest,
// and Serialize then Parse again.
int FuzzCheckpointManifest(const uint8_t* data, size_t size);

// A checkpoint's root archive (checkpoint/tar_check.h).
int FuzzTarCheck(const uint8_t* data, size_t size);

}  // namespace flotilla::fuzz
