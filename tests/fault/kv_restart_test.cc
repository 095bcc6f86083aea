// The embedded key-value store across a manager killed with SIGKILL and
// restarted on the same state directory: every put the REST API
// acknowledged is there afterwards, with its version, while a writer was
// still writing when the kill landed.
#include <httplib.h>

#include <atomic>
#include <chrono>
#include <map>
#include <nlohmann/json.hpp>
#include <string>
#include <thread>
#include <utility>

#include "absl/strings/str_cat.h"
#include "gtest/gtest.h"
#include "support/federation_harness.h"
#include "support/manager_http.h"

namespace flotilla::testing {
namespace {

using nlohmann::json;

// One REST call to the manager; returns the HTTP status (0: no answer) and
// fills body.
int Call(const FederationHarness& h, const std::string& method, const std::string& path,
         const json& request, json* body) {
  httplib::Client c = ManagerHttp(h, h.token());
  c.set_connection_timeout(2, 0);
  c.set_read_timeout(5, 0);
  httplib::Result r = method == "GET"      ? c.Get(path)
                      : method == "DELETE" ? c.Delete(path)
                                           : c.Put(path, request.dump(), "application/json");
  if (!r) return 0;
  *body = json::parse(r->body, nullptr, false);
  return r->status;
}

// base64 of a short ASCII value, as the REST API carries values.
std::string Base64(const std::string& s) {
  static constexpr char kAlphabet[] =
      "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
  std::string out;
  size_t i = 0;
  for (; i + 2 < s.size(); i += 3) {
    const uint32_t n = (uint8_t(s[i]) << 16) | (uint8_t(s[i + 1]) << 8) | uint8_t(s[i + 2]);
    for (int shift : {18, 12, 6, 0}) out += kAlphabet[(n >> shift) & 63];
  }
  if (i + 1 == s.size()) {
    const uint32_t n = uint8_t(s[i]) << 16;
    out += kAlphabet[(n >> 18) & 63];
    out += kAlphabet[(n >> 12) & 63];
    out += "==";
  } else if (i + 2 == s.size()) {
    const uint32_t n = (uint8_t(s[i]) << 16) | (uint8_t(s[i + 1]) << 8);
    out += kAlphabet[(n >> 18) & 63];
    out += kAlphabet[(n >> 12) & 63];
    out += kAlphabet[(n >> 6) & 63];
    out += '=';
  }
  return out;
}

TEST(Fault, ManagerKilledAndRestartedKeepsEveryAcknowledgedKvWrite) {
  FederationHarness h;
  h.StartManager();

  // A key with a TTL, and a key deleted: both acknowledged before the kill.
  json ttl;
  ASSERT_EQ(Call(h, "PUT", "/v1/kv/state/ttl", {{"value", Base64("t")}, {"ttl_ms", 600'000}}, &ttl),
            200)
      << ttl.dump();
  json deleted;
  ASSERT_EQ(Call(h, "PUT", "/v1/kv/state/gone", {{"value", Base64("g")}}, &deleted), 200);
  ASSERT_EQ(Call(h, "DELETE", "/v1/kv/state/gone", nullptr, &deleted), 200) << deleted.dump();

  // Acknowledged puts: key -> (value, version) of the last 200 answer.
  std::map<std::string, std::pair<std::string, int64_t>> acked;
  std::atomic<int> count{0};
  std::atomic<bool> stop{false};
  std::thread writer([&] {
    for (int i = 0; !stop.load(); ++i) {
      const std::string key = absl::StrCat("k", i % 20);
      const std::string value = absl::StrCat("v", i);
      json body;
      const int status = Call(h, "PUT", "/v1/kv/state/" + key, {{"value", Base64(value)}}, &body);
      if (status != 200) break;  // The manager is gone.
      acked[key] = {Base64(value), body["version"].get<int64_t>()};
      ++count;
    }
  });
  ASSERT_TRUE(FederationHarness::WaitUntil(std::chrono::seconds(20), [&] { return count >= 200; }))
      << h.ReadLog("manager.log");
  h.KillManager();  // SIGKILL, mid-write.
  stop = true;
  writer.join();

  h.StartManager();
  int64_t newest = 0;
  for (const auto& [key, want] : acked) {
    json got;
    ASSERT_EQ(Call(h, "GET", "/v1/kv/state/" + key, nullptr, &got), 200) << key << got.dump();
    const int64_t version = got["version"].get<int64_t>();
    // A put in flight when the kill landed may have been persisted without
    // its answer: then the key is newer than what was acknowledged, never
    // older.
    if (version == want.second) {
      EXPECT_EQ(got["value"], want.first) << key;
    } else {
      EXPECT_GT(version, want.second) << key << " lost its acknowledged put";
    }
    newest = std::max(newest, version);
  }
  json got_ttl;
  ASSERT_EQ(Call(h, "GET", "/v1/kv/state/ttl", nullptr, &got_ttl), 200) << got_ttl.dump();
  EXPECT_EQ(got_ttl["version"], ttl["version"]);
  json got_gone;
  EXPECT_EQ(Call(h, "GET", "/v1/kv/state/gone", nullptr, &got_gone), 404) << got_gone.dump();

  // Versions go on from where they were: a compare-and-set with the restored
  // version succeeds, and the new version is past every restored one.
  json got;
  ASSERT_EQ(Call(h, "GET", "/v1/kv/state/k0", nullptr, &got), 200);
  json put;
  ASSERT_EQ(Call(h, "PUT", "/v1/kv/state/k0",
                 {{"value", Base64("after")}, {"if_version", got["version"]}}, &put),
            200)
      << put.dump();
  EXPECT_GT(put["version"].get<int64_t>(), newest);
}

}  // namespace
}  // namespace flotilla::testing
