#include "tests/support/test_pki.h"

#include <cstdio>
#include <cstdlib>
#include <fstream>
#include <sstream>

#include "absl/strings/str_cat.h"

namespace custos::testing {
namespace {

absl::Status Run(const std::string& command) {
  const std::string quiet = absl::StrCat(command, " >/dev/null 2>&1");
  if (std::system(quiet.c_str()) != 0) {
    return absl::InternalError(absl::StrCat("failed: ", command));
  }
  return absl::OkStatus();
}

}  // namespace

absl::Status TestPki::CreateCa(const std::string& name) {
  return Run(absl::StrCat(
      "openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes "
      "-days 2 -subj /CN=custos-test-",
      name, " -keyout ", Key(name), " -out ", Cert(name),
      " -addext basicConstraints=critical,CA:TRUE"
      " -addext keyUsage=critical,keyCertSign,cRLSign"));
}

absl::Status TestPki::IssueLeaf(const std::string& name,
                                const std::string& ca) {
  const std::string tmp = absl::StrCat(dir_, "/", name, ".next");
  const std::string ext = tmp + ".ext";
  {
    std::ofstream out(ext);
    out << "subjectAltName=IP:127.0.0.1,DNS:localhost\n"
           "extendedKeyUsage=serverAuth,clientAuth\n"
           "basicConstraints=CA:FALSE\n";
  }
  absl::Status status = Run(absl::StrCat(
      "openssl req -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes "
      "-subj /CN=",
      name, " -keyout ", tmp, ".key -out ", tmp, ".csr"));
  if (!status.ok()) return status;
  status =
      Run(absl::StrCat("openssl x509 -req -in ", tmp, ".csr -CA ", Cert(ca),
                       " -CAkey ", Key(ca), " -set_serial ", ++serial_ + 1000,
                       " -days 2 -extfile ", ext, " -out ", tmp, ".pem"));
  if (!status.ok()) return status;
  // Key first: a watcher that sees the new certificate with the old key
  // refuses the pair and keeps serving the old one until both match.
  if (std::rename((tmp + ".key").c_str(), Key(name).c_str()) != 0 ||
      std::rename((tmp + ".pem").c_str(), Cert(name).c_str()) != 0) {
    return absl::InternalError("cannot move the new certificate in place");
  }
  return absl::OkStatus();
}

std::string ReadWholeFile(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  std::stringstream contents;
  contents << in.rdbuf();
  return contents.str();
}

}  // namespace custos::testing
