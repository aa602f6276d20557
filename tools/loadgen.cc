// loadgen: a closed-loop gRPC load generator for any unary method of the
// contracts linked into it (custos_protos, see LinkedContracts()).
//
//   build/tools/loadgen --target=127.0.0.1:50052
//     --method=custos.customers.v1.CustomerManagementService/GetCustomer
//     --data='{"name":"customers/acme"}'
//     --token="$(tools/mint-token --sub bill)"
//
// `--concurrency` calls are kept in flight, spread over `--channels`
// connections; each completion immediately issues the next call. Calls that
// start during `--warmup` are not counted. The run ends at `--duration` or
// after `--count` counted calls, whichever comes first, and never later than
// kMaxRun; every call has a deadline, so it always ends by itself.
//
// Output: a table (or one JSON line with --json) of calls, errors by status
// code, elapsed time, calls per second, and latency percentiles (of every
// counted call, whatever its status) in milliseconds. Exit status: 0, or 1
// when no counted call succeeded, 2 for bad flags.
//
// Why it is cheap on a 2-core machine shared with the server under test: the
// request is serialized once; calls use the callback API (no thread per
// call, no completion-queue polling thread of our own); each in-flight slot
// reuses its request and response buffers and records into its own
// fixed-size histogram, so the hot path takes no lock and does not allocate
// beyond what gRPC itself needs per call.
//
// Plaintext only: it is meant for loopback benchmarks.

#include <algorithm>
#include <array>
#include <atomic>
#include <chrono>
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <fstream>
#include <iostream>
#include <memory>
#include <optional>
#include <sstream>
#include <string>
#include <utility>
#include <vector>

#include "absl/flags/flag.h"
#include "absl/flags/parse.h"
#include "absl/flags/usage.h"
#include "absl/numeric/bits.h"
#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/ascii.h"
#include "absl/strings/escaping.h"
#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/strings/str_join.h"
#include "absl/strings/str_split.h"
#include "absl/strings/strip.h"
#include "absl/synchronization/notification.h"
#include "absl/time/clock.h"
#include "absl/time/time.h"
#include "grpcpp/create_channel.h"
#include "grpcpp/generic/generic_stub.h"
#include "grpcpp/grpcpp.h"
#include "grpcpp/security/credentials.h"
#include "grpcpp/support/channel_arguments.h"
#include "tools/dynamic_call.h"

ABSL_FLAG(std::string, target, "127.0.0.1:50051",
          "Server address, host:port (plaintext).");
ABSL_FLAG(std::string, method, "",
          "Unary method to call, pkg.Service/Method. Required.");
ABSL_FLAG(std::string, data, "",
          "Request as JSON. Default: the empty message.");
ABSL_FLAG(std::string, text, "",
          "Request in protobuf text format, instead of --data.");
ABSL_FLAG(int, concurrency, 32, "Calls kept in flight.");
ABSL_FLAG(absl::Duration, duration, absl::Seconds(10),
          "How long to measure, after the warmup. With --count and no "
          "--duration, the 10m cap. At most 10m.");
ABSL_FLAG(int64_t, count, 0,
          "Stop after this many counted calls (0: no limit); the run ends at "
          "--duration or --count, whichever comes first.");
ABSL_FLAG(std::string, token, "",
          "Bearer token, sent as `authorization: Bearer <token>`.");
ABSL_FLAG(std::vector<std::string>, metadata, {},
          "Request metadata as key:value; comma-separated, and the flag may "
          "be repeated.");
ABSL_FLAG(absl::Duration, warmup, absl::Seconds(1),
          "Calls started during this time are not counted. At most 1m.");
ABSL_FLAG(absl::Duration, deadline, absl::Seconds(5),
          "Deadline of each call. At most 1m.");
ABSL_FLAG(int, channels, 4,
          "Channels (TCP connections) the calls are spread across.");
ABSL_FLAG(std::string, tls_ca_file, "",
          "CA of the target's certificate; set = TLS");
ABSL_FLAG(std::string, tls_cert_file, "", "client certificate (mTLS)");
ABSL_FLAG(std::string, tls_key_file, "", "client key (mTLS)");
ABSL_FLAG(bool, json, false,
          "Print one JSON summary line instead of the table.");

