#include "wire/endpoints.h"

#include <utility>

#include "absl/strings/ascii.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "absl/strings/str_split.h"

namespace flotilla::wire {

namespace {
constexpr size_t kMaxEndpoints = 16;
}  // namespace

absl::StatusOr<std::vector<std::string>> ParseEndpointList(const std::string& list) {
  std::vector<std::string> out;
  for (absl::string_view part : absl::StrSplit(list, ',')) {
    const std::string entry(absl::StripAsciiWhitespace(part));
    if (entry.empty()) {
      return absl::InvalidArgumentError(
          absl::StrCat("manager address list '", list, "' has an empty entry"));
    }
    const size_t colon = entry.rfind(':');
    if (colon == std::string::npos || colon == 0 || colon + 1 == entry.size()) {
      return absl::InvalidArgumentError(
          absl::StrCat("manager address '", entry, "' is not host:port"));
    }
    out.push_back(entry);
  }
  if (out.size() > kMaxEndpoints) {
    return absl::InvalidArgumentError(absl::StrCat("manager address list has ", out.size(),
                                                   " entries; at most ", kMaxEndpoints));
  }
  return out;
}

bool MovesToNextManager(grpc::StatusCode code, bool deadline_moves) {
  if (code == grpc::StatusCode::UNAVAILABLE) return true;
  return deadline_moves && code == grpc::StatusCode::DEADLINE_EXCEEDED;
}

Endpoints::Endpoints(std::vector<std::string> addresses, ChannelMaker make)
    : addresses_(std::move(addresses)), make_(std::move(make)), channels_(addresses_.size()) {}

Endpoints::Pick Endpoints::Current() {
  absl::MutexLock lock(&mu_);
  std::shared_ptr<grpc::Channel>& channel = channels_[current_];
  if (channel == nullptr) channel = make_(addresses_[current_]);
  return Pick{current_, addresses_[current_], channel};
}

size_t Endpoints::Failed(size_t index) {
  absl::MutexLock lock(&mu_);
  if (index == current_ && addresses_.size() > 1) current_ = (current_ + 1) % addresses_.size();
  return current_;
}

std::string Endpoints::Describe() const { return absl::StrJoin(addresses_, ","); }

}  // namespace flotilla::wire
