// custos_grpcurl: the part of grpcurl (github.com/fullstorydev/grpcurl) that
// Custos' docs and scripts use, with grpcurl's argument syntax, output and
// exit codes, for machines without grpcurl. tools/grpcurl runs a real grpcurl
// when there is one and this otherwise, so printed commands work either way.
//
//   custos_grpcurl [flags] host:port list [service]
//   custos_grpcurl [flags] host:port describe [symbol]
//   custos_grpcurl [flags] host:port pkg.Service/Method
//
// Where descriptors come from. Server reflection first
// (grpc.reflection.v1alpha, what gRPC 1.51 servers offer): ReflectionDatabase
// fetches files lazily into a local DescriptorPool, so `list` shows what the
// server really serves, and calls work against any server with reflection,
// even for contracts this binary was built without (or built from an older
// version of). When the server has no reflection service, or does not
// describe the method, the contracts linked into this binary (custos_protos,
// see LinkedContracts()) are the fallback, so a Custos server with
// reflection off can still be called. -use-reflection=false uses only them.
//
// Exit codes, as grpcurl: 0 success; 1 failure before the RPC (cannot
// connect, unknown method, bad request data); 2 bad usage; 64 + the gRPC
// status code when the RPC fails (e.g. 69 for NOT_FOUND).
//
// Not supported (exit 2 naming the flag): -proto, -protoset, -import-path,
// -protoset-out, -proto-out-dir, -alts*, -unix, -msg-template, -format-error,
// -allow-unknown-fields.

#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <fstream>
#include <iostream>
#include <map>
#include <memory>
#include <optional>
#include <set>
#include <sstream>
#include <string>
#include <utility>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/ascii.h"
#include "absl/strings/escaping.h"
#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/strings/str_join.h"
#include "absl/strings/str_replace.h"
#include "absl/strings/str_split.h"
#include "absl/strings/string_view.h"
#include "absl/strings/strip.h"
#include "absl/time/clock.h"
#include "absl/time/time.h"
#include "common/grpc_code_names.h"
#include "google/protobuf/any.pb.h"
#include "google/protobuf/descriptor.h"
#include "google/protobuf/descriptor.pb.h"
#include "google/protobuf/descriptor_database.h"
#include "google/rpc/status.pb.h"
#include "grpc/reflection/v1alpha/reflection.grpc.pb.h"
#include "grpc/support/log.h"
#include "grpcpp/create_channel.h"
#include "grpcpp/grpcpp.h"
#include "grpcpp/security/credentials.h"
#include "grpcpp/security/tls_certificate_provider.h"
#include "grpcpp/security/tls_certificate_verifier.h"
#include "grpcpp/security/tls_credentials_options.h"
#include "grpcpp/support/channel_arguments.h"
#include "tools/dynamic_call.h"

