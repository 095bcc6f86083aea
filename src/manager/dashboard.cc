#include "manager/dashboard.h"

#include <httplib.h>

#include <string>
#include <string_view>

namespace flotilla::manager {
namespace {

const DashboardFile* Find(std::string_view path) {
  for (const DashboardFile& f : DashboardFiles()) {
    if (path == f.path) return &f;
  }
  return nullptr;
}

// Applies to every answer under /dashboard/, errors included: scripts,
// styles, images and fetches only from this origin (no inline script, so an
// injected string cannot run), no framing, and no guessing of types.
void SecurityHeaders(httplib::Response& res) {
  res.set_header("Content-Security-Policy",
                 "default-src 'self'; frame-ancestors 'none'; base-uri 'none'; form-action 'self'");
  res.set_header("X-Content-Type-Options", "nosniff");
  res.set_header("Referrer-Policy", "no-referrer");
  res.set_header("Cache-Control", "no-cache");
}

void Serve(std::string_view path, httplib::Response& res) {
  SecurityHeaders(res);
  const DashboardFile* f = Find(path);
  if (f == nullptr) {
    res.status = 404;
    res.set_content("no such dashboard file\n", "text/plain; charset=utf-8");
    return;
  }
  res.set_content(reinterpret_cast<const char*>(f->data), f->size, f->content_type);
}

}  // namespace

void DashboardRoutes(httplib::Server& server) {
  server.Get("/dashboard", [](const httplib::Request&, httplib::Response& res) {
    SecurityHeaders(res);
    res.set_redirect("/dashboard/");
  });
  server.Get("/dashboard/", [](const httplib::Request&, httplib::Response& res) {
    Serve("index.html", res);
  });
  server.Get(R"(/dashboard/([A-Za-z0-9_./-]+))",
             [](const httplib::Request& req, httplib::Response& res) {
               const std::string path = req.matches[1].str();
               // Only names the table holds are served; ".." is never one.
               Serve(path, res);
             });
}

}  // namespace flotilla::manager
