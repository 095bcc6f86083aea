#include <string>

#include "checkpoint/externals.h"
#include "checkpoint/tar_check.h"
#include "fuzz_targets.h"

namespace flotilla::fuzz {

int FuzzCheckpointManifest(const uint8_t* data, size_t size) {
  const std::string text(reinterpret_cast<const char*>(data), size);
  auto m = checkpoint::Manifest::Parse(text);
  if (!m.ok()) return 0;
  (void)checkpoint::ValidateManifest(*m, checkpoint::DefaultManifestPolicy());
  // What Parse accepted, Serialize writes back in a form Parse accepts.
  auto again = checkpoint::Manifest::Parse(m->Serialize());
  if (!again.ok() || again->Serialize() != m->Serialize()) __builtin_trap();
  return 0;
}

int FuzzTarCheck(const uint8_t* data, size_t size) {
  const std::string archive(reinterpret_cast<const char*>(data), size);
  (void)checkpoint::CheckTarArchive(archive, checkpoint::RootSkeletonTarPolicy());
  return 0;
}

}  // namespace flotilla::fuzz