namespace {

namespace protobuf = ::google::protobuf;
namespace reflection = ::grpc::reflection::v1alpha;
using custos::tools::Format;
using custos::tools::MessageCodec;
using custos::tools::Metadata;

// grpcurl's offset for RPC status codes, so that they never collide with
// the tool's own exit codes 1 and 2.
constexpr int kStatusCodeOffset = 64;
constexpr char kRecordSeparator = '\x1e';

// --------------------------------------------------------------------------
// Flags, parsed like Go's flag package: "-name value", "-name=value",
// "--name"; boolean flags take no separate value ("-plaintext",
// "-plaintext=false"); parsing stops at the first non-flag argument.

struct Flags {
  bool help = false;
  bool version = false;
  bool plaintext = false;
  bool insecure = false;
  std::string cacert;
  std::string cert;
  std::string key;
  std::vector<std::string> headers;
  std::vector<std::string> rpc_headers;
  std::vector<std::string> reflect_headers;
  bool expand_headers = false;
  std::string authority;
  std::string servername;
  std::string user_agent;
  std::string data;
  std::string format = "json";
  double connect_timeout = 0;
  double keepalive_time = 0;
  double max_time = 0;
  int max_msg_sz = 0;
  bool emit_defaults = false;
  bool keep_proto_names = false;
  bool verbose = false;
  bool very_verbose = false;
  bool use_reflection = true;
};

struct FlagSpec {
  const char* name;
  const char* value_name;  // "" for booleans
  const char* help;
  bool* boolean = nullptr;
  std::string* text = nullptr;
  double* number = nullptr;
  int* integer = nullptr;
  std::vector<std::string>* list = nullptr;
};

std::vector<FlagSpec> FlagSpecs(Flags& f) {
  std::vector<FlagSpec> specs = {
      {"H", "value",
       "Additional headers in 'name: value' format. May specify more than "
       "one\nvia multiple flags. These headers will also be included in "
       "reflection\nrequests to a server."},
      {"authority", "string",
       "The authoritative name of the remote server (the :authority "
       "header);\nwith TLS also the name its certificate must match."},
      {"cacert", "string",
       "File containing trusted root certificates for verifying the "
       "server.\nIgnored if -insecure is specified."},
      {"cert", "string",
       "File containing client certificate (public key), to present to "
       "the\nserver. Not valid with -plaintext option. Must also provide -key "
       "option."},
      {"connect-timeout", "float",
       "The maximum time, in seconds, to wait for connection to be "
       "established.\nDefaults to 10 seconds."},
      {"d", "string",
       "Data for request contents. If the value is '@' then the request "
       "contents\nare read from stdin. For calls that accept a stream of "
       "requests, the\ncontents should include all such request messages "
       "concatenated together\n(possibly delimited; see -format)."},
      {"emit-defaults", "", "Emit default values for JSON-encoded responses."},
      {"expand-headers", "",
       "If set, headers may use '${NAME}' syntax to reference environment\n"
       "variables, expanded before sending (-H, -rpc-header, "
       "-reflect-header)."},
      {"format", "string",
       "The format of request data. The allowed values are 'json' or "
       "'text'.\nFor 'text', multiple request values are separated by the "
       "record\nseparator character 0x1E."},
      {"help", "", "Print usage instructions and exit."},
      {"insecure", "",
       "Skip server certificate and domain verification. (NOT SECURE!) "
       "Not\nvalid with -plaintext option."},
      {"keep-proto-names", "",
       "Use the original protobuf name for fields instead of lowerCamelCase, "
       "for\nJSON-encoded responses."},
      {"keepalive-time", "float",
       "If present, the maximum idle time in seconds, after which a "
       "keepalive\nprobe is sent."},
      {"key", "string",
       "File containing client private key, to present to the server. Not "
       "valid\nwith -plaintext option. Must also provide -cert option."},
      {"max-msg-sz", "int",
       "The maximum encoded size of a response message, in bytes. Defaults "
       "to\n4,194,304 (4 megabytes)."},
      {"max-time", "float",
       "The maximum total time the operation can take, in seconds."},
      {"plaintext", "",
       "Use plain-text HTTP/2 when connecting to server (no TLS)."},
      {"reflect-header", "value",
       "Additional reflection headers in 'name: value' format, used only "
       "for\nreflection requests."},
      {"rpc-header", "value",
       "Additional RPC headers in 'name: value' format, used only when "
       "invoking\nthe requested RPC method."},
      {"servername", "string",
       "Override server name when validating TLS certificate. Prefer "
       "-authority."},
      {"use-reflection", "",
       "When true (the default), server reflection is used to determine the "
       "RPC\nschema; the contracts linked into this binary are the fallback. "
       "When\nfalse, only those linked contracts are used."},
      {"user-agent", "string",
       "If set, the specified value will be added to the User-Agent "
       "header."},
      {"v", "", "Enable verbose output."},
      {"version", "", "Print version."},
      {"vv", "", "Enable very verbose output."},
  };
  for (FlagSpec& spec : specs) {
    const absl::string_view name = spec.name;
    if (name == "H") spec.list = &f.headers;
    if (name == "authority") spec.text = &f.authority;
    if (name == "cacert") spec.text = &f.cacert;
    if (name == "cert") spec.text = &f.cert;
    if (name == "connect-timeout") spec.number = &f.connect_timeout;
    if (name == "d") spec.text = &f.data;
    if (name == "emit-defaults") spec.boolean = &f.emit_defaults;
    if (name == "expand-headers") spec.boolean = &f.expand_headers;
    if (name == "format") spec.text = &f.format;
    if (name == "help") spec.boolean = &f.help;
    if (name == "insecure") spec.boolean = &f.insecure;
    if (name == "keep-proto-names") spec.boolean = &f.keep_proto_names;
    if (name == "keepalive-time") spec.number = &f.keepalive_time;
    if (name == "key") spec.text = &f.key;
    if (name == "max-msg-sz") spec.integer = &f.max_msg_sz;
    if (name == "max-time") spec.number = &f.max_time;
    if (name == "plaintext") spec.boolean = &f.plaintext;
    if (name == "reflect-header") spec.list = &f.reflect_headers;
    if (name == "rpc-header") spec.list = &f.rpc_headers;
    if (name == "servername") spec.text = &f.servername;
    if (name == "use-reflection") spec.boolean = &f.use_reflection;
    if (name == "user-agent") spec.text = &f.user_agent;
    if (name == "v") spec.boolean = &f.verbose;
    if (name == "version") spec.boolean = &f.version;
    if (name == "vv") spec.boolean = &f.very_verbose;
  }
  return specs;
}

// grpcurl flags this subset does not implement; named as such, not as typos.
constexpr const char* kUnsupportedFlags[] = {
    "proto",
    "protoset",
    "import-path",
    "protoset-out",
    "proto-out-dir",
    "alts",
    "alts-handshaker-service",
    "alts-target-service-account",
    "unix",
    "msg-template",
    "format-error",
    "allow-unknown-fields",
};

std::string program_name = "custos_grpcurl";

void PrintUsage(const std::vector<FlagSpec>& specs) {
  std::string usage = absl::StrCat(
      "Usage:\n\t", program_name,
      " [flags] address [list|describe] [symbol]\n\n"
      "If 'list' is indicated, the symbol (if present) should be a "
      "fully-qualified\nservice name. If present, all methods of that service "
      "are listed. If not\npresent, all exposed services are listed.\n\n"
      "If 'describe' is indicated, the descriptor for the given symbol is "
      "shown. The\nsymbol should be a fully-qualified service, enum, or "
      "message name. If no symbol\nis given then the descriptors for all "
      "exposed services are shown.\n\n"
      "If neither verb is present, the symbol must be a fully-qualified "
      "method name in\n'service/method' or 'service.method' format. In this "
      "case, the request body will\nbe used to invoke the named method. If "
      "no body is given but one is required\n(i.e. the method is unary or "
      "server-streaming), an empty instance of the\nmethod's request type "
      "will be sent.\n\n"
      "This is custos_grpcurl, a grpcurl-compatible subset: descriptors come "
      "from server\nreflection, else from the contracts linked into it.\n\n"
      "Available flags:\n");
  for (const FlagSpec& spec : specs) {
    absl::StrAppend(&usage, "  -", spec.name);
    if (*spec.value_name != '\0') absl::StrAppend(&usage, " ", spec.value_name);
    absl::StrAppend(&usage, "\n    \t",
                    absl::StrReplaceAll(spec.help, {{"\n", "\n    \t"}}), "\n");
  }
  std::cerr << usage;
}

[[noreturn]] void UsageError(const std::string& message,
                             const std::vector<FlagSpec>& specs) {
  std::cerr << message << "\n";
  PrintUsage(specs);
  std::exit(2);
}

// grpcurl's fail(): a message, then exit 1 (2 for usage problems).
[[noreturn]] void Fail(const std::string& message) {
  std::cerr << message << "\n";
  std::exit(1);
}

[[noreturn]] void FailUsage(const std::string& message) {
  std::cerr << message << "\nTry '" << program_name
            << " -help' for more details.\n";
  std::exit(2);
}

void Warn(const std::string& message) {
  std::cerr << "Warning: " << message << "\n";
}

bool ParseGoBool(absl::string_view value, bool* out) {
  static const std::set<absl::string_view> kTrue = {"1",    "t",    "T",
                                                    "TRUE", "true", "True"};
  static const std::set<absl::string_view> kFalse = {"0",     "f",     "F",
                                                     "FALSE", "false", "False"};
  if (kTrue.count(value) > 0) {
    *out = true;
    return true;
  }
  if (kFalse.count(value) > 0) {
    *out = false;
    return true;
  }
  return false;
}

// Returns the positional arguments.
std::vector<std::string> ParseFlags(int argc, char** argv, Flags& flags) {
  const std::vector<FlagSpec> specs = FlagSpecs(flags);
  int i = 1;
  for (; i < argc; ++i) {
    absl::string_view arg = argv[i];
    if (arg.size() < 2 || arg[0] != '-') break;
    if (arg == "--") {
      ++i;
      break;
    }
    absl::string_view name = arg.substr(arg[1] == '-' ? 2 : 1);
    if (name.empty() || name[0] == '-' || name[0] == '=') {
      UsageError(absl::StrCat("bad flag syntax: ", arg), specs);
    }
    bool has_value = false;
    absl::string_view value;
    if (size_t eq = name.find('='); eq != absl::string_view::npos) {
      has_value = true;
      value = name.substr(eq + 1);
      name = name.substr(0, eq);
    }
    if (name == "h") {
      PrintUsage(specs);
      std::exit(0);
    }
    const auto spec =
        std::find_if(specs.begin(), specs.end(),
                     [&](const FlagSpec& s) { return name == s.name; });
    if (spec == specs.end()) {
      for (const char* unsupported : kUnsupportedFlags) {
        if (name == unsupported) {
          FailUsage(absl::StrCat(
              "The -", name,
              " flag of grpcurl is not supported by custos_grpcurl, which "
              "uses server\nreflection or the contracts linked into it. "
              "Install "
              "grpcurl for it."));
        }
      }
      UsageError(absl::StrCat("flag provided but not defined: -", name), specs);
    }
    if (spec->boolean != nullptr) {
      if (!has_value) {
        *spec->boolean = true;
      } else if (!ParseGoBool(value, spec->boolean)) {
        UsageError(absl::StrCat("invalid boolean value \"", value, "\" for -",
                                name, ": parse error"),
                   specs);
      }
      continue;
    }
    if (!has_value) {
      if (i + 1 >= argc) {
        UsageError(absl::StrCat("flag needs an argument: -", name), specs);
      }
      value = argv[++i];
    }
    bool parsed = true;
    if (spec->text != nullptr) *spec->text = std::string(value);
    if (spec->list != nullptr) spec->list->emplace_back(value);
    if (spec->number != nullptr) {
      parsed = absl::SimpleAtod(value, spec->number);
    }
    if (spec->integer != nullptr) {
      parsed = absl::SimpleAtoi(value, spec->integer);
    }
    if (!parsed) {
      UsageError(absl::StrCat("invalid value \"", value, "\" for flag -", name,
                              ": parse error"),
                 specs);
    }
  }
  if (flags.help) {
    PrintUsage(specs);
    std::exit(0);
  }
  return std::vector<std::string>(argv + i, argv + argc);
}

// --------------------------------------------------------------------------
// Headers, as grpcurl's MetadataFromHeaders: "Name: value" with the name
// lower-cased and both trimmed; "-bin" values are base64 (any flavour).

absl::StatusOr<std::string> ExpandHeader(absl::string_view header) {
  std::string out;
  while (true) {
    const size_t start = header.find("${");
    if (start == absl::string_view::npos) break;
    const size_t end = header.find('}', start);
    if (end == absl::string_view::npos) break;
    const std::string name(header.substr(start + 2, end - start - 2));
    const char* value = std::getenv(name.c_str());
    if (value == nullptr) {
      return absl::NotFoundError(absl::StrCat(
          "header \"", header, "\" refers to undefined environment variable \"",
          name, "\""));
    }
    absl::StrAppend(&out, header.substr(0, start), value);
    header.remove_prefix(end + 1);
  }
  absl::StrAppend(&out, header);
  return out;
}

absl::StatusOr<Metadata> MetadataFromHeaders(
    const std::vector<std::string>& headers, bool expand) {
  Metadata metadata;
  for (const std::string& raw : headers) {
    std::string header = raw;
    if (expand) {
      absl::StatusOr<std::string> expanded = ExpandHeader(raw);
      if (!expanded.ok()) return expanded.status();
      header = *std::move(expanded);
    }
    std::pair<std::string, std::string> pieces =
        absl::StrSplit(header, absl::MaxSplits(':', 1));
    std::string name =
        absl::AsciiStrToLower(absl::StripAsciiWhitespace(pieces.first));
    std::string value(absl::StripAsciiWhitespace(pieces.second));
    if (absl::EndsWith(name, "-bin")) {
      std::string decoded;
      if (absl::Base64Unescape(value, &decoded) ||
          absl::WebSafeBase64Unescape(value, &decoded)) {
        value = std::move(decoded);
      }
    }
    metadata.emplace_back(std::move(name), std::move(value));
  }
  return metadata;
}

std::string MetadataToString(
    const std::multimap<std::string, std::string>& metadata) {
  if (metadata.empty()) return "(empty)";
  std::vector<std::string> lines;
  for (const auto& [key, value] : metadata) {
    lines.push_back(absl::StrCat(
        key, ": ",
        absl::EndsWith(key, "-bin") ? absl::Base64Escape(value) : value));
  }
  return absl::StrJoin(lines, "\n");
}

// --------------------------------------------------------------------------
// Status output, as grpc-go and grpcurl spell it.

std::string GoCodeName(grpc::StatusCode code) {
  const int index = static_cast<int>(code);
  if (std::optional<absl::string_view> name = custos::GoCodeName(index)) {
    return std::string(*name);
  }
  return absl::StrCat("Code(", index, ")");
}

// How grpc-go prints an error status inside other messages.
std::string GoRpcError(const grpc::Status& status) {
  return absl::StrCat("rpc error: code = ", GoCodeName(status.error_code()),
                      " desc = ", status.error_message());
}

// --------------------------------------------------------------------------
// Server reflection as a DescriptorDatabase: a DescriptorPool built on it
// asks for each file, symbol or extension the first time it is needed.
// Not thread-safe (one stream, used by one thread).

class ReflectionDatabase : public protobuf::DescriptorDatabase {
 public:
  ReflectionDatabase(const std::shared_ptr<grpc::Channel>& channel,
                     Metadata metadata, absl::Time deadline)
      : stub_(reflection::ServerReflection::NewStub(channel)),
        metadata_(std::move(metadata)),
        deadline_(deadline) {}

