#include "services/customer_management_service/customer_store.h"

#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "absl/strings/str_split.h"
#include "common/audit_store.h"
#include "common/consistency_token.h"
#include "common/idempotency_store.h"
#include "common/outbox.h"
#include "common/status_macros.h"
#include "common/store_identity.h"
#include "google/protobuf/util/time_util.h"

namespace custos::customers {
namespace {

using google::protobuf::util::TimeUtil;

const std::vector<Migration>& Migrations() {
  static const auto* migrations = new std::vector<Migration>{
      {1, kAuditEventsSchema},
      {2, kIdempotencyKeysSchema},
      {3, R"sql(
CREATE TABLE partners (
  id TEXT PRIMARY KEY,
  display_name TEXT NOT NULL,
  create_micros INTEGER NOT NULL
);
CREATE TABLE partner_users (
  partner_id TEXT NOT NULL REFERENCES partners(id),
  user_id TEXT NOT NULL,
  role INTEGER NOT NULL,
  display_name TEXT NOT NULL,
  email TEXT NOT NULL,
  create_micros INTEGER NOT NULL,
  PRIMARY KEY (partner_id, user_id)
);
CREATE INDEX partner_users_by_user ON partner_users(user_id);
CREATE TABLE customers (
  id TEXT PRIMARY KEY,
  display_name TEXT NOT NULL,
  partner_id TEXT REFERENCES partners(id),
  account_manager TEXT,
  sites TEXT NOT NULL,
  management_type INTEGER NOT NULL,
  communications INTEGER NOT NULL,
  version INTEGER NOT NULL,
  create_micros INTEGER NOT NULL,
  update_micros INTEGER NOT NULL
);
CREATE INDEX customers_by_partner_name ON customers(partner_id, display_name, id);
CREATE INDEX customers_by_name ON customers(display_name, id);
CREATE TABLE products (
  customer_id TEXT NOT NULL REFERENCES customers(id) ON DELETE CASCADE,
  id TEXT NOT NULL,
  product_code TEXT NOT NULL,
  seats INTEGER NOT NULL,
  status INTEGER NOT NULL,
  term_start_micros INTEGER,
  term_end_micros INTEGER,
  version INTEGER NOT NULL,
  create_micros INTEGER NOT NULL,
  update_micros INTEGER NOT NULL,
  PRIMARY KEY (customer_id, id)
);
CREATE TABLE customer_users (
  customer_id TEXT NOT NULL REFERENCES customers(id) ON DELETE CASCADE,
  user_id TEXT NOT NULL,
  display_name TEXT NOT NULL,
  email TEXT NOT NULL,
  create_micros INTEGER NOT NULL,
  PRIMARY KEY (customer_id, user_id)
);
CREATE INDEX customer_users_by_user ON customer_users(user_id);
)sql"},
      {4, kOutboxSchema},
      {5, kOutboxByDestinationSchema},
      {6, kOutboxLeasesSchema},
      {7, kStoreIdentitySchema},
      // The change feed (ListCustomerChanges): one row per change that can
      // alter a permission answer, numbered in commit order by one counter
      // row (concurrent writers serialize on it), and each customer's last
      // change, kept through deletes so versions move on after a re-create.
      {8, R"sql(
CREATE TABLE change_counter (
  name TEXT PRIMARY KEY,
  value INTEGER NOT NULL
);
CREATE TABLE customer_changes (
  seq INTEGER PRIMARY KEY,
  change_id INTEGER NOT NULL,
  customer_id TEXT NOT NULL,
  deleted INTEGER NOT NULL,
  change_micros INTEGER NOT NULL
);
CREATE INDEX customer_changes_by_time ON customer_changes(change_micros);
CREATE TABLE customer_change_heads (
  customer_id TEXT PRIMARY KEY,
  seq INTEGER NOT NULL,
  change_id INTEGER NOT NULL
);
)sql"},
      {9, kAuditEventsTimeIndexSchema},
      {10, kIdempotencyKeysTimeIndexSchema},
      {11, kOutboxDeadLettersSchema},
      {12, kOutboxTraceSchema},
  };
  return *migrations;
}

google::protobuf::Timestamp Micros(int64_t micros) {
  return TimeUtil::MicrosecondsToTimestamp(micros);
}

int64_t ToMicros(const google::protobuf::Timestamp& timestamp) {
  return TimeUtil::TimestampToMicroseconds(timestamp);
}

// Sites are a short list owned by the customer; one text column, one per
// line, keeps a customer a single row.
std::string JoinSites(const v1::Customer& customer) {
  return absl::StrJoin(customer.sites(), "\n");
}

constexpr char kCustomerColumns[] =
    "id, display_name, partner_id, account_manager, sites, management_type, "
    "communications, version, create_micros, update_micros";

// The same columns, qualified, for joins.
constexpr char kCustomerColumnsOfC[] =
    "c.id, c.display_name, c.partner_id, c.account_manager, c.sites, "
    "c.management_type, c.communications, c.version, c.create_micros, "
    "c.update_micros";

v1::Customer ReadCustomer(const Statement& row) {
  v1::Customer customer;
  customer.set_name(absl::StrCat("customers/", row.ColumnText(0)));
  customer.set_display_name(row.ColumnText(1));
  std::string partner_id = row.ColumnText(2);
  if (!partner_id.empty()) {
    customer.set_partner(absl::StrCat("partners/", partner_id));
    std::string manager = row.ColumnText(3);
    if (!manager.empty()) {
      customer.set_account_manager(
          absl::StrCat("partners/", partner_id, "/users/", manager));
    }
  }
  // Column 4 (sites) holds only links from before AccessService owned them,
  // until MigrateSiteLinks hands them over; Customer.sites is read there.
  customer.set_management_type(
      static_cast<v1::ManagementType>(row.ColumnInt64(5)));
  customer.set_communications(
      static_cast<v1::Communications>(row.ColumnInt64(6)));
  customer.set_version(row.ColumnInt64(7));
  customer.set_etag(absl::StrCat(customer.version()));
  *customer.mutable_create_time() = Micros(row.ColumnInt64(8));
  *customer.mutable_update_time() = Micros(row.ColumnInt64(9));
  return customer;
}

// The `{user}` of "partners/{p}/users/{user}"; "" for an empty name.
std::string AccountManagerId(const v1::Customer& customer) {
  absl::string_view name = customer.account_manager();
  size_t slash = name.rfind('/');
  return slash == absl::string_view::npos ? std::string(name)
                                          : std::string(name.substr(slash + 1));
}

v1::Product ReadProduct(const Statement& row) {
  v1::Product product;
  product.set_name(absl::StrCat("customers/", row.ColumnText(0), "/products/",
                                row.ColumnText(1)));
  product.set_product_code(row.ColumnText(2));
  product.set_seats(static_cast<int32_t>(row.ColumnInt64(3)));
  product.set_status(static_cast<v1::ProductStatus>(row.ColumnInt64(4)));
  if (!row.ColumnIsNull(5)) {
    *product.mutable_term_start_time() = Micros(row.ColumnInt64(5));
  }
  if (!row.ColumnIsNull(6)) {
    *product.mutable_term_end_time() = Micros(row.ColumnInt64(6));
  }
  product.set_etag(absl::StrCat(row.ColumnInt64(7)));
  *product.mutable_create_time() = Micros(row.ColumnInt64(8));
  *product.mutable_update_time() = Micros(row.ColumnInt64(9));
  return product;
}

constexpr char kProductColumns[] =
    "customer_id, id, product_code, seats, status, term_start_micros, "
    "term_end_micros, version, create_micros, update_micros";

void BindTerm(Statement& statement, int index, const v1::Product& product,
              bool start) {
  bool has =
      start ? product.has_term_start_time() : product.has_term_end_time();
  if (!has) {
    statement.BindNull(index);
    return;
  }
  statement.Bind(index, ToMicros(start ? product.term_start_time()
                                       : product.term_end_time()));
}

v1::PartnerUser ReadPartnerUser(const Statement& row) {
  v1::PartnerUser user;
  user.set_name(absl::StrCat("partners/", row.ColumnText(0), "/users/",
                             row.ColumnText(1)));
  user.set_role(static_cast<v1::PartnerRole>(row.ColumnInt64(2)));
  user.set_display_name(row.ColumnText(3));
  user.set_email(row.ColumnText(4));
  *user.mutable_create_time() = Micros(row.ColumnInt64(5));
  return user;
}

v1::CustomerUser ReadCustomerUser(const Statement& row) {
  v1::CustomerUser user;
  user.set_name(absl::StrCat("customers/", row.ColumnText(0), "/users/",
                             row.ColumnText(1)));
  user.set_display_name(row.ColumnText(2));
  user.set_email(row.ColumnText(3));
  *user.mutable_create_time() = Micros(row.ColumnInt64(4));
  return user;
}

// Collects every row of `statement` through `read`.
template <typename T, typename Read>
absl::StatusOr<std::vector<T>> CollectRows(Statement& statement, Read read) {
  std::vector<T> rows;
  while (true) {
    ASSIGN_OR_RETURN(bool row, statement.Step());
    if (!row) return rows;
    rows.push_back(read(statement));
  }
}

template <typename T, typename Read>
absl::StatusOr<std::optional<T>> FirstRow(Statement& statement, Read read) {
  ASSIGN_OR_RETURN(bool row, statement.Step());
  if (!row) return std::optional<T>();
  return std::optional<T>(read(statement));
}

}  // namespace

absl::StatusOr<std::unique_ptr<Database>> CustomerStore::Open(
    const std::string& database, const DatabaseOptions& options) {
  return OpenDatabase(database, Migrations(), options);
}

absl::Status CustomerStore::InsertPartner(Connection& db,
                                          const std::string& partner_id,
                                          const v1::Partner& partner,
                                          absl::Time now) {
  ASSIGN_OR_RETURN(Statement insert,
                   db.Prepare("INSERT INTO partners(id, display_name, "
                              "create_micros) VALUES (?, ?, ?)"));
  return insert.Bind(1, partner_id)
      .Bind(2, partner.display_name())
      .Bind(3, absl::ToUnixMicros(now))
      .Run();
}

static v1::Partner ReadPartner(const Statement& row) {
  v1::Partner partner;
  partner.set_name(absl::StrCat("partners/", row.ColumnText(0)));
  partner.set_display_name(row.ColumnText(1));
  *partner.mutable_create_time() = Micros(row.ColumnInt64(2));
  return partner;
}

absl::StatusOr<std::optional<v1::Partner>> CustomerStore::FindPartner(
    Connection& db, const std::string& partner_id) {
  ASSIGN_OR_RETURN(Statement select,
                   db.Prepare("SELECT id, display_name, create_micros FROM "
                              "partners WHERE id = ?"));
  select.Bind(1, partner_id);
  return FirstRow<v1::Partner>(select, ReadPartner);
}

absl::StatusOr<std::vector<v1::Partner>> CustomerStore::ListPartners(
    Connection& db, const std::string& member, const std::string& after_id,
    int limit) {
  ASSIGN_OR_RETURN(
      Statement select,
      db.Prepare("SELECT id, display_name, create_micros FROM partners "
                 "WHERE id > ?1 AND (?2 = '' OR id IN (SELECT partner_id FROM "
                 "partner_users WHERE user_id = ?2)) ORDER BY id LIMIT ?3"));
  select.Bind(1, after_id).Bind(2, member).Bind(3, limit);
  return CollectRows<v1::Partner>(select, ReadPartner);
}

absl::Status CustomerStore::InsertPartnerUser(Connection& db,
                                              const std::string& partner_id,
                                              const std::string& user_id,
                                              const v1::PartnerUser& user,
                                              absl::Time now) {
  ASSIGN_OR_RETURN(
      Statement insert,
      db.Prepare("INSERT INTO partner_users(partner_id, user_id, role, "
                 "display_name, email, create_micros) "
                 "VALUES (?, ?, ?, ?, ?, ?)"));
  return insert.Bind(1, partner_id)
      .Bind(2, user_id)
      .Bind(3, static_cast<int64_t>(user.role()))
      .Bind(4, user.display_name())
      .Bind(5, user.email())
      .Bind(6, absl::ToUnixMicros(now))
      .Run();
}

absl::StatusOr<std::optional<v1::PartnerUser>> CustomerStore::FindPartnerUser(
    Connection& db, const std::string& partner_id, const std::string& user_id) {
  ASSIGN_OR_RETURN(
      Statement select,
      db.Prepare("SELECT partner_id, user_id, role, display_name, email, "
                 "create_micros FROM partner_users WHERE partner_id = ? AND "
                 "user_id = ?"));
  select.Bind(1, partner_id).Bind(2, user_id);
  return FirstRow<v1::PartnerUser>(select, ReadPartnerUser);
}

absl::StatusOr<std::vector<v1::PartnerUser>> CustomerStore::ListPartnerUsers(
    Connection& db, const std::string& partner_id,
    const std::string& after_user_id, int limit) {
  ASSIGN_OR_RETURN(
      Statement select,
      db.Prepare("SELECT partner_id, user_id, role, display_name, email, "
                 "create_micros FROM partner_users WHERE partner_id = ? AND "
                 "user_id > ? ORDER BY user_id LIMIT ?"));
  select.Bind(1, partner_id).Bind(2, after_user_id).Bind(3, limit);
  return CollectRows<v1::PartnerUser>(select, ReadPartnerUser);
}

absl::Status CustomerStore::DeletePartnerUser(Connection& db,
                                              const std::string& partner_id,
                                              const std::string& user_id) {
  ASSIGN_OR_RETURN(Statement remove,
                   db.Prepare("DELETE FROM partner_users WHERE partner_id = ? "
                              "AND user_id = ?"));
  return remove.Bind(1, partner_id).Bind(2, user_id).Run();
}

absl::StatusOr<int64_t> CustomerStore::CountPartnerAdmins(
    Connection& db, const std::string& partner_id) {
  ASSIGN_OR_RETURN(Statement count,
                   db.Prepare("SELECT COUNT(*) FROM partner_users WHERE "
                              "partner_id = ? AND role = ?"));
  count.Bind(1, partner_id)
      .Bind(2, static_cast<int64_t>(v1::PARTNER_ROLE_PARTNER_ADMIN));
  RETURN_IF_ERROR(count.Step().status());
  return count.ColumnInt64(0);
}

absl::StatusOr<int64_t> CustomerStore::CountManagedCustomers(
    Connection& db, const std::string& partner_id, const std::string& user_id) {
  ASSIGN_OR_RETURN(Statement count,
                   db.Prepare("SELECT COUNT(*) FROM customers WHERE "
                              "partner_id = ? AND account_manager = ?"));
  count.Bind(1, partner_id).Bind(2, user_id);
  RETURN_IF_ERROR(count.Step().status());
  return count.ColumnInt64(0);
}

absl::Status CustomerStore::BumpPartnerCustomerVersions(
    Connection& db, const std::string& partner_id, absl::Time now) {
  ASSIGN_OR_RETURN(Statement bump,
                   db.Prepare("UPDATE customers SET version = version + 1, "
                              "update_micros = ? WHERE partner_id = ?"));
  return bump.Bind(1, absl::ToUnixMicros(now)).Bind(2, partner_id).Run();
}

absl::Status CustomerStore::InsertCustomer(Connection& db,
                                           const std::string& customer_id,
                                           const v1::Customer& customer,
                                           absl::Time now) {
  ASSIGN_OR_RETURN(
      Statement insert,
      db.Prepare("INSERT INTO customers(id, display_name, partner_id, "
                 "account_manager, sites, management_type, communications, "
                 "version, create_micros, update_micros) "
                 "VALUES (?, ?, ?, ?, ?, ?, ?, 1, ?, ?)"));
  std::string partner_id;
  if (!customer.partner().empty()) {
    partner_id = customer.partner().substr(sizeof("partners/") - 1);
  }
  return insert.Bind(1, customer_id)
      .Bind(2, customer.display_name())
      .BindOptional(3, partner_id)
      .BindOptional(4, AccountManagerId(customer))
      .Bind(5, JoinSites(customer))
      .Bind(6, static_cast<int64_t>(customer.management_type()))
      .Bind(7, static_cast<int64_t>(customer.communications()))
      .Bind(8, absl::ToUnixMicros(now))
      .Bind(9, absl::ToUnixMicros(now))
      .Run();
}

absl::StatusOr<std::optional<v1::Customer>> CustomerStore::FindCustomer(
    Connection& db, const std::string& customer_id) {
  static const std::string* sql = new std::string(absl::StrCat(
      "SELECT ", kCustomerColumns, " FROM customers WHERE id = ?"));
  ASSIGN_OR_RETURN(Statement select, db.Prepare(*sql));
  select.Bind(1, customer_id);
  return FirstRow<v1::Customer>(select, ReadCustomer);
}

absl::StatusOr<std::vector<std::string>> CustomerStore::ListAllUserIds(
    Connection& db, const std::string& after, int limit) {
  ASSIGN_OR_RETURN(
      Statement select,
      // Each side is a bounded range scan of its user_id index; a plain
      // UNION of the tables would be sorted whole for every page.
      db.Prepare(
          "SELECT user_id FROM (SELECT user_id FROM customer_users "
          "WHERE user_id > ?1 ORDER BY user_id LIMIT ?2) AS cu UNION "
          "SELECT user_id FROM (SELECT user_id FROM partner_users WHERE "
          "user_id > ?1 ORDER BY user_id LIMIT ?2) AS pu ORDER BY user_id "
          "LIMIT ?2"));
  select.Bind(1, after).Bind(2, limit);
  std::vector<std::string> users;
  while (true) {
    ASSIGN_OR_RETURN(bool row, select.Step());
    if (!row) return users;
    users.push_back(select.ColumnText(0));
  }
}

absl::StatusOr<std::vector<std::pair<std::string, int64_t>>>
CustomerStore::CustomerVersionsOfPartner(Connection& db,
                                         const std::string& partner_id) {
  ASSIGN_OR_RETURN(
      Statement select,
      db.Prepare("SELECT id, version FROM customers WHERE partner_id = ?"));
  select.Bind(1, partner_id);
  std::vector<std::pair<std::string, int64_t>> versions;
  while (true) {
    ASSIGN_OR_RETURN(bool row, select.Step());
    if (!row) return versions;
    versions.emplace_back(select.ColumnText(0), select.ColumnInt64(1));
  }
}

absl::StatusOr<std::optional<CustomerAndCaller>>
CustomerStore::FindCustomerAndCaller(Connection& db,
                                     const std::string& customer_id,
                                     const std::string& user_id) {
  // One statement instead of three: this is the path of every customer read.
  static const std::string* sql = new std::string(
      absl::StrCat("SELECT ", kCustomerColumnsOfC,
                   ", pu.role, EXISTS(SELECT 1 FROM customer_users cu"
                   " WHERE cu.customer_id = c.id AND cu.user_id = ?2)"
                   " FROM customers c LEFT JOIN partner_users pu"
                   " ON pu.partner_id = c.partner_id AND pu.user_id = ?2"
                   " WHERE c.id = ?1"));
  ASSIGN_OR_RETURN(Statement select, db.Prepare(*sql));
  select.Bind(1, customer_id);
  select.Bind(2, user_id);
  return FirstRow<CustomerAndCaller>(select, [](const Statement& row) {
    CustomerAndCaller found;
    found.customer = ReadCustomer(row);
    if (!row.ColumnIsNull(10)) {
      found.partner_role = static_cast<v1::PartnerRole>(row.ColumnInt64(10));
    }
    found.is_customer_user = row.ColumnInt64(11) != 0;
    return found;
  });
}

absl::StatusOr<std::vector<v1::Customer>> CustomerStore::ListCustomers(
    Connection& db, const std::string& partner_id,
    const std::optional<std::pair<std::string, std::string>>& after,
    int limit) {
  // Row-value comparison keeps this a range scan of the (partner, name, id)
  // index: keyset pagination, stable under concurrent inserts and deletes.
  static const std::string* by_partner = new std::string(absl::StrCat(
      "SELECT ", kCustomerColumns,
      " FROM customers WHERE partner_id = ?1 AND (display_name, id) > (?2, "
      "?3) ORDER BY display_name, id LIMIT ?4"));
  static const std::string* all = new std::string(
      absl::StrCat("SELECT ", kCustomerColumns,
                   // ?1 (the partner) stays unbound: NULL.
                   " FROM customers WHERE CAST(?1 AS TEXT) IS NULL AND "
                   "(display_name, id) > (?2, ?3) "
                   "ORDER BY display_name, id LIMIT ?4"));
  ASSIGN_OR_RETURN(Statement select,
                   db.Prepare(partner_id.empty() ? *all : *by_partner));
  if (!partner_id.empty()) select.Bind(1, partner_id);
  // ("", "") sorts before every stored key.
  select.Bind(2, after ? after->first : "")
      .Bind(3, after ? after->second : "")
      .Bind(4, limit);
  return CollectRows<v1::Customer>(select, ReadCustomer);
}

absl::Status CustomerStore::UpdateCustomer(Connection& db,
                                           const std::string& customer_id,
                                           const v1::Customer& customer,
                                           absl::Time now) {
  ASSIGN_OR_RETURN(
      Statement update,
      db.Prepare("UPDATE customers SET display_name = ?, account_manager = ?, "
                 "sites = ?, management_type = ?, communications = ?, "
                 "version = ?, update_micros = ? WHERE id = ?"));
  return update.Bind(1, customer.display_name())
      .BindOptional(2, AccountManagerId(customer))
      .Bind(3, JoinSites(customer))
      .Bind(4, static_cast<int64_t>(customer.management_type()))
      .Bind(5, static_cast<int64_t>(customer.communications()))
      .Bind(6, customer.version())
      .Bind(7, absl::ToUnixMicros(now))
      .Bind(8, customer_id)
      .Run();
}

absl::Status CustomerStore::DeleteCustomer(Connection& db,
                                           const std::string& customer_id) {
  ASSIGN_OR_RETURN(Statement remove,
                   db.Prepare("DELETE FROM customers WHERE id = ?"));
  return remove.Bind(1, customer_id).Run();
}

absl::Status CustomerStore::BumpCustomerVersion(Connection& db,
                                                const std::string& customer_id,
                                                absl::Time now) {
  ASSIGN_OR_RETURN(Statement bump,
                   db.Prepare("UPDATE customers SET version = version + 1, "
                              "update_micros = ? WHERE id = ?"));
  return bump.Bind(1, absl::ToUnixMicros(now)).Bind(2, customer_id).Run();
}

absl::StatusOr<std::vector<std::pair<std::string, std::string>>>
CustomerStore::TakeLegacySiteLinks(Connection& db) {
  ASSIGN_OR_RETURN(
      Statement select,
      db.Prepare("SELECT id, sites FROM customers WHERE sites <> '' ORDER BY "
                 "id"));
  std::vector<std::pair<std::string, std::string>> links;
  while (true) {
    ASSIGN_OR_RETURN(bool row, select.Step());
    if (!row) break;
    const std::string customer_id = select.ColumnText(0);
    for (absl::string_view site : absl::StrSplit(select.ColumnText(1), '\n')) {
      if (!site.empty()) links.emplace_back(customer_id, std::string(site));
    }
  }
  ASSIGN_OR_RETURN(Statement clear,
                   db.Prepare("UPDATE customers SET sites = '' WHERE sites <> "
                              "''"));
  RETURN_IF_ERROR(clear.Run());
  return links;
}

absl::StatusOr<CustomerChangeRow> CustomerStore::AppendCustomerChange(
    Connection& db, const std::string& customer_id, bool deleted,
    absl::Time now) {
  ASSIGN_OR_RETURN(
      Statement bump,
      db.Prepare("INSERT INTO change_counter(name, value) VALUES ('changes', "
                 "1) ON CONFLICT(name) DO UPDATE SET value = "
                 "change_counter.value + 1 RETURNING value"));
  ASSIGN_OR_RETURN(bool bumped, bump.Step());
  if (!bumped) return absl::InternalError("change counter returned no row");
  CustomerChangeRow change;
  change.customer_id = customer_id;
  change.deleted = deleted;
  change.sequence = bump.ColumnInt64(0);
  change.change_id = NewVersionId();
  change.change_micros = absl::ToUnixMicros(now);
  RETURN_IF_ERROR(bump.Run());
  ASSIGN_OR_RETURN(
      Statement insert,
      db.Prepare("INSERT INTO customer_changes(seq, change_id, customer_id, "
                 "deleted, change_micros) VALUES (?, ?, ?, ?, ?)"));
  RETURN_IF_ERROR(insert.Bind(1, change.sequence)
                      .Bind(2, change.change_id)
                      .Bind(3, customer_id)
                      .Bind(4, deleted ? 1 : 0)
                      .Bind(5, change.change_micros)
                      .Run());
  ASSIGN_OR_RETURN(
      Statement head,
      db.Prepare("INSERT INTO customer_change_heads(customer_id, seq, "
                 "change_id) VALUES (?1, ?2, ?3) ON CONFLICT(customer_id) DO "
                 "UPDATE SET seq = excluded.seq, change_id = "
                 "excluded.change_id"));
  RETURN_IF_ERROR(head.Bind(1, customer_id)
                      .Bind(2, change.sequence)
                      .Bind(3, change.change_id)
                      .Run());
  return change;
}

absl::StatusOr<std::vector<std::string>> CustomerStore::CustomersWithoutChanges(
    Connection& db) {
  ASSIGN_OR_RETURN(
      Statement select,
      db.Prepare("SELECT c.id FROM customers c WHERE NOT EXISTS (SELECT 1 FROM "
                 "customer_change_heads h WHERE h.customer_id = c.id) ORDER "
                 "BY c.id"));
  std::vector<std::string> ids;
  while (true) {
    ASSIGN_OR_RETURN(bool row, select.Step());
    if (!row) return ids;
    ids.push_back(select.ColumnText(0));
  }
}

absl::StatusOr<CustomerChangeRow> CustomerStore::CustomerChangeHead(
    Connection& db, const std::string& customer_id) {
  ASSIGN_OR_RETURN(Statement select,
                   db.Prepare("SELECT seq, change_id FROM "
                              "customer_change_heads WHERE customer_id = ?"));
  select.Bind(1, customer_id);
  ASSIGN_OR_RETURN(bool row, select.Step());
  CustomerChangeRow head;
  head.customer_id = customer_id;
  if (row) {
    head.sequence = select.ColumnInt64(0);
    head.change_id = select.ColumnInt64(1);
  }
  return head;
}

namespace {

CustomerChangeRow ReadChange(const Statement& row) {
  CustomerChangeRow change;
  change.sequence = row.ColumnInt64(0);
  change.change_id = row.ColumnInt64(1);
  change.customer_id = row.ColumnText(2);
  change.deleted = row.ColumnInt64(3) != 0;
  change.change_micros = row.ColumnInt64(4);
  return change;
}

}  // namespace

absl::StatusOr<std::vector<CustomerChangeRow>>
CustomerStore::ListCustomerChanges(Connection& db, int64_t after_sequence,
                                   int limit) {
  ASSIGN_OR_RETURN(
      Statement select,
      db.Prepare("SELECT seq, change_id, customer_id, deleted, change_micros "
                 "FROM customer_changes WHERE seq > ? ORDER BY seq LIMIT ?"));
  select.Bind(1, after_sequence).Bind(2, static_cast<int64_t>(limit));
  std::vector<CustomerChangeRow> changes;
  while (true) {
    ASSIGN_OR_RETURN(bool row, select.Step());
    if (!row) return changes;
    changes.push_back(ReadChange(select));
  }
}

absl::StatusOr<std::optional<CustomerChangeRow>> CustomerStore::FindChange(
    Connection& db, int64_t sequence) {
  ASSIGN_OR_RETURN(
      Statement select,
      db.Prepare("SELECT seq, change_id, customer_id, deleted, change_micros "
                 "FROM customer_changes WHERE seq = ?"));
  select.Bind(1, sequence);
  ASSIGN_OR_RETURN(bool row, select.Step());
  if (!row) return std::nullopt;
  return ReadChange(select);
}

absl::StatusOr<CustomerChangeRow> CustomerStore::LastChange(Connection& db) {
  ASSIGN_OR_RETURN(
      Statement select,
      db.Prepare("SELECT seq, change_id, customer_id, deleted, change_micros "
                 "FROM customer_changes ORDER BY seq DESC LIMIT 1"));
  ASSIGN_OR_RETURN(bool row, select.Step());
  if (!row) return CustomerChangeRow();
  return ReadChange(select);
}

absl::StatusOr<int64_t> CustomerStore::PruneCustomerChanges(
    Connection& db, absl::Time older_than) {
  // The newest change stays: it is the head every position compares with.
  ASSIGN_OR_RETURN(
      Statement remove,
      db.Prepare("DELETE FROM customer_changes WHERE change_micros < ? AND "
                 "seq < (SELECT MAX(seq) FROM customer_changes)"));
  RETURN_IF_ERROR(remove.Bind(1, absl::ToUnixMicros(older_than)).Run());
  return db.Changes();
}

absl::Status CustomerStore::InsertProduct(Connection& db,
                                          const std::string& customer_id,
                                          const std::string& product_id,
                                          const v1::Product& product,
                                          absl::Time now) {
  ASSIGN_OR_RETURN(
      Statement insert,
      db.Prepare("INSERT INTO products(customer_id, id, product_code, seats, "
                 "status, term_start_micros, term_end_micros, version, "
                 "create_micros, update_micros) "
                 "VALUES (?, ?, ?, ?, ?, ?, ?, 1, ?, ?)"));
  insert.Bind(1, customer_id)
      .Bind(2, product_id)
      .Bind(3, product.product_code())
      .Bind(4, static_cast<int64_t>(product.seats()))
      .Bind(5, static_cast<int64_t>(product.status()));
  BindTerm(insert, 6, product, /*start=*/true);
  BindTerm(insert, 7, product, /*start=*/false);
  return insert.Bind(8, absl::ToUnixMicros(now))
      .Bind(9, absl::ToUnixMicros(now))
      .Run();
}

absl::StatusOr<std::optional<v1::Product>> CustomerStore::FindProduct(
    Connection& db, const std::string& customer_id,
    const std::string& product_id) {
  static const std::string* sql = new std::string(
      absl::StrCat("SELECT ", kProductColumns,
                   " FROM products WHERE customer_id = ? AND id = ?"));
  ASSIGN_OR_RETURN(Statement select, db.Prepare(*sql));
  select.Bind(1, customer_id).Bind(2, product_id);
  return FirstRow<v1::Product>(select, ReadProduct);
}

absl::StatusOr<std::vector<v1::Product>> CustomerStore::ListProducts(
    Connection& db, const std::string& customer_id, const std::string& after_id,
    int limit) {
  static const std::string* sql = new std::string(absl::StrCat(
      "SELECT ", kProductColumns,
      " FROM products WHERE customer_id = ? AND id > ? ORDER BY id LIMIT ?"));
  ASSIGN_OR_RETURN(Statement select, db.Prepare(*sql));
  select.Bind(1, customer_id).Bind(2, after_id).Bind(3, limit);
  return CollectRows<v1::Product>(select, ReadProduct);
}

absl::Status CustomerStore::UpdateProduct(Connection& db,
                                          const std::string& customer_id,
                                          const std::string& product_id,
                                          const v1::Product& product,
                                          absl::Time now) {
  ASSIGN_OR_RETURN(
      Statement update,
      db.Prepare("UPDATE products SET product_code = ?, seats = ?, status = ?, "
                 "term_start_micros = ?, term_end_micros = ?, "
                 "version = version + 1, update_micros = ? "
                 "WHERE customer_id = ? AND id = ?"));
  update.Bind(1, product.product_code())
      .Bind(2, static_cast<int64_t>(product.seats()))
      .Bind(3, static_cast<int64_t>(product.status()));
  BindTerm(update, 4, product, /*start=*/true);
  BindTerm(update, 5, product, /*start=*/false);
  return update.Bind(6, absl::ToUnixMicros(now))
      .Bind(7, customer_id)
      .Bind(8, product_id)
      .Run();
}

absl::Status CustomerStore::InsertCustomerUser(Connection& db,
                                               const std::string& customer_id,
                                               const std::string& user_id,
                                               const v1::CustomerUser& user,
                                               absl::Time now) {
  ASSIGN_OR_RETURN(
      Statement insert,
      db.Prepare("INSERT INTO customer_users(customer_id, user_id, "
                 "display_name, email, create_micros) VALUES (?, ?, ?, ?, ?)"));
  return insert.Bind(1, customer_id)
      .Bind(2, user_id)
      .Bind(3, user.display_name())
      .Bind(4, user.email())
      .Bind(5, absl::ToUnixMicros(now))
      .Run();
}

absl::StatusOr<std::optional<v1::CustomerUser>> CustomerStore::FindCustomerUser(
    Connection& db, const std::string& customer_id,
    const std::string& user_id) {
  ASSIGN_OR_RETURN(
      Statement select,
      db.Prepare("SELECT customer_id, user_id, display_name, email, "
                 "create_micros FROM customer_users WHERE customer_id = ? AND "
                 "user_id = ?"));
  select.Bind(1, customer_id).Bind(2, user_id);
  return FirstRow<v1::CustomerUser>(select, ReadCustomerUser);
}

absl::StatusOr<std::vector<v1::CustomerUser>> CustomerStore::ListCustomerUsers(
    Connection& db, const std::string& customer_id,
    const std::string& after_user_id, int limit) {
  ASSIGN_OR_RETURN(
      Statement select,
      db.Prepare("SELECT customer_id, user_id, display_name, email, "
                 "create_micros FROM customer_users WHERE customer_id = ? AND "
                 "user_id > ? ORDER BY user_id LIMIT ?"));
  select.Bind(1, customer_id).Bind(2, after_user_id).Bind(3, limit);
  return CollectRows<v1::CustomerUser>(select, ReadCustomerUser);
}

absl::Status CustomerStore::DeleteCustomerUser(Connection& db,
                                               const std::string& customer_id,
                                               const std::string& user_id) {
  ASSIGN_OR_RETURN(Statement remove,
                   db.Prepare("DELETE FROM customer_users WHERE customer_id = "
                              "? AND user_id = ?"));
  return remove.Bind(1, customer_id).Bind(2, user_id).Run();
}

}  // namespace custos::customers
