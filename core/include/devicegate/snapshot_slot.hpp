#pragma once
// The lock-free hand-over from one writer thread to the broker thread's readers: the CRL set,
// the deny-list. Readers never wait on the writer's I/O; the last reader of a replaced value
// frees it, so writers retire large values themselves (see crl_watcher::retired_).
#include <atomic>
#include <memory>

namespace devicegate {

/// An atomically swappable pointer to an immutable value: one writer thread publishes,
/// any thread loads without waiting on I/O.
template <class T>
class snapshot_slot {
public:
    std::shared_ptr<const T> load() const noexcept { return ptr_.load(std::memory_order_acquire); }
    void store(std::shared_ptr<const T> next) noexcept { ptr_.store(std::move(next), std::memory_order_release); }

private:
    std::atomic<std::shared_ptr<const T>> ptr_;
};

}  // namespace devicegate