  ~ReflectionDatabase() override {
    if (stream_ != nullptr && status_.ok()) {
      stream_->WritesDone();
      stream_->Finish();
    }
  }

  bool FindFileByName(const std::string& filename,
                      protobuf::FileDescriptorProto* output) override {
    if (CopyFile(filename, output)) return true;
    reflection::ServerReflectionRequest request;
    request.set_file_by_filename(filename);
    return Lookup(request, filename, output);
  }

  bool FindFileContainingSymbol(
      const std::string& symbol,
      protobuf::FileDescriptorProto* output) override {
    reflection::ServerReflectionRequest request;
    request.set_file_containing_symbol(symbol);
    return Lookup(request, "", output);
  }

  bool FindFileContainingExtension(
      const std::string& containing_type, int field_number,
      protobuf::FileDescriptorProto* output) override {
    reflection::ServerReflectionRequest request;
    request.mutable_file_containing_extension()->set_containing_type(
        containing_type);
    request.mutable_file_containing_extension()->set_extension_number(
        field_number);
    return Lookup(request, "", output);
  }

  // The services the server lists, sorted. Errors: the stream's status
  // (UNIMPLEMENTED when the server has no reflection service).
  absl::StatusOr<std::vector<std::string>> ListServices() {
    reflection::ServerReflectionRequest request;
    request.set_list_services("");
    absl::StatusOr<reflection::ServerReflectionResponse> response =
        Exchange(request);
    if (!response.ok()) return response.status();
    std::vector<std::string> names;
    for (const auto& service : response->list_services_response().service()) {
      names.push_back(service.name());
    }
    std::sort(names.begin(), names.end());
    return names;
  }

  // Why the reflection stream failed, or OK.
  const grpc::Status& stream_status() const { return status_; }

 private:
  bool CopyFile(const std::string& name,
                protobuf::FileDescriptorProto* output) const {
    auto it = files_.find(name);
    if (it == files_.end()) return false;
    *output = it->second;
    return true;
  }

  // Sends `request` (one not answered before) and stores every file the
  // answer carries; the first is the one asked for.
  bool Lookup(const reflection::ServerReflectionRequest& request,
              const std::string& filename,
              protobuf::FileDescriptorProto* output) {
    const std::string key = request.SerializeAsString();
    if (misses_.count(key) > 0) return false;
    absl::StatusOr<reflection::ServerReflectionResponse> response =
        Exchange(request);
    if (!response.ok() || !response->has_file_descriptor_response()) {
      misses_.insert(key);
      return false;
    }
    std::string first;
    for (const std::string& bytes :
         response->file_descriptor_response().file_descriptor_proto()) {
      protobuf::FileDescriptorProto file;
      if (!file.ParseFromString(bytes)) continue;
      if (first.empty()) first = file.name();
      files_.emplace(file.name(), std::move(file));
    }
    return CopyFile(filename.empty() ? first : filename, output);
  }

