// The libFuzzer entry point of one target, chosen at compile time
// (FLOTILLA_FUZZ_TARGET=FuzzX): one binary per target.
#include "fuzz_targets.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  return flotilla::fuzz::FLOTILLA_FUZZ_TARGET(data, size);
}
