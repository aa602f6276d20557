#include "tools/dynamic_call.h"

#include <chrono>
#include <cstdint>
#include <utility>

#include "absl/strings/ascii.h"
#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "absl/strings/strip.h"
#include "custos/access/v1/access_service.pb.h"
#include "custos/common/v1/audit.pb.h"
#include "custos/customers/v1/customers_service.pb.h"
#include "custos/notifications/v1/notifications_service.pb.h"
#include "google/protobuf/io/tokenizer.h"
#include "google/protobuf/text_format.h"
#include "google/protobuf/util/json_util.h"
#include "google/rpc/error_details.pb.h"
#include "google/rpc/status.pb.h"
#include "grpc/health/v1/health.pb.h"
#include "grpcpp/client_context.h"
#include "grpcpp/completion_queue.h"
#include "grpcpp/generic/generic_stub.h"
#include "grpcpp/support/proto_buffer_reader.h"
#include "grpcpp/support/slice.h"

namespace custos::tools {

namespace protobuf = ::google::protobuf;

const std::vector<const protobuf::FileDescriptor*>& LinkedContractFiles() {
  // A static library's object file is linked only when something refers to
  // it; asking each generated file for one descriptor is that reference, and
  // linking it registers the whole file in the generated pool. Add one line
  // per .proto file when custos_protos grows (a file imported by one listed
  // here comes along with it, but list it anyway so that its services show).
  static const auto* const kFiles =
      new std::vector<const protobuf::FileDescriptor*>{
          custos::access::v1::Site::descriptor()->file(),
          custos::notifications::v1::Alert::descriptor()->file(),
          custos::customers::v1::Customer::descriptor()->file(),
          custos::common::v1::AuditEvent::descriptor()->file(),
          google::rpc::Status::descriptor()->file(),
          google::rpc::ErrorInfo::descriptor()->file(),
          grpc::health::v1::HealthCheckRequest::descriptor()->file(),
      };
  return *kFiles;
}

const protobuf::DescriptorPool& LinkedContracts() {
  LinkedContractFiles();
  return *protobuf::DescriptorPool::generated_pool();
}

absl::StatusOr<const protobuf::MethodDescriptor*> FindMethod(
    const protobuf::DescriptorPool& pool, absl::string_view name) {
  absl::string_view full = absl::StripAsciiWhitespace(name);
  full = absl::StripPrefix(full, "/");
  full = absl::StripPrefix(full, ".");
  // "pkg.Service/Method" splits at the slash, "pkg.Service.Method" at the
  // last dot; service names never contain a slash.
  size_t split = full.rfind('/');
  if (split == absl::string_view::npos) split = full.rfind('.');
  if (split == absl::string_view::npos || split == 0 ||
      split + 1 == full.size()) {
    return absl::InvalidArgumentError(absl::StrCat(
        "method name \"", name, "\" is not of the form pkg.Service/Method"));
  }
  const std::string service_name(full.substr(0, split));
  const std::string method_name(full.substr(split + 1));
  const protobuf::ServiceDescriptor* service =
      pool.FindServiceByName(service_name);
  if (service == nullptr) {
    return absl::NotFoundError(
        absl::StrCat("service \"", service_name, "\" is not known"));
  }
  const protobuf::MethodDescriptor* method =
      service->FindMethodByName(method_name);
  if (method == nullptr) {
    return absl::NotFoundError(absl::StrCat("service \"", service_name,
                                            "\" has no method named \"",
                                            method_name, "\""));
  }
  return method;
}

std::string MethodPath(const protobuf::MethodDescriptor& method) {
  return absl::StrCat("/", method.service()->full_name(), "/", method.name());
}

// ---------------------------------------------------------------------------
// MessageCodec

namespace {

// Collects text-format parse errors as "line:column: message" (1-based).
class TextErrors : public protobuf::io::ErrorCollector {
 public:
  void AddError(int line, protobuf::io::ColumnNumber column,
                const std::string& message) override {
    errors_.push_back(absl::StrCat(line + 1, ":", column + 1, ": ", message));
  }
  void AddWarning(int line, protobuf::io::ColumnNumber column,
                  const std::string& message) override {}
  std::string ToString() const { return absl::StrJoin(errors_, "; "); }