  absl::StatusOr<reflection::ServerReflectionResponse> Exchange(
      const reflection::ServerReflectionRequest& request) {
    if (!status_.ok()) return GrpcToAbsl(status_);
    if (stream_ == nullptr) {
      context_ = std::make_unique<grpc::ClientContext>();
      for (const auto& [key, value] : metadata_) {
        context_->AddMetadata(key, value);
      }
      if (deadline_ != absl::InfiniteFuture()) {
        context_->set_deadline(absl::ToChronoTime(deadline_));
      }
      stream_ = stub_->ServerReflectionInfo(context_.get());
    }
    reflection::ServerReflectionResponse response;
    if (!stream_->Write(request) || !stream_->Read(&response)) {
      status_ = stream_->Finish();
      if (status_.ok()) {
        status_ = grpc::Status(grpc::StatusCode::INTERNAL,
                               "reflection stream ended early");
      }
      return GrpcToAbsl(status_);
    }
    if (response.has_error_response()) {
      return absl::Status(
          static_cast<absl::StatusCode>(response.error_response().error_code()),
          response.error_response().error_message());
    }
    return response;
  }

  static absl::Status GrpcToAbsl(const grpc::Status& status) {
    return absl::Status(static_cast<absl::StatusCode>(status.error_code()),
                        status.error_message());
  }

  std::unique_ptr<reflection::ServerReflection::Stub> stub_;
  Metadata metadata_;
  absl::Time deadline_;
  std::unique_ptr<grpc::ClientContext> context_;
  std::unique_ptr<
      grpc::ClientReaderWriter<reflection::ServerReflectionRequest,
                               reflection::ServerReflectionResponse>>
      stream_;
  grpc::Status status_;
  std::map<std::string, protobuf::FileDescriptorProto> files_;
  std::set<std::string> misses_;  // serialized requests answered "not found"
};

// --------------------------------------------------------------------------
// Proto-ish text of descriptors, close to grpcurl's (protoprint with
// fully-qualified type names, elements sorted, no comments).

std::string TypeName(const protobuf::FieldDescriptor& field) {
  switch (field.type()) {
    case protobuf::FieldDescriptor::TYPE_MESSAGE:
    case protobuf::FieldDescriptor::TYPE_GROUP:
      return absl::StrCat(".", field.message_type()->full_name());
    case protobuf::FieldDescriptor::TYPE_ENUM:
      return absl::StrCat(".", field.enum_type()->full_name());
    default:
      return field.type_name();
  }
}

std::string DefaultJsonName(absl::string_view name) {
  std::string out;
  bool upper = false;
  for (char c : name) {
    if (c == '_') {
      upper = true;
    } else {
      out.push_back(upper ? absl::ascii_toupper(c) : c);
      upper = false;
    }
  }
  return out;
}

std::string FieldText(const protobuf::FieldDescriptor& field) {
  std::string text;
  if (field.is_map()) {
    text =
        absl::StrCat("map<", TypeName(*field.message_type()->map_key()), ", ",
                     TypeName(*field.message_type()->map_value()), ">");
  } else {
    if (field.is_repeated()) {
      text = "repeated ";
    } else if (field.file()->syntax() ==
               protobuf::FileDescriptor::SYNTAX_PROTO2) {
      text = field.is_required() ? "required " : "optional ";
    } else if (field.has_optional_keyword()) {
      text = "optional ";
    }
    absl::StrAppend(&text, TypeName(field));
  }
  absl::StrAppend(&text, " ", field.name(), " = ", field.number());
  std::vector<std::string> options;
  if (field.has_json_name() &&
      field.json_name() != DefaultJsonName(field.name())) {
    options.push_back(absl::StrCat("json_name = \"", field.json_name(), "\""));
  }
  if (field.options().deprecated()) options.push_back("deprecated = true");
  if (!options.empty()) {
    absl::StrAppend(&text, " [", absl::StrJoin(options, ", "), "]");
  }
  return absl::StrCat(text, ";");
}

std::string MethodText(const protobuf::MethodDescriptor& method) {
  return absl::StrCat("rpc ", method.name(), " ( ",
                      method.client_streaming() ? "stream " : "", ".",
                      method.input_type()->full_name(), " ) returns ( ",
                      method.server_streaming() ? "stream " : "", ".",
                      method.output_type()->full_name(), " );");
}

std::string Indent(const std::string& text, int levels) {
  const std::string pad(2 * levels, ' ');
  std::vector<std::string> lines = absl::StrSplit(text, '\n');
  for (std::string& line : lines) {
    if (!line.empty()) line = pad + line;
  }
  return absl::StrJoin(lines, "\n");
}

std::string EnumText(const protobuf::EnumDescriptor& type) {
  std::vector<const protobuf::EnumValueDescriptor*> values;
  for (int i = 0; i < type.value_count(); ++i) values.push_back(type.value(i));
  std::stable_sort(values.begin(), values.end(),
                   [](auto* a, auto* b) { return a->number() < b->number(); });
  std::string text = absl::StrCat("enum ", type.name(), " {\n");
  for (const auto* value : values) {
    absl::StrAppend(&text, "  ", value->name(), " = ", value->number(), ";\n");
  }
  return absl::StrCat(text, "}");
}

std::string MessageText(const protobuf::Descriptor& type) {
  std::vector<std::string> body;
  std::vector<const protobuf::FieldDescriptor*> fields;
  for (int i = 0; i < type.field_count(); ++i) fields.push_back(type.field(i));
  std::sort(fields.begin(), fields.end(),
            [](auto* a, auto* b) { return a->number() < b->number(); });
  std::set<const protobuf::OneofDescriptor*> printed_oneofs;
  for (const auto* field : fields) {
    const protobuf::OneofDescriptor* oneof = field->real_containing_oneof();
    if (oneof == nullptr) {
      body.push_back(FieldText(*field));
      continue;
    }
    // A oneof is printed whole where its first field is.
    if (!printed_oneofs.insert(oneof).second) continue;
    std::string block = absl::StrCat("oneof ", oneof->name(), " {\n");
    for (int i = 0; i < oneof->field_count(); ++i) {
      absl::StrAppend(&block, "  ", FieldText(*oneof->field(i)), "\n");
    }
    body.push_back(absl::StrCat(block, "}"));
  }
  std::vector<std::string> reserved;
  for (int i = 0; i < type.reserved_range_count(); ++i) {
    const auto* range = type.reserved_range(i);
    reserved.push_back(
        range->end - 1 == range->start
            ? absl::StrCat(range->start)
            : absl::StrCat(range->start, " to ", range->end - 1));
  }
  if (!reserved.empty()) {
    body.push_back(
        absl::StrCat("reserved ", absl::StrJoin(reserved, ", "), ";"));
  }
  reserved.clear();
  for (int i = 0; i < type.reserved_name_count(); ++i) {
    reserved.push_back(absl::StrCat("\"", type.reserved_name(i), "\""));
  }
  if (!reserved.empty()) {
    body.push_back(
        absl::StrCat("reserved ", absl::StrJoin(reserved, ", "), ";"));
  }
  std::map<std::string, std::string> nested;  // sorted by name
  for (int i = 0; i < type.enum_type_count(); ++i) {
    nested.emplace(type.enum_type(i)->name(), EnumText(*type.enum_type(i)));
  }
  for (int i = 0; i < type.nested_type_count(); ++i) {
    const protobuf::Descriptor* inner = type.nested_type(i);
    if (inner->options().map_entry()) continue;  // shown as map<K, V>
    nested.emplace(inner->name(), MessageText(*inner));
  }
  for (const auto& [name, text] : nested) body.push_back(text);
  std::string text = absl::StrCat("message ", type.name(), " {\n");
  for (const std::string& element : body) {
    absl::StrAppend(&text, Indent(element, 1), "\n");
  }
  return absl::StrCat(text, "}");
}

std::string ServiceText(const protobuf::ServiceDescriptor& service) {
  std::map<std::string, std::string> methods;  // sorted by name
  for (int i = 0; i < service.method_count(); ++i) {
    methods.emplace(service.method(i)->name(), MethodText(*service.method(i)));
  }
  std::string text = absl::StrCat("service ", service.name(), " {\n");
  for (const auto& [name, line] : methods) {
    absl::StrAppend(&text, "  ", line, "\n");
  }
  return absl::StrCat(text, "}");
}

struct Described {
  std::string full_name;
  std::string kind;  // "a service", "a message", ...
  std::string text;
};

// Looks `symbol` up as each kind of element grpcurl can describe.
std::optional<Described> Describe(const protobuf::DescriptorPool& pool,
                                  const std::string& symbol) {
  if (const auto* service = pool.FindServiceByName(symbol)) {
    return Described{service->full_name(), "a service", ServiceText(*service)};
  }
  if (const auto* message = pool.FindMessageTypeByName(symbol)) {
    if (message->options().map_entry() && message->containing_type()) {
      for (int i = 0; i < message->containing_type()->field_count(); ++i) {
        const auto* field = message->containing_type()->field(i);
        if (field->message_type() == message) {
          return Described{message->full_name(),
                           "the entry type for a map field", FieldText(*field)};
        }
      }
    }
    return Described{message->full_name(), "a message", MessageText(*message)};
  }
  if (const auto* type = pool.FindEnumTypeByName(symbol)) {
    return Described{type->full_name(), "an enum", EnumText(*type)};
  }
  if (const auto* method = pool.FindMethodByName(symbol)) {
    return Described{method->full_name(), "a method", MethodText(*method)};
  }
  if (const auto* field = pool.FindFieldByName(symbol)) {
    return Described{field->full_name(), "a field", FieldText(*field)};
  }
  if (const auto* extension = pool.FindExtensionByName(symbol)) {
    return Described{extension->full_name(), "an extension",
                     FieldText(*extension)};
  }
  if (const auto* value = pool.FindEnumValueByName(symbol)) {
    return Described{value->full_name(), "an enum value",
                     absl::StrCat(value->name(), " = ", value->number(), ";")};
  }
  if (const auto* oneof = pool.FindOneofByName(symbol)) {
    std::string text = absl::StrCat("oneof ", oneof->name(), " {\n");
    for (int i = 0; i < oneof->field_count(); ++i) {
      absl::StrAppend(&text, "  ", FieldText(*oneof->field(i)), "\n");
    }
    return Described{oneof->full_name(), "a one-of", absl::StrCat(text, "}")};
  }
  return std::nullopt;
}

// --------------------------------------------------------------------------
// Connection.

absl::StatusOr<std::string> ReadFile(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) {
    return absl::NotFoundError(
        absl::StrCat("open ", path, ": no such file or not readable"));
  }
  std::ostringstream contents;
  contents << in.rdbuf();
  return contents.str();
}