namespace {

using Clock = std::chrono::steady_clock;
using custos::tools::StatusCodeName;

constexpr absl::Duration kMaxRun = absl::Minutes(10);
constexpr absl::Duration kMaxWarmup = absl::Minutes(1);
constexpr absl::Duration kMaxDeadline = absl::Minutes(1);
constexpr int kMaxConcurrency = 4096;
constexpr int kCodes = 17;  // grpc::StatusCode values 0..16; 17 = other

// A log-linear latency histogram (HDR-style): exact below 256 ns, then 128
// buckets per power of two, so any recorded value is off by < 0.8%. Fixed
// size, so recording never allocates. Not thread-safe: one per slot.
class Histogram {
 public:
  static constexpr int kLinear = 256;
  static constexpr int kPerOctave = 128;
  static constexpr int kOctaves = 34;  // up to 2^41 ns, about 36 minutes
  static constexpr int kBuckets = kLinear + kOctaves * kPerOctave;

  void Record(uint64_t nanos) {
    ++counts_[Index(nanos)];
    ++total_;
    max_ = std::max(max_, nanos);
  }

  void Merge(const Histogram& other) {
    for (int i = 0; i < kBuckets; ++i) counts_[i] += other.counts_[i];
    total_ += other.total_;
    max_ = std::max(max_, other.max_);
  }

  uint64_t total() const { return total_; }
  uint64_t max() const { return max_; }

  // The value at quantile `q` in [0, 1]: the upper edge of the bucket that
  // holds it, never above the true maximum.
  uint64_t Quantile(double q) const {
    if (total_ == 0) return 0;
    const uint64_t rank = std::max<uint64_t>(
        1, static_cast<uint64_t>(std::ceil(q * static_cast<double>(total_))));
    uint64_t seen = 0;
    for (int i = 0; i < kBuckets; ++i) {
      seen += counts_[i];
      if (seen >= rank) return std::min(UpperEdge(i), max_);
    }
    return max_;
  }

 private:
  static int Index(uint64_t v) {
    if (v < kLinear) return static_cast<int>(v);
    // v has w significant bits (w > 8); keep the top 8 of them.
    const int shift = absl::bit_width(v) - 8;
    const int octave = std::min(shift, kOctaves) - 1;
    const int sub =
        shift > kOctaves ? kPerOctave - 1 : static_cast<int>(v >> shift) - 128;
    return kLinear + octave * kPerOctave + sub;
  }

  static uint64_t UpperEdge(int index) {
    if (index < kLinear) return static_cast<uint64_t>(index);
    const int octave = (index - kLinear) / kPerOctave;
    const uint64_t sub = (index - kLinear) % kPerOctave + 128;
    const int shift = octave + 1;
    return ((sub + 1) << shift) - 1;
  }

  std::array<uint64_t, kBuckets> counts_{};
  uint64_t total_ = 0;
  uint64_t max_ = 0;
};

struct Settings {
  std::string target;
  std::string path;  // "/pkg.Service/Method"
  grpc::ByteBuffer request;
  custos::tools::Metadata metadata;
  int concurrency;
  int channels;
  absl::Duration warmup;
  absl::Duration duration;
  absl::Duration deadline;
  int64_t count;  // 0: no limit
  std::shared_ptr<grpc::ChannelCredentials> credentials;
};

class LoadRun;

// One call in flight at a time; everything it touches is its own, and
// successive calls of a slot are ordered by gRPC's completion, so no locks.
struct Slot {
  LoadRun* run = nullptr;
  grpc::GenericStub* stub = nullptr;
  grpc::ByteBuffer request;  // a private reference to the shared bytes
  grpc::ByteBuffer response;
  std::optional<grpc::ClientContext> context;
  Clock::time_point started;
  bool counted = false;
  Histogram latency;
  std::array<uint64_t, kCodes + 1> codes{};
  Clock::time_point last_end;
};

class LoadRun {
 public:
  explicit LoadRun(Settings settings) : settings_(std::move(settings)) {}

  // Connects every channel. Error: Unavailable when one cannot connect.
  absl::Status Connect() {
    for (int i = 0; i < settings_.channels; ++i) {
      grpc::ChannelArguments args;
      // Without these, channels with equal arguments share one connection.
      args.SetInt(GRPC_ARG_USE_LOCAL_SUBCHANNEL_POOL, 1);
      args.SetInt("custos.loadgen.channel", i);
      channels_.push_back(grpc::CreateCustomChannel(
          settings_.target, settings_.credentials, args));
      if (!channels_.back()->WaitForConnected(
              absl::ToChronoTime(absl::Now() + absl::Seconds(10)))) {
        return absl::UnavailableError(absl::StrCat(
            "cannot connect to ", settings_.target, " within 10s"));
      }
      stubs_.push_back(std::make_unique<grpc::GenericStub>(channels_.back()));
    }
    return absl::OkStatus();
  }

