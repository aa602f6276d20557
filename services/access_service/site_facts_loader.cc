#include "services/access_service/site_facts_loader.h"

#include "common/status_macros.h"
#include "services/access_service/access_store.h"

namespace custos::access {

absl::StatusOr<SiteFacts> SiteFactsLoader::Load(const std::string& site_id,
                                                const std::string& user_id) {
  SiteFacts facts;
  RETURN_IF_ERROR(db_->Read([&](Connection& db) -> absl::Status {
    facts = SiteFacts();
    ASSIGN_OR_RETURN(facts.site, AccessStore::SiteVersion(db, site_id));
    ASSIGN_OR_RETURN(facts.pilots, AccessStore::PilotsVersion(db));
    facts.exists = facts.site.order != 0;
    if (!facts.exists) return absl::OkStatus();
    ASSIGN_OR_RETURN(facts.member,
                     AccessStore::FindMember(db, site_id, user_id));
    ASSIGN_OR_RETURN(facts.all_pilots, AccessStore::ListAllPilots(db));
    return absl::OkStatus();
  }));
  return facts;
}

absl::StatusOr<SiteFactsLoader::Versions> SiteFactsLoader::LoadVersions(
    const std::string& site_id) {
  Versions versions;
  RETURN_IF_ERROR(db_->Read([&](Connection& db) -> absl::Status {
    ASSIGN_OR_RETURN(versions.site, AccessStore::SiteVersion(db, site_id));
    ASSIGN_OR_RETURN(versions.pilots, AccessStore::PilotsVersion(db));
    return absl::OkStatus();
  }));
  return versions;
}

absl::StatusOr<int64_t> SiteFactsLoader::WriteSequence() {
  int64_t stored = 0;
  RETURN_IF_ERROR(db_->Read([&](Connection& db) -> absl::Status {
    ASSIGN_OR_RETURN(stored,
                     AccessStore::Counter(db, AccessStore::kWriteSequence));
    return absl::OkStatus();
  }));
  return stored;
}

}  // namespace custos::access
