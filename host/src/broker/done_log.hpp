// The done log's wire format (docs/design.md §5): one message per handled
// batch on `$KV.<bucket>.log.<writer>.<n>` (a subject of its own: the
// bucket keeps one message per subject), its body the batch's completed work
// ids, each as a 2-byte little-endian length and its bytes (ids are at most
// kMaxWorkIdBytes and may hold any byte). Old hosts wrote one key per id
// (`$KV.<bucket>.<base64url id>`, value "done"); both are read.
#pragma once

#include <cstdint>
#include <functional>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

namespace kanban::host::broker {

// Appends one id to a log body.
void appendDoneId(std::string& body, std::string_view id);
// Calls `each` for every id in a log body; false if the body is malformed
// (the ids before the damage were still reported).
bool forEachDoneId(std::string_view body, const std::function<void(std::string_view)>& each);

// What a message of the bucket's stream is, from its subject (after
// `$KV.<bucket>.`): a log record, a per-id done record of an old host
// (the decoded id), or neither (an attempt record, anything else).
struct DoneSubject {
    enum class Kind { log, key, other } kind = Kind::other;
    std::string id;  // Kind::key
};
DoneSubject classifyDoneSubject(std::string_view key);

// The done ids a message of the bucket holds: a log record's list, an old
// host's key, or none (an attempt record, a deletion marker). `subject`
// is the full subject, `prefix` `$KV.<bucket>.`, `deleted` whether the
// message carries a KV-Operation header. False if a log record is damaged.
bool forEachRecordedId(std::string_view subject, std::string_view prefix, bool deleted, std::string_view body,
                       const std::function<void(std::string_view)>& each);

// The subject a writer publishes its log records to.
std::string doneLogSubject(std::string_view bucket, std::string_view writer, std::uint64_t n);

}  // namespace kanban::host::broker
