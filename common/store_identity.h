#ifndef CUSTOS_COMMON_STORE_IDENTITY_H_
#define CUSTOS_COMMON_STORE_IDENTITY_H_

#include <string>

#include "absl/status/statusor.h"
#include "common/database.h"

namespace custos {

// Schema of the store_identity table (a Migration of every store that
// numbers its changes).
extern const char kStoreIdentitySchema[];

// Who a store is, created with it and kept for its life.
struct StoreIdentity {
  // 16 random hex digits. Part of every consistency token, feed position and
  // cache key, so nothing from another store (or from this one before it was
  // recreated empty) ever matches.
  std::string incarnation;
  // 32 random bytes: keys the MAC that authenticates values this store's
  // service puts in a shared cache; every replica reads the same one.
  std::string cache_key;
  // Whether this call created the identity: the store is new.
  bool created = false;
};

// Reads the store's identity, creating it when the store has none yet.
absl::StatusOr<StoreIdentity> LoadStoreIdentity(Database& database);

}  // namespace custos

#endif  // CUSTOS_COMMON_STORE_IDENTITY_H_
