// The web dashboard (docs/dashboard.md): static files from web/dashboard/,
// embedded into the binary at build time (cmake/embed_dashboard.cmake) and
// served at /dashboard/ on the manager's HTTP port.
//
// The files themselves need no token: they hold no data. The page asks the
// user for a bearer token, keeps it in sessionStorage and sends it with
// every /v1/ call, which the REST routes check as for any other client.
// Every answer carries Content-Security-Policy default-src 'self' (no
// inline script or style, nothing from elsewhere) and nosniff.
#pragma once

#include <cstddef>
#include <span>

namespace httplib {
class Server;
}

namespace flotilla::manager {

struct DashboardFile {
  const char* path;          // under /dashboard/, e.g. "index.html", "js/app.js"
  const char* content_type;
  const unsigned char* data;
  size_t size;
};

// Every embedded file (generated at build time).
std::span<const DashboardFile> DashboardFiles();

// GET /dashboard (a redirect), /dashboard/ (index.html) and
// /dashboard/<path>.
void DashboardRoutes(httplib::Server& server);

}  // namespace flotilla::manager
