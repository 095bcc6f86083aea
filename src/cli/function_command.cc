#include "cli/function_command.h"

#include <httplib.h>

#include <cstdio>
#include <cstdlib>
#include <fstream>
#include <iostream>
#include <nlohmann/json.hpp>
#include <sstream>

#include "absl/status/statusor.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "auth/https_trust.h"
#include "cli/client.h"
#include "cli/local_federation.h"
#include "cli/output.h"

namespace flotilla::cli {
namespace {

using nlohmann::json;

struct Options {
  std::string http;
};

absl::StatusOr<std::string> ResolveHttp(const std::string& flag) {
  if (!flag.empty()) return flag;
  if (const char* env = std::getenv("FLOTILLA_HTTP"); env && *env) return std::string(env);
  auto local = ReadLocalFederation(DefaultStateDir());
  if (local.ok() && !local->manager_http.empty()) return local->manager_http;
  return absl::FailedPreconditionError(
      "no manager HTTP address: start a local federation with `flotilla up`, or name one with "
      "--http HOST:PORT or FLOTILLA_HTTP");
}

// One REST call; a non-2xx answer becomes an error carrying the server's message.
absl::StatusOr<json> Rest(const std::string& flag, const std::string& method,
                          const std::string& path, const json& body = nullptr) {
  auto addr = ResolveHttp(flag);
  if (!addr.ok()) return addr.status();
  auto security = ResolveClientSecurity();
  if (!security.ok()) return security.status();
  // The port speaks HTTPS wherever gRPC is secure (http_server.h).
  std::string url = *addr;
  if (url.find("://") == std::string::npos) {
    url = (security->insecure ? "http://" : "https://") + url;
  }
  httplib::Client c(url);
  if (!c.is_valid()) {
    return absl::InvalidArgumentError(absl::StrCat("'", *addr, "' is not HOST:PORT"));
  }
  if (!security->insecure && c.ssl_context() == nullptr) {
    return absl::InvalidArgumentError(
        absl::StrCat("'", *addr,
                     "': with TLS on, the manager's HTTP port speaks only https:// (tokens are not "
                     "sent in clear)"));
  }
  if (!security->insecure) {
    // Checked as the gRPC channel checks it: by the CA and the manager's
    // name, not the address (auth/https_trust.h).
    c.enable_server_certificate_verification(false);
    if (absl::Status st = auth::TrustManagerOnly(c.ssl_context(), security->ca_cert); !st.ok()) {
      return st;
    }
    c.set_bearer_token_auth(security->token);
  }
  c.set_read_timeout(660, 0);
  c.set_connection_timeout(5, 0);
  httplib::Result r = method == "GET"      ? c.Get(path)
                      : method == "DELETE" ? c.Delete(path)
                                           : c.Post(path, body.dump(), "application/json");
  if (!r) {
    return absl::UnavailableError(absl::StrCat("cannot reach the manager at ", *addr, ": ",
                                               httplib::to_string(r.error())));
  }
  json j = json::parse(r->body, nullptr, false);
  if (r->status / 100 != 2) {
    std::string msg = j.is_object() && j.contains("error") ? j["error"].get<std::string>() : r->body;
    if (r->status == 400) return absl::InvalidArgumentError(msg);
    if (r->status == 404) return absl::NotFoundError(msg);
    return absl::UnknownError(msg);
  }
  if (j.is_discarded()) return absl::DataLossError("the manager's answer is not JSON");
  return j;
}

// Percent-encodes everything but unreserved characters, for one path segment.
std::string PathEscape(const std::string& s) {
  std::string out;
  for (unsigned char c : s) {
    if (std::isalnum(c) || c == '-' || c == '_' || c == '.' || c == '~') {
      out += static_cast<char>(c);
    } else {
      char buf[4];
      std::snprintf(buf, sizeof(buf), "%%%02X", c);
      out += buf;
    }
  }
  return out;
}

int Fail(const absl::Status& st) {
  std::fprintf(stderr, "flotilla: %s\n", std::string(st.message()).c_str());
  return st.code() == absl::StatusCode::kInvalidArgument ? 2 : 1;
}

absl::StatusOr<std::string> ReadFile(const std::string& path) {
  std::ifstream in(path);
  if (!in) return absl::NotFoundError(absl::StrCat("cannot read ", path));
  std::stringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

std::string Geo(const json& a) {
  std::vector<std::string> regions;
  for (const auto& r : a["geo_preference"]) regions.push_back(r.get<std::string>());
  return regions.empty() ? "-" : absl::StrJoin(regions, ",");
}

std::string Limits(const json& a) {
  const json& rc = a["resource_constraint"];
  std::vector<std::string> parts;
  if (rc.value("memory_bytes", 0) > 0) parts.push_back("mem " + FormatBytes(rc["memory_bytes"]));
  if (rc.value("cpu_millis", 0) > 0) parts.push_back("cpu " + FormatMillicores(rc["cpu_millis"]));
  if (rc.value("timeout_ms", 0) > 0) parts.push_back("timeout " + FormatDurationMs(rc["timeout_ms"]));
  return parts.empty() ? "-" : absl::StrJoin(parts, " ");
}

void PrintFunction(const json& f) {
  const json& a = f["annotations"];
  std::cout << "name:        " << f["name"].get<std::string>() << "\n"
            << "version:     " << f["version"] << "\n"
            << "entrypoint:  " << f["entrypoint"].get<std::string>() << " (" << f["runtime"].get<std::string>()
            << ", template " << f["template"].get<std::string>() << ")\n"
            << "splitable:   " << (a["splitable"].get<bool>() ? "yes" : "no") << "\n"
            << "geo:         " << Geo(a) << "\n"
            << "limits:      " << Limits(a) << "\n"
            << "sha256:      " << f["sha256"].get<std::string>() << "\n";
  if (f.contains("scaling")) {
    const json& s = f["scaling"];
    std::cout << "scaling:     " << s["in_flight"] << " in flight, " << s["desired_instances"]
              << " instances wanted (" << s["reason"].get<std::string>() << ")\n";
  }
  if (f.contains("source")) std::cout << "--- source\n" << f["source"].get<std::string>();
}

std::string ValueText(const json& wf) {
  if (wf.contains("result_json")) return wf["result_json"].dump();
  if (wf.contains("result")) {
    return absl::StrCat("<", wf["result"].value("encoding", std::string("?")),
                        " value; not JSON — use the Python SDK to decode it>");
  }
  return "";
}

void PrintPlan(const json& plan) {
  std::cout << (plan["splittable"].get<bool>() ? "split" : "whole") << ": "
            << plan["reason"].get<std::string>() << "\n";
  Table t({"PIECE", "KIND", "STATEMENTS", "INPUTS", "OUTPUTS", "COST", "WHY"});
  for (const auto& p : plan["pieces"]) {
    std::vector<std::string> st, in, out;
    for (const auto& s : p["statements"]) st.push_back(s);
    for (const auto& s : p["inputs"]) in.push_back(s);
    for (const auto& s : p["outputs"]) out.push_back(s);
    char cost[32];
    std::snprintf(cost, sizeof(cost), "%.1f", p.value("cost", 0.0));
    t.Add({p["id"], p["kind"], st.empty() ? "-" : absl::StrJoin(st, ","),
           in.empty() ? "-" : absl::StrJoin(in, ","), out.empty() ? "-" : absl::StrJoin(out, ","),
           cost, p["reason"]});
  }
  std::cout << t.Render();
  for (const auto& e : plan["edges"]) {
    std::vector<std::string> vars;
    for (const auto& v : e["vars"]) vars.push_back(v);
    std::cout << "  " << e["from"].get<std::string>() << " -> " << e["to"].get<std::string>()
              << "  [" << absl::StrJoin(vars, ", ") << "]\n";
  }
}

// Prints a workflow; returns the exit status it stands for.
int PrintWorkflow(const json& wf, bool json_out) {
  if (json_out) {
    std::cout << wf.dump(2) << "\n";
  } else {
    std::cout << "workflow " << wf["id"].get<std::string>() << "  " << wf["state"].get<std::string>()
              << "  (" << (wf.value("split", false) ? "split" : "whole") << ": "
              << wf.value("reason", std::string("")) << ")\n";
    if (wf.contains("pieces")) {
      Table t({"PIECE", "KIND", "STATE", "TASKS", "NODES", "TIME"});
      for (const auto& p : wf["pieces"]) {
        std::vector<std::string> nodes;
        for (const auto& n : p.value("nodes", json::array())) {
          if (std::find(nodes.begin(), nodes.end(), n.get<std::string>()) == nodes.end()) nodes.push_back(n);
        }
        t.Add({p["id"], p["kind"], p["state"], std::to_string(p["executions"].size()),
               nodes.empty() ? "-" : absl::StrJoin(nodes, ","),
               p["duration_ms"].get<int64_t>() > 0 ? FormatDurationMs(p["duration_ms"]) : "-"});
      }
      std::cout << t.Render();
    }
    if (wf["state"] == "succeeded") std::cout << "result: " << ValueText(wf) << "\n";
    if (wf.contains("error")) {
      const json& e = wf["error"];
      std::cout << "error: " << e.value("type", std::string("Error")) << ": "
                << e.value("message", std::string("")) << "\n";
    }
  }
  if (wf["state"] == "succeeded") return 0;
  if (wf["state"] == "running") return 0;
  return 1;
}

constexpr char kProtected = '\x1f';

// "3" -> 3, "[1,2]" -> [1,2], "hello" -> "hello" (not JSON: a string).
json ArgValue(std::string text) {
  if (!text.empty() && text[0] == kProtected) text.erase(0, 1);
  json j = json::parse(text, nullptr, false);
  return j.is_discarded() ? json(text) : j;
}

json AnnotationFlags(CLI::App* cmd, const std::string& splitable, const std::vector<std::string>& geo,
                     bool clear_geo, const std::string& memory, const std::string& timeout,
                     const std::string& cpu) {
  json a = json::object();
  if (!splitable.empty()) a["splitable"] = splitable == "true" || splitable == "yes" || splitable == "1";
  if (clear_geo) a["geo_preference"] = json::array();
  if (!geo.empty()) a["geo_preference"] = geo;
  json rc = json::object();
  if (!memory.empty()) rc["memory"] = memory;
  if (!timeout.empty()) rc["timeout"] = timeout;
  if (!cpu.empty()) rc["cpu"] = cpu;
  if (!rc.empty()) a["resource_constraint"] = rc;
  (void)cmd;
  return a;
}

struct AnnotationArgs {
  std::string splitable;
  std::vector<std::string> geo;
  bool clear_geo = false;
  std::string memory, timeout, cpu;

  void Add(CLI::App* cmd, bool with_value_for_splitable) {
    if (with_value_for_splitable) {
      cmd->add_option("--splitable", splitable, "true or false: may the function be split")
          ->check(CLI::IsMember({"true", "false", "yes", "no", "1", "0"}));
    }
    cmd->add_option("--geo", geo, "preferred region (repeat for more, in order)");
    cmd->add_flag("--clear-geo", clear_geo, "drop the geo preference");
    cmd->add_option("--memory", memory, "memory limit, e.g. 256Mi");
    cmd->add_option("--timeout", timeout, "time limit, e.g. 30s");
    cmd->add_option("--cpu", cpu, "cpu limit, e.g. 500m");
  }
  json ToJson(CLI::App* cmd) const {
    return AnnotationFlags(cmd, splitable, geo, clear_geo, memory, timeout, cpu);
  }
};

}  // namespace

void ProtectJsonArguments(std::vector<std::string>& args) {
  bool invoke = false;
  for (auto& a : args) {
    if (a == "invoke") invoke = true;
    if (invoke && a.size() >= 2 && a.front() == '[' && a.back() == ']') a.insert(a.begin(), kProtected);
  }
}

void AddFunctionCommands(CLI::App& app, int* rc, const bool* json_out) {
  auto opts = std::make_shared<Options>();
  auto* fn = app.add_subcommand("function", "deployed functions: deploy, list, show, invoke, annotate, delete");
  fn->require_subcommand(1);
  fn->add_option("--http", opts->http, "manager HTTP address (default: $FLOTILLA_HTTP or the local federation)");

  // ---- deploy
  struct Deploy {
    std::string file, name, entrypoint, tmpl = "python", description;
    bool splitable = false;
    AnnotationArgs ann;
  };
  auto d = std::make_shared<Deploy>();
  auto* deploy = fn->add_subcommand("deploy", "deploy (or update) a Python function from a file");
  deploy->add_option("file", d->file, "the Python module holding the function")->required();
  deploy->add_option("--name", d->name, "the function's name (default: the entrypoint)");
  deploy->add_option("--entrypoint,-e", d->entrypoint, "the function to call in the module")->required();
  deploy->add_option("--template", d->tmpl, "environment template (default python)");
  deploy->add_option("--description", d->description, "free text");
  deploy->add_flag("--splitable", d->splitable, "allow splitting calls into a DAG");
  d->ann.Add(deploy, /*with_value_for_splitable=*/false);
  deploy->callback([rc, json_out, opts, d, deploy] {
    auto src = ReadFile(d->file);
    if (!src.ok()) return void(*rc = Fail(src.status()));
    json a = d->ann.ToJson(deploy);
    if (d->splitable) a["splitable"] = true;
    json body = {{"name", d->name.empty() ? d->entrypoint : d->name},
                 {"source", *src},
                 {"entrypoint", d->entrypoint},
                 {"template", d->tmpl},
                 {"description", d->description},
                 {"annotations", a}};
    auto r = Rest(opts->http, "POST", "/function/deploy", body);
    if (!r.ok()) return void(*rc = Fail(r.status()));
    if (*json_out) std::cout << (*r)["function"].dump(2) << "\n";
    else std::cout << "deployed " << (*r)["function"]["name"].get<std::string>() << " version "
                   << (*r)["function"]["version"] << "\n";
  });

  // ---- list
  fn->add_subcommand("list", "list deployed functions")->callback([rc, json_out, opts] {
    auto r = Rest(opts->http, "GET", "/v1/functions");
    if (!r.ok()) return void(*rc = Fail(r.status()));
    if (*json_out) return void(std::cout << (*r)["functions"].dump(2) << "\n");
    Table t({"NAME", "VERSION", "ENTRYPOINT", "SPLITABLE", "GEO", "LIMITS", "INSTANCES"});
    for (const auto& f : (*r)["functions"]) {
      std::string inst = f.contains("scaling") ? absl::StrCat(f["scaling"]["in_flight"].get<int>(), "/",
                                                              f["scaling"]["desired_instances"].get<int>())
                                               : "-";
      t.Add({f["name"], std::to_string(f["version"].get<int64_t>()), f["entrypoint"],
             f["annotations"]["splitable"].get<bool>() ? "yes" : "no", Geo(f["annotations"]),
             Limits(f["annotations"]), inst});
    }
    std::cout << t.Render();
  });

  // ---- show
  auto show_name = std::make_shared<std::string>();
  auto show_source = std::make_shared<bool>(false);
  auto* show = fn->add_subcommand("show", "show one function");
  show->add_option("name", *show_name, "function name")->required();
  show->add_flag("--source", *show_source, "print its source too");
  show->callback([rc, json_out, opts, show_name, show_source] {
    auto r = Rest(opts->http, "GET", "/v1/functions/" + PathEscape(*show_name));
    if (!r.ok()) return void(*rc = Fail(r.status()));
    json f = (*r)["function"];
    if (!*show_source) f.erase("source");
    if (*json_out) std::cout << f.dump(2) << "\n";
    else PrintFunction(f);
  });

  // ---- invoke
  struct Invoke {
    std::string name, kwargs;
    std::vector<std::string> args;
    bool no_wait = false;
    int64_t wait_s = 600;
  };
  auto inv = std::make_shared<Invoke>();
  auto* invoke = fn->add_subcommand("invoke", "call a function with JSON arguments and print its result");
  invoke->add_option("name", inv->name, "function name")->required();
  // ProtectJsonArguments keeps CLI11 from reading "[1,2]" as two values.
  invoke->add_option("args", inv->args, "positional arguments, each a JSON value (text that is not JSON is a string)");
  invoke->add_option("--kwargs", inv->kwargs, "keyword arguments as a JSON object");
  invoke->add_flag("--no-wait", inv->no_wait, "print the workflow id and return");
  invoke->add_option("--wait", inv->wait_s, "seconds to wait for the result (default 600)");
  invoke->callback([rc, json_out, opts, inv] {
    json args = json::array();
    for (const auto& a : inv->args) args.push_back(ArgValue(a));
    json kwargs = inv->kwargs.empty() ? json::object() : json::parse(inv->kwargs, nullptr, false);
    if (kwargs.is_discarded() || !kwargs.is_object()) {
      return void(*rc = Fail(absl::InvalidArgumentError("--kwargs must be a JSON object")));
    }
    json body = {{"function", inv->name}, {"args", args}, {"kwargs", kwargs},
                 {"wait_ms", inv->no_wait ? 0 : inv->wait_s * 1000}};
    auto r = Rest(opts->http, "POST", "/execution/submit", body);
    if (!r.ok()) return void(*rc = Fail(r.status()));
    const json& wf = (*r)["workflow"];
    if (inv->no_wait) return void(std::cout << wf["id"].get<std::string>() << "\n");
    if (*json_out) return void(*rc = PrintWorkflow(wf, true));
    if (wf["state"] == "succeeded") {
      std::cout << ValueText(wf) << "\n";
      return;
    }
    *rc = 1;
    if (wf["state"] == "running") {
      std::fprintf(stderr, "flotilla: %s still running; see `flotilla workflow get %s`\n",
                   wf["id"].get<std::string>().c_str(), wf["id"].get<std::string>().c_str());
      return;
    }
    const json& e = wf.value("error", json::object());
    std::fprintf(stderr, "flotilla: %s: %s\n", e.value("type", std::string("Error")).c_str(),
                 e.value("message", std::string(wf["state"])).c_str());
    if (e.contains("traceback") && e["traceback"].is_string()) {
      std::fprintf(stderr, "%s", e["traceback"].get<std::string>().c_str());
    }
  });

  // ---- annotate
  auto an_name = std::make_shared<std::string>();
  auto an = std::make_shared<AnnotationArgs>();
  auto* annotate = fn->add_subcommand("annotate", "change a function's annotations; the next call obeys them");
  annotate->add_option("name", *an_name, "function name")->required();
  an->Add(annotate, /*with_value_for_splitable=*/true);
  annotate->callback([rc, json_out, opts, an_name, an, annotate] {
    json a = an->ToJson(annotate);
    if (a.empty()) {
      return void(*rc = Fail(absl::InvalidArgumentError(
                      "nothing to change: give --splitable, --geo, --clear-geo, --memory, --timeout or --cpu")));
    }
    auto r = Rest(opts->http, "POST", "/annotation/update", {{"function", *an_name}, {"annotations", a}});
    if (!r.ok()) return void(*rc = Fail(r.status()));
    if (*json_out) std::cout << (*r)["function"].dump(2) << "\n";
    else PrintFunction((*r)["function"]);
  });

  // ---- delete
  auto del_name = std::make_shared<std::string>();
  auto* del = fn->add_subcommand("delete", "delete a function and its old versions");
  del->add_option("name", *del_name, "function name")->required();
  del->callback([rc, opts, del_name] {
    auto r = Rest(opts->http, "DELETE", "/v1/functions/" + PathEscape(*del_name));
    if (!r.ok()) return void(*rc = Fail(r.status()));
    std::cout << "deleted " << *del_name << "\n";
  });

  // ---- split analyze
  auto* split = app.add_subcommand("split", "split analysis of Python functions");
  split->require_subcommand(1);
  split->add_option("--http", opts->http, "manager HTTP address");
  auto target = std::make_shared<std::string>();
  auto* analyze = split->add_subcommand("analyze", "show how a function would be split, and why");
  analyze->add_option("target", *target, "FILE:FUNCTION, or the name of a deployed function")->required();
  analyze->callback([rc, json_out, opts, target] {
    json body;
    auto colon = target->rfind(':');
    if (colon != std::string::npos) {
      auto src = ReadFile(target->substr(0, colon));
      if (!src.ok()) return void(*rc = Fail(src.status()));
      body = {{"source", *src}, {"entrypoint", target->substr(colon + 1)}};
    } else {
      body = {{"function", *target}};
    }
    auto r = Rest(opts->http, "POST", "/split/analyze", body);
    if (!r.ok()) return void(*rc = Fail(r.status()));
    if (*json_out) std::cout << r->dump(2) << "\n";
    else PrintPlan((*r)["plan"]);
  });

  // ---- workflow
  auto* wf = app.add_subcommand("workflow", "workflows: run a DAG file, get, list, cancel");
  wf->require_subcommand(1);
  wf->add_option("--http", opts->http, "manager HTTP address");
  auto wf_file = std::make_shared<std::string>();
  auto wf_no_wait = std::make_shared<bool>(false);
  auto* wrun = wf->add_subcommand("run", "run a hand-written DAG (YAML: name, steps)");
  wrun->add_option("file", *wf_file, "the workflow file")->required();
  wrun->add_flag("--no-wait", *wf_no_wait, "print the workflow id and return");
  wrun->callback([rc, json_out, opts, wf_file, wf_no_wait] {
    auto text = ReadFile(*wf_file);
    if (!text.ok()) return void(*rc = Fail(text.status()));
    auto r = Rest(opts->http, "POST", "/execution/submit",
                  {{"plan", *text}, {"wait_ms", *wf_no_wait ? 0 : 600'000}});
    if (!r.ok()) return void(*rc = Fail(r.status()));
    if (*wf_no_wait) return void(std::cout << (*r)["workflow"]["id"].get<std::string>() << "\n");
    *rc = PrintWorkflow((*r)["workflow"], *json_out);
  });
  auto wf_id = std::make_shared<std::string>();
  auto wf_wait = std::make_shared<int64_t>(0);
  auto* wget = wf->add_subcommand("get", "show a workflow: its pieces, where they ran, its result");
  wget->add_option("id", *wf_id, "workflow id")->required();
  wget->add_option("--wait", *wf_wait, "seconds to wait for it to end");
  wget->callback([rc, json_out, opts, wf_id, wf_wait] {
    auto r = Rest(opts->http, "GET", absl::StrCat("/v1/workflows/", *wf_id, "?wait_ms=", *wf_wait * 1000));
    if (!r.ok()) return void(*rc = Fail(r.status()));
    *rc = PrintWorkflow((*r)["workflow"], *json_out);
  });
  wf->add_subcommand("list", "list recent workflows")->callback([rc, json_out, opts] {
    auto r = Rest(opts->http, "GET", "/v1/workflows");
    if (!r.ok()) return void(*rc = Fail(r.status()));
    if (*json_out) return void(std::cout << (*r)["workflows"].dump(2) << "\n");
    Table t({"ID", "FUNCTION", "STATE", "SPLIT", "PIECES", "TIME"});
    for (const auto& w : (*r)["workflows"]) {
      int64_t ms = w["finished_unix_ms"].get<int64_t>() > 0
                       ? w["finished_unix_ms"].get<int64_t>() - w["submitted_unix_ms"].get<int64_t>()
                       : 0;
      t.Add({w["id"], w["function"], w["state"], w["split"].get<bool>() ? "yes" : "no",
             std::to_string(w["pieces"].size()), ms > 0 ? FormatDurationMs(ms) : "-"});
    }
    std::cout << t.Render();
  });
  auto cancel_id = std::make_shared<std::string>();
  auto* wcancel = wf->add_subcommand("cancel", "cancel a running workflow and its pieces");
  wcancel->add_option("id", *cancel_id, "workflow id")->required();
  wcancel->callback([rc, json_out, opts, cancel_id] {
    auto r = Rest(opts->http, "POST", "/v1/workflows/" + *cancel_id + "/cancel", json::object());
    if (!r.ok()) return void(*rc = Fail(r.status()));
    PrintWorkflow((*r)["workflow"], *json_out);
  });
}

}  // namespace flotilla::cli