std::shared_ptr<grpc::ChannelCredentials> Credentials(const Flags& flags) {
  if (flags.plaintext) return grpc::InsecureChannelCredentials();
  std::string cert_chain, private_key, roots;
  if (!flags.cert.empty()) {
    absl::StatusOr<std::string> cert = ReadFile(flags.cert);
    absl::StatusOr<std::string> key = ReadFile(flags.key);
    if (!cert.ok() || !key.ok()) {
      Fail(absl::StrCat("Failed to create TLS config: ",
                        (!cert.ok() ? cert : key).status().message()));
    }
    cert_chain = *std::move(cert);
    private_key = *std::move(key);
  }
  if (flags.insecure) {
    // SslCredentials always verifies; the TLS credentials API can be told
    // not to, which is what -insecure means.
    grpc::experimental::TlsChannelCredentialsOptions options;
    options.set_verify_server_certs(false);
    options.set_check_call_host(false);
    options.set_certificate_verifier(
        std::make_shared<grpc::experimental::NoOpCertificateVerifier>());
    if (!cert_chain.empty()) {
      options.set_certificate_provider(
          std::make_shared<grpc::experimental::StaticDataCertificateProvider>(
              std::vector<grpc::experimental::IdentityKeyCertPair>{
                  {private_key, cert_chain}}));
      options.watch_identity_key_cert_pairs();
    }
    return grpc::experimental::TlsCredentials(options);
  }
  if (!flags.cacert.empty()) {
    absl::StatusOr<std::string> ca = ReadFile(flags.cacert);
    if (!ca.ok()) {
      Fail(
          absl::StrCat("Failed to create TLS config: ", ca.status().message()));
    }
    roots = *std::move(ca);
  }
  grpc::SslCredentialsOptions options;
  options.pem_root_certs = roots;
  options.pem_cert_chain = cert_chain;
  options.pem_private_key = private_key;
  return grpc::SslCredentials(options);
}

std::chrono::system_clock::time_point Chrono(absl::Time time) {
  return time == absl::InfiniteFuture()
             ? std::chrono::system_clock::time_point::max()
             : absl::ToChronoTime(time);
}

// grpcurl's blocking dial: connected, or an error saying why not. gRPC
// reports why a connection attempt failed only in the status of a call made
// meanwhile, so a failed dial makes one (an empty health check, harmless on
// any server) to fetch that reason.
absl::Status Dial(const std::shared_ptr<grpc::Channel>& channel,
                  absl::Time deadline) {
  grpc_connectivity_state state = channel->GetState(/*try_to_connect=*/true);
  while (state != GRPC_CHANNEL_READY) {
    if (state == GRPC_CHANNEL_TRANSIENT_FAILURE ||
        state == GRPC_CHANNEL_SHUTDOWN) {
      const custos::tools::MessageCodec codec;
      absl::StatusOr<const protobuf::MethodDescriptor*> check =
          custos::tools::FindMethod(codec.pool(),
                                    "grpc.health.v1.Health/Check");
      custos::tools::CallOptions probe;
      probe.timeout = absl::Seconds(1);
      absl::StatusOr<grpc::ByteBuffer> empty =
          check.ok()
              ? custos::tools::EncodeRequest(codec, **check, "", Format::kJson)
              : check.status();
      if (empty.ok()) {
        absl::StatusOr<custos::tools::RpcResult> result =
            custos::tools::Call(channel, codec, **check, {*empty}, probe,
                                [](const protobuf::Message&) { return true; });
        if (result.ok() &&
            result->status.error_code() == grpc::StatusCode::UNAVAILABLE) {
          return absl::UnavailableError(result->status.error_message());
        }
        if (result.ok() && result->status.ok()) return absl::OkStatus();
      }
      return absl::UnavailableError("connection failed");
    }
    if (!channel->WaitForStateChange(state, Chrono(deadline))) {
      return absl::DeadlineExceededError("context deadline exceeded");
    }
    state = channel->GetState(/*try_to_connect=*/true);
  }
  return absl::OkStatus();
}

// --------------------------------------------------------------------------
// Request data.

