// How every Flotilla gRPC channel and server is set up, in one place: the
// manager's channels to agents, the agents' to the manager and to each other
// (migration), and the CLI's to the manager.
//
// Every channel pings an idle connection (keepalive) so that a peer that
// vanished without closing it (a host that died, a paused process, a NAT that
// forgot the flow) is noticed in about kKeepaliveTimeMs + kKeepaliveTimeoutMs
// instead of at the kernel's TCP timeout; a call on a dead connection then
// fails UNAVAILABLE and its caller retries on a fresh one. Every server
// accepts those pings: gRPC's default would answer pings more frequent than
// every 5 minutes on a connection without calls with GOAWAY
// ("too_many_pings") and drop it. Servers ping their clients too, so a long
// Watch stream whose client vanished is cancelled.
//
// Keepalive does not bound a call: every call site still sets a deadline.
#pragma once

#include <chrono>
#include <memory>
#include <string>

#include <grpcpp/grpcpp.h>

namespace flotilla::wire {

inline constexpr std::chrono::milliseconds kKeepaliveTime{20000};
inline constexpr std::chrono::milliseconds kKeepaliveTimeout{10000};
// The fastest pings a server accepts; below kKeepaliveTime with room for
// timer jitter, so a client on these settings never collects a strike.
inline constexpr std::chrono::milliseconds kMinPingInterval{10000};
// Reconnect backoff after a failed connect (see ChannelArgs).
inline constexpr std::chrono::milliseconds kInitialReconnectBackoff{200};
inline constexpr std::chrono::milliseconds kMaxReconnectBackoff{1000};

struct ChannelLimits {
  int max_send_bytes = -1;     // -1: gRPC's default (unlimited)
  int max_receive_bytes = -1;  // -1: gRPC's default (4 MiB)
};

// The arguments NewChannel uses: keepalive and the message limits.
grpc::ChannelArguments ChannelArgs(const ChannelLimits& limits);

// A channel to `address` with ChannelArgs(limits) and `credentials`
// (auth/tls.h makes them). `peer_name`, when not empty, is the name the
// server's certificate must carry, whatever address was dialled.
std::shared_ptr<grpc::Channel> NewChannel(const std::string& address, const ChannelLimits& limits,
                                          std::shared_ptr<grpc::ChannelCredentials> credentials,
                                          const std::string& peer_name);

// Lets the server accept the clients' keepalive pings and ping its own
// clients. Call before BuildAndStart.
void ConfigureServerKeepalive(grpc::ServerBuilder& builder);

}  // namespace flotilla::wire