  // Runs the load; returns when every slot has stopped. REQUIRES: Connect()
  // succeeded.
  void Run() {
    slots_ = std::vector<Slot>(settings_.concurrency);
    steady_base_ = Clock::now();
    system_base_ = std::chrono::system_clock::now();
    measure_start_ = steady_base_ + absl::ToChronoNanoseconds(settings_.warmup);
    stop_at_ = measure_start_ + absl::ToChronoNanoseconds(settings_.duration);
    remaining_.store(settings_.count > 0 ? settings_.count : INT64_MAX);
    active_.store(settings_.concurrency);
    for (int i = 0; i < settings_.concurrency; ++i) {
      Slot& slot = slots_[i];
      slot.run = this;
      slot.stub = stubs_[i % stubs_.size()].get();
      slot.request = settings_.request;
    }
    for (Slot& slot : slots_) Issue(slot);
    // Calls have deadlines, so this only guards against a bug.
    const absl::Duration bound = settings_.warmup + settings_.duration +
                                 settings_.deadline + absl::Seconds(30);
    if (!done_.WaitForNotificationWithTimeout(bound)) {
      std::cerr << "loadgen: calls did not finish in time; giving up\n";
      std::_Exit(1);
    }
  }

  // Summary of the counted calls. REQUIRES: Run() returned.
  void Report(bool json) const {
    Histogram latency;
    std::array<uint64_t, kCodes + 1> codes{};
    Clock::time_point last_end = measure_start_;
    for (const Slot& slot : slots_) {
      latency.Merge(slot.latency);
      for (int c = 0; c <= kCodes; ++c) codes[c] += slot.codes[c];
      last_end = std::max(last_end, slot.last_end);
    }
    const uint64_t calls = latency.total();
    const uint64_t ok = codes[0];
    const double elapsed =
        std::chrono::duration<double>(last_end - measure_start_).count();
    const double rps = elapsed > 0 ? static_cast<double>(calls) / elapsed : 0;
    auto ms = [&](uint64_t nanos) { return static_cast<double>(nanos) / 1e6; };
    const double p50 = ms(latency.Quantile(0.50));
    const double p90 = ms(latency.Quantile(0.90));
    const double p99 = ms(latency.Quantile(0.99));
    const double p999 = ms(latency.Quantile(0.999));
    const double max = ms(latency.max());
    std::vector<std::string> errors;
    for (int c = 1; c <= kCodes; ++c) {
      if (codes[c] == 0) continue;
      const std::string name =
          c < kCodes
              ? std::string(StatusCodeName(static_cast<grpc::StatusCode>(c)))
              : "OTHER";
      errors.push_back(json ? absl::StrFormat("\"%s\":%d", name, codes[c])
                            : absl::StrFormat("%s %d", name, codes[c]));
    }
    if (json) {
      std::cout << absl::StrFormat(
          "{\"target\":\"%s\",\"method\":\"%s\",\"concurrency\":%d,"
          "\"channels\":%d,\"calls\":%d,\"ok\":%d,\"errors\":{%s},"
          "\"elapsed_s\":%.3f,\"rps\":%.1f,\"latency_ms\":{\"p50\":%.3f,"
          "\"p90\":%.3f,\"p99\":%.3f,\"p999\":%.3f,\"max\":%.3f}}\n",
          absl::CEscape(settings_.target), absl::CEscape(settings_.path),
          settings_.concurrency, settings_.channels, calls, ok,
          absl::StrJoin(errors, ","), elapsed, rps, p50, p90, p99, p999, max);
      return;
    }
    std::cout << absl::StrFormat(
        "target       %s\n"
        "method       %s\n"
        "concurrency  %d over %d channels\n"
        "calls        %d (%d ok)\n"
        "errors       %s\n"
        "elapsed      %.3f s\n"
        "rps          %.1f\n"
        "latency ms   p50 %.3f  p90 %.3f  p99 %.3f  p99.9 %.3f  max %.3f\n",
        settings_.target, settings_.path, settings_.concurrency,
        settings_.channels, calls, ok,
        errors.empty() ? "none" : absl::StrJoin(errors, ", "), elapsed, rps,
        p50, p90, p99, p999, max);
  }

  bool AnySucceeded() const {
    for (const Slot& slot : slots_) {
      if (slot.codes[0] > 0) return true;
    }
    return false;
  }