// Splits concatenated JSON values ("{...} {...}") the way Go's json.Decoder
// reads them one by one. Malformed input ends up in the last piece, where
// the JSON parser reports it.
std::vector<std::string> SplitJsonValues(absl::string_view input) {
  std::vector<std::string> values;
  size_t i = 0;
  while (true) {
    while (i < input.size() && absl::ascii_isspace(input[i])) ++i;
    if (i >= input.size()) break;
    const size_t start = i;
    int depth = 0;
    bool in_string = false;
    for (; i < input.size(); ++i) {
      const char c = input[i];
      if (in_string) {
        if (c == '\\') {
          ++i;
        } else if (c == '"') {
          in_string = false;
          if (depth == 0) {
            ++i;
            break;
          }
        }
        continue;
      }
      if (c == '"') {
        in_string = true;
      } else if (c == '{' || c == '[') {
        ++depth;
      } else if (c == '}' || c == ']') {
        if (--depth <= 0) {
          ++i;
          break;
        }
      } else if (depth == 0 && absl::ascii_isspace(c)) {
        break;
      }
    }
    values.emplace_back(input.substr(start, std::min(i, input.size()) - start));
  }
  return values;
}

std::string ReadStdin() {
  std::ostringstream contents;
  contents << std::cin.rdbuf();
  return contents.str();
}

// --------------------------------------------------------------------------
// The session: channel, descriptor sources, and the three verbs.

class Session {
 public:
  Session(const Flags& flags, std::string target,
          std::shared_ptr<grpc::Channel> channel, absl::Time deadline,
          Metadata headers, Metadata rpc_headers, Metadata reflect_headers)
      : flags_(flags),
        target_(std::move(target)),
        channel_(std::move(channel)),
        deadline_(deadline),
        headers_(std::move(headers)),
        rpc_headers_(std::move(rpc_headers)) {
    if (flags_.use_reflection) {
      Metadata reflection_metadata = headers_;
      reflection_metadata.insert(reflection_metadata.end(),
                                 reflect_headers.begin(),
                                 reflect_headers.end());
      database_ = std::make_unique<ReflectionDatabase>(
          channel_, std::move(reflection_metadata), deadline_);
      pool_ = std::make_unique<protobuf::DescriptorPool>(database_.get());
      codec_ = std::make_unique<MessageCodec>(pool_.get());
    }
  }

  int List(const std::string& service_name) {
    if (service_name.empty()) {
      std::vector<std::string> services;
      if (database_ != nullptr) {
        absl::StatusOr<std::vector<std::string>> listed =
            database_->ListServices();
        if (!listed.ok()) {
          Fail(absl::StrCat("Failed to list services: ",
                            ReflectionError(database_->stream_status())));
        }
        services = *std::move(listed);
      } else {
        services = LinkedServices();
      }
      if (services.empty()) std::cout << "(No services)\n";
      for (const std::string& name : services) std::cout << name << "\n";
      return 0;
    }
    const protobuf::ServiceDescriptor* service = nullptr;
    for (const protobuf::DescriptorPool* pool : Pools("list methods")) {
      service = pool->FindServiceByName(service_name);
      if (service != nullptr) break;
    }
    if (service == nullptr) {
      Fail(absl::StrCat("Failed to list methods for service \"", service_name,
                        "\": Service not found: ", service_name));
    }
    std::vector<std::string> methods;
    for (int i = 0; i < service->method_count(); ++i) {
      methods.push_back(service->method(i)->full_name());
    }
    std::sort(methods.begin(), methods.end());
    if (methods.empty()) std::cout << "(No methods)\n";
    for (const std::string& name : methods) std::cout << name << "\n";
    return 0;
  }

  int DescribeSymbols(std::string symbol) {
    std::vector<std::string> symbols;
    if (!symbol.empty()) {
      symbols.push_back(std::string(absl::StripPrefix(symbol, ".")));
    } else if (database_ != nullptr) {
      absl::StatusOr<std::vector<std::string>> listed =
          database_->ListServices();
      if (!listed.ok()) {
        Fail(absl::StrCat("Failed to list services: ",
                          ReflectionError(database_->stream_status())));
      }
      symbols = *std::move(listed);
    } else {
      symbols = LinkedServices();
    }
    if (symbols.empty()) {
      std::cout << "Server returned an empty list of exposed services\n";
    }
    for (std::string& name : symbols) {
      // "pkg.Service/Method" is how methods are written elsewhere.
      std::replace(name.begin(), name.end(), '/', '.');
      std::optional<Described> described;
      for (const protobuf::DescriptorPool* pool : Pools("describe")) {
        described = Describe(*pool, name);
        if (described.has_value()) break;
      }
      if (!described.has_value()) {
        Fail(absl::StrCat("Failed to resolve symbol \"", name,
                          "\": Symbol not found: ", name));
      }
      std::cout << described->full_name << " is " << described->kind << ":\n"
                << described->text << "\n";
    }
    return 0;
  }

