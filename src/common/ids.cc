#include "common/ids.h"

#include <random>

namespace flotilla {

std::string NewId(std::string_view prefix) {
  static constexpr char kAlphabet[] = "abcdefghijklmnopqrstuvwxyz234567";
  thread_local std::mt19937_64 rng{std::random_device{}()};
  uint64_t bits = rng();
  std::string id(prefix);
  for (int i = 0; i < 12; ++i) {
    id.push_back(kAlphabet[bits & 31]);
    bits >>= 5;
  }
  return id;
}

bool IsValidId(std::string_view id) {
  if (id.empty() || id.size() > 128) return false;
  for (char c : id) {
    bool ok = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
              c == '.' || c == '_' || c == ':' || c == '-';
    if (!ok) return false;
  }
  return true;
}

}  // namespace flotilla
