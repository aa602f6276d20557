#ifndef CUSTOS_COMMON_EXECUTOR_H_
#define CUSTOS_COMMON_EXECUTOR_H_

#include <deque>
#include <functional>
#include <thread>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/synchronization/mutex.h"

namespace custos {

// A fixed pool of threads for blocking work (SQLite, Redis, peer calls), so
// that gRPC's callback reaction threads never block.
// Thread-safe.
class Executor {
 public:
  // `inline_reads`: whether store reads may run on the caller's (gRPC's)
  // thread instead (RpcRunner::UnaryRead): true only for a store whose reads
  // never wait (SQLite in WAL mode: Database::ReadsMayBlock).
  explicit Executor(int threads, bool inline_reads = false);
  // Runs every task already scheduled, then joins the threads.
  ~Executor();

  Executor(const Executor&) = delete;
  Executor& operator=(const Executor&) = delete;

  // Queues `task`. REQUIRES: Shutdown() has not been called.
  void Schedule(std::function<void()> task);

  // Stops accepting work, finishes what is queued and joins. Idempotent.
  void Shutdown();

  bool inline_reads() const { return inline_reads_; }

 private:
  void Loop();

  const bool inline_reads_;
  absl::Mutex mu_;
  std::deque<std::function<void()>> queue_ ABSL_GUARDED_BY(mu_);
  bool stopping_ ABSL_GUARDED_BY(mu_) = false;
  std::vector<std::thread> threads_;
};

}  // namespace custos

#endif  // CUSTOS_COMMON_EXECUTOR_H_
