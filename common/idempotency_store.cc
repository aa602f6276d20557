#include "common/idempotency_store.h"

#include <openssl/sha.h>

#include "common/grpc_status.h"
#include "common/status_macros.h"
#include "google/protobuf/io/coded_stream.h"
#include "google/protobuf/io/zero_copy_stream_impl_lite.h"

namespace custos {

const char kIdempotencyKeysSchema[] = R"sql(
CREATE TABLE idempotency_keys (
  principal TEXT NOT NULL,
  method TEXT NOT NULL,
  request_id TEXT NOT NULL,
  fingerprint BLOB NOT NULL,
  response BLOB NOT NULL,
  create_micros INTEGER NOT NULL,
  PRIMARY KEY (principal, method, request_id)
);
)sql";

const char kIdempotencyKeysTimeIndexSchema[] =
    "CREATE INDEX idempotency_keys_by_time ON idempotency_keys(create_micros);";

std::string RequestFingerprint(const google::protobuf::Message& request) {
  std::string bytes;
  {
    google::protobuf::io::StringOutputStream stream(&bytes);
    google::protobuf::io::CodedOutputStream coded(&stream);
    coded.SetSerializationDeterministic(true);
    request.SerializeToCodedStream(&coded);
  }
  unsigned char digest[SHA256_DIGEST_LENGTH];
  SHA256(reinterpret_cast<const unsigned char*>(bytes.data()), bytes.size(),
         digest);
  return std::string(reinterpret_cast<char*>(digest), sizeof(digest));
}

absl::StatusOr<std::optional<std::string>> FindReplay(
    Connection& db, const IdempotencyKey& key, const std::string& fingerprint) {
  ASSIGN_OR_RETURN(
      Statement select,
      db.Prepare("SELECT fingerprint, response FROM idempotency_keys WHERE "
                 "principal = ? AND method = ? AND request_id = ?"));
  select.Bind(1, key.principal).Bind(2, key.method).Bind(3, key.request_id);
  ASSIGN_OR_RETURN(bool found, select.Step());
  if (!found) return std::optional<std::string>();
  if (select.ColumnText(0) != fingerprint) {
    return InvalidField("request_id",
                        "was already used for a different request");
  }
  return std::optional<std::string>(select.ColumnText(1));
}

absl::Status RecordResponse(Connection& db, const IdempotencyKey& key,
                            const std::string& fingerprint,
                            const google::protobuf::Message& response,
                            absl::Time now) {
  ASSIGN_OR_RETURN(
      Statement insert,
      db.Prepare("INSERT INTO idempotency_keys(principal, method, request_id, "
                 "fingerprint, response, create_micros) "
                 "VALUES (?, ?, ?, ?, ?, ?)"));
  return insert.Bind(1, key.principal)
      .Bind(2, key.method)
      .Bind(3, key.request_id)
      .BindBlob(4, fingerprint)
      .BindBlob(5, response.SerializeAsString())
      .Bind(6, absl::ToUnixMicros(now))
      .Run();
}

absl::StatusOr<int64_t> PruneIdempotencyRecords(Database& database,
                                                absl::Time older_than,
                                                int batch_size) {
  if (batch_size <= 0) {
    return absl::InvalidArgumentError("batch_size must be > 0");
  }
  int64_t deleted = 0;
  RETURN_IF_ERROR(database.Write([&](Connection& db) -> absl::Status {
    ASSIGN_OR_RETURN(
        Statement remove,
        db.Prepare("DELETE FROM idempotency_keys WHERE (principal, method, "
                   "request_id) IN (SELECT principal, method, request_id FROM "
                   "idempotency_keys WHERE create_micros < ? ORDER BY "
                   "create_micros LIMIT ?)"));
    RETURN_IF_ERROR(remove.Bind(1, absl::ToUnixMicros(older_than))
                        .Bind(2, batch_size)
                        .Run());
    deleted = db.Changes();
    return absl::OkStatus();
  }));
  return deleted;
}

}  // namespace custos
