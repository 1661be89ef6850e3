// payment: validates a payment request and "charges" it.
//
// Payload: JSON object with a positive number `amount` and a non-empty string
// `account`, e.g. {"amount": 12.5, "account": "acct-42"}. Anything else is a
// permanent failure (dead-lettered with the reason). Settings: `currency`
// (default "EUR").
#include <kanban/handler.hpp>

#include <nlohmann/json.hpp>

#include <string>

namespace {

class Payment final : public kanban::Handler {
public:
    explicit Payment(std::string_view settings_json) {
        const auto settings = nlohmann::json::parse(settings_json);  // throws → create() fails
        currency_ = settings.value("currency", std::string("EUR"));
        if (currency_.empty()) throw std::invalid_argument("settings.currency must not be empty");
    }

    kanban::Result handle(const kanban::WorkItem& item, kanban::Context& ctx) override {
        if (ctx.cancelled()) return kanban::Result::retry("cancelled");
        const auto request = nlohmann::json::parse(item.payload, nullptr, /*allow_exceptions=*/false);
        if (!request.is_object()) return kanban::Result::fail("payload is not a JSON object");
        const auto amount = request.find("amount");
        if (amount == request.end() || !amount->is_number())
            return kanban::Result::fail("payload.amount must be a number");
        if (amount->get<double>() <= 0) return kanban::Result::fail("payload.amount must be positive");
        const auto account = request.find("account");
        if (account == request.end() || !account->is_string() || account->get<std::string>().empty())
            return kanban::Result::fail("payload.account must be a non-empty string");

        ctx.log(kanban::LogLevel::info, "charged " + amount->dump() + " " + currency_ + " to " +
                                            account->get<std::string>());
        return kanban::Result::ok();
    }

private:
    std::string currency_;
};

}  // namespace

KANBAN_PLUGIN(Payment, "payment", "1.0.0")
