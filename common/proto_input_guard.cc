#include "common/proto_input_guard.h"

#include <algorithm>
#include <cstdint>
#include <string>
#include <vector>

#include "absl/random/random.h"
#include "absl/status/status.h"
#include "absl/strings/ascii.h"
#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/strings/str_join.h"
#include "absl/strings/string_view.h"
#include "absl/strings/strip.h"
#include "absl/time/clock.h"
#include "absl/time/time.h"
#include "common/grpc_status.h"
#include "common/json_log.h"
#include "common/metrics.h"
#include "google/protobuf/descriptor.h"
#include "google/protobuf/stubs/logging.h"
#include "grpcpp/server_context.h"
#include "grpcpp/support/interceptor.h"

namespace custos {
namespace {

using ::google::protobuf::Descriptor;
using ::google::protobuf::DescriptorPool;
using ::google::protobuf::FieldDescriptor;
using ::grpc::experimental::InterceptionHookPoints;
using ::grpc::experimental::InterceptorBatchMethods;
using ::grpc::experimental::ServerRpcInfo;

// The full name of the string field whose invalid UTF-8 made the last parse
// on this thread fail; "" when none since it was last taken. gRPC parses a
// request and runs the server interceptors' POST_RECV_MESSAGE on the same
// thread, one right after the other.
std::string& InvalidUtf8Field() {
  thread_local std::string field;
  return field;
}

std::string TakeInvalidUtf8Field() {
  std::string field;
  field.swap(InvalidUtf8Field());
  return field;
}

// protobuf 3.21, wire_format_lite.cc PrintUTF8ErrorLog: "String field
// 'pkg.Message.field' contains invalid UTF-8 data when parsing a protocol
// buffer. ..." (also "when serializing", which does not fail in proto3).
constexpr absl::string_view kUtf8Prefix = "String field '";
constexpr absl::string_view kUtf8Parsing =
    "' contains invalid UTF-8 data when parsing";

const char* LevelName(google::protobuf::LogLevel level) {
  switch (level) {
    case google::protobuf::LOGLEVEL_INFO:
      return "info";
    case google::protobuf::LOGLEVEL_WARNING:
      return "warning";
    case google::protobuf::LOGLEVEL_ERROR:
      return "error";
    case google::protobuf::LOGLEVEL_FATAL:
      return "fatal";
  }
  return "error";
}

void HandleProtobufLog(google::protobuf::LogLevel level, const char* filename,
                       int line, const std::string& message) {
  absl::string_view text = absl::StripAsciiWhitespace(message);
  const char* level_name = LevelName(level);
  if (absl::StartsWith(text, kUtf8Prefix)) {
    const size_t end = text.find(kUtf8Parsing, kUtf8Prefix.size());
    if (end != absl::string_view::npos) {
      InvalidUtf8Field() = std::string(
          text.substr(kUtf8Prefix.size(), end - kUtf8Prefix.size()));
      // Bad input from a caller, answered INVALID_ARGUMENT, not a fault of
      // ours.
      level_name = "warning";
    }
  }
  Log(level_name, text,
      {{"source", "libprotobuf"},
       {"file", filename != nullptr ? filename : ""},
       {"line", absl::StrCat(line)}});
  // protobuf aborts right after a FATAL line.
  if (level == google::protobuf::LOGLEVEL_FATAL) FlushLogs();
}

void CollectPaths(const Descriptor* message, const FieldDescriptor* target,
                  std::vector<std::string>* path,
                  std::vector<const Descriptor*>* on_path,
                  std::vector<std::string>* found) {
  constexpr size_t kMaxDepth = 12;
  for (int i = 0; i < message->field_count() && found->size() < 2; ++i) {
    const FieldDescriptor* field = message->field(i);
    path->push_back(field->name());
    if (field == target) found->push_back(absl::StrJoin(*path, "."));
    const Descriptor* child = field->message_type();
    if (child != nullptr && path->size() < kMaxDepth &&
        std::find(on_path->begin(), on_path->end(), child) == on_path->end()) {
      on_path->push_back(child);
      CollectPaths(child, target, path, on_path, found);
      on_path->pop_back();
    }
    path->pop_back();
  }
}

// "/pkg.Service/Method" -> the method's input type's full name ("" when
// the method is not in the generated pool).
std::string RequestTypeOf(absl::string_view method_path) {
  absl::ConsumePrefix(&method_path, "/");
  std::string method(method_path);
  const size_t slash = method.rfind('/');
  if (slash == std::string::npos) return "";
  method[slash] = '.';
  const auto* descriptor =
      DescriptorPool::generated_pool()->FindMethodByName(method);
  return descriptor != nullptr ? descriptor->input_type()->full_name() : "";
}

// The label the services log and count RPCs under: the bare method name.
absl::string_view ShortMethod(absl::string_view method_path) {
  const size_t slash = method_path.rfind('/');
  return slash == absl::string_view::npos ? method_path
                                          : method_path.substr(slash + 1);
}

// As RpcRunner: a caller's x-request-id when printable and bounded,
// otherwise a fresh one.
std::string RequestIdOf(const grpc::ServerContextBase& context) {
  const auto& metadata = context.client_metadata();
  auto it = metadata.find("x-request-id");
  if (it != metadata.end()) {
    absl::string_view id(it->second.data(), it->second.size());
    bool usable = !id.empty() && id.size() <= 128;
    for (char c : id) usable = usable && c >= 0x21 && c <= 0x7e;
    if (usable) return std::string(id);
  }
  thread_local absl::InsecureBitGen gen;
  return absl::StrFormat("%016x", absl::Uniform<uint64_t>(gen));
}

class InvalidInputInterceptor : public grpc::experimental::Interceptor {
 public:
  explicit InvalidInputInterceptor(ServerRpcInfo* info)
      : info_(info), start_(absl::Now()) {}

