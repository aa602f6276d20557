#include "tools/dynamic_call.h"

#include <fcntl.h>
#include <spawn.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cstdio>
#include <cstdlib>
#include <fstream>
#include <memory>
#include <sstream>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/strings/str_cat.h"
#include "absl/time/clock.h"
#include "absl/time/time.h"
#include "gmock/gmock.h"
#include "grpcpp/create_channel.h"
#include "grpcpp/ext/proto_server_reflection_plugin.h"
#include "grpcpp/grpcpp.h"
#include "grpcpp/health_check_service_interface.h"
#include "grpcpp/security/credentials.h"
#include "grpcpp/security/server_credentials.h"
#include "grpcpp/server_builder.h"
#include "gtest/gtest.h"

extern char** environ;

namespace custos::tools {
namespace {

using ::testing::HasSubstr;
using ::testing::StartsWith;

constexpr char kServing[] = "{\n  \"status\": \"SERVING\"\n}";

// An in-process server with only what every Custos server has: the default
// health service and server reflection.
class DynamicCallTest : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    grpc::EnableDefaultHealthCheckService(true);
    grpc::reflection::InitProtoReflectionServerBuilderPlugin();
  }

  void SetUp() override {
    grpc::ServerBuilder builder;
    builder.AddListeningPort("127.0.0.1:0", grpc::InsecureServerCredentials(),
                             &port_);
    server_ = builder.BuildAndStart();
    ASSERT_NE(server_, nullptr);
    ASSERT_GT(port_, 0);
    address_ = absl::StrCat("127.0.0.1:", port_);
    channel_ =
        grpc::CreateChannel(address_, grpc::InsecureChannelCredentials());
  }

  void TearDown() override {
    // Ends calls still open (Watch streams) instead of waiting for them.
    if (server_ != nullptr) {
      server_->Shutdown(absl::ToChronoTime(absl::Now() + absl::Seconds(1)));
    }
  }

  int port_ = 0;
  std::string address_;
  std::unique_ptr<grpc::Server> server_;
  std::shared_ptr<grpc::Channel> channel_;
  MessageCodec codec_;
};

TEST_F(DynamicCallTest, HealthCheckFromJsonSaysServing) {
  absl::StatusOr<RpcResult> result = CallJson(
      channel_, codec_, "grpc.health.v1.Health/Check", "{}", CallOptions());
  ASSERT_TRUE(result.ok()) << result.status();
  EXPECT_TRUE(result->status.ok()) << result->status.error_message();
  ASSERT_EQ(result->responses.size(), 1u);
  EXPECT_EQ(result->responses[0], kServing);
  EXPECT_EQ(result->response_count, 1);
}

TEST_F(DynamicCallTest, AcceptsDottedMethodNameTextFormatAndNoData) {
  absl::StatusOr<RpcResult> text =
      CallJson(channel_, codec_, "grpc.health.v1.Health.Check", "service: \"\"",
               CallOptions(), Format::kText);
  ASSERT_TRUE(text.ok()) << text.status();
  ASSERT_EQ(text->responses.size(), 1u);
  EXPECT_EQ(text->responses[0], kServing);

  absl::StatusOr<RpcResult> empty = CallJson(
      channel_, codec_, "/grpc.health.v1.Health/Check", "", CallOptions());
  ASSERT_TRUE(empty.ok()) << empty.status();
  ASSERT_EQ(empty->responses.size(), 1u);
  EXPECT_EQ(empty->responses[0], kServing);
}

TEST_F(DynamicCallTest, CompactJsonAndMetadataOption) {
  CallOptions options;
  options.metadata = {{"authorization", "Bearer x"}, {"x-trace-bin", "\x01"}};
  JsonOptions json;
  json.pretty = false;
  absl::StatusOr<RpcResult> result =
      CallJson(channel_, codec_, "grpc.health.v1.Health/Check", "{}", options,
               Format::kJson, json);
  ASSERT_TRUE(result.ok()) << result.status();
  ASSERT_EQ(result->responses.size(), 1u);
  EXPECT_EQ(result->responses[0], "{\"status\":\"SERVING\"}");
}

