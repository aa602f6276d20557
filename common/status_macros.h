#ifndef CUSTOS_COMMON_STATUS_MACROS_H_
#define CUSTOS_COMMON_STATUS_MACROS_H_

#include "absl/status/status.h"
#include "absl/status/statusor.h"

// Abseil 20220623 ships no status macros; these are the usual two.

// Returns from the enclosing function if `expr` yields a non-OK status.
#define RETURN_IF_ERROR(expr)                                         \
  do {                                                                \
    if (::absl::Status custos_status_ = (expr); !custos_status_.ok()) \
      return custos_status_;                                          \
  } while (false)

#define CUSTOS_CONCAT_INNER_(a, b) a##b
#define CUSTOS_CONCAT_(a, b) CUSTOS_CONCAT_INNER_(a, b)

// `ASSIGN_OR_RETURN(auto x, F())`: on error returns F()'s status, else binds
// its value to `x`.
#define ASSIGN_OR_RETURN(lhs, rexpr)                                        \
  CUSTOS_ASSIGN_OR_RETURN_IMPL_(CUSTOS_CONCAT_(custos_sor_, __LINE__), lhs, \
                                rexpr)

#define CUSTOS_ASSIGN_OR_RETURN_IMPL_(statusor, lhs, rexpr) \
  auto statusor = (rexpr);                                  \
  if (!statusor.ok()) return std::move(statusor).status();  \
  lhs = *std::move(statusor)

#endif  // CUSTOS_COMMON_STATUS_MACROS_H_
