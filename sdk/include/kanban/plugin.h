/*
 * kanban/plugin.h: the TPS Kanban handler plugin ABI (C, version 1.1).
 *
 * 1.1 added, all at the end of structs: kanban_result.retry_after_ms, and
 * the item's headers and follow-up work (kanban_host_api.header_count,
 * header_at, publish; kanban_header, kanban_follow_up). A plugin built
 * against 1.0 loads on a 1.1 host and behaves as before; a 1.1 plugin on a
 * host that only knows 1.0 is refused by that host (minor newer than its
 * own), with both versions in the message.
 *
 * This header is THE contract between the kanband host and handler plugins.
 * It uses only <stddef.h> and <stdint.h>; no C++ type crosses the boundary.
 * Most plugins use the header-only C++ layer <kanban/handler.hpp> instead of
 * writing against this header directly.
 *
 * Versioning rules
 *   - Every struct starts with `struct_size` (the size the writer compiled
 *     against) and only ever grows at the end. Readers check `struct_size`
 *     before touching a field added after 1.0.
 *   - The host accepts a plugin whose `abi_major` equals its own and whose
 *     `abi_minor` is not newer than its own; it refuses anything else with an
 *     error naming the file and both versions.
 *   - A new minor only adds fields at the end of structs or new optional
 *     hooks; a new major may change anything (and the entry point's name).
 *
 * Entry point
 *   A plugin exports exactly one symbol, `kanban_plugin_v1`, a function
 *   returning a pointer to a descriptor with static storage duration. The host
 *   looks it up after dlopen(RTLD_NOW | RTLD_LOCAL) of a private copy of the
 *   file, checks the versions and the function pointers, then calls create().
 *
 * Threading
 *   - create() and destroy() never run concurrently with anything else on the
 *     same instance.
 *   - handle() is called concurrently from the domain's worker threads on the
 *     same instance: it must be thread-safe.
 *   - A plugin joins every thread it started before destroy() returns, and
 *     keeps no process-global state that outlives destroy().
 *
 * Errors
 *   Nothing may unwind across this boundary (no C++ exceptions, no longjmp).
 *   What a crash (SIGSEGV, abort, exit) does depends on the domain's
 *   `isolation`:
 *   - "thread" (the default): the plugin runs in the host process, so a
 *     crash takes the host down (an exit() reports status 70); the service
 *     manager restarts it and the broker redelivers the item.
 *   - "process": the plugin runs in runner processes of its own (one per
 *     worker, each with its own create()); a crash ends only that runner,
 *     which the host replaces. A handler still running 2 s past its
 *     deadline is killed with its runner (a timeout). A leak grows only
 *     the runner, which [domain.runner] memory_max_mb can replace.
 *   Either way the item in the handler is charged one attempt, its
 *   batch-mates none; after max_attempts it is dead-lettered with reason
 *   handler_crashed.
 */
#ifndef KANBAN_PLUGIN_H
#define KANBAN_PLUGIN_H

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

/** ABI version implemented by this header. */
#define KANBAN_ABI_MAJOR 1
#define KANBAN_ABI_MINOR 1

/** Name of the one symbol a plugin exports. */
#define KANBAN_PLUGIN_ENTRY_NAME "kanban_plugin_v1"

/** Marks the entry point as the plugin's only exported symbol. */
#if defined(__GNUC__)
#define KANBAN_PLUGIN_EXPORT __attribute__((visibility("default")))
#else
#define KANBAN_PLUGIN_EXPORT
#endif

/** Outcome of handling one work item. */
typedef enum kanban_status {
    /** Done: the host acknowledges the item (even when handle() returned
     *  after the deadline: running it again would repeat its effects).
     *  Counts as a success for the circuit breaker. */
    KANBAN_STATUS_OK = 0,
    /** Transient failure (the station or what it calls is in trouble):
     *  redelivered with backoff until the attempt limit, then dead-lettered.
     *  Counts as a failure for the domain's circuit breaker. So does any
     *  status returned after the deadline (a timeout). */
    KANBAN_STATUS_RETRY = 1,
    /** Permanent failure (the item itself is bad, e.g. a malformed
     *  payload): dead-lettered at once. Does not count against the circuit
     *  breaker: bad items do not stop the domain's line. */
    KANBAN_STATUS_FAIL = 2
} kanban_status;

/** Work item priority, from the subject `kanban.<priority>.<domain>`. */
typedef enum kanban_priority {
    KANBAN_PRIORITY_HIGH = 0,
    KANBAN_PRIORITY_NORMAL = 1,
    KANBAN_PRIORITY_LOW = 2
} kanban_priority;

