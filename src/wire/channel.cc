#include "wire/channel.h"

namespace flotilla::wire {

namespace {

int Ms(std::chrono::milliseconds d) { return static_cast<int>(d.count()); }

}  // namespace

grpc::ChannelArguments ChannelArgs(const ChannelLimits& limits) {
  grpc::ChannelArguments args;
  if (limits.max_send_bytes >= 0) args.SetMaxSendMessageSize(limits.max_send_bytes);
  if (limits.max_receive_bytes >= 0) args.SetMaxReceiveMessageSize(limits.max_receive_bytes);
  args.SetInt(GRPC_ARG_KEEPALIVE_TIME_MS, Ms(kKeepaliveTime));
  args.SetInt(GRPC_ARG_KEEPALIVE_TIMEOUT_MS, Ms(kKeepaliveTimeout));
  // Idle channels too: the CLI and the manager's agent clients sit idle
  // between calls, and a dead connection should fail before the next call.
  args.SetInt(GRPC_ARG_KEEPALIVE_PERMIT_WITHOUT_CALLS, 1);
  // By default gRPC stops pinging after two pings without data, which would
  // leave a quiet Watch stream (a task printing nothing) unwatched.
  args.SetInt(GRPC_ARG_HTTP2_MAX_PINGS_WITHOUT_DATA, 0);
  // After a failed connect gRPC waits before the next (1 s, growing to 2
  // minutes), failing calls at once meanwhile. A manager that restarts, or a
  // standby that becomes the leader, must be reached within a heartbeat, not
  // minutes later: retry at least every second. (The minimum connect
  // timeout, GRPC_ARG_MIN_RECONNECT_BACKOFF_MS, stays at its default: set
  // low, connects to a loaded peer time out over and over.)
  args.SetInt(GRPC_ARG_INITIAL_RECONNECT_BACKOFF_MS, Ms(kInitialReconnectBackoff));
  args.SetInt(GRPC_ARG_MAX_RECONNECT_BACKOFF_MS, Ms(kMaxReconnectBackoff));
  return args;
}

std::shared_ptr<grpc::Channel> NewChannel(const std::string& address, const ChannelLimits& limits,
                                          std::shared_ptr<grpc::ChannelCredentials> credentials,
                                          const std::string& peer_name) {
  grpc::ChannelArguments args = ChannelArgs(limits);
  if (!peer_name.empty()) args.SetSslTargetNameOverride(peer_name);
  return grpc::CreateCustomChannel(address, std::move(credentials), args);
}

void ConfigureServerKeepalive(grpc::ServerBuilder& builder) {
  builder.AddChannelArgument(GRPC_ARG_HTTP2_MIN_RECV_PING_INTERVAL_WITHOUT_DATA_MS,
                             Ms(kMinPingInterval));
  builder.AddChannelArgument(GRPC_ARG_KEEPALIVE_PERMIT_WITHOUT_CALLS, 1);
  builder.AddChannelArgument(GRPC_ARG_HTTP2_MAX_PINGS_WITHOUT_DATA, 0);
  builder.AddChannelArgument(GRPC_ARG_KEEPALIVE_TIME_MS, Ms(kKeepaliveTime));
  builder.AddChannelArgument(GRPC_ARG_KEEPALIVE_TIMEOUT_MS, Ms(kKeepaliveTimeout));
}

}  // namespace flotilla::wire
