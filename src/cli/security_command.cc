#include "cli/security_command.h"

#include <cstdio>
#include <iostream>
#include <memory>
#include <string>
#include <vector>

#include "absl/strings/str_cat.h"
#include "auth/pki.h"
#include "auth/revocation.h"
#include "auth/users.h"
#include "cli/local_federation.h"

namespace flotilla::cli {

namespace {

int Report(const absl::Status& st) {
  if (st.ok()) return 0;
  std::fprintf(stderr, "flotilla: %s\n", std::string(st.message()).c_str());
  return st.code() == absl::StatusCode::kInvalidArgument ? 2 : 1;
}

}  // namespace

void AddSecurityCommands(CLI::App& app, int* rc) {
  struct Options {
    std::string dir = DefaultStateDir() + "/pki";
    std::string out;
    std::string node;
    int trust = 0;
    bool manager = false;
    std::vector<std::string> dns;
    std::vector<std::string> ips;
    int days = 825;
    std::string users = DefaultStateDir() + "/users.json";
    std::string name;
    std::string tenant;
    std::string role = "user";
    std::string revoke_cert;
    std::string revoke_serial;
  };
  auto o = std::make_shared<Options>();

  auto* ca = app.add_subcommand("ca", "the federation's certificate authority (mutual TLS)");
  ca->require_subcommand(1);
  auto* init = ca->add_subcommand("init", "create a CA (ca.key, ca.crt) in --dir");
  init->add_option("--dir", o->dir, "where the CA lives")->capture_default_str();
  init->callback([o, rc] {
    absl::Status st = auth::InitCa(o->dir);
    if (st.ok()) std::cout << "CA created in " << o->dir << " (keep ca.key private)\n";
    *rc = Report(st);
  });
  auto* issue = ca->add_subcommand(
      "issue", "issue a certificate: `ca issue --node ID --trust N` or `ca issue --manager`");
  issue->add_option("--dir", o->dir, "the CA's directory")->capture_default_str();
  issue->add_option("--node", o->node, "a node certificate for this node id");
  issue->add_option("--trust", o->trust, "the highest trust level (0-10) the node may claim");
  issue->add_flag("--manager", o->manager, "the manager's certificate");
  issue->add_option("--dns", o->dns, "extra DNS names the server answers to");
  issue->add_option("--ip", o->ips, "extra IP addresses the server answers on");
  issue->add_option("--days", o->days, "validity in days")->capture_default_str();
  issue->add_option("--out", o->out, "path prefix for OUT.crt and OUT.key (default: in --dir)");
  issue->callback([o, rc] {
    if (o->manager == !o->node.empty()) {
      *rc = Report(absl::InvalidArgumentError("ca issue: give exactly one of --manager, --node ID"));
      return;
    }
    auth::IssueRequest req;
    req.role = o->manager ? auth::Role::kManager : auth::Role::kNode;
    req.node_id = o->node;
    req.trust_level = o->trust;
    req.dns = o->dns;
    req.ips = o->ips;
    req.valid_days = o->days;
    const std::string out =
        !o->out.empty() ? o->out : absl::StrCat(o->dir, "/", o->manager ? "manager" : o->node);
    auto files = auth::Issue(o->dir, req, out);
    if (files.ok()) {
      std::cout << "certificate " << files->cert << "\nkey         " << files->key
                << "\nCA          " << files->ca_cert << "\n";
    }
    *rc = Report(files.status());
  });

  auto* revoke = ca->add_subcommand(
      "revoke",
      "revoke a certificate: `ca revoke --cert FILE` or `ca revoke --serial HEX`; managers and "
      "agents configured with tls.crl refuse its holder within a second");
  revoke->add_option("--dir", o->dir, "the CA's directory")->capture_default_str();
  revoke->add_option("--cert", o->revoke_cert, "the certificate to revoke (PEM)");
  revoke->add_option("--serial", o->revoke_serial, "or its serial, as `openssl x509 -serial` prints it");
  revoke->callback([o, rc] {
    if (o->revoke_cert.empty() == o->revoke_serial.empty()) {
      *rc = Report(absl::InvalidArgumentError("ca revoke: give exactly one of --cert, --serial"));
      return;
    }
    absl::StatusOr<std::string> serial = o->revoke_serial;
    if (!o->revoke_cert.empty()) {
      serial = auth::RevokeCertificate(o->dir, o->revoke_cert);
    } else if (absl::Status st = auth::RevokeSerial(o->dir, o->revoke_serial); !st.ok()) {
      serial = st;
    }
    if (serial.ok()) {
      std::cout << "revoked serial " << *serial << "; list: " << auth::CrlPath(o->dir) << "\n";
    }
    *rc = Report(serial.status());
  });

  auto* user = app.add_subcommand("user", "users, their tenants and tokens (on the manager's host)");
  user->require_subcommand(1);
  auto* add = user->add_subcommand("add", "add a user and print its token (shown once)");
  add->add_option("name", o->name, "user name ([a-z0-9_-])")->required();
  add->add_option("--tenant", o->tenant, "the user's tenant ([a-z0-9_-])")->required();
  add->add_option("--role", o->role, "user or admin")->capture_default_str();
  add->add_option("--users-file", o->users, "the manager's users file")->capture_default_str();
  add->callback([o, rc] {
    auto role = auth::ParseRole(o->role);
    if (!role.ok()) {
      *rc = Report(role.status());
      return;
    }
    auto token = auth::AddUser(o->users, {o->name, o->tenant, *role});
    if (token.ok()) std::cout << *token << "\n";
    *rc = Report(token.status());
  });
  auto* rotate = user->add_subcommand("rotate", "give a user a new token (the old one stops working)");
  rotate->add_option("name", o->name, "user name")->required();
  rotate->add_option("--users-file", o->users, "the manager's users file")->capture_default_str();
  rotate->callback([o, rc] {
    auto token = auth::RotateToken(o->users, o->name);
    if (token.ok()) std::cout << *token << "\n";
    *rc = Report(token.status());
  });
  auto* remove = user->add_subcommand("remove", "remove a user (its token stops working)");
  remove->add_option("name", o->name, "user name")->required();
  remove->add_option("--users-file", o->users, "the manager's users file")->capture_default_str();
  remove->callback([o, rc] { *rc = Report(auth::RemoveUser(o->users, o->name)); });
  auto* list = user->add_subcommand("list", "list users (tokens are never shown)");
  list->add_option("--users-file", o->users, "the manager's users file")->capture_default_str();
  list->callback([o, rc] {
    auto users = auth::ListUsers(o->users);
    if (users.ok()) {
      std::printf("%-20s %-20s %s\n", "NAME", "TENANT", "ROLE");
      for (const auto& u : *users) {
        std::printf("%-20s %-20s %s\n", u.name.c_str(), u.tenant.c_str(),
                    std::string(auth::RoleName(u.role)).c_str());
      }
    }
    *rc = Report(users.status());
  });
}

}  // namespace flotilla::cli
