// Calls gRPC methods by name, with requests written as JSON or protobuf text
// format, for tools (custos_grpcurl, loadgen) and tests that must not depend
// on the generated stub of every service.
//
// Descriptors come from a google::protobuf::DescriptorPool: LinkedContracts()
// (the contracts compiled into this binary) or any pool the caller builds,
// e.g. one fed by server reflection. Messages are DynamicMessages (or the
// generated classes, for the generated pool) built by a MessageCodec; calls
// go through grpc::GenericStub, so nothing here is specific to a service.
//
//   const auto& pool = custos::tools::LinkedContracts();
//   custos::tools::MessageCodec codec(&pool);
//   auto result = custos::tools::CallJson(channel, codec,
//       "grpc.health.v1.Health/Check", "{}", custos::tools::CallOptions());
//   // result->status.ok(), result->responses[0] == "{\n  \"status\": ...
//
// Errors: problems found before anything is sent (unknown method, malformed
// request, invalid metadata) are the returned absl::Status; the RPC's own
// outcome, success or failure, is RpcResult::status.

#ifndef CUSTOS_TOOLS_DYNAMIC_CALL_H_
#define CUSTOS_TOOLS_DYNAMIC_CALL_H_

#include <functional>
#include <map>
#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "absl/time/time.h"
#include "absl/types/span.h"
#include "google/protobuf/descriptor.h"
#include "google/protobuf/dynamic_message.h"
#include "google/protobuf/message.h"
#include "grpcpp/channel.h"
#include "grpcpp/support/byte_buffer.h"
#include "grpcpp/support/status.h"

namespace custos::tools {

// The generated pool, after making sure the linker kept every contract of
// custos_protos (services, google.rpc error details, grpc.health.v1) in this
// binary. Thread-safe; the pool lives for the whole process.
const google::protobuf::DescriptorPool& LinkedContracts();

// The .proto files linked in on purpose (not their imports), to enumerate
// what LinkedContracts() holds, e.g. its services. Thread-safe.
const std::vector<const google::protobuf::FileDescriptor*>&
LinkedContractFiles();

// Resolves a method by its full name: "pkg.Service/Method" (grpcurl's and
// the wire's form, a leading '/' allowed) or "pkg.Service.Method".
// Errors: InvalidArgument when `name` has no service part; NotFound naming
// the missing service or method. Thread-safe (DescriptorPool lookups are).
absl::StatusOr<const google::protobuf::MethodDescriptor*> FindMethod(
    const google::protobuf::DescriptorPool& pool, absl::string_view name);

// The HTTP/2 path of `method`, "/pkg.Service/Method".
std::string MethodPath(const google::protobuf::MethodDescriptor& method);

enum class Format {
  kJson,  // proto3 JSON mapping (camelCase or original field names)
  kText,  // protobuf text format
};

struct JsonOptions {
  // Multi-line output indented by two spaces, as grpcurl prints it.
  // Default: true. False gives one compact line.
  bool pretty = true;
  // Print fields that hold their default value (grpcurl's -emit-defaults).
  // Default: false.
  bool emit_defaults = false;
  // Use the .proto field names instead of lowerCamelCase. Default: false.
  bool proto_names = false;
};

// Builds, parses and prints messages of the types of one DescriptorPool.
//
// Thread-safe: all methods are const and may be called concurrently.
// Lifetime: `pool` must outlive the codec, and every message the codec
// returns must be destroyed before the codec (dynamic messages share their
// prototype, which the codec owns).
class MessageCodec {
 public:
  // Default pool: LinkedContracts().
  explicit MessageCodec(const google::protobuf::DescriptorPool* pool = nullptr);
  MessageCodec(const MessageCodec&) = delete;
  MessageCodec& operator=(const MessageCodec&) = delete;

  const google::protobuf::DescriptorPool& pool() const { return *pool_; }

  // An empty message of `type`. REQUIRES: `type` belongs to pool().
  std::unique_ptr<google::protobuf::Message> New(
      const google::protobuf::Descriptor& type) const;

  // Parses `input` as a `type`. Input that is empty or only whitespace is
  // the empty message (as grpcurl sends when given no -d). Errors:
  // InvalidArgument naming the type and what is wrong (unknown field, bad
  // value, syntax error with its position).
  absl::StatusOr<std::unique_ptr<google::protobuf::Message>> Parse(
      const google::protobuf::Descriptor& type, absl::string_view input,
      Format format) const;

  // Parses serialized bytes as a `type`. Error: DataLoss.
  absl::StatusOr<std::unique_ptr<google::protobuf::Message>> Decode(
      const google::protobuf::Descriptor& type,
      const grpc::ByteBuffer& wire) const;

