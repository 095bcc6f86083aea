// The federation's private certificate authority and the certificates it
// issues: one for the manager, one per node (agent). Every gRPC connection
// between them is mutual TLS under this CA, and a peer's identity is the
// common name of the certificate it presented, never a field in a request.
//
// Names: the manager is "manager.flotilla"; node `id` is "<id>.node.flotilla".
// Clients check the server's certificate against the name they expect (not
// the address they dialled), so a node cannot pose as the manager, nor one
// node as another, even on the same host. A node certificate also carries the
// highest trust level the CA grants that node (in its organizational unit
// "trust=N"); the manager caps a registration's claim at it.
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"

namespace flotilla::auth {

inline constexpr char kManagerName[] = "manager.flotilla";
inline constexpr char kNodeSuffix[] = ".node.flotilla";

// "<id>.node.flotilla".
std::string NodeName(const std::string& node_id);
// The node id in a node certificate's name; nullopt for any other name.
std::optional<std::string> NodeIdFromName(const std::string& name);
// Node ids become certificate names: 1-63 characters of [A-Za-z0-9._-],
// starting with a letter or digit. InvalidArgument names what was wrong.
absl::Status ValidateNodeId(const std::string& id);

// The files of one party: the CA certificate that every peer must chain to,
// and the party's own certificate and private key (PEM).
struct TlsFiles {
  std::string ca_cert;
  std::string cert;
  std::string key;
};

// How a process talks to its peers: mutual TLS with `files`, or (only in the
// explicit development mode, logged loudly) plaintext without identities.
struct Transport {
  bool insecure = false;
  TlsFiles files;
  // The CA's certificate revocation list (revocation.h); empty: none.
  std::string crl;
};

// Checks that a secure transport names all three files; `where` prefixes
// the message ("tls." of a config file).
absl::Status ValidateTransport(const Transport& t, const std::string& where);

// Creates a CA (an EC P-256 key and a self-signed certificate) in `dir`:
// ca.key (mode 0600) and ca.crt. AlreadyExists if ca.key is there.
absl::Status InitCa(const std::string& dir, int valid_days = 3650);

enum class Role { kManager, kNode };

struct IssueRequest {
  Role role = Role::kNode;
  std::string node_id;          // for kNode
  int trust_level = 0;          // for kNode: the highest level it may claim (0-10)
  std::vector<std::string> dns;  // extra DNS names (the manager's host names)
  std::vector<std::string> ips;  // extra IP addresses ("127.0.0.1")
  int valid_days = 825;
};

// Issues a certificate signed by the CA in `ca_dir`; writes <out>.crt and
// <out>.key (0600), where `out` is a path prefix. Returns the TlsFiles.
absl::StatusOr<TlsFiles> Issue(const std::string& ca_dir, const IssueRequest& req,
                               const std::string& out);

// What a verified peer certificate says about its holder.
struct PeerCertificate {
  std::string name;  // the common name
  std::optional<std::string> node_id;
  std::optional<int> trust_level;  // from "trust=N"; nullopt if absent
};

// Reads a PEM certificate (already verified by TLS against the CA).
absl::StatusOr<PeerCertificate> ParsePeerCertificate(const std::string& pem);

}  // namespace flotilla::auth
