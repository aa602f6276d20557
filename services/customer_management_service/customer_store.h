#ifndef CUSTOS_SERVICES_CUSTOMER_MANAGEMENT_SERVICE_CUSTOMER_STORE_H_
#define CUSTOS_SERVICES_CUSTOMER_MANAGEMENT_SERVICE_CUSTOMER_STORE_H_

#include <memory>
#include <optional>
#include <string>
#include <utility>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/time/time.h"
#include "common/database.h"
#include "custos/customers/v1/customers_service.pb.h"

namespace custos::customers {

namespace v1 = ::custos::customers::v1;

// A customer as seen by one user (CustomerStore::FindCustomerAndCaller).
struct CustomerAndCaller {
  v1::Customer customer;
  std::optional<v1::PartnerRole> partner_role;
  bool is_customer_user = false;
};

// One entry of the change feed (ListCustomerChanges).
struct CustomerChangeRow {
  int64_t sequence = 0;   // commit order; 0: none
  int64_t change_id = 0;  // random, never repeats
  std::string customer_id;
  bool deleted = false;
  int64_t change_micros = 0;
};

// SQL for CustomerManagementService's data. Every function runs inside the
// caller's transaction (Database::Read/Write), so the logic layer
// decides what one operation is. Resources are stored and returned as their
// API messages, with `name` filled in. Absent rows are nullopt, not errors.
class CustomerStore {
 public:
  // Opens `database` (sqlite:PATH or postgresql://...) and applies the
  // schema migrations.
  static absl::StatusOr<std::unique_ptr<Database>> Open(
      const std::string& database, const DatabaseOptions& options = {});

  // Partners.
  static absl::Status InsertPartner(Connection& db,
                                    const std::string& partner_id,
                                    const v1::Partner& partner, absl::Time now);
  static absl::StatusOr<std::optional<v1::Partner>> FindPartner(
      Connection& db, const std::string& partner_id);
  // Partners ordered by id after `after_id`; only those `member` belongs to
  // unless `member` is empty.
  static absl::StatusOr<std::vector<v1::Partner>> ListPartners(
      Connection& db, const std::string& member, const std::string& after_id,
      int limit);

  // Partner users.
  static absl::Status InsertPartnerUser(Connection& db,
                                        const std::string& partner_id,
                                        const std::string& user_id,
                                        const v1::PartnerUser& user,
                                        absl::Time now);
  static absl::StatusOr<std::optional<v1::PartnerUser>> FindPartnerUser(
      Connection& db, const std::string& partner_id,
      const std::string& user_id);
  static absl::StatusOr<std::vector<v1::PartnerUser>> ListPartnerUsers(
      Connection& db, const std::string& partner_id,
      const std::string& after_user_id, int limit);
  static absl::Status DeletePartnerUser(Connection& db,
                                        const std::string& partner_id,
                                        const std::string& user_id);
  static absl::StatusOr<int64_t> CountPartnerAdmins(
      Connection& db, const std::string& partner_id);
  // Customers whose account manager is this partner user.
  static absl::StatusOr<int64_t> CountManagedCustomers(
      Connection& db, const std::string& partner_id,
      const std::string& user_id);
  // Bumps the version of every customer of the partner: a partner user's
  // arrival or departure changes who can act on all of them.
  static absl::Status BumpPartnerCustomerVersions(Connection& db,
                                                  const std::string& partner_id,
                                                  absl::Time now);

