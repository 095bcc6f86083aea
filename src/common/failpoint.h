// Failpoints: named places where a test can make the process die, to prove
// that a crash at that exact point loses nothing that was acknowledged.
//
// FLOTILLA_FAILPOINT=name[:n] in the environment arms one point: its n-th hit
// (default 1) kills the process with SIGKILL, as `kill -9` would, without
// running destructors or flushing anything. Unarmed points cost one relaxed
// atomic load. Names in use are listed in docs/reliability.md.
#pragma once

#include <string_view>

namespace flotilla {

// Kills the process if `name` is the armed failpoint and this is its n-th hit.
void Failpoint(std::string_view name);

// Arms `spec` ("name" or "name:n") in this process, as the environment would
// (tests of the mechanism itself).
void ArmFailpointForTest(std::string_view spec);

}  // namespace flotilla
