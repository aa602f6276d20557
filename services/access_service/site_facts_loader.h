#ifndef CUSTOS_SERVICES_ACCESS_SERVICE_SITE_FACTS_LOADER_H_
#define CUSTOS_SERVICES_ACCESS_SERVICE_SITE_FACTS_LOADER_H_

#include <cstdint>
#include <string>

#include "absl/status/statusor.h"
#include "common/database.h"
#include "services/access_service/permission_evaluator.h"

namespace custos::access {

// Reads what an answer on `sites/{sid}` depends on from the access store,
// each call in one snapshot, so the versions read tag exactly the facts
// read with them.
// Thread-safe.
class SiteFactsLoader {
 public:
  // REQUIRES: `db` outlives the loader.
  explicit SiteFactsLoader(Database* db) : db_(db) {}

  absl::StatusOr<SiteFacts> Load(const std::string& site_id,
                                 const std::string& user_id);

  struct Versions {
    VersionStamp site;  // zero when the site does not exist
    VersionStamp pilots;
  };
  absl::StatusOr<Versions> LoadVersions(const std::string& site_id);

  // The store's write sequence (AccessStore::kWriteSequence).
  absl::StatusOr<int64_t> WriteSequence();

 private:
  Database* const db_;
};

}  // namespace custos::access

#endif  // CUSTOS_SERVICES_ACCESS_SERVICE_SITE_FACTS_LOADER_H_
