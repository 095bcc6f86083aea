#include "manager/prewarmer.h"

#include <algorithm>

#include "absl/strings/str_cat.h"
#include "flotilla/v1/types.pb.h"

namespace flotilla::manager {

namespace {
constexpr char kTemplate[] = "template:";
constexpr char kFunction[] = "function:";
}  // namespace

Prewarmer::Prewarmer(predict::PrewarmOptions options, int64_t period_ms)
    : period_ms_(period_ms), planner_(options) {}

std::string Prewarmer::TemplateOf(const ::flotilla::v1::ExecutionRequest& r) {
  if (!r.template_name().empty()) return r.template_name();
  if (r.code().argv_size() == 0 && r.code().runtime() == "python3") return "python";
  return "shell";
}

void Prewarmer::RecordInvocation(const ::flotilla::v1::ExecutionRequest& r, int64_t now_unix_ms) {
  std::lock_guard<std::mutex> lock(mu_);
  planner_.Record(kTemplate + TemplateOf(r), now_unix_ms);
  if (!r.function().empty()) planner_.Record(kFunction + r.function(), now_unix_ms);
}

void Prewarmer::SetExternalTarget(const std::string& template_name, const std::string& source,
                                  int min_idle, const std::string& reason) {
  std::lock_guard<std::mutex> lock(mu_);
  if (min_idle <= 0) {
    auto it = external_.find(template_name);
    if (it == external_.end()) return;
    it->second.erase(source);
    if (it->second.empty()) external_.erase(it);
    return;
  }
  external_[template_name][source] = {min_idle, reason};
}

void Prewarmer::Replan(int64_t now_unix_ms) {
  planner_.Prune(now_unix_ms);
  plan_ = planner_.Plan(now_unix_ms);
  planned_ms_ = now_unix_ms;
}

std::vector<::flotilla::v1::PoolTarget> Prewarmer::TargetsFor(int64_t now_unix_ms, int nodes) {
  std::lock_guard<std::mutex> lock(mu_);
  if (planned_ms_ < 0 || now_unix_ms - planned_ms_ >= period_ms_) Replan(now_unix_ms);
  nodes = std::max(nodes, 1);
  std::map<std::string, std::pair<int, std::string>> best;  // template -> total, reason
  for (const auto& t : plan_) {
    if (t.key.rfind(kTemplate, 0) != 0 || t.min_idle <= 0) continue;
    best[t.key.substr(sizeof(kTemplate) - 1)] = {t.min_idle, t.reason};
  }
  for (const auto& [name, sources] : external_) {
    for (const auto& [source, target] : sources) {
      auto& b = best[name];
      if (target.first > b.first) b = {target.first, absl::StrCat(source, ": ", target.second)};
    }
  }
  std::vector<::flotilla::v1::PoolTarget> out;
  for (const auto& [name, b] : best) {
    ::flotilla::v1::PoolTarget p;
    p.set_template_name(name);
    p.set_min_idle((b.first + nodes - 1) / nodes);
    p.set_reason(nodes > 1 ? absl::StrCat(b.second, " (", b.first, " over ", nodes, " nodes)")
                           : b.second);
    out.push_back(std::move(p));
  }
  return out;
}

std::vector<predict::PrewarmTarget> Prewarmer::LastPlan() const {
  std::lock_guard<std::mutex> lock(mu_);
  return plan_;
}

}  // namespace flotilla::manager