  // Customers.
  static absl::Status InsertCustomer(Connection& db,
                                     const std::string& customer_id,
                                     const v1::Customer& customer,
                                     absl::Time now);
  static absl::StatusOr<std::optional<v1::Customer>> FindCustomer(
      Connection& db, const std::string& customer_id);
  // Distinct user ids of every customer user and partner user, ordered,
  // after `after`.
  static absl::StatusOr<std::vector<std::string>> ListAllUserIds(
      Connection& db, const std::string& after, int limit);
  // (customer id, version) of every customer of the partner.
  static absl::StatusOr<std::vector<std::pair<std::string, int64_t>>>
  CustomerVersionsOfPartner(Connection& db, const std::string& partner_id);
  // A customer with what `user_id` is to it: its partner role (none when
  // not a user of the customer's partner) and whether it is a customer user.
  static absl::StatusOr<std::optional<CustomerAndCaller>> FindCustomerAndCaller(
      Connection& db, const std::string& customer_id,
      const std::string& user_id);
  // Customers ordered by (display_name, id) after the given key; of one
  // partner unless `partner_id` is empty.
  static absl::StatusOr<std::vector<v1::Customer>> ListCustomers(
      Connection& db, const std::string& partner_id,
      const std::optional<std::pair<std::string, std::string>>& after,
      int limit);
  // Writes every mutable field of `customer` and sets version to
  // `customer.version()`; the caller has bumped it.
  static absl::Status UpdateCustomer(Connection& db,
                                     const std::string& customer_id,
                                     const v1::Customer& customer,
                                     absl::Time now);
  static absl::Status DeleteCustomer(Connection& db,
                                     const std::string& customer_id);
  static absl::Status BumpCustomerVersion(Connection& db,
                                          const std::string& customer_id,
                                          absl::Time now);

  // (customer id, `sites/{sid}`) links stored here before AccessService
  // owned them; clears them.
  static absl::StatusOr<std::vector<std::pair<std::string, std::string>>>
  TakeLegacySiteLinks(Connection& db);

  // The change feed. Appends a change that can alter answers on the
  // customer (also when it was deleted) and makes it the customer's head.
  static absl::StatusOr<CustomerChangeRow> AppendCustomerChange(
      Connection& db, const std::string& customer_id, bool deleted,
      absl::Time now);
  // Ids of customers with no change recorded (created before the feed).
  static absl::StatusOr<std::vector<std::string>> CustomersWithoutChanges(
      Connection& db);
  // The customer's last change; sequence 0 when none was recorded.
  static absl::StatusOr<CustomerChangeRow> CustomerChangeHead(
      Connection& db, const std::string& customer_id);
  // In commit order, after `after_sequence`.
  static absl::StatusOr<std::vector<CustomerChangeRow>> ListCustomerChanges(
      Connection& db, int64_t after_sequence, int limit);
  static absl::StatusOr<std::optional<CustomerChangeRow>> FindChange(
      Connection& db, int64_t sequence);
  // The newest change; sequence 0 when there is none.
  static absl::StatusOr<CustomerChangeRow> LastChange(Connection& db);
  // Deletes changes older than `older_than` but the newest; returns how many.
  static absl::StatusOr<int64_t> PruneCustomerChanges(Connection& db,
                                                      absl::Time older_than);

  // Products.
  static absl::Status InsertProduct(Connection& db,
                                    const std::string& customer_id,
                                    const std::string& product_id,
                                    const v1::Product& product, absl::Time now);
  static absl::StatusOr<std::optional<v1::Product>> FindProduct(
      Connection& db, const std::string& customer_id,
      const std::string& product_id);
  static absl::StatusOr<std::vector<v1::Product>> ListProducts(
      Connection& db, const std::string& customer_id,
      const std::string& after_id, int limit);
  // Writes the mutable fields and bumps the product's version (its etag).
  static absl::Status UpdateProduct(Connection& db,
                                    const std::string& customer_id,
                                    const std::string& product_id,
                                    const v1::Product& product, absl::Time now);

  // Customer users.
  static absl::Status InsertCustomerUser(Connection& db,
                                         const std::string& customer_id,
                                         const std::string& user_id,
                                         const v1::CustomerUser& user,
                                         absl::Time now);
  static absl::StatusOr<std::optional<v1::CustomerUser>> FindCustomerUser(
      Connection& db, const std::string& customer_id,
      const std::string& user_id);
  static absl::StatusOr<std::vector<v1::CustomerUser>> ListCustomerUsers(
      Connection& db, const std::string& customer_id,
      const std::string& after_user_id, int limit);
  static absl::Status DeleteCustomerUser(Connection& db,
                                         const std::string& customer_id,
                                         const std::string& user_id);
};

}  // namespace custos::customers

#endif  // CUSTOS_SERVICES_CUSTOMER_MANAGEMENT_SERVICE_CUSTOMER_STORE_H_
