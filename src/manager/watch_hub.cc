#include "manager/watch_hub.h"

#include <algorithm>
#include <utility>

#include "absl/strings/str_cat.h"

namespace flotilla::manager {

namespace {

v1::WatchEvent Header(const WatchView& view) {
  v1::WatchEvent ev;
  ev.set_state(view.state);
  ev.set_attempt(view.attempt);
  ev.set_node_id(view.node_id);
  return ev;
}

}  // namespace

bool WatchHub::Feed(const WatchView& view, Stream& s) {
  std::vector<v1::WatchEvent> events;
  // A new attempt streams its output from the start.
  if (view.attempt != s.attempt) s.sent[0] = s.sent[1] = 0;
  // A migration keeps the attempt and its output offsets; only the node changes.
  if (s.first || view.state != s.state || view.attempt != s.attempt ||
      view.node_id != s.node_id) {
    events.push_back(Header(view));
    s.state = view.state;
    s.attempt = view.attempt;
    s.node_id = view.node_id;
    s.first = false;
  }
  if (view.final_execution != nullptr) {
    v1::WatchEvent ev = Header(view);
    *ev.mutable_execution() = *view.final_execution;
    events.push_back(std::move(ev));
    s.sink->Push(std::move(events), absl::OkStatus());
    return true;
  }
  if (s.with_output) {
    for (int i = 0; i < 2; ++i) {
      const std::string* out = view.output[i];
      if (out == nullptr || out->size() <= s.sent[i]) continue;
      v1::WatchEvent ev = Header(view);
      auto* chunk = ev.mutable_output();
      chunk->set_execution_id(view.id);
      chunk->set_attempt(view.attempt);
      chunk->set_stream(i == 0 ? v1::OUTPUT_STDOUT : v1::OUTPUT_STDERR);
      chunk->set_offset(static_cast<int64_t>(s.sent[i]));
      chunk->set_data(out->substr(s.sent[i]));
      s.sent[i] = out->size();
      events.push_back(std::move(ev));
    }
  }
  if (!events.empty()) s.sink->Push(std::move(events), std::nullopt);
  return false;
}

absl::Status WatchHub::Add(const WatchView& view, bool with_output, WatchSink* sink) {
  auto& list = streams_[view.id];
  if (list.size() >= kMaxPerExecution || total_ >= kMaxStreams) {
    if (list.empty()) streams_.erase(view.id);
    return absl::ResourceExhaustedError(absl::StrCat(
        "too many watch streams (", list.size(), " on ", view.id, ", ", total_,
        " in all); close some and watch again"));
  }
  Stream s;
  s.sink = sink;
  s.with_output = with_output;
  if (Feed(view, s)) {
    if (list.empty()) streams_.erase(view.id);
    return absl::OkStatus();
  }
  list.push_back(std::move(s));
  ++total_;
  return absl::OkStatus();
}

void WatchHub::Remove(const std::string& id, WatchSink* sink) {
  auto it = streams_.find(id);
  if (it == streams_.end()) return;
  auto& list = it->second;
  auto gone = std::remove_if(list.begin(), list.end(),
                             [sink](const Stream& s) { return s.sink == sink; });
  total_ -= static_cast<size_t>(list.end() - gone);
  list.erase(gone, list.end());
  if (list.empty()) streams_.erase(it);
}

void WatchHub::Notify(const WatchView& view) {
  auto it = streams_.find(view.id);
  if (it == streams_.end()) return;
  auto& list = it->second;
  size_t kept = 0;
  for (size_t i = 0; i < list.size(); ++i) {
    if (Feed(view, list[i])) continue;  // over: dropped
    if (kept != i) list[kept] = std::move(list[i]);
    ++kept;
  }
  total_ -= list.size() - kept;
  list.resize(kept);
  if (list.empty()) streams_.erase(it);
}

void WatchHub::CloseAll(const absl::Status& status) {
  for (auto& [id, list] : streams_) {
    for (auto& s : list) s.sink->Push({}, status);
  }
  streams_.clear();
  total_ = 0;
}

}  // namespace flotilla::manager
