// How a TLS client of the manager's HTTPS port (the CLI's REST calls, tests,
// benches) decides to trust it: exactly as the gRPC channels of tls.h do.
// The server must present a chain to the federation's CA ending in a
// certificate named kManagerName, whatever address was dialled: managers
// are known by that name, not by their addresses, so a certificate issued
// without the address in it still serves.
#pragma once

#include <openssl/ssl.h>

#include <string>

#include "absl/status/status.h"

namespace flotilla::auth {

// Configures `ctx` (a client context, before its first connection) to accept
// only the manager certified by the CA in `ca_file`, over TLS 1.2 or later.
// The caller must not also ask its HTTP library to check the host name (it
// would compare the dialled address instead). Returns InvalidArgument naming
// the file if the CA does not load.
absl::Status TrustManagerOnly(SSL_CTX* ctx, const std::string& ca_file);

}  // namespace flotilla::auth
