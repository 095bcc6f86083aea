// Identifiers: short random ids for executions ("ex-" + 12 base32 chars).
#pragma once

#include <string>
#include <string_view>

namespace flotilla {

// Returns prefix + 12 random lowercase base32 characters (60 bits), drawn
// from a thread-local generator seeded from the OS.
std::string NewId(std::string_view prefix);

// Returns true if id is usable as an execution or node id: 1..128 characters
// from [A-Za-z0-9._:-].
bool IsValidId(std::string_view id);

}  // namespace flotilla
