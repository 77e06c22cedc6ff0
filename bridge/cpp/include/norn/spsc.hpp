// Norn bridge client: a bounded, lock-free single-producer single-consumer ring.
//
// One thread pushes, one thread pops; neither ever blocks or allocates after construction.
// The game thread and the network thread exchange work through two of these.
#pragma once

#include <atomic>
#include <cstddef>
#include <memory>
#include <utility>

namespace norn {

template <class T>
class SpscRing {
public:
    /// A ring holding up to ``capacity`` items (rounded up to a power of two).
    explicit SpscRing(std::size_t capacity) {
        std::size_t n = 2;
        while (n < capacity) n <<= 1;
        mask_ = n - 1;
        slots_ = std::make_unique<T[]>(n);
    }
    SpscRing(const SpscRing&) = delete;
    SpscRing& operator=(const SpscRing&) = delete;

    std::size_t capacity() const { return mask_ + 1; }

    /// Producer: move ``item`` in; false (and ``item`` untouched) when the ring is full.
    bool try_push(T& item) {
        const std::size_t head = head_.load(std::memory_order_relaxed);
        if (head - tail_cache_ > mask_) {
            tail_cache_ = tail_.load(std::memory_order_acquire);
            if (head - tail_cache_ > mask_) return false;
        }
        slots_[head & mask_] = std::move(item);
        head_.store(head + 1, std::memory_order_release);
        return true;
    }
    bool try_push(T&& item) { return try_push(item); }

    /// Consumer: the oldest item, or nullptr when empty. Valid until ``pop``.
    T* front() {
        const std::size_t tail = tail_.load(std::memory_order_relaxed);
        if (tail == head_cache_) {
            head_cache_ = head_.load(std::memory_order_acquire);
            if (tail == head_cache_) return nullptr;
        }
        return &slots_[tail & mask_];
    }

    /// Consumer: drop the item ``front`` returned.
    void pop() {
        const std::size_t tail = tail_.load(std::memory_order_relaxed);
        slots_[tail & mask_] = T();
        tail_.store(tail + 1, std::memory_order_release);
    }

    /// Consumer: move the oldest item out; false when empty.
    bool try_pop(T& out) {
        T* f = front();
        if (f == nullptr) return false;
        out = std::move(*f);
        pop();
        return true;
    }

    /// Items in the ring now (approximate while the other side works).
    std::size_t size() const {
        return head_.load(std::memory_order_acquire) - tail_.load(std::memory_order_acquire);
    }

private:
    static constexpr std::size_t kLine = 64;  // a cache line on x86-64 and most ARM
    std::unique_ptr<T[]> slots_;
    std::size_t mask_ = 0;
    alignas(kLine) std::atomic<std::size_t> head_{0};  // written by the producer
    std::size_t tail_cache_ = 0;                        // producer's view of tail
    alignas(kLine) std::atomic<std::size_t> tail_{0};  // written by the consumer
    std::size_t head_cache_ = 0;                        // consumer's view of head
};

}  // namespace norn
