// Base64 (RFC 4648) on top of Boost's archive iterators: standard with
// padding for JSON payloads, or the URL-safe alphabet without padding for
// names (KV keys) that must stay within [A-Za-z0-9_-].
#pragma once

#include <boost/archive/iterators/base64_from_binary.hpp>
#include <boost/archive/iterators/transform_width.hpp>

#include <algorithm>
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>

namespace kanban::host {

inline std::string base64(std::string_view in, bool url_safe = false) {
    using Encoder = boost::archive::iterators::base64_from_binary<
        boost::archive::iterators::transform_width<std::string_view::const_iterator, 6, 8>>;
    std::string out(Encoder(in.begin()), Encoder(in.end()));
    if (!url_safe) {
        out.append((3 - in.size() % 3) % 3, '=');
        return out;
    }
    std::replace(out.begin(), out.end(), '+', '-');
    std::replace(out.begin(), out.end(), '/', '_');
    return out;
}

// Standard base64 with or without padding; nullopt if `in` is not base64.
inline std::optional<std::string> fromBase64(std::string_view in) {
    while (!in.empty() && in.back() == '=') in.remove_suffix(1);
    std::string out;
    std::uint32_t acc = 0;
    int bits = 0;
    for (char c : in) {
        int v;
        if (c >= 'A' && c <= 'Z') v = c - 'A';
        else if (c >= 'a' && c <= 'z') v = c - 'a' + 26;
        else if (c >= '0' && c <= '9') v = c - '0' + 52;
        else if (c == '+' || c == '-') v = 62;
        else if (c == '/' || c == '_') v = 63;
        else return std::nullopt;
        acc = (acc << 6) | static_cast<std::uint32_t>(v);
        bits += 6;
        if (bits >= 8) {
            bits -= 8;
            out.push_back(static_cast<char>((acc >> bits) & 0xff));
        }
    }
    if (bits >= 6) return std::nullopt;  // a lone trailing character
    return out;
}

}  // namespace kanban::host
