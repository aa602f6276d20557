// W3C Trace Context as Custos reads it from callers it does not control
// (issue 13): a valid traceparent is continued; anything else (hostile or
// merely wrong) starts a new trace and never reaches logs or peers as sent.
#include "common/trace_context.h"

#include <string>

#include "gtest/gtest.h"

namespace custos {
namespace {

constexpr char kValid[] =
    "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";

TEST(TraceContextTest, AValidTraceparentIsContinuedWithASpanOfOurOwn) {
  const TraceContext span = ServerSpan(kValid, "vendor=opaque");
  EXPECT_EQ(span.trace_id, "4bf92f3577b34da6a3ce929d0e0e4736");
  EXPECT_EQ(span.parent_id, "00f067aa0ba902b7");
  EXPECT_NE(span.span_id, "00f067aa0ba902b7");
  EXPECT_EQ(span.span_id.size(), 16u);
  EXPECT_EQ(span.flags, "01");
  EXPECT_EQ(span.tracestate, "vendor=opaque");
  const TraceContext child = ChildSpan(span);
  EXPECT_EQ(child.trace_id, span.trace_id);
  EXPECT_EQ(child.parent_id, span.span_id);
  EXPECT_EQ(ParseTraceparent(child.Traceparent())->span_id, child.span_id);
}

TEST(TraceContextTest, AnythingElseStartsANewTrace) {
  for (const std::string bad : {
           std::string(""),
           std::string("garbage"),
           // Upper-case hex, all-zero ids, version ff, wrong separators.
           std::string(
               "00-4BF92F3577B34DA6A3CE929D0E0E4736-00f067aa0ba902b7-01"),
           std::string(
               "00-00000000000000000000000000000000-00f067aa0ba902b7-01"),
           std::string(
               "00-4bf92f3577b34da6a3ce929d0e0e4736-0000000000000000-01"),
           std::string(
               "ff-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"),
           std::string(
               "00_4bf92f3577b34da6a3ce929d0e0e4736_00f067aa0ba902b7_01"),
           // Version 00 with anything after it; an injected header line.
           std::string(kValid) + "-extra",
           std::string(kValid) + "\r\nx-evil: 1",
           std::string(
               "00-4bf92f3577b34da6a3ce929d0e0e473\n-00f067aa0ba902b7-01"),
       }) {
    EXPECT_FALSE(ParseTraceparent(bad).has_value()) << bad;
    const TraceContext span = ServerSpan(bad, "");
    EXPECT_TRUE(span.parent_id.empty()) << bad;
    EXPECT_EQ(span.trace_id.size(), 32u);
    EXPECT_NE(span.trace_id, "4bf92f3577b34da6a3ce929d0e0e4736") << bad;
    EXPECT_TRUE(ParseTraceparent(span.Traceparent()).has_value());
  }
  // A later version is read by its first four fields.
  EXPECT_TRUE(ParseTraceparent(
                  "01-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01-x")
                  .has_value());
  // An oversized tracestate is dropped, not passed on.
  EXPECT_TRUE(ServerSpan(kValid, std::string(600, 'a')).tracestate.empty());
}

TEST(TraceContextTest, OutsideACallNothingIsPropagated) {
  const PropagatedCall outside = PropagateCurrentCall();
  EXPECT_TRUE(outside.traceparent.empty());
  EXPECT_TRUE(outside.request_id.empty());
  CallScope scope{ServerSpan(kValid, ""), "req-1"};
  {
    ScopedCall in_call(&scope);
    const PropagatedCall inside = PropagateCurrentCall();
    EXPECT_EQ(ParseTraceparent(inside.traceparent)->trace_id,
              scope.trace.trace_id);
    EXPECT_EQ(inside.request_id, "req-1");
  }
  EXPECT_EQ(CurrentCall(), nullptr);
}

TEST(TraceContextTest, RandomIdsAreHexOfTheSizeAsked) {
  for (int bytes : {8, 16}) {
    const std::string id = RandomHexId(bytes);
    EXPECT_EQ(id.size(), static_cast<size_t>(2 * bytes));
    EXPECT_EQ(id.find_first_not_of("0123456789abcdef"), std::string::npos);
  }
  EXPECT_NE(RandomHexId(8), RandomHexId(8));
}

}  // namespace
}  // namespace custos
