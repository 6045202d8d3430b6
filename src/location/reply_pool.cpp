#include "reply_pool.h"

#include <cstdlib>
#include <cstring>

#include <hiredis/hiredis.h>

namespace sipr::location::detail {

namespace {

constexpr std::size_t kClasses = 3;
constexpr std::size_t kClassSize[kClasses] = {64, 256, 1024};
constexpr uint32_t kMalloced = kClasses;  // the class of a block too large for any list

// Every block starts with this header; the payload follows at 16 bytes (malloc's alignment).
struct alignas(16) Block {
    Block* next;
    uint32_t cls;
};
static_assert(sizeof(Block) == 16);

struct Pool {
    Block* head[kClasses] = {};
    std::size_t count[kClasses] = {};
    uint64_t fresh = 0;
    Pool() noexcept;
    ~Pool();
};

// Trivially destructible, so it can be read after `pool` is gone (a block freed during the
// thread's exit, after its Pool's destructor ran).
thread_local bool pool_alive = false;
thread_local Pool pool;

Pool::Pool() noexcept {
    pool_alive = true;
}

Pool::~Pool() {
    pool_alive = false;
    for (std::size_t c = 0; c < kClasses; ++c) {
        while (head[c] != nullptr) {
            Block* b = head[c];
            head[c] = b->next;
            std::free(b);
        }
        count[c] = 0;
    }
}

void* take(std::size_t size) noexcept {
    uint32_t cls = 0;
    while (cls < kClasses && size > kClassSize[cls]) ++cls;
    Block* b = nullptr;
    if (cls == kMalloced) {
        b = static_cast<Block*>(std::malloc(sizeof(Block) + size));
    } else {
        Pool& p = pool;  // its first use on this thread constructs it
        if (p.head[cls] != nullptr) {
            b = p.head[cls];
            p.head[cls] = b->next;
            --p.count[cls];
        } else {
            b = static_cast<Block*>(std::malloc(sizeof(Block) + kClassSize[cls]));
            if (b != nullptr) ++p.fresh;
        }
    }
    if (b == nullptr) return nullptr;  // hiredis reports "out of memory"
    b->next = nullptr;
    b->cls = cls;
    return b + 1;
}

void give_back(void* payload) noexcept {
    if (payload == nullptr) return;
    Block* b = static_cast<Block*>(payload) - 1;
    // A thread that never took a block has no Pool yet and does not get one here.
    if (b->cls == kMalloced || !pool_alive || pool.count[b->cls] >= kKeepPerClass) {
        std::free(b);
        return;
    }
    b->next = pool.head[b->cls];
    pool.head[b->cls] = b;
    ++pool.count[b->cls];
}

redisReply* new_reply(int type) noexcept {
    auto* r = static_cast<redisReply*>(take(sizeof(redisReply)));
    if (r == nullptr) return nullptr;
    std::memset(r, 0, sizeof *r);
    r->type = type;
    return r;
}

void free_object(void* obj) noexcept;

// As hiredis's own functions do: a child puts itself into its parent's element vector.
void link(const redisReadTask* task, redisReply* r) noexcept {
    if (task->parent != nullptr) {
        auto* parent = static_cast<redisReply*>(task->parent->obj);
        parent->element[task->idx] = r;
    }
}

void* create_string(const redisReadTask* task, char* str, size_t len) noexcept {
    redisReply* r = new_reply(task->type);
    if (r == nullptr) return nullptr;
    auto* buf = static_cast<char*>(take(len + 1));
    if (buf == nullptr) {
        free_object(r);
        return nullptr;
    }
    std::memcpy(buf, str, len);
    buf[len] = '\0';
    r->str = buf;
    r->len = len;
    link(task, r);
    return r;
}

void* create_array(const redisReadTask* task, int elements) noexcept {
    redisReply* r = new_reply(REDIS_REPLY_ARRAY);
    if (r == nullptr) return nullptr;
    if (elements > 0) {
        const std::size_t bytes = static_cast<std::size_t>(elements) * sizeof(redisReply*);
        r->element = static_cast<redisReply**>(take(bytes));
        if (r->element == nullptr) {
            free_object(r);
            return nullptr;
        }
        std::memset(r->element, 0, bytes);
        r->elements = static_cast<std::size_t>(elements);
    }
    link(task, r);
    return r;
}

void* create_integer(const redisReadTask* task, long long value) noexcept {
    redisReply* r = new_reply(REDIS_REPLY_INTEGER);
    if (r == nullptr) return nullptr;
    r->integer = value;
    link(task, r);
    return r;
}

void* create_nil(const redisReadTask* task) noexcept {
    redisReply* r = new_reply(REDIS_REPLY_NIL);
    if (r == nullptr) return nullptr;
    link(task, r);
    return r;
}

void free_object(void* obj) noexcept {
    auto* r = static_cast<redisReply*>(obj);
    if (r == nullptr) return;
    if (r->type == REDIS_REPLY_ARRAY && r->element != nullptr) {
        for (std::size_t i = 0; i < r->elements; ++i) free_object(r->element[i]);
        give_back(r->element);
    } else if (r->type == REDIS_REPLY_STRING || r->type == REDIS_REPLY_STATUS ||
               r->type == REDIS_REPLY_ERROR) {
        give_back(r->str);
    }
    give_back(r);
}

redisReplyObjectFunctions functions = {create_string, create_array, create_integer, create_nil,
                                       free_object};

}  // namespace

redisReplyObjectFunctions* pooled_reply_functions() noexcept {
    return &functions;
}

uint64_t reply_pool_fresh_blocks() noexcept {
    return pool.fresh;
}

std::size_t reply_pool_free_blocks() noexcept {
    std::size_t n = 0;
    for (std::size_t c : pool.count) n += c;
    return n;
}

}  // namespace sipr::location::detail