/** Log levels understood by kanban_host_api.log. */
typedef enum kanban_log_level {
    KANBAN_LOG_TRACE = 0,
    KANBAN_LOG_DEBUG = 1,
    KANBAN_LOG_INFO = 2,
    KANBAN_LOG_WARNING = 3,
    KANBAN_LOG_ERROR = 4
} kanban_log_level;

/**
 * 1.1: one header of a work item (or of a follow-up). Name and value are
 * bytes given as pointer + length, not NUL-terminated. Header names are
 * compared without regard to ASCII case; a name may occur more than once.
 */
typedef struct kanban_header {
    const char* name;
    size_t name_len;
    const char* value;
    size_t value_len;
} kanban_header;

/**
 * 1.1: a follow-up work item that handle() asks the host to publish
 * (kanban_host_api.publish). The host copies everything during the call.
 *
 * The follow-ups of an attempt are published only if that attempt returns
 * KANBAN_STATUS_OK, before the parent item is acknowledged; an attempt
 * that returns anything else publishes none of them. A child's work id is
 * "<parent id>/<key>", or "<parent id>/<n>" for the n-th follow-up (from 1)
 * of the attempt when `key` is empty: a parent handled again (a
 * redelivery) produces the same ids, so the broker's deduplication or the
 * idempotency record absorbs the second copies and no child is doubled.
 * Call publish() in the same order on every attempt, or give keys. Every
 * child carries the header `Kanban-Parent` with the parent's id, and the
 * parent's trace context (`traceparent`) unless it sets its own.
 */
typedef struct kanban_follow_up {
    size_t struct_size;        /* sizeof(kanban_follow_up) as compiled */
    const char* domain;        /* a domain configured on the host */
    size_t domain_len;
    const char* payload;       /* NULL only when payload_len == 0 */
    size_t payload_len;
    int32_t priority;          /* a kanban_priority, or -1: the parent's */
    const kanban_header* headers; /* `header_count` headers, or NULL */
    size_t header_count;
    int64_t delay_ms;          /* > 0: no handler sees it before this many ms after it is published */
    const char* key;           /* optional: the child's id is "<parent id>/<key>" */
    size_t key_len;
} kanban_follow_up;

/**
 * One work item, owned by the host. Every pointer stays valid until handle()
 * returns and must not be used after that (copy what you keep). Strings are
 * given as pointer + length; `id` and `domain` are also NUL-terminated, the
 * payload is arbitrary bytes (may contain NUL, may be empty).
 */
typedef struct kanban_work_item {
    size_t struct_size;
    const char* id;           /* work id (Nats-Msg-Id / AMQP message_id) */
    size_t id_len;
    const char* domain;       /* e.g. "payment" */
    size_t domain_len;
    kanban_priority priority;
    const char* payload;      /* message body; NULL only when payload_len == 0 */
    size_t payload_len;
    uint32_t attempt;         /* 1 on the first call; counts calls of this handler for
                                 the item, not deliveries (a delivery that never
                                 reached a handler is not an attempt) */
    int64_t deadline_unix_ms; /* absolute deadline, Unix epoch milliseconds */
} kanban_work_item;

/** Opaque per-item handle owned by the host; valid during handle() only. */
typedef struct kanban_context kanban_context;

/**
 * Services the host offers to plugins. The table is owned by the host and
 * outlives every instance created with it; plugins keep the pointer they get
 * in create(). All functions are thread-safe.
 */