TEST_F(DynamicCallTest, ServerErrorIsTheRpcStatusNotALocalError) {
  absl::StatusOr<RpcResult> result =
      CallJson(channel_, codec_, "grpc.health.v1.Health/Check",
               R"({"service": "no.such.Service"})", CallOptions());
  ASSERT_TRUE(result.ok()) << result.status();
  EXPECT_EQ(result->status.error_code(), grpc::StatusCode::NOT_FOUND);
  EXPECT_TRUE(result->responses.empty());
}

TEST_F(DynamicCallTest, UnknownMethodOrServiceIsNotFoundNamingIt) {
  absl::StatusOr<RpcResult> method = CallJson(
      channel_, codec_, "grpc.health.v1.Health/Chek", "{}", CallOptions());
  EXPECT_EQ(method.status().code(), absl::StatusCode::kNotFound);
  EXPECT_THAT(std::string(method.status().message()), HasSubstr("\"Chek\""));
  EXPECT_THAT(std::string(method.status().message()),
              HasSubstr("grpc.health.v1.Health"));

  absl::StatusOr<RpcResult> service =
      CallJson(channel_, codec_, "no.such.Service/Check", "{}", CallOptions());
  EXPECT_EQ(service.status().code(), absl::StatusCode::kNotFound);
  EXPECT_THAT(std::string(service.status().message()),
              HasSubstr("no.such.Service"));

  absl::StatusOr<RpcResult> malformed =
      CallJson(channel_, codec_, "Check", "{}", CallOptions());
  EXPECT_EQ(malformed.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(std::string(malformed.status().message()),
              HasSubstr("pkg.Service/Method"));
}

TEST_F(DynamicCallTest, BadJsonIsInvalidArgumentNamingTheProblem) {
  absl::StatusOr<RpcResult> unknown_field =
      CallJson(channel_, codec_, "grpc.health.v1.Health/Check",
               R"({"servce": "x"})", CallOptions());
  EXPECT_EQ(unknown_field.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(std::string(unknown_field.status().message()),
              HasSubstr("grpc.health.v1.HealthCheckRequest"));
  EXPECT_THAT(std::string(unknown_field.status().message()),
              HasSubstr("servce"));

  absl::StatusOr<RpcResult> syntax =
      CallJson(channel_, codec_, "grpc.health.v1.Health/Check",
               R"({"service": )", CallOptions());
  EXPECT_EQ(syntax.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(std::string(syntax.status().message()),
              StartsWith("invalid JSON for "));

  absl::StatusOr<RpcResult> wrong_type =
      CallJson(channel_, codec_, "grpc.health.v1.Health/Check",
               R"({"service": 12})", CallOptions());
  EXPECT_EQ(wrong_type.status().code(), absl::StatusCode::kInvalidArgument);

  absl::StatusOr<RpcResult> text =
      CallJson(channel_, codec_, "grpc.health.v1.Health/Check", "servce: 1",
               CallOptions(), Format::kText);
  EXPECT_EQ(text.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(std::string(text.status().message()), HasSubstr("servce"));
}

TEST_F(DynamicCallTest, InvalidMetadataIsRejectedBeforeSending) {
  CallOptions options;
  options.metadata = {{"Authorization", "Bearer x"}};
  absl::StatusOr<RpcResult> upper =
      CallJson(channel_, codec_, "grpc.health.v1.Health/Check", "{}", options);
  EXPECT_EQ(upper.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(std::string(upper.status().message()),
              HasSubstr("Authorization"));

  options.metadata = {{"x-note", "line\nbreak"}};
  absl::StatusOr<RpcResult> value =
      CallJson(channel_, codec_, "grpc.health.v1.Health/Check", "{}", options);
  EXPECT_EQ(value.status().code(), absl::StatusCode::kInvalidArgument);
}

TEST_F(DynamicCallTest, ServerStreamingDeliversEachMessageAndCanStop) {
  absl::StatusOr<const google::protobuf::MethodDescriptor*> watch =
      FindMethod(codec_.pool(), "grpc.health.v1.Health/Watch");
  ASSERT_TRUE(watch.ok()) << watch.status();
  absl::StatusOr<grpc::ByteBuffer> request =
      EncodeRequest(codec_, **watch, "{}", Format::kJson);
  ASSERT_TRUE(request.ok()) << request.status();
  std::vector<std::string> seen;
  // Watch never ends by itself: the handler stops it after the first update.
  absl::StatusOr<RpcResult> result =
      Call(channel_, codec_, **watch, {*request}, CallOptions(),
           [&](const google::protobuf::Message& update) {
             seen.push_back(*MessageCodec::ToJson(update, JsonOptions()));
             return false;
           });
  ASSERT_TRUE(result.ok()) << result.status();
  EXPECT_EQ(result->status.error_code(), grpc::StatusCode::CANCELLED);
  ASSERT_EQ(seen.size(), 1u);
  EXPECT_EQ(seen[0], kServing);
  EXPECT_EQ(result->response_count, 1);
}

TEST_F(DynamicCallTest, UnaryMethodTakesExactlyOneRequest) {
  absl::StatusOr<const google::protobuf::MethodDescriptor*> check =
      FindMethod(codec_.pool(), "grpc.health.v1.Health/Check");
  ASSERT_TRUE(check.ok());
  absl::StatusOr<RpcResult> result =
      Call(channel_, codec_, **check, {}, CallOptions(),
           [](const google::protobuf::Message&) { return true; });
  EXPECT_EQ(result.status().code(), absl::StatusCode::kInvalidArgument);
}

TEST_F(DynamicCallTest, NoServerIsUnavailable) {
  server_->Shutdown(absl::ToChronoTime(absl::Now()));
  server_.reset();
  CallOptions options;
  options.timeout = absl::Seconds(10);
  absl::StatusOr<RpcResult> result =
      CallJson(channel_, codec_, "grpc.health.v1.Health/Check", "{}", options);
  ASSERT_TRUE(result.ok()) << result.status();
  EXPECT_EQ(result->status.error_code(), grpc::StatusCode::UNAVAILABLE);
}

TEST(MessageCodecTest, JsonKeepsAngleBracketsAndOtherEscapes) {
  MessageCodec codec;
  const google::protobuf::Descriptor* type =
      codec.pool().FindMessageTypeByName("grpc.health.v1.HealthCheckRequest");
  ASSERT_NE(type, nullptr);
  absl::StatusOr<std::unique_ptr<google::protobuf::Message>> message =
      codec.Parse(*type, R"({"service": "a<b> & \u003c \"q\""})",
                  Format::kJson);
  ASSERT_TRUE(message.ok()) << message.status();
  JsonOptions compact;
  compact.pretty = false;
  EXPECT_EQ(*MessageCodec::ToJson(**message, compact),
            R"({"service":"a<b> & < \"q\""})");
  EXPECT_EQ(MessageCodec::ToText(**message), R"(service: "a<b> & < \"q\"")");
}

TEST(LinkedContractsTest, HoldsTheCustosContracts) {
  const google::protobuf::DescriptorPool& pool = LinkedContracts();
  absl::StatusOr<const google::protobuf::MethodDescriptor*> get = FindMethod(
      pool, "custos.customers.v1.CustomerManagementService/GetCustomer");
  ASSERT_TRUE(get.ok()) << get.status();
  EXPECT_EQ(MethodPath(**get),
            "/custos.customers.v1.CustomerManagementService/GetCustomer");
  EXPECT_NE(pool.FindMessageTypeByName("google.rpc.ErrorInfo"), nullptr);
  EXPECT_NE(pool.FindServiceByName("grpc.health.v1.Health"), nullptr);
}

TEST(IndentJsonTest, MatchesGoJsonIndent) {
  EXPECT_EQ(IndentJson("{}"), "{}");
  EXPECT_EQ(IndentJson(R"({"a":[],"b":{},"c":[1,{"d":"x"}]})"),
            "{\n"
            "  \"a\": [],\n"
            "  \"b\": {},\n"
            "  \"c\": [\n"
            "    1,\n"
            "    {\n"
            "      \"d\": \"x\"\n"
            "    }\n"
            "  ]\n"
            "}");
  // Structure characters inside strings, and escaped quotes, are text.
  EXPECT_EQ(IndentJson(R"({"k":"{[,:\"]}"})"), "{\n  \"k\": \"{[,:\\\"]}\"\n}");
}

// ---------------------------------------------------------------------------
// The custos_grpcurl binary against the same server.

struct ToolRun {
  int exit_code = -1;
  std::string out;
  std::string err;
};

std::string ReadAll(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  std::ostringstream contents;
  contents << in.rdbuf();
  return contents.str();
}

std::string GrpcurlPath() {
  const char* build = std::getenv("CUSTOS_BUILD_DIR");
  return absl::StrCat(build != nullptr ? build : "build",
                      "/tools/custos_grpcurl");
}

// Runs custos_grpcurl with `args` and `stdin_data`; output goes through
// files so that neither side can block on a full pipe.
ToolRun RunGrpcurl(const std::vector<std::string>& args,
                   const std::string& stdin_data = "") {
  char dir_template[] = "/tmp/custos_grpcurl_test.XXXXXX";
  const std::string dir = mkdtemp(dir_template);
  const std::string in_path = dir + "/in", out_path = dir + "/out",
                    err_path = dir + "/err";
  std::ofstream(in_path, std::ios::binary) << stdin_data;

  posix_spawn_file_actions_t actions;
  posix_spawn_file_actions_init(&actions);
  posix_spawn_file_actions_addopen(&actions, 0, in_path.c_str(), O_RDONLY, 0);
  posix_spawn_file_actions_addopen(&actions, 1, out_path.c_str(),
                                   O_WRONLY | O_CREAT | O_TRUNC, 0600);
  posix_spawn_file_actions_addopen(&actions, 2, err_path.c_str(),
                                   O_WRONLY | O_CREAT | O_TRUNC, 0600);
  const std::string binary = GrpcurlPath();
  std::vector<std::string> argv_strings = {binary};
  argv_strings.insert(argv_strings.end(), args.begin(), args.end());
  std::vector<char*> argv;
  for (std::string& arg : argv_strings) argv.push_back(arg.data());
  argv.push_back(nullptr);
  pid_t pid = -1;
  ToolRun run;
  if (posix_spawn(&pid, binary.c_str(), &actions, nullptr, argv.data(),
                  environ) == 0) {
    // The tool bounds itself with -max-time; this only guards the test.
    const absl::Time give_up = absl::Now() + absl::Seconds(60);
    int status = 0;
    while (waitpid(pid, &status, WNOHANG) == 0) {
      if (absl::Now() > give_up) {
        kill(pid, SIGKILL);
        waitpid(pid, &status, 0);
        break;
      }
      absl::SleepFor(absl::Milliseconds(10));
    }
    if (WIFEXITED(status)) run.exit_code = WEXITSTATUS(status);
  }
  posix_spawn_file_actions_destroy(&actions);
  run.out = ReadAll(out_path);
  run.err = ReadAll(err_path);
  std::remove(in_path.c_str());
  std::remove(out_path.c_str());
  std::remove(err_path.c_str());
  rmdir(dir.c_str());
  return run;
}

class GrpcurlTest : public DynamicCallTest {
 protected:
  void SetUp() override {
    if (access(GrpcurlPath().c_str(), X_OK) != 0) {
      GTEST_SKIP() << GrpcurlPath() << " is not built";
    }
    DynamicCallTest::SetUp();
  }

  ToolRun Run(std::vector<std::string> args,
              const std::string& stdin_data = "") {
    args.insert(args.begin(), {"-plaintext", "-max-time", "20"});
    return RunGrpcurl(args, stdin_data);
  }
};

TEST_F(GrpcurlTest, ListShowsWhatTheServerServes) {
  ToolRun run = Run({address_, "list"});
  EXPECT_EQ(run.exit_code, 0) << run.err;
  EXPECT_EQ(run.out,
            "grpc.health.v1.Health\n"
            "grpc.reflection.v1alpha.ServerReflection\n");

  ToolRun methods = Run({address_, "list", "grpc.health.v1.Health"});
  EXPECT_EQ(methods.exit_code, 0) << methods.err;
  EXPECT_EQ(methods.out,
            "grpc.health.v1.Health.Check\n"
            "grpc.health.v1.Health.Watch\n");
}

TEST_F(GrpcurlTest, DescribeServiceAndMessage) {
  ToolRun service = Run({address_, "describe", "grpc.health.v1.Health"});
  EXPECT_EQ(service.exit_code, 0) << service.err;
  EXPECT_THAT(service.out, StartsWith("grpc.health.v1.Health is a service:\n"
                                      "service Health {\n"));
  EXPECT_THAT(service.out,
              HasSubstr("  rpc Watch ( .grpc.health.v1.HealthCheckRequest ) "
                        "returns ( stream .grpc.health.v1.HealthCheckResponse"
                        " );\n"));

  ToolRun message =
      Run({address_, "describe", "grpc.health.v1.HealthCheckRequest"});
  EXPECT_EQ(message.exit_code, 0) << message.err;
  EXPECT_EQ(message.out,
            "grpc.health.v1.HealthCheckRequest is a message:\n"
            "message HealthCheckRequest {\n"
            "  string service = 1;\n"
            "}\n");
}

TEST_F(GrpcurlTest, InvokesMethodAndPrintsIndentedJson) {
  ToolRun run = Run({address_, "grpc.health.v1.Health/Check"});
  EXPECT_EQ(run.exit_code, 0) << run.err;
  EXPECT_EQ(run.out, absl::StrCat(kServing, "\n"));

  ToolRun from_stdin = Run({"-d", "@", "-H", "x-request-id: abc", address_,
                            "grpc.health.v1.Health.Check"},
                           R"({"service": ""})");
  EXPECT_EQ(from_stdin.exit_code, 0) << from_stdin.err;
  EXPECT_EQ(from_stdin.out, absl::StrCat(kServing, "\n"));
}

TEST_F(GrpcurlTest, RpcErrorPrintedAsGrpcurlDoesWithExitCode64PlusCode) {
  ToolRun run = Run({"-d", R"({"service":"no.such.Service"})", address_,
                     "grpc.health.v1.Health/Check"});
  EXPECT_EQ(run.exit_code, 64 + 5);
  EXPECT_EQ(run.out, "");
  EXPECT_THAT(run.err, StartsWith("ERROR:\n  Code: NotFound\n  Message: "));
}

TEST_F(GrpcurlTest, LocalErrorsExitOne) {
  ToolRun bad_json =
      Run({"-d", R"({"servce":"x"})", address_, "grpc.health.v1.Health/Check"});
  EXPECT_EQ(bad_json.exit_code, 1);
  EXPECT_THAT(bad_json.err, HasSubstr("servce"));

  ToolRun bad_method = Run({address_, "grpc.health.v1.Health/Nope"});
  EXPECT_EQ(bad_method.exit_code, 1);
  EXPECT_THAT(bad_method.err, HasSubstr("Nope"));
}

}  // namespace
}  // namespace custos::tools
