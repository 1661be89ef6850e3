#include "tracing/trace_context.hpp"

#include <random>

namespace kanban::host::tracing {
namespace {

int hexValue(char c) {
    if (c >= '0' && c <= '9') return c - '0';
    if (c >= 'a' && c <= 'f') return c - 'a' + 10;
    return -1;  // upper case is not allowed by the spec
}

template <std::size_t N>
bool parseHex(std::string_view text, std::array<std::uint8_t, N>& out) {
    if (text.size() != 2 * N) return false;
    bool nonzero = false;
    for (std::size_t i = 0; i < N; ++i) {
        const int hi = hexValue(text[2 * i]), lo = hexValue(text[2 * i + 1]);
        if (hi < 0 || lo < 0) return false;
        out[i] = static_cast<std::uint8_t>(hi * 16 + lo);
        nonzero = nonzero || out[i] != 0;
    }
    return nonzero;
}

std::mt19937_64& rng() {
    thread_local std::mt19937_64 g{[] {
        std::random_device rd;
        return (static_cast<std::uint64_t>(rd()) << 32) ^ rd();
    }()};
    return g;
}

template <std::size_t N>
std::array<std::uint8_t, N> randomId() {
    std::array<std::uint8_t, N> id{};
    do {
        for (std::size_t i = 0; i < N; i += 8) {
            std::uint64_t v = rng()();
            for (std::size_t j = 0; j < 8 && i + j < N; ++j, v >>= 8) id[i + j] = static_cast<std::uint8_t>(v);
        }
    } while (id == std::array<std::uint8_t, N>{});
    return id;
}

}  // namespace

std::optional<SpanContext> parseTraceparent(std::string_view t) {
    // 2 + 1 + 32 + 1 + 16 + 1 + 2 = 55; a later version may append "-...".
    if (t.size() < 55 || t[2] != '-' || t[35] != '-' || t[52] != '-') return std::nullopt;
    if (t.size() > 55 && t[55] != '-') return std::nullopt;
    const bool version_ok = hexValue(t[0]) >= 0 && hexValue(t[1]) >= 0 && t.substr(0, 2) != "ff";
    if (!version_ok || (t.substr(0, 2) == "00" && t.size() != 55)) return std::nullopt;
    SpanContext c;
    if (!parseHex(t.substr(3, 32), c.trace_id) || !parseHex(t.substr(36, 16), c.span_id)) return std::nullopt;
    const int hi = hexValue(t[53]), lo = hexValue(t[54]);
    if (hi < 0 || lo < 0) return std::nullopt;
    c.sampled = ((hi * 16 + lo) & 0x01) != 0;
    return c;
}

std::string hex(const std::uint8_t* bytes, std::size_t n) {
    static constexpr char kDigits[] = "0123456789abcdef";
    std::string out(2 * n, '0');
    for (std::size_t i = 0; i < n; ++i) {
        out[2 * i] = kDigits[bytes[i] >> 4];
        out[2 * i + 1] = kDigits[bytes[i] & 0x0f];
    }
    return out;
}

std::string formatTraceparent(const SpanContext& c) {
    return "00-" + hex(c.trace_id) + "-" + hex(c.span_id) + (c.sampled ? "-01" : "-00");
}

TraceId newTraceId() { return randomId<16>(); }
SpanId newSpanId() { return randomId<8>(); }

bool sampledAt(const TraceId& id, double ratio) {
    if (ratio >= 1.0) return true;
    if (ratio <= 0.0) return false;
    std::uint64_t low = 0;
    for (std::size_t i = 8; i < 16; ++i) low = (low << 8) | id[i];
    // The same comparison as OpenTelemetry's TraceIdRatioBased sampler.
    return static_cast<double>(low >> 1) < ratio * static_cast<double>(std::uint64_t{1} << 63);
}

}  // namespace kanban::host::tracing