  int Invoke(const std::string& method_name) {
    const protobuf::MethodDescriptor* method = nullptr;
    const MessageCodec* codec = nullptr;
    absl::Status not_found;
    if (codec_ != nullptr) {
      absl::StatusOr<const protobuf::MethodDescriptor*> found =
          custos::tools::FindMethod(*pool_, method_name);
      if (found.ok()) {
        method = *found;
        codec = codec_.get();
      } else {
        not_found = found.status();
      }
    }
    if (method == nullptr) {
      const grpc::Status& stream =
          database_ != nullptr ? database_->stream_status() : grpc::Status::OK;
      if (!stream.ok() &&
          stream.error_code() != grpc::StatusCode::UNIMPLEMENTED) {
        Fail(absl::StrCat("Error invoking method \"", method_name,
                          "\": failed to query for service descriptor: ",
                          GoRpcError(stream)));
      }
      absl::StatusOr<const protobuf::MethodDescriptor*> found =
          custos::tools::FindMethod(linked_codec_.pool(), method_name);
      if (found.ok()) {
        method = *found;
        codec = &linked_codec_;
      } else if (not_found.ok() ||
                 not_found.code() == absl::StatusCode::kInvalidArgument) {
        not_found = found.status();
      }
    }
    if (method == nullptr) {
      Fail(absl::StrCat("Error invoking method \"", method_name,
                        "\": ", not_found.message()));
    }

    const std::string data = flags_.data == "@" ? ReadStdin() : flags_.data;
    const Format format =
        flags_.format == "text" ? Format::kText : Format::kJson;
    std::vector<std::string> pieces;
    if (format == Format::kJson) {
      pieces = SplitJsonValues(data);
    } else {
      pieces = absl::StrSplit(data, kRecordSeparator);
    }
    if (pieces.empty() && !method->client_streaming()) pieces.emplace_back();
    if (pieces.size() > 1 && !method->client_streaming()) {
      Fail(absl::StrCat(
          "Error invoking method \"", method_name, "\": method \"",
          method->full_name(), "\" is a ",
          method->server_streaming() ? "server-streaming" : "unary",
          " RPC, but request data contained more than 1 "
          "message"));
    }
    std::vector<grpc::ByteBuffer> requests;
    for (const std::string& piece : pieces) {
      absl::StatusOr<grpc::ByteBuffer> request =
          custos::tools::EncodeRequest(*codec, *method, piece, format);
      if (!request.ok()) {
        Fail(absl::StrCat(
            "Error invoking method \"", method_name,
            "\": error getting request data: ", request.status().message()));
      }
      requests.push_back(*std::move(request));
    }

    custos::tools::CallOptions options;
    options.metadata = headers_;
    options.metadata.insert(options.metadata.end(), rpc_headers_.begin(),
                            rpc_headers_.end());
    options.timeout =
        deadline_ == absl::InfiniteFuture()
            ? absl::InfiniteDuration()
            : std::max(deadline_ - absl::Now(), absl::ZeroDuration());
    const bool verbose = flags_.verbose || flags_.very_verbose;
    if (verbose) {
      std::cout << "\nResolved method descriptor:\n"
                << MethodText(*method) << "\n\nRequest metadata to send:\n"
                << MetadataToString(
                       {options.metadata.begin(), options.metadata.end()})
                << "\n";
    }
    custos::tools::JsonOptions json;
    json.emit_defaults = flags_.emit_defaults;
    json.proto_names = flags_.keep_proto_names;
    int printed = 0;
    absl::StatusOr<custos::tools::RpcResult> result = custos::tools::Call(
        channel_, *codec, *method, requests, options,
        [&](const protobuf::Message& response) {
          if (flags_.very_verbose) {
            std::cout << "\nEstimated response size: "
                      << response.ByteSizeLong() << " bytes\n";
          }
          if (verbose) std::cout << "\nResponse contents:\n";
          if (format == Format::kText) {
            // Record separators let another grpcurl read the output back.
            if (printed > 0 && !verbose) std::cout << kRecordSeparator;
            std::cout << MessageCodec::ToText(response) << "\n";
          } else {
            absl::StatusOr<std::string> text =
                MessageCodec::ToJson(response, json);
            if (text.ok()) {
              std::cout << *text << "\n";
            } else {
              std::cout << "Failed to format response message " << printed + 1
                        << ": " << text.status().message() << "\n";
            }
          }
          std::cout.flush();
          ++printed;
          return true;
        },
        [&](const std::multimap<std::string, std::string>& headers) {
          if (verbose) {
            std::cout << "\nResponse headers received:\n"
                      << MetadataToString(headers) << "\n";
          }
        });
    if (!result.ok()) {
      Fail(absl::StrCat("Error invoking method \"", method_name,
                        "\": ", result.status().message()));
    }
    if (verbose) {
      std::cout << "\nResponse trailers received:\n"
                << MetadataToString(result->trailers) << "\n"
                << "Sent " << requests.size() << " request"
                << (requests.size() == 1 ? "" : "s") << " and received "
                << result->response_count << " response"
                << (result->response_count == 1 ? "" : "s") << "\n";
    }
    std::cout.flush();
    if (!result->status.ok()) {
      PrintStatus(result->status, *codec);
      return kStatusCodeOffset + static_cast<int>(result->status.error_code());
    }
    return 0;
  }

 private:
  // Where to look symbols up, best first. Falls back to the linked
  // contracts (with a warning) when the server has no reflection service.
  std::vector<const protobuf::DescriptorPool*> Pools(absl::string_view verb) {
    std::vector<const protobuf::DescriptorPool*> pools;
    if (database_ != nullptr) {
      pools.push_back(pool_.get());
      // Listing services is the cheapest way to learn whether the server
      // speaks reflection at all; a broken stream stays broken.
      if (!probed_) (void)database_->ListServices();
      probed_ = true;
      const grpc::Status& stream = database_->stream_status();
      if (stream.error_code() == grpc::StatusCode::UNIMPLEMENTED) {
        Warn(absl::StrCat("server does not support the reflection API; ", verb,
                          " uses the contracts linked into ", program_name,
                          "."));
      } else if (!stream.ok()) {
        Fail(absl::StrCat("Failed to ", verb, ": ", ReflectionError(stream)));
      } else {
        return pools;
      }
    }
    pools.push_back(&linked_codec_.pool());
    return pools;
  }

  static std::string ReflectionError(const grpc::Status& status) {
    if (status.error_code() == grpc::StatusCode::UNIMPLEMENTED) {
      return "server does not support the reflection API";
    }
    return GoRpcError(status);
  }

  static std::vector<std::string> LinkedServices() {
    std::set<std::string> names;
    std::vector<const protobuf::FileDescriptor*> pending =
        custos::tools::LinkedContractFiles();
    std::set<const protobuf::FileDescriptor*> seen;
    while (!pending.empty()) {
      const protobuf::FileDescriptor* file = pending.back();
      pending.pop_back();
      if (!seen.insert(file).second) continue;
      for (int i = 0; i < file->service_count(); ++i) {
        names.insert(file->service(i)->full_name());
      }
      for (int i = 0; i < file->dependency_count(); ++i) {
        pending.push_back(file->dependency(i));
      }
    }
    return std::vector<std::string>(names.begin(), names.end());
  }

  // An error detail (a google.protobuf.Any) as grpcurl's JSON formatter
  // shows it: the message's fields plus "@type", or "@value" when this tool
  // cannot find the type.
  std::string DetailJson(const protobuf::Any& detail,
                         const MessageCodec& codec) {
    const absl::string_view url = detail.type_url();
    const std::string type_name(url.substr(url.rfind('/') + 1));
    for (const MessageCodec* candidate : {&codec, &linked_codec_}) {
      const protobuf::Descriptor* type =
          candidate->pool().FindMessageTypeByName(type_name);
      if (type == nullptr) continue;
      std::unique_ptr<protobuf::Message> message = candidate->New(*type);
      if (!message->ParseFromString(detail.value())) continue;
      custos::tools::JsonOptions compact;
      compact.pretty = false;
      compact.emit_defaults = flags_.emit_defaults;
      absl::StatusOr<std::string> json =
          MessageCodec::ToJson(*message, compact);
      if (!json.ok()) continue;
      const std::string type_field =
          absl::StrCat("\"@type\":\"", absl::CEscape(url), "\"");
      std::string any;
      if (*json == "{}") {
        any = absl::StrCat("{", type_field, "}");
      } else if (absl::StartsWith(*json, "{")) {
        any = absl::StrCat("{", type_field, ",", json->substr(1));
      } else {  // well-known types with a scalar JSON form
        any = absl::StrCat("{", type_field, ",\"value\":", *json, "}");
      }
      return custos::tools::IndentJson(any);
    }
    return custos::tools::IndentJson(absl::StrCat(
        "{\"@type\":\"", absl::CEscape(url), "\",\"@error\":\"", type_name,
        " is not recognized; see @value for raw binary message data\","
        "\"@value\":\"",
        absl::Base64Escape(detail.value()), "\"}"));
  }

  // grpcurl's PrintStatus, to stderr.
  void PrintStatus(const grpc::Status& status, const MessageCodec& codec) {
    std::string out =
        absl::StrCat("ERROR:\n  Code: ", GoCodeName(status.error_code()),
                     "\n  Message: ", status.error_message(), "\n");
    google::rpc::Status details;
    if (!status.error_details().empty() &&
        details.ParseFromString(status.error_details()) &&
        details.details_size() > 0) {
      absl::StrAppend(&out, "  Details:\n");
      for (int i = 0; i < details.details_size(); ++i) {
        const std::string prefix = absl::StrCat("  ", i + 1, ")");
        const std::string continuation =
            absl::StrCat(std::string(prefix.size(), ' '), "\t");
        std::vector<std::string> lines =
            absl::StrSplit(DetailJson(details.details(i), codec), '\n');
        absl::StrAppend(&out, prefix, "\t", lines[0], "\n");
        for (size_t j = 1; j < lines.size(); ++j) {
          absl::StrAppend(&out, continuation, lines[j], "\n");
        }
      }
    }
    std::cerr << out;
  }

