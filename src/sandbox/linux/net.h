// Net: the container's network. With a new network namespace (the default)
// the container has only a loopback interface, which starts down; the child
// brings it up so that programs talking to 127.0.0.1 work. No other
// interface exists, so nothing leaves the container. Requests allowed
// egress get a NAT attached afterwards (egress.h), never the host's network.
//
// A pre-created namespace to setns() into would save the ~0.4 ms that
// CLONE_NEWNET costs; not built yet.
#pragma once

namespace flotilla::sandbox::isolation {

// Child side, async-signal-safe: sets IFF_UP on "lo". Returns 0 or an errno.
int BringUpLoopback();

}  // namespace flotilla::sandbox::isolation