 private:
  std::vector<std::string> errors_;
};

// protobuf's JSON printer writes '<' and '>' as \u003c and \u003e (safe to
// embed in HTML); grpcurl, through Go's protojson, prints them as they are,
// which is also what a person wants to read.
std::string UnescapeAngleBrackets(const std::string& json) {
  if (json.find("\\u003") == std::string::npos) return json;
  std::string out;
  out.reserve(json.size());
  for (size_t i = 0; i < json.size(); ++i) {
    if (json[i] != '\\' || i + 1 >= json.size()) {
      out.push_back(json[i]);
      continue;
    }
    const absl::string_view escape = absl::string_view(json).substr(i, 6);
    if (escape == "\\u003c" || escape == "\\u003e") {
      out.push_back(escape == "\\u003c" ? '<' : '>');
      i += 5;
    } else {  // any other escape, e.g. \\ before "u003c", stays whole
      out.append(json, i, 2);
      ++i;
    }
  }
  return out;
}

std::string ToStdString(const protobuf::util::Status& status) {
  return std::string(status.message().data(), status.message().size());
}

}  // namespace

MessageCodec::MessageCodec(const protobuf::DescriptorPool* pool)
    : pool_(pool != nullptr ? pool : &LinkedContracts()) {
  // Generated classes are faster than dynamic ones and are what the rest of
  // the binary uses; dynamic messages only for pools built at run time.
  factory_.SetDelegateToGeneratedFactory(true);
}

std::unique_ptr<protobuf::Message> MessageCodec::New(
    const protobuf::Descriptor& type) const {
  return std::unique_ptr<protobuf::Message>(
      factory_.GetPrototype(&type)->New());
}

absl::StatusOr<std::unique_ptr<protobuf::Message>> MessageCodec::Parse(
    const protobuf::Descriptor& type, absl::string_view input,
    Format format) const {
  std::unique_ptr<protobuf::Message> message = New(type);
  if (absl::StripAsciiWhitespace(input).empty()) return message;
  if (format == Format::kJson) {
    // The JSON parser resolves Any type URLs in the message's own pool.
    protobuf::util::Status parsed = protobuf::util::JsonStringToMessage(
        protobuf::StringPiece(input.data(), input.size()), message.get(),
        protobuf::util::JsonParseOptions());
    if (!parsed.ok()) {
      return absl::InvalidArgumentError(absl::StrCat(
          "invalid JSON for ", type.full_name(), ": ", ToStdString(parsed)));
    }
    return message;
  }
  TextErrors errors;
  protobuf::TextFormat::Parser parser;
  parser.RecordErrorsTo(&errors);
  if (!parser.ParseFromString(std::string(input), message.get())) {
    return absl::InvalidArgumentError(absl::StrCat(
        "invalid text format for ", type.full_name(), ": ", errors.ToString()));
  }
  return message;
}

absl::StatusOr<std::unique_ptr<protobuf::Message>> MessageCodec::Decode(
    const protobuf::Descriptor& type, const grpc::ByteBuffer& wire) const {
  std::unique_ptr<protobuf::Message> message = New(type);
  grpc::ByteBuffer copy(wire);  // shares the slices; the reader consumes it
  grpc::ProtoBufferReader reader(&copy);
  if (!reader.status().ok() || !message->ParseFromZeroCopyStream(&reader)) {
    return absl::DataLossError(
        absl::StrCat("response is not a valid ", type.full_name()));
  }
  return message;
}

grpc::ByteBuffer MessageCodec::Encode(const protobuf::Message& message) {
  grpc::Slice slice(message.SerializeAsString());
  return grpc::ByteBuffer(&slice, 1);
}

absl::StatusOr<std::string> MessageCodec::ToJson(
    const protobuf::Message& message, const JsonOptions& options) {
  protobuf::util::JsonPrintOptions print;
  print.add_whitespace = false;  // IndentJson does grpcurl's layout instead
  print.always_print_primitive_fields = options.emit_defaults;
  print.preserve_proto_field_names = options.proto_names;
  std::string json;
  protobuf::util::Status printed =
      protobuf::util::MessageToJsonString(message, &json, print);
  if (!printed.ok()) {
    return absl::InternalError(
        absl::StrCat("cannot print ", message.GetDescriptor()->full_name(),
                     " as JSON: ", ToStdString(printed)));
  }
  json = UnescapeAngleBrackets(json);
  return options.pretty ? IndentJson(json) : json;
}

std::string MessageCodec::ToText(const protobuf::Message& message) {
  std::string text;
  protobuf::TextFormat::PrintToString(message, &text);
  while (!text.empty() && text.back() == '\n') text.pop_back();
  return text;
}

absl::StatusOr<grpc::ByteBuffer> EncodeRequest(
    const MessageCodec& codec, const protobuf::MethodDescriptor& method,
    absl::string_view input, Format format) {
  absl::StatusOr<std::unique_ptr<protobuf::Message>> request =
      codec.Parse(*method.input_type(), input, format);
  if (!request.ok()) return request.status();
  return MessageCodec::Encode(**request);
}

// ---------------------------------------------------------------------------
// Calls

absl::Status ValidateMetadata(const Metadata& metadata) {
  for (const auto& [key, value] : metadata) {
    if (key.empty()) {
      return absl::InvalidArgumentError("metadata key is empty");
    }
    for (char c : key) {
      const bool legal = (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') ||
                         c == '-' || c == '_' || c == '.';
      if (!legal) {
        return absl::InvalidArgumentError(absl::StrCat(
            "metadata key \"", key,
            "\" may hold only lower-case letters, digits, '-', '_' and '.'"));
      }
    }
    if (absl::EndsWith(key, "-bin")) continue;
    for (char c : value) {
      if (c < 0x20 || c > 0x7e) {
        return absl::InvalidArgumentError(
            absl::StrCat("value of metadata key \"", key,
                         "\" must be printable ASCII (or use a -bin key)"));
      }
    }
  }
  return absl::OkStatus();
}

namespace {

std::multimap<std::string, std::string> CopyMetadata(
    const std::multimap<grpc::string_ref, grpc::string_ref>& from) {
  std::multimap<std::string, std::string> to;
  for (const auto& [key, value] : from) {
    to.emplace(std::string(key.data(), key.size()),
               std::string(value.data(), value.size()));
  }
  return to;
}

// Drives one asynchronous operation to completion on a private queue, which
// makes the async generic API behave like a blocking one without a thread.
class Waiter {
 public:
  ~Waiter() {
    cq_.Shutdown();
    void* tag;
    bool ok;
    while (cq_.Next(&tag, &ok)) {
    }
  }
  grpc::CompletionQueue* cq() { return &cq_; }
  void* tag() { return this; }
  // Whether the operation succeeded (for reads: a message arrived).
  bool Wait() {
    void* tag = nullptr;
    bool ok = false;
    return cq_.Next(&tag, &ok) && ok;
  }

 private:
  grpc::CompletionQueue cq_;
};

}  // namespace

absl::StatusOr<RpcResult> Call(
    const std::shared_ptr<grpc::ChannelInterface>& channel,
    const MessageCodec& codec, const protobuf::MethodDescriptor& method,
    absl::Span<const grpc::ByteBuffer> requests, const CallOptions& options,
    const ResponseHandler& on_response, const HeadersHandler& on_headers) {
  if (absl::Status valid = ValidateMetadata(options.metadata); !valid.ok()) {
    return valid;
  }
  if (!method.client_streaming() && requests.size() != 1) {
    return absl::InvalidArgumentError(
        absl::StrCat(method.full_name(), " takes exactly one request, not ",
                     requests.size()));
  }
  // Declared before the context so that the call is gone before its queue.
  Waiter waiter;
  grpc::ClientContext context;
  if (options.timeout != absl::InfiniteDuration()) {
    context.set_deadline(absl::ToChronoTime(absl::Now() + options.timeout));
  }
  for (const auto& [key, value] : options.metadata) {
    context.AddMetadata(key, value);
  }
  const std::string path = MethodPath(method);
  grpc::GenericStub stub(channel);
  RpcResult result;
  // A response that does not parse ends the call; this says why.
  grpc::Status decode_error;
  bool headers_seen = false;
  auto headers = [&] {
    if (headers_seen) return;
    headers_seen = true;
    result.headers = CopyMetadata(context.GetServerInitialMetadata());
    if (on_headers) on_headers(result.headers);
  };
  auto deliver = [&](const grpc::ByteBuffer& wire) {
    headers();
    absl::StatusOr<std::unique_ptr<protobuf::Message>> response =
        codec.Decode(*method.output_type(), wire);
    if (!response.ok()) {
      decode_error = grpc::Status(grpc::StatusCode::INTERNAL,
                                  std::string(response.status().message()));
      return false;
    }
    ++result.response_count;
    return on_response(**response);
  };

  if (!method.client_streaming() && !method.server_streaming()) {
    std::unique_ptr<grpc::GenericClientAsyncResponseReader> call =
        stub.PrepareUnaryCall(&context, path, requests[0], waiter.cq());
    call->StartCall();
    grpc::ByteBuffer response;
    call->Finish(&response, &result.status, waiter.tag());
    waiter.Wait();
    if (result.status.ok() && !deliver(response) && !decode_error.ok()) {
      result.status = decode_error;
    }
  } else {
    std::unique_ptr<grpc::GenericClientAsyncReaderWriter> call =
        stub.PrepareCall(&context, path, waiter.cq());
    call->StartCall(waiter.tag());
    // A failed write or start means the call is over; Finish says why.
    bool alive = waiter.Wait();
    for (size_t i = 0; alive && i < requests.size(); ++i) {
      call->Write(requests[i], waiter.tag());
      alive = waiter.Wait();
    }
    if (alive) {
      call->WritesDone(waiter.tag());
      alive = waiter.Wait();
    }
    grpc::ByteBuffer response;
    while (alive) {
      call->Read(&response, waiter.tag());
      if (!waiter.Wait()) break;
      if (!deliver(response)) {
        context.TryCancel();
        break;
      }
    }
    call->Finish(&result.status, waiter.tag());
    waiter.Wait();
    if (!decode_error.ok()) result.status = decode_error;
  }
  headers();
  result.trailers = CopyMetadata(context.GetServerTrailingMetadata());
  return result;
}

absl::StatusOr<RpcResult> CallJson(
    const std::shared_ptr<grpc::ChannelInterface>& channel,
    const MessageCodec& codec, absl::string_view method_name,
    absl::string_view request, const CallOptions& options, Format format,
    const JsonOptions& json) {
  absl::StatusOr<const protobuf::MethodDescriptor*> method =
      FindMethod(codec.pool(), method_name);
  if (!method.ok()) return method.status();
  absl::StatusOr<grpc::ByteBuffer> wire =
      EncodeRequest(codec, **method, request, format);
  if (!wire.ok()) return wire.status();
  std::vector<std::string> responses;
  absl::Status print_error;
  absl::StatusOr<RpcResult> result = Call(
      channel, codec, **method, {*wire}, options,
      [&](const protobuf::Message& response) {
        absl::StatusOr<std::string> text = MessageCodec::ToJson(response, json);
        if (!text.ok()) {
          print_error = text.status();
          return false;
        }
        responses.push_back(*std::move(text));
        return true;
      });
  if (!result.ok()) return result.status();
  if (!print_error.ok()) return print_error;
  result->responses = std::move(responses);
  return result;
}

// ---------------------------------------------------------------------------
// Formatting

std::string IndentJson(absl::string_view json) {
  std::string out;
  out.reserve(json.size() * 2);
  int depth = 0;
  auto newline = [&] {
    out.push_back('\n');
    out.append(2 * static_cast<size_t>(depth < 0 ? 0 : depth), ' ');
  };
  auto next_significant = [&](size_t from) {
    while (from < json.size() && absl::ascii_isspace(json[from])) ++from;
    return from;
  };
  for (size_t i = 0; i < json.size(); ++i) {
    const char c = json[i];
    switch (c) {
      case '"': {
        // Copy the string literal verbatim, escapes included.
        size_t end = i + 1;
        while (end < json.size() && json[end] != '"') {
          end += json[end] == '\\' ? 2 : 1;
        }
        end = end < json.size() ? end : json.size() - 1;
        out.append(json.data() + i, end - i + 1);
        i = end;
        break;
      }
      case '{':
      case '[': {
        const size_t next = next_significant(i + 1);
        const char close = c == '{' ? '}' : ']';
        if (next < json.size() && json[next] == close) {
          out.push_back(c);
          out.push_back(close);
          i = next;
        } else {
          out.push_back(c);
          ++depth;
          newline();
        }
        break;
      }
      case '}':
      case ']':
        --depth;
        newline();
        out.push_back(c);
        break;
      case ',':
        out.push_back(',');
        newline();
        break;
      case ':':
        out.append(": ");
        break;
      default:
        if (!absl::ascii_isspace(c)) out.push_back(c);
    }
  }
  return out;
}

absl::string_view StatusCodeName(grpc::StatusCode code) {
  switch (code) {
    case grpc::StatusCode::OK:
      return "OK";
    case grpc::StatusCode::CANCELLED:
      return "CANCELLED";
    case grpc::StatusCode::UNKNOWN:
      return "UNKNOWN";
    case grpc::StatusCode::INVALID_ARGUMENT:
      return "INVALID_ARGUMENT";
    case grpc::StatusCode::DEADLINE_EXCEEDED:
      return "DEADLINE_EXCEEDED";
    case grpc::StatusCode::NOT_FOUND:
      return "NOT_FOUND";
    case grpc::StatusCode::ALREADY_EXISTS:
      return "ALREADY_EXISTS";
    case grpc::StatusCode::PERMISSION_DENIED:
      return "PERMISSION_DENIED";
    case grpc::StatusCode::RESOURCE_EXHAUSTED:
      return "RESOURCE_EXHAUSTED";
    case grpc::StatusCode::FAILED_PRECONDITION:
      return "FAILED_PRECONDITION";
    case grpc::StatusCode::ABORTED:
      return "ABORTED";
    case grpc::StatusCode::OUT_OF_RANGE:
      return "OUT_OF_RANGE";
    case grpc::StatusCode::UNIMPLEMENTED:
      return "UNIMPLEMENTED";
    case grpc::StatusCode::INTERNAL:
      return "INTERNAL";
    case grpc::StatusCode::UNAVAILABLE:
      return "UNAVAILABLE";
    case grpc::StatusCode::DATA_LOSS:
      return "DATA_LOSS";
    case grpc::StatusCode::UNAUTHENTICATED:
      return "UNAUTHENTICATED";
    default:
      return "UNRECOGNIZED";
  }
}

}  // namespace custos::tools