  const Flags& flags_;
  const std::string target_;
  const std::shared_ptr<grpc::Channel> channel_;
  const absl::Time deadline_;
  const Metadata headers_;
  const Metadata rpc_headers_;
  const MessageCodec linked_codec_;  // over LinkedContracts()
  // Declared in dependency order: destroyed codec, pool, database.
  std::unique_ptr<ReflectionDatabase> database_;
  std::unique_ptr<protobuf::DescriptorPool> pool_;
  std::unique_ptr<MessageCodec> codec_;
  bool probed_ = false;
};

Metadata HeadersOrDie(const std::vector<std::string>& headers, bool expand,
                      absl::string_view what) {
  absl::StatusOr<Metadata> metadata = MetadataFromHeaders(headers, expand);
  if (!metadata.ok()) {
    Fail(absl::StrCat("Failed to expand ", what, ": ",
                      metadata.status().message()));
  }
  if (absl::Status valid = custos::tools::ValidateMetadata(*metadata);
      !valid.ok()) {
    Fail(absl::StrCat("Invalid ", what, ": ", valid.message()));
  }
  return *std::move(metadata);
}

int Run(int argc, char** argv) {
  if (argc > 0) program_name = argv[0];
  Flags flags;
  std::vector<std::string> args = ParseFlags(argc, argv, flags);
  if (flags.version) {
    std::cerr << program_name << " (custos, grpcurl-compatible subset)\n";
    return 0;
  }
  // gRPC's own log lines (e.g. each failed TLS handshake) would garble the
  // output that scripts parse; failures are reported once, below, instead.
  if (!flags.very_verbose) gpr_set_log_function([](gpr_log_func_args*) {});
  const bool use_tls = !flags.plaintext;
  if (flags.connect_timeout < 0) {
    FailUsage("The -connect-timeout argument must not be negative.");
  }
  if (flags.keepalive_time < 0) {
    FailUsage("The -keepalive-time argument must not be negative.");
  }
  if (flags.max_time < 0) {
    FailUsage("The -max-time argument must not be negative.");
  }
  if (flags.max_msg_sz < 0) {
    FailUsage("The -max-msg-sz argument must not be negative.");
  }
  if (flags.insecure && !use_tls) {
    FailUsage("The -insecure argument can only be used with TLS.");
  }
  if (!flags.cert.empty() && !use_tls) {
    FailUsage("The -cert argument can only be used with TLS.");
  }
  if (!flags.key.empty() && !use_tls) {
    FailUsage("The -key argument can only be used with TLS.");
  }
  if (flags.key.empty() != flags.cert.empty()) {
    FailUsage(
        "The -cert and -key arguments must be used together and both be "
        "present.");
  }
  if (flags.format != "json" && flags.format != "text") {
    FailUsage("The -format option must be 'json' or 'text'.");
  }
  if (flags.emit_defaults && flags.format != "json") {
    Warn("The -emit-defaults is only used when using json format.");
  }
  if (!flags.servername.empty() && !flags.authority.empty() &&
      flags.servername != flags.authority) {
    FailUsage(
        "Cannot specify different values for -servername and -authority.");
  }

  if (args.empty()) FailUsage("Too few arguments.");
  std::string target;
  if (args[0] != "list" && args[0] != "describe") {
    target = args[0];
    args.erase(args.begin());
  }
  if (args.empty()) FailUsage("Too few arguments.");
  enum class Verb { kList, kDescribe, kInvoke } verb = Verb::kInvoke;
  if (args[0] == "list") {
    verb = Verb::kList;
    args.erase(args.begin());
  } else if (args[0] == "describe") {
    verb = Verb::kDescribe;
    args.erase(args.begin());
  }
  std::string symbol;
  if (verb == Verb::kInvoke) {
    if (args.empty()) FailUsage("Too few arguments.");
    symbol = args[0];
    args.erase(args.begin());
  } else {
    if (!flags.data.empty()) {
      Warn("The -d argument is not used with 'list' or 'describe' verb.");
    }
    if (!flags.rpc_headers.empty()) {
      Warn(
          "The -rpc-header argument is not used with 'list' or 'describe' "
          "verb.");
    }
    if (!args.empty()) {
      symbol = args[0];
      args.erase(args.begin());
    }
  }
  if (!args.empty()) FailUsage("Too many arguments.");
  if (target.empty()) {
    FailUsage(
        "No host:port specified (custos_grpcurl takes descriptors from the "
        "server or the linked contracts, not from -proto files).");
  }

  const Metadata headers =
      HeadersOrDie(flags.headers, flags.expand_headers, "additional headers");
  const Metadata rpc_headers =
      HeadersOrDie(flags.rpc_headers, flags.expand_headers, "rpc headers");
  const Metadata reflect_headers = HeadersOrDie(
      flags.reflect_headers, flags.expand_headers, "reflection headers");

  const absl::Time start = absl::Now();
  const absl::Time deadline = flags.max_time > 0
                                  ? start + absl::Seconds(flags.max_time)
                                  : absl::InfiniteFuture();
  grpc::ChannelArguments channel_args;
  channel_args.SetUserAgentPrefix(
      flags.user_agent.empty()
          ? "custos_grpcurl"
          : absl::StrCat(flags.user_agent, " custos_grpcurl"));
  const std::string authority =
      flags.authority.empty() ? flags.servername : flags.authority;
  if (!authority.empty()) {
    channel_args.SetString(GRPC_ARG_DEFAULT_AUTHORITY, authority);
    if (use_tls) channel_args.SetSslTargetNameOverride(authority);
  }
  if (flags.max_msg_sz > 0) {
    channel_args.SetMaxReceiveMessageSize(flags.max_msg_sz);
  }
  if (flags.keepalive_time > 0) {
    const int ms = static_cast<int>(flags.keepalive_time * 1000);
    channel_args.SetInt(GRPC_ARG_KEEPALIVE_TIME_MS, ms);
    channel_args.SetInt(GRPC_ARG_KEEPALIVE_TIMEOUT_MS, ms);
  }
  std::shared_ptr<grpc::Channel> channel =
      grpc::CreateCustomChannel(target, Credentials(flags), channel_args);
  const absl::Time dial_deadline =
      std::min(deadline, start + (flags.connect_timeout > 0
                                      ? absl::Seconds(flags.connect_timeout)
                                      : absl::Seconds(10)));
  if (absl::Status dialed = Dial(channel, dial_deadline); !dialed.ok()) {
    Fail(absl::StrCat("Failed to dial target host \"", target,
                      "\": ", dialed.message()));
  }

  Session session(flags, target, channel, deadline, headers, rpc_headers,
                  reflect_headers);
  switch (verb) {
    case Verb::kList:
      return session.List(symbol);
    case Verb::kDescribe:
      return session.DescribeSymbols(symbol);
    case Verb::kInvoke:
      return session.Invoke(symbol);
  }
  return 1;
}

}  // namespace

int main(int argc, char** argv) {
  const int code = Run(argc, argv);
  std::cout.flush();
  return code;
}
