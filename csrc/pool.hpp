// A process-wide cache of large work blocks, so that repeated solves do not pay the kernel
// for fresh memory.  Plain C++17, no Python types.
//
// Why: every large allocation (above glibc's mmap threshold, at most 32 MiB) is a fresh mmap
// whose pages the kernel zeroes one 4 KiB page fault at a time on first touch, and freeing it
// unmaps it again.  A solve on a 2048^2 map allocates about 0.4 GB of work arrays; measured
// (perf, one thread), zeroing and faulting those pages took about a third of the time of a
// repeated `integrate` call, and grows faster than N once the arrays leave the caches.  Blocks
// of at least kPoolMinBytes are therefore kept here when freed and handed out again to a
// request of the same size class, already mapped.
//
// Bounds: at most `limit()` bytes are kept (default kPoolDefaultLimit; set_limit(0) turns the
// cache off and frees it); when a release would exceed it, the least recently released blocks
// are freed first.  A block serves a request of `n` bytes only if it holds at most 2n bytes.
// Thread-safe (one mutex; blocks are few and large).  The contents of a reused block are
// undefined, like malloc's: every user initialises what it reads.
//
// Huge pages: blocks of at least kPoolHugeBytes are mapped directly (mmap), start on a 2 MiB
// boundary and are marked MADV_HUGEPAGE (Linux), so that transparent huge pages back them where
// the system allows it (transparent_hugepage = always or madvise).  One fault then maps 2 MiB
// instead of 4 KiB, and the level-0 passes of a large solve, which stream tens of megabytes
// per pass, miss the TLB 512 times less often (each miss is a nested page walk under a VM).
// Elsewhere (or where the kernel declines) they are ordinary pages.
#pragma once

#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <list>
#include <mutex>
#include <new>
#include <utility>
#include <vector>

#if defined(__linux__)
#include <sys/mman.h>
#define MONOHEAD_POOL_MMAP 1
#endif

namespace monohead {

constexpr std::size_t kPoolMinBytes = std::size_t(1) << 20;          // smaller: plain new/delete
constexpr std::size_t kPoolDefaultLimit = std::size_t(1) << 30;      // 1 GiB kept at most
constexpr std::size_t kPoolAlign = 64;
constexpr std::size_t kPoolHugeBytes = std::size_t(2) << 20;  // from here: own mapping, huge pages
constexpr std::size_t kHugePage = std::size_t(2) << 20;

class BlockPool {
   public:
    static BlockPool& instance() {
        static BlockPool* pool = new BlockPool();  // never destroyed: usable until process exit
        return *pool;
    }

    void* acquire(std::size_t bytes) {
        const std::size_t want = round(bytes);
        {
            std::lock_guard<std::mutex> lock(mu_);
            auto best = free_.end();
            for (auto it = free_.begin(); it != free_.end(); ++it)
                if (it->second >= want && it->second <= 2 * want && (best == free_.end() || it->second < best->second))
                    best = it;
            if (best != free_.end()) {
                void* p = best->first;
                cached_ -= best->second;
                sizes_.push_back({p, best->second});
                free_.erase(best);
                return p;
            }
        }
        void* p = allocate_block(want);
        std::lock_guard<std::mutex> lock(mu_);
        sizes_.push_back({p, want});
        return p;
    }

    void release(void* p) {
        if (!p) return;
        std::list<std::pair<void*, std::size_t>> evicted;
        {
            std::lock_guard<std::mutex> lock(mu_);
            std::size_t size = 0;
            for (auto it = sizes_.begin(); it != sizes_.end(); ++it)
                if (it->first == p) {
                    size = it->second;
                    sizes_.erase(it);
                    break;
                }
            if (size > limit_) {
                evicted.push_back({p, size});
            } else {
                free_.push_back({p, size});  // most recent at the back
                cached_ += size;
                while (cached_ > limit_) {
                    cached_ -= free_.front().second;
                    evicted.splice(evicted.end(), free_, free_.begin());
                }
            }
        }
        for (auto& e : evicted) free_block(e.first, e.second);
    }

    // Bytes kept for reuse now.
    std::size_t cached() {
        std::lock_guard<std::mutex> lock(mu_);
        return cached_;
    }
    std::size_t limit() {
        std::lock_guard<std::mutex> lock(mu_);
        return limit_;
    }
    // Sets the most bytes kept (0: none) and frees what exceeds it; returns the former limit.
    std::size_t set_limit(std::size_t bytes) {
        std::list<std::pair<void*, std::size_t>> evicted;
        std::size_t old;
        {
            std::lock_guard<std::mutex> lock(mu_);
            old = limit_;
            limit_ = bytes;
            while (cached_ > limit_) {
                cached_ -= free_.front().second;
                evicted.splice(evicted.end(), free_, free_.begin());
            }
        }
        for (auto& e : evicted) free_block(e.first, e.second);
        return old;
    }