  void Intercept(InterceptorBatchMethods* methods) override {
    if (methods->QueryInterceptionHookPoint(
            InterceptionHookPoints::POST_RECV_MESSAGE)) {
      // Taken on every message, so nothing stale is left for a later call.
      std::string field = TakeInvalidUtf8Field();
      // Unary and server-streaming requests are read (and parsed) before
      // any handler runs; nullptr here means that parse failed. For
      // streamed requests nullptr also means the client is done writing.
      if (!received_ && PreReadsRequest() &&
          methods->GetRecvMessage() == nullptr) {
        refusal_ = Refusal(field);
      }
      received_ = true;
    }
    if (!refusal_.ok()) {
      if (methods->QueryInterceptionHookPoint(
              InterceptionHookPoints::PRE_SEND_INITIAL_METADATA)) {
        methods->GetSendInitialMetadata()->emplace("x-request-id", RequestId());
      }
      if (methods->QueryInterceptionHookPoint(
              InterceptionHookPoints::PRE_SEND_STATUS)) {
        Replace(methods);
      }
    }
    methods->Proceed();
  }

 private:
  bool PreReadsRequest() const {
    return info_->type() == ServerRpcInfo::Type::UNARY ||
           info_->type() == ServerRpcInfo::Type::SERVER_STREAMING;
  }

  absl::Status Refusal(const std::string& utf8_field) const {
    const std::string request_type = RequestTypeOf(info_->method());
    if (!utf8_field.empty()) {
      return InvalidField(FieldPathInRequest(request_type, utf8_field),
                          "is not valid UTF-8");
    }
    return WithReason(absl::InvalidArgumentError(absl::StrCat(
                          "the request could not be parsed as ",
                          request_type.empty() ? "the method's request message"
                                               : request_type)),
                      "MALFORMED_REQUEST");
  }

  const std::string& RequestId() {
    if (request_id_.empty() && info_->server_context() != nullptr) {
      request_id_ = RequestIdOf(*info_->server_context());
    }
    return request_id_;
  }

  void Replace(InterceptorBatchMethods* methods) {
    // What gRPC answers a request it could not parse: UNIMPLEMENTED from a
    // callback handler, INTERNAL from a sync one. Anything else (e.g.
    // RESOURCE_EXHAUSTED when the server is out of threads) stays.
    const grpc::StatusCode code = methods->GetSendStatus().error_code();
    if (code != grpc::StatusCode::UNIMPLEMENTED &&
        code != grpc::StatusCode::INTERNAL) {
      return;
    }
    methods->ModifySendStatus(ToGrpcStatus(refusal_));
    const absl::string_view method = ShortMethod(info_->method());
    const std::string& request_id = RequestId();
    RpcLogEntry entry;
    entry.method = method;
    entry.latency = absl::Now() - start_;
    entry.request_id = request_id;
    entry.error = refusal_.message();
    LogRpc(entry, refusal_.code());
    // "/pkg.Service/Method": the handler never ran, so it is counted here.
    absl::string_view service = info_->method();
    service.remove_prefix(service.empty() ? 0 : 1);
    service = service.substr(0, service.rfind('/'));
    Metrics::MethodStats* stats = Metrics::Default().Method(
        service, method,
        info_->type() == ServerRpcInfo::Type::SERVER_STREAMING
            ? RpcType::kServerStream
            : RpcType::kUnary);
    Metrics::Started(stats);
    Metrics::Handled(stats, refusal_.code(), entry.latency);
  }

  ServerRpcInfo* const info_;
  const absl::Time start_;
  bool received_ = false;
  absl::Status refusal_;  // OK: the request was parsed (or not yet read).
  std::string request_id_;
};

class InvalidInputInterceptorFactoryImpl
    : public grpc::experimental::ServerInterceptorFactoryInterface {
 public:
  grpc::experimental::Interceptor* CreateServerInterceptor(
      ServerRpcInfo* info) override {
    return new InvalidInputInterceptor(info);
  }
};

}  // namespace

void InstallProtobufLogHandler() {
  google::protobuf::SetLogHandler(&HandleProtobufLog);
}

std::unique_ptr<grpc::experimental::ServerInterceptorFactoryInterface>
InvalidInputInterceptorFactory() {
  return std::make_unique<InvalidInputInterceptorFactoryImpl>();
}

std::string FieldPathInRequest(const std::string& request_type,
                               const std::string& full_field_name) {
  if (full_field_name.empty()) return "";
  const size_t dot = full_field_name.rfind('.');
  const std::string bare = dot == std::string::npos
                               ? full_field_name
                               : full_field_name.substr(dot + 1);
  const DescriptorPool* pool = DescriptorPool::generated_pool();
  const Descriptor* root = pool->FindMessageTypeByName(request_type);
  const FieldDescriptor* target = pool->FindFieldByName(full_field_name);
  if (root == nullptr || target == nullptr) return bare;
  std::vector<std::string> path;
  std::vector<const Descriptor*> on_path = {root};
  std::vector<std::string> found;
  CollectPaths(root, target, &path, &on_path, &found);
  return found.size() == 1 ? found[0] : bare;
}

}  // namespace custos