 private:
  // Starts the slot's next call, or retires the slot when the run is over.
  // Runs on the main thread first, then on gRPC's callback threads.
  void Issue(Slot& slot) {
    const Clock::time_point now = Clock::now();
    slot.counted = now >= measure_start_;
    if (now >= stop_at_ ||
        (slot.counted &&
         remaining_.fetch_sub(1, std::memory_order_relaxed) <= 0)) {
      if (active_.fetch_sub(1, std::memory_order_acq_rel) == 1) {
        done_.Notify();
      }
      return;
    }
    slot.started = now;
    slot.context.emplace();
    // The system clock, read once at the start, offset by the steady one:
    // one clock read per call instead of two.
    slot.context->set_deadline(
        system_base_ +
        std::chrono::duration_cast<std::chrono::system_clock::duration>(
            now - steady_base_ +
            absl::ToChronoNanoseconds(settings_.deadline)));
    for (const auto& [key, value] : settings_.metadata) {
      slot.context->AddMetadata(key, value);
    }
    slot.response.Clear();
    slot.stub->UnaryCall(
        &*slot.context, settings_.path, grpc::StubOptions(), &slot.request,
        &slot.response,
        [this, &slot](const grpc::Status& status) { Done(slot, status); });
  }

  void Done(Slot& slot, const grpc::Status& status) {
    if (slot.counted) {
      const Clock::time_point end = Clock::now();
      slot.latency.Record(static_cast<uint64_t>(
          std::chrono::duration_cast<std::chrono::nanoseconds>(end -
                                                               slot.started)
              .count()));
      const int code = static_cast<int>(status.error_code());
      ++slot.codes[code >= 0 && code < kCodes ? code : kCodes];
      slot.last_end = end;
    }
    Issue(slot);
  }

