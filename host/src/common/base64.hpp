// Base64 (RFC 4648) on top of Boost's archive iterators: standard with
// padding for JSON payloads, or the URL-safe alphabet without padding for
// names (KV keys) that must stay within [A-Za-z0-9_-].
#pragma once

#include <boost/archive/iterators/base64_from_binary.hpp>
#include <boost/archive/iterators/transform_width.hpp>

#include <algorithm>
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

}  // namespace kanban::host