typedef struct kanban_host_api {
    size_t struct_size;
    uint32_t abi_major;
    uint32_t abi_minor;
    /** Milliseconds left until the item's deadline (negative once past). */
    int64_t (*remaining_ms)(const kanban_context* ctx);
    /** Non-zero once the host asks the handler to stop: the item's deadline
     *  passed (timeout), or the host is shutting down (SIGTERM). Poll it in
     *  long handlers and return soon after. On shutdown, whatever the
     *  handler then returns other than KANBAN_STATUS_OK hands the item back
     *  to the queue for prompt redelivery; it neither dead-letters the item
     *  nor counts against the circuit breaker. */
    int (*cancelled)(const kanban_context* ctx);
    /** Tells the broker the item is still being worked on (extends the ack
     *  wait). Cheap; call it at least every few seconds in long handlers. */
    void (*progress)(kanban_context* ctx);
    /** Logs one line. `ctx` may be NULL (e.g. from create()); `message` need
     *  not be NUL-terminated; the host copies it. */
    void (*log)(const kanban_context* ctx, kanban_log_level level, const char* message,
                size_t message_len);

    /* ---- 1.1: check KANBAN_HOST_HAS(api, field) before calling these ---- */

    /** The number of headers the item carries: those its publisher set,
     *  `Kanban-Parent` on a follow-up, and `traceparent`, which is this
     *  attempt's own trace context (the host's span of this handler call)
     *  when the host traces. The host's bookkeeping headers (names starting
     *  with `Nats-`, and `Kanban-` other than `Kanban-Parent`) are not
     *  shown. */
    size_t (*header_count)(const kanban_context* ctx);
    /** Writes header `index` (< header_count) into `out` and returns 0;
     *  non-zero when `index` is out of range. The strings are owned by the
     *  host and stay valid until handle() returns: copy what you keep. */
    int (*header_at)(const kanban_context* ctx, size_t index, kanban_header* out);
    /** Queues a follow-up (see kanban_follow_up) and returns 0, writing the
     *  child's NUL-terminated work id into `out` (capacity `out_len`, at
     *  least 300). Returns non-zero and writes a NUL-terminated reason into
     *  `out` when it refuses: an unknown domain, a bad priority, a child id
     *  longer than 256 bytes, more than 1000 follow-ups in one attempt, or
     *  a call outside handle(). */
    int (*publish)(kanban_context* ctx, const kanban_follow_up* follow_up, char* out, size_t out_len);
} kanban_host_api;

/** Whether the host's table `api` has the function `field` (added after 1.0). */
#define KANBAN_HOST_HAS(api, field) \
    ((api) != NULL && (api)->struct_size >= offsetof(kanban_host_api, field) + sizeof((api)->field) && \
     (api)->field != NULL)

/**
 * Where handle() reports its outcome. Owned by the host. The host sets
 * `status` to KANBAN_STATUS_FAIL and `reason` to an empty string before the
 * call, so a handler that sets nothing fails the item. `reason` points to a
 * host buffer of `reason_capacity` bytes (at least 256): copy a NUL-terminated
 * reason into it, truncating if needed.
 *
 * 1.1: `retry_after_ms`, set to -1 by the host before the call. A handler
 * returning KANBAN_STATUS_RETRY may set it to the delay it wants before the
 * next attempt (a partner's Retry-After, say) instead of the domain's
 * backoff; the host caps it at the domain's retry.backoff_max_ms. Write it
 * only when `struct_size` covers it (KANBAN_RESULT_HAS_RETRY_AFTER).
 */
typedef struct kanban_result {
    size_t struct_size;
    kanban_status status;
    char* reason;
    size_t reason_capacity;
    int64_t retry_after_ms; /* 1.1 */
} kanban_result;

/** Whether the host's result `r` has the 1.1 field retry_after_ms. */
#define KANBAN_RESULT_HAS_RETRY_AFTER(r) \
    ((r)->struct_size >= offsetof(kanban_result, retry_after_ms) + sizeof(int64_t))

/**
 * The plugin descriptor, returned by kanban_plugin_v1(). It must have static
 * storage duration (the host reads it while the library is loaded).
 */
typedef struct kanban_plugin_descriptor {
    size_t struct_size; /* sizeof(kanban_plugin_descriptor) as compiled */
    uint32_t abi_major; /* KANBAN_ABI_MAJOR as compiled */
    uint32_t abi_minor; /* KANBAN_ABI_MINOR as compiled */
    const char* name;    /* plugin name, e.g. "payment"; static string */
    const char* version; /* plugin version, e.g. "1.0.0"; static string */

    /**
     * Creates an instance. `settings_json` is the domain's [domain.settings]
     * table as a NUL-terminated JSON object ("{}" when absent), valid during
     * the call. On failure returns NULL and writes a NUL-terminated message
     * into `error_buf` (capacity `error_len`, at least 256).
     */
    void* (*create)(const char* settings_json, const kanban_host_api* host, char* error_buf,
                    size_t error_len);

    /** Handles one item (see kanban_result). Called concurrently. */
    void (*handle)(void* instance, const kanban_work_item* item, kanban_context* ctx,
                   kanban_result* result);

    /** Destroys an instance created by create(); joins the plugin's threads. */
    void (*destroy)(void* instance);
} kanban_plugin_descriptor;

/** Signature of the entry point. */
typedef const kanban_plugin_descriptor* (*kanban_plugin_entry_fn)(void);

#ifdef __cplusplus
} /* extern "C" */
#endif

#endif /* KANBAN_PLUGIN_H */
