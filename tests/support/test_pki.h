#ifndef CUSTOS_TESTS_SUPPORT_TEST_PKI_H_
#define CUSTOS_TESTS_SUPPORT_TEST_PKI_H_

#include <string>

#include "absl/status/status.h"

namespace custos::testing {

// Certificates for TLS tests, made with the openssl command line in `dir`:
//   ca.pem / ca.key          a test CA
//   <name>.pem / <name>.key  a leaf signed by it for 127.0.0.1 and localhost,
//                            usable as server and as client certificate
// A leaf is re-issued (new key, new serial) by calling IssueLeaf again.
class TestPki {
 public:
  explicit TestPki(std::string dir) : dir_(std::move(dir)) {}

  absl::Status CreateCa(const std::string& name = "ca");
  // Writes <name>.pem and <name>.key signed by CA `ca`; the files are
  // replaced by rename, as Kubernetes swaps a mounted Secret.
  absl::Status IssueLeaf(const std::string& name, const std::string& ca = "ca");

  std::string Cert(const std::string& name) const {
    return dir_ + "/" + name + ".pem";
  }
  std::string Key(const std::string& name) const {
    return dir_ + "/" + name + ".key";
  }

 private:
  std::string dir_;
  int serial_ = 0;
};

// The whole contents of `path` ("" when unreadable).
std::string ReadWholeFile(const std::string& path);

}  // namespace custos::testing

#endif  // CUSTOS_TESTS_SUPPORT_TEST_PKI_H_
