// The host's side of headers and follow-ups (plugin/host_api.cpp,
// common/headers.hpp): what a handler sees, what ctx.publish() accepts and
// the ids it gives.
#include "common/headers.hpp"
#include "plugin/host_api.hpp"

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <cstring>

namespace kanban::host::plugin {
namespace {

using ::testing::HasSubstr;

kanban_follow_up followUp(const char* domain, const char* key = nullptr) {
    kanban_follow_up f{};
    f.struct_size = sizeof f;
    f.domain = domain;
    f.domain_len = std::strlen(domain);
    f.priority = -1;
    f.key = key;
    f.key_len = key != nullptr ? std::strlen(key) : 0;
    return f;
}

std::string publish(kanban_context& ctx, const kanban_follow_up& f, int* rc = nullptr) {
    char out[512] = {};
    const int r = hostApi()->publish(&ctx, &f, out, sizeof out);
    if (rc != nullptr) *rc = r;
    return out;
}

TEST(Headers, ReservedNamesAreTheHostsAndPublishersGetClearErrors) {
    EXPECT_TRUE(reservedHeader("Nats-Msg-Id"));
    EXPECT_TRUE(reservedHeader("kanban-deadline"));
    EXPECT_FALSE(reservedHeader("Kanban-Parent")) << "a child's handler reads it";
    EXPECT_FALSE(reservedHeader("traceparent"));
    EXPECT_EQ(headerProblem("X-Tenant", "acme"), "");
    EXPECT_THAT(headerProblem("Kanban-Deadline", "1"), HasSubstr("reserved"));
    EXPECT_THAT(headerProblem("bad name", "x"), HasSubstr("character"));
    EXPECT_THAT(headerProblem("X", "a\r\nb"), HasSubstr("control character"));
    EXPECT_THAT(headerProblem("", "x"), HasSubstr("needs a name"));
    Headers h{{"A", "1"}, {"a", "2"}, {"B", "3"}};
    setHeader(h, "A", "9");
    ASSERT_EQ(h.size(), 2u);
    EXPECT_EQ(*findHeader(h, "a"), "9");
}

TEST(HostApi, HeadersAreReadOnFirstUseAndShowTheAttemptsOwnTraceparent) {
    const Headers item{{"X-Tenant", "acme"}, {"traceparent", "00-11111111111111111111111111111111-2222222222222222-01"}};
    int loads = 0;
    struct Arg {
        const Headers* h;
        int* loads;
    } arg{&item, &loads};
    kanban_context ctx;
    ctx.load_headers = [](const void* a, Headers& out) {
        const auto* p = static_cast<const Arg*>(a);
        ++*p->loads;
        out.insert(out.end(), p->h->begin(), p->h->end());
    };
    ctx.headers_arg = &arg;
    const std::string own = "00-11111111111111111111111111111111-3333333333333333-01";
    ctx.traceparent = own;
    EXPECT_EQ(loads, 0) << "nothing read before the handler asks";
    const kanban_host_api* api = hostApi();
    ASSERT_TRUE(KANBAN_HOST_HAS(api, header_at));
    ASSERT_EQ(api->header_count(&ctx), 2u);
    kanban_header h{};
    ASSERT_EQ(api->header_at(&ctx, 0, &h), 0);
    EXPECT_EQ(std::string(h.name, h.name_len), "X-Tenant");
    ASSERT_EQ(api->header_at(&ctx, 1, &h), 0);
    EXPECT_EQ(std::string(h.value, h.value_len), own) << "the handler's own span, not its parent's";
    EXPECT_NE(api->header_at(&ctx, 2, &h), 0);
    EXPECT_EQ(loads, 1);
    EXPECT_EQ(traceIdOf(own), "11111111111111111111111111111111");
}

TEST(HostApi, PublishQueuesFollowUpsWithIdsDerivedFromTheParent) {
    const FollowUpRules rules{[](std::string_view d) { return d == "email" || d == "billing"; }};
    kanban_context ctx;
    ctx.id = "order-1";
    ctx.follow_up_rules = &rules;
    int rc = -1;
    EXPECT_EQ(publish(ctx, followUp("email"), &rc), "order-1/1");
    EXPECT_EQ(rc, 0);
    kanban_follow_up keyed = followUp("billing", "invoice");
    const kanban_header hs[] = {{"X-Tenant", 8, "acme", 4}};
    keyed.headers = hs;
    keyed.header_count = 1;
    keyed.priority = KANBAN_PRIORITY_HIGH;
    keyed.delay_ms = 1500;
    EXPECT_EQ(publish(ctx, keyed), "order-1/invoice");
    ASSERT_EQ(ctx.follow_ups.size(), 2u);
    EXPECT_EQ(ctx.follow_ups[1].priority, KANBAN_PRIORITY_HIGH);
    EXPECT_EQ(ctx.follow_ups[1].delay_ms, 1500);
    EXPECT_EQ(ctx.follow_ups[1].headers, (Headers{{"X-Tenant", "acme"}}));
    EXPECT_FALSE(ctx.follow_ups[0].priority);

    EXPECT_THAT(publish(ctx, followUp("nowhere"), &rc), HasSubstr("unknown domain \"nowhere\""));
    EXPECT_NE(rc, 0);
    kanban_follow_up bad = followUp("email");
    bad.priority = 7;
    EXPECT_THAT(publish(ctx, bad), HasSubstr("priority 7"));
    const kanban_header reserved[] = {{"Kanban-Deadline", 15, "1", 1}};
    bad = followUp("email");
    bad.headers = reserved;
    bad.header_count = 1;
    EXPECT_THAT(publish(ctx, bad), HasSubstr("reserved"));
    const std::string long_key(300, 'k');
    EXPECT_THAT(publish(ctx, followUp("email", long_key.c_str())), HasSubstr("limit is 256"));
    EXPECT_EQ(ctx.follow_ups.size(), 2u) << "refused ones are not queued";
    while (ctx.follow_ups.size() < kMaxFollowUps) publish(ctx, followUp("email"));
    EXPECT_THAT(publish(ctx, followUp("email")), HasSubstr("more than 1000"));

    kanban_context outside;  // no rules: not inside handle()
    EXPECT_THAT(publish(outside, followUp("email")), HasSubstr("only available inside handle()"));
}

}  // namespace
}  // namespace kanban::host::plugin
