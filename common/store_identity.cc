#include "common/store_identity.h"

#include <openssl/rand.h>

#include "absl/strings/escaping.h"
#include "common/status_macros.h"

namespace custos {

const char kStoreIdentitySchema[] = R"sql(
CREATE TABLE store_identity (
  name TEXT PRIMARY KEY,
  value TEXT NOT NULL
);
)sql";

namespace {

absl::StatusOr<std::string> RandomHex(int bytes) {
  std::string raw(bytes, '\0');
  if (RAND_bytes(reinterpret_cast<unsigned char*>(raw.data()), bytes) != 1) {
    return absl::InternalError("no randomness for the store identity");
  }
  return absl::BytesToHexString(raw);
}

}  // namespace

absl::StatusOr<StoreIdentity> LoadStoreIdentity(Database& database) {
  ASSIGN_OR_RETURN(const std::string incarnation, RandomHex(8));
  ASSIGN_OR_RETURN(const std::string cache_key, RandomHex(32));
  StoreIdentity identity;
  RETURN_IF_ERROR(database.Write([&](Connection& db) -> absl::Status {
    identity = StoreIdentity();
    ASSIGN_OR_RETURN(Statement insert,
                     db.Prepare("INSERT INTO store_identity(name, value) "
                                "VALUES (?, ?) ON CONFLICT(name) DO NOTHING"));
    RETURN_IF_ERROR(insert.Bind(1, "incarnation").Bind(2, incarnation).Run());
    identity.created = db.Changes() > 0;
    insert.Reset();
    RETURN_IF_ERROR(insert.Bind(1, "cache_key").Bind(2, cache_key).Run());
    ASSIGN_OR_RETURN(
        Statement select,
        db.Prepare("SELECT name, value FROM store_identity WHERE name IN "
                   "('incarnation', 'cache_key')"));
    while (true) {
      ASSIGN_OR_RETURN(bool row, select.Step());
      if (!row) break;
      if (select.ColumnText(0) == "incarnation") {
        identity.incarnation = select.ColumnText(1);
      } else {
        identity.cache_key = absl::HexStringToBytes(select.ColumnText(1));
      }
    }
    return absl::OkStatus();
  }));
  if (identity.incarnation.empty() || identity.cache_key.size() != 32) {
    return absl::InternalError("store_identity is incomplete");
  }
  return identity;
}

}  // namespace custos
