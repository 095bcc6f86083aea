#include "kv/queue.h"

#include "absl/strings/escaping.h"
#include "absl/strings/str_format.h"
#include "common/status_macros.h"
#include "kv/kv.h"

namespace flotilla::kv {

absl::Status ValidateQueueName(absl::string_view what, absl::string_view name,
                               const QueueOptions& options) {
  if (name.empty())
    return absl::InvalidArgumentError(absl::StrFormat("%s must not be empty", what));
  if (name.size() > options.max_name_bytes) {
    return absl::InvalidArgumentError(absl::StrFormat("%s \"%s...\" is %d bytes; the limit is %d",
                                                      what, absl::CHexEscape(name.substr(0, 64)),
                                                      name.size(), options.max_name_bytes));
  }
  for (size_t i = 0; i < name.size(); ++i) {
    unsigned char c = static_cast<unsigned char>(name[i]);
    if (c < 0x21 || c > 0x7e || c == '{' || c == '}') {
      return absl::InvalidArgumentError(absl::StrFormat(
          "%s \"%s\" has byte 0x%02x at offset %d; names are printable ASCII without spaces, "
          "'{' or '}'",
          what, absl::CHexEscape(name), c, i));
    }
  }
  return absl::OkStatus();
}

absl::Status ValidateQueueOptions(const QueueOptions& options) {
  if (options.visibility_timeout_ms <= 0) {
    return absl::InvalidArgumentError(absl::StrFormat(
        "queue visibility_timeout_ms %d must be positive", options.visibility_timeout_ms));
  }
  if (options.max_name_bytes == 0 || options.max_receive == 0 || options.max_length == 0 ||
      options.tenant_max_messages == 0) {
    return absl::InvalidArgumentError(
        "queue max_name_bytes, max_receive, max_length and tenant_max_messages must be positive");
  }
  return absl::OkStatus();
}

absl::Status ValidatePayload(absl::string_view payload, const QueueOptions& options) {
  if (payload.size() > options.max_payload_bytes) {
    return absl::InvalidArgumentError(
        absl::StrFormat("payload is %d bytes; the limit is %d (QueueOptions::max_payload_bytes)",
                        payload.size(), options.max_payload_bytes));
  }
  return absl::OkStatus();
}

absl::Status QueueFull(absl::string_view queue, uint64_t length, const QueueOptions& options) {
  return absl::ResourceExhaustedError(absl::StrFormat(
      "queue \"%s\" is full: it holds %d messages and its cap is %d (limits.queue_max_length); "
      "a message stops counting once every consumer group has acked it and the messages "
      "before it, so receive and ack to make room",
      queue, length, options.max_length));
}

absl::Status TenantQueuesFull(absl::string_view queue, uint64_t held, const QueueOptions& options) {
  return absl::ResourceExhaustedError(absl::StrFormat(
      "tenant \"%s\" holds %d messages in its queues, its cap (limits.tenant_queue_max_messages "
      "is %d); receive and ack messages, or delete queues, to make room (send to queue \"%s\")",
      TenantOfNamespace(queue), held, options.tenant_max_messages, queue));
}

absl::Status ValidateReceive(absl::string_view queue, absl::string_view group,
                             absl::string_view consumer, const ReceiveOptions& receive,
                             const QueueOptions& options) {
  RETURN_IF_ERROR(ValidateQueueName("queue name", queue, options));
  RETURN_IF_ERROR(ValidateQueueName("consumer group", group, options));
  RETURN_IF_ERROR(ValidateQueueName("consumer", consumer, options));
  if (receive.max_messages == 0 || receive.max_messages > options.max_receive) {
    return absl::InvalidArgumentError(
        absl::StrFormat("max_messages %d is out of range 1..%d (QueueOptions::max_receive)",
                        receive.max_messages, options.max_receive));
  }
  if (receive.block_ms < 0) {
    return absl::InvalidArgumentError(absl::StrFormat("block_ms %d is negative", receive.block_ms));
  }
  return absl::OkStatus();
}

}  // namespace flotilla::kv