  const Settings settings_;
  std::vector<std::shared_ptr<grpc::Channel>> channels_;
  std::vector<std::unique_ptr<grpc::GenericStub>> stubs_;
  std::vector<Slot> slots_;
  Clock::time_point steady_base_;
  std::chrono::system_clock::time_point system_base_;
  Clock::time_point measure_start_;
  Clock::time_point stop_at_;
  std::atomic<int64_t> remaining_{0};
  std::atomic<int> active_{0};
  absl::Notification done_;
};

[[noreturn]] void Die(const std::string& message) {
  std::cerr << "loadgen: " << message << "\n";
  std::exit(2);
}

// absl flags keep only the last value of a repeated flag; --metadata may be
// repeated, so its occurrences are joined into one before parsing. Also
// reports whether --duration was given.
std::vector<char*> JoinRepeatedMetadata(int argc, char** argv,
                                        std::string* joined,
                                        bool* duration_given) {
  std::vector<char*> args = {argv[0]};
  std::vector<std::string> values;
  for (int i = 1; i < argc; ++i) {
    absl::string_view arg = argv[i];
    if (arg == "--") {
      args.insert(args.end(), argv + i, argv + argc);
      break;
    }
    absl::string_view name =
        absl::StripPrefix(absl::StripPrefix(arg, "-"), "-");
    if (absl::StartsWith(name, "duration")) *duration_given = true;
    if (name == "metadata" && i + 1 < argc) {
      values.emplace_back(argv[++i]);
      continue;
    }
    if (absl::ConsumePrefix(&name, "metadata=")) {
      values.emplace_back(name);
      continue;
    }
    args.push_back(argv[i]);
  }
  if (!values.empty()) {
    *joined = absl::StrCat("--metadata=", absl::StrJoin(values, ","));
    args.push_back(joined->data());
  }
  return args;
}

Settings SettingsFromFlags(bool duration_given) {
  Settings settings;
  settings.target = absl::GetFlag(FLAGS_target);
  settings.concurrency = absl::GetFlag(FLAGS_concurrency);
  settings.channels = absl::GetFlag(FLAGS_channels);
  settings.warmup = absl::GetFlag(FLAGS_warmup);
  settings.duration = absl::GetFlag(FLAGS_duration);
  settings.deadline = absl::GetFlag(FLAGS_deadline);
  settings.count = absl::GetFlag(FLAGS_count);
  settings.credentials = grpc::InsecureChannelCredentials();
  if (const std::string ca = absl::GetFlag(FLAGS_tls_ca_file); !ca.empty()) {
    auto read = [](const std::string& path) {
      std::ifstream in(path, std::ios::binary);
      std::stringstream contents;
      contents << in.rdbuf();
      return contents.str();
    };
    grpc::SslCredentialsOptions ssl;
    ssl.pem_root_certs = read(ca);
    if (!absl::GetFlag(FLAGS_tls_cert_file).empty()) {
      ssl.pem_cert_chain = read(absl::GetFlag(FLAGS_tls_cert_file));
      ssl.pem_private_key = read(absl::GetFlag(FLAGS_tls_key_file));
    }
    settings.credentials = grpc::SslCredentials(ssl);
  }
  if (settings.count > 0 && !duration_given) settings.duration = kMaxRun;
  if (settings.concurrency < 1 || settings.concurrency > kMaxConcurrency) {
    Die(absl::StrCat("--concurrency must be in [1, ", kMaxConcurrency, "]"));
  }
  if (settings.channels < 1) Die("--channels must be at least 1");
  settings.channels = std::min(settings.channels, settings.concurrency);
  if (settings.duration <= absl::ZeroDuration() ||
      settings.duration > kMaxRun) {
    Die("--duration must be in (0, 10m]");
  }
  if (settings.warmup < absl::ZeroDuration() || settings.warmup > kMaxWarmup) {
    Die("--warmup must be in [0, 1m]");
  }
  if (settings.deadline <= absl::ZeroDuration() ||
      settings.deadline > kMaxDeadline) {
    Die("--deadline must be in (0, 1m]");
  }
  if (settings.count < 0) Die("--count must not be negative");

  const std::string method_name = absl::GetFlag(FLAGS_method);
  if (method_name.empty()) Die("--method is required");
  const custos::tools::MessageCodec codec;
  absl::StatusOr<const google::protobuf::MethodDescriptor*> method =
      custos::tools::FindMethod(codec.pool(), method_name);
  if (!method.ok()) {
    Die(absl::StrCat(method.status().message(),
                     " (loadgen knows the contracts linked into it)"));
  }
  if ((*method)->client_streaming() || (*method)->server_streaming()) {
    Die(absl::StrCat((*method)->full_name(),
                     " is a streaming method; loadgen calls unary methods"));
  }
  settings.path = custos::tools::MethodPath(**method);

  const std::string data = absl::GetFlag(FLAGS_data);
  const std::string text = absl::GetFlag(FLAGS_text);
  if (!data.empty() && !text.empty()) Die("give --data or --text, not both");
  absl::StatusOr<grpc::ByteBuffer> request =
      custos::tools::EncodeRequest(codec, **method, text.empty() ? data : text,
                                   text.empty() ? custos::tools::Format::kJson
                                                : custos::tools::Format::kText);
  if (!request.ok()) Die(std::string(request.status().message()));
  settings.request = *std::move(request);

  const std::string token = absl::GetFlag(FLAGS_token);
  if (!token.empty()) {
    settings.metadata.emplace_back("authorization",
                                   absl::StrCat("Bearer ", token));
  }
  for (const std::string& entry : absl::GetFlag(FLAGS_metadata)) {
    if (absl::StripAsciiWhitespace(entry).empty()) continue;
    std::pair<std::string, std::string> kv =
        absl::StrSplit(entry, absl::MaxSplits(':', 1));
    settings.metadata.emplace_back(
        absl::AsciiStrToLower(absl::StripAsciiWhitespace(kv.first)),
        std::string(absl::StripAsciiWhitespace(kv.second)));
  }
  if (absl::Status valid = custos::tools::ValidateMetadata(settings.metadata);
      !valid.ok()) {
    Die(std::string(valid.message()));
  }
  return settings;
}

}  // namespace

int main(int argc, char** argv) {
  absl::SetProgramUsageMessage(
      "Closed-loop gRPC load generator.\n"
      "  loadgen --target=127.0.0.1:50052 --method=pkg.Service/Method "
      "--data='{...}' [--token=T] [--concurrency=32] [--duration=10s]");
  std::string joined_metadata;
  bool duration_given = false;
  std::vector<char*> args =
      JoinRepeatedMetadata(argc, argv, &joined_metadata, &duration_given);
  std::vector<char*> positional =
      absl::ParseCommandLine(static_cast<int>(args.size()), args.data());
  if (positional.size() > 1) {
    Die(absl::StrCat("unexpected argument: ", positional[1]));
  }
  LoadRun run(SettingsFromFlags(duration_given));
  if (absl::Status connected = run.Connect(); !connected.ok()) {
    std::cerr << "loadgen: " << connected.message() << "\n";
    return 1;
  }
  run.Run();
  run.Report(absl::GetFlag(FLAGS_json));
  return run.AnySucceeded() ? 0 : 1;
}