   private:
    BlockPool() = default;
    static std::size_t round(std::size_t b) { return (b + 4095) / 4096 * 4096; }

    // A block of `bytes` (a multiple of 4096): small ones from the heap, large ones (Linux) a
    // mapping of their own that starts on a 2 MiB boundary, advised to use huge pages.
    static void* allocate_block(std::size_t bytes) {
#ifdef MONOHEAD_POOL_MMAP
        if (bytes >= kPoolHugeBytes) {
            const std::size_t span = bytes + kHugePage;
            void* raw = mmap(nullptr, span, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
            if (raw == MAP_FAILED) throw std::bad_alloc();
            const auto a = reinterpret_cast<std::uintptr_t>(raw);
            const std::uintptr_t start = (a + kHugePage - 1) / kHugePage * kHugePage;
            const std::size_t head = start - a, tail = span - head - bytes;
            if (head) munmap(raw, head);
            if (tail) munmap(reinterpret_cast<void*>(start + bytes), tail);
            void* p = reinterpret_cast<void*>(start);
            (void)madvise(p, bytes, MADV_HUGEPAGE);  // a hint: failure leaves ordinary pages
            return p;
        }
#endif
        void* p = std::aligned_alloc(kPoolAlign, bytes);
        if (!p) throw std::bad_alloc();
        return p;
    }
    static void free_block(void* p, std::size_t bytes) {
#ifdef MONOHEAD_POOL_MMAP
        if (bytes >= kPoolHugeBytes) {
            munmap(p, bytes);
            return;
        }
#endif
        (void)bytes;
        std::free(p);
    }
    std::mutex mu_;
    std::list<std::pair<void*, std::size_t>> free_;   // cached blocks, least recently released first
    std::list<std::pair<void*, std::size_t>> sizes_;  // blocks in use and their sizes
    std::size_t cached_ = 0;
    std::size_t limit_ = kPoolDefaultLimit;
};

// std::allocator replacement: blocks of at least kPoolMinBytes come from BlockPool.
template <class T>
struct PoolAllocator {
    using value_type = T;
    PoolAllocator() noexcept = default;
    template <class U>
    PoolAllocator(const PoolAllocator<U>&) noexcept {}
    T* allocate(std::size_t n) {
        const std::size_t bytes = n * sizeof(T);
        if (bytes >= kPoolMinBytes) return static_cast<T*>(BlockPool::instance().acquire(bytes));
        return static_cast<T*>(::operator new(bytes));
    }
    void deallocate(T* p, std::size_t n) noexcept {
        if (n * sizeof(T) >= kPoolMinBytes)
            BlockPool::instance().release(p);
        else
            ::operator delete(p);
    }
    template <class U>
    bool operator==(const PoolAllocator<U>&) const noexcept {
        return true;
    }
    template <class U>
    bool operator!=(const PoolAllocator<U>&) const noexcept {
        return false;
    }
};

// A std::vector whose large buffers come from the pool.
template <class T>
using pvector = std::vector<T, PoolAllocator<T>>;

// An uninitialised array of n T from the pool (or the heap when small), freed on destruction.
template <class T>
class PoolArray {
   public:
    PoolArray() = default;
    explicit PoolArray(std::size_t n) : n_(n), p_(PoolAllocator<T>().allocate(n == 0 ? 1 : n)) {}
    PoolArray(const PoolArray&) = delete;
    PoolArray& operator=(const PoolArray&) = delete;
    PoolArray(PoolArray&& o) noexcept : n_(std::exchange(o.n_, 0)), p_(std::exchange(o.p_, nullptr)) {}
    PoolArray& operator=(PoolArray&& o) noexcept {
        if (this != &o) {
            reset();
            n_ = std::exchange(o.n_, 0);
            p_ = std::exchange(o.p_, nullptr);
        }
        return *this;
    }
    ~PoolArray() { reset(); }
    T* get() const { return p_; }
    std::size_t size() const { return n_; }

   private:
    void reset() {
        if (p_) PoolAllocator<T>().deallocate(p_, n_ == 0 ? 1 : n_);
        p_ = nullptr;
        n_ = 0;
    }
    std::size_t n_ = 0;
    T* p_ = nullptr;
};

}  // namespace monohead
