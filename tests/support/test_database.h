#ifndef CUSTOS_TESTS_SUPPORT_TEST_DATABASE_H_
#define CUSTOS_TESTS_SUPPORT_TEST_DATABASE_H_

#include <string>

namespace custos::testing {

// Whether this test run stores in PostgreSQL: ctest runs each service
// suite twice, once with CUSTOS_TEST_BACKEND=postgresql.
bool TestingPostgres();

// The --database value for the store named `name` of a test whose files
// live in `dir`: "sqlite:DIR/NAME.db", or, under CUSTOS_TEST_BACKEND=
// postgresql, a fresh database in one throwaway PostgreSQL cluster started
// for the whole test binary. The same (dir, name) gives the same database,
// so a restarted service finds its data. Aborts the test binary when the
// cluster cannot start.
std::string TestDatabase(const std::string& dir, const std::string& name);

// A backup of the store (dir, name) as `snapshot`, and putting it back, as
// an operator restoring from a backup would: SQLite copies the files,
// PostgreSQL copies the database (CREATE DATABASE ... TEMPLATE). The
// service using the store must be stopped. False with the reason in
// `error` when it fails.
bool SnapshotTestDatabase(const std::string& dir, const std::string& name,
                          const std::string& snapshot, std::string* error);
bool RestoreTestDatabase(const std::string& dir, const std::string& name,
                         const std::string& snapshot, std::string* error);

}  // namespace custos::testing

#endif  // CUSTOS_TESTS_SUPPORT_TEST_DATABASE_H_