  // Serializes `message` into a ByteBuffer ready to send.
  static grpc::ByteBuffer Encode(const google::protobuf::Message& message);

  // JSON text of `message` (proto3 JSON mapping: enums by name, 64-bit
  // integers as strings). Error: Internal, e.g. for an Any of unknown type.
  static absl::StatusOr<std::string> ToJson(
      const google::protobuf::Message& message, const JsonOptions& options);

  // Protobuf text format of `message`, without a trailing newline.
  static std::string ToText(const google::protobuf::Message& message);

 private:
  const google::protobuf::DescriptorPool* pool_;
  // GetPrototype() is documented thread-safe, hence mutable in const methods.
  mutable google::protobuf::DynamicMessageFactory factory_;
};

// Parse + Encode of a request for `method`.
absl::StatusOr<grpc::ByteBuffer> EncodeRequest(
    const MessageCodec& codec, const google::protobuf::MethodDescriptor& method,
    absl::string_view input, Format format);

using Metadata = std::vector<std::pair<std::string, std::string>>;

struct CallOptions {
  // Deadline of the whole call. Default: 30 seconds from when the call
  // starts; absl::InfiniteDuration() for none.
  absl::Duration timeout = absl::Seconds(30);
  // Request metadata. Keys are lower-case [0-9a-z_.-]; values of "-bin"
  // keys are raw bytes, other values printable ASCII. Default: none.
  Metadata metadata;
};

// Checks `metadata` against the rules above (gRPC would otherwise fail the
// call, or abort, on a malformed key). Error: InvalidArgument naming the key.
absl::Status ValidateMetadata(const Metadata& metadata);

struct RpcResult {
  // The RPC's final status, from the server or from the transport
  // (e.g. UNAVAILABLE, DEADLINE_EXCEEDED). A response that does not parse
  // as the method's output type ends the call with INTERNAL.
  grpc::Status status;
  std::multimap<std::string, std::string> headers;   // initial metadata
  std::multimap<std::string, std::string> trailers;  // trailing metadata
  int response_count = 0;
  // The responses as JSON; filled by CallJson() only.
  std::vector<std::string> responses;
};

// Receives each response message in arrival order. Returning false cancels
// the rest of a streaming call (RpcResult::status is then CANCELLED); a
// unary call has already ended when its response arrives.
using ResponseHandler =
    std::function<bool(const google::protobuf::Message& response)>;

// Receives the server's initial metadata once, before the first response
// (or, when there is none, when the call ends).
using HeadersHandler =
    std::function<void(const std::multimap<std::string, std::string>&)>;

// Calls `method` with `requests` and blocks until the call ends: writes the
// requests, half-closes, hands each response to `on_response` as it arrives
// (on the calling thread), then returns the status. Works for every method
// shape. `on_headers` may be empty. Errors, before anything is sent:
// InvalidArgument for invalid metadata or for a count of requests the method
// cannot take (unary and server-streaming methods take exactly one).
// Thread-safe: concurrent calls, even on one channel, are independent.
absl::StatusOr<RpcResult> Call(
    const std::shared_ptr<grpc::ChannelInterface>& channel,
    const MessageCodec& codec, const google::protobuf::MethodDescriptor& method,
    absl::Span<const grpc::ByteBuffer> requests, const CallOptions& options,
    const ResponseHandler& on_response,
    const HeadersHandler& on_headers = nullptr);

// The one-line form: resolves `method_name` in codec.pool(), parses one
// request from `request` in `format`, calls, and returns the responses as
// JSON in RpcResult::responses. Errors: those of FindMethod, Parse and Call.
absl::StatusOr<RpcResult> CallJson(
    const std::shared_ptr<grpc::ChannelInterface>& channel,
    const MessageCodec& codec, absl::string_view method_name,
    absl::string_view request, const CallOptions& options,
    Format format = Format::kJson, const JsonOptions& json = JsonOptions());

// Go's json.Indent with a two-space indent (what grpcurl prints): one member
// per line, empty objects and arrays kept as {} and []. REQUIRES: `json` is
// valid JSON (as MessageToJsonString produces); other input is returned
// re-spaced but otherwise unchanged.
std::string IndentJson(absl::string_view json);

// "NOT_FOUND" and friends, as gRPC's C core spells the codes.
absl::string_view StatusCodeName(grpc::StatusCode code);

}  // namespace custos::tools

#endif  // CUSTOS_TOOLS_DYNAMIC_CALL_H_
