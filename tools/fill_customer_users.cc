// Adds N customer users to one customer straight in
// customer_management_service's SQLite file, for benchmarks that need a large
// audience (its API would take minutes for 100,000). Run it while the service
// is up (WAL allows it) or before it starts; the customer must exist.
//   build/tools/fill_customer_users --database=PATH --customer=umbrella
//   --count=100000
#include <sqlite3.h>

#include <cstdio>
#include <string>

#include "absl/flags/flag.h"
#include "absl/flags/parse.h"
#include "absl/strings/str_cat.h"

ABSL_FLAG(std::string, database, "",
          "customer_management_service's SQLite file");
ABSL_FLAG(std::string, customer, "umbrella", "customer id the users belong to");
ABSL_FLAG(int, count, 100000, "how many users (bench-000001, ...)");

int main(int argc, char** argv) {
  absl::ParseCommandLine(argc, argv);
  sqlite3* db = nullptr;
  if (sqlite3_open(absl::GetFlag(FLAGS_database).c_str(), &db) != SQLITE_OK) {
    std::fprintf(stderr, "cannot open %s\n",
                 absl::GetFlag(FLAGS_database).c_str());
    return 1;
  }
  sqlite3_busy_timeout(db, 10000);
  const std::string sql = absl::StrCat(
      "WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i "
      "< ",
      absl::GetFlag(FLAGS_count),
      ") INSERT OR IGNORE INTO customer_users(customer_id, user_id, "
      "display_name, email, create_micros) SELECT ?1, printf('bench-%06d', i), "
      "'', '', 0 FROM n");
  sqlite3_stmt* insert = nullptr;
  if (sqlite3_prepare_v2(db, sql.c_str(), -1, &insert, nullptr) != SQLITE_OK) {
    std::fprintf(stderr, "%s\n", sqlite3_errmsg(db));
    return 1;
  }
  const std::string customer = absl::GetFlag(FLAGS_customer);
  sqlite3_bind_text(insert, 1, customer.c_str(), -1, SQLITE_TRANSIENT);
  const int rc = sqlite3_step(insert);
  sqlite3_finalize(insert);
  if (rc != SQLITE_DONE) {
    std::fprintf(stderr, "%s\n", sqlite3_errmsg(db));
    return 1;
  }
  std::printf("added %d users to customers/%s\n", sqlite3_changes(db),
              customer.c_str());
  sqlite3_close(db);
  return 0;
}
