#pragma once
// hiredis's reply objects taken from per-thread free lists instead of malloc (the hot path's rule:
// no heap allocation per request once warm). hiredis 0.14 builds each reply as a tree of
// redisReply objects, with a string buffer per bulk string and an element vector per array,
// through the reader's redisReplyObjectFunctions; the functions here build the same tree, with
// the same layout and linking, so every reader of a redisReply is unaffected.
//
// - Blocks come in three sizes (64, 256 and 1024 bytes of payload); a larger request goes to
//   malloc and back to free. A freed block goes back to the free list of the thread that frees it
//   (each thread keeps at most kKeepPerClass per size), so no list is ever shared between threads.
// - hiredis frees only the root of a reply tree (after its callback, or a partial reply when the
//   reader fails or the context is freed); free_object() frees the whole tree, as
//   freeReplyObject does.
// - A thread's free lists are released when the thread ends; a block freed after that goes to
//   free().
//
// Only the hiredis async contexts of RedisClient use these functions; synchronous contexts
// (start-up checks, Sentinel queries) keep hiredis's defaults and freeReplyObject.
#include <cstddef>
#include <cstdint>

#include <hiredis/read.h>

namespace sipr::location::detail {

inline constexpr std::size_t kKeepPerClass = 4096;

// The functions to install in a redisReader (reader->fn).
[[nodiscard]] redisReplyObjectFunctions* pooled_reply_functions() noexcept;

// For tests: blocks this thread has taken from malloc (not from its free lists) so far, and
// blocks on its free lists now.
[[nodiscard]] uint64_t reply_pool_fresh_blocks() noexcept;
[[nodiscard]] std::size_t reply_pool_free_blocks() noexcept;

}  // namespace sipr::location::detail
