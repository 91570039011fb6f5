// Thin RAII wrappers over UCX's ucp API (UCX 1.13), just what the storage tier needs:
// contexts with a chosen transport list, workers, memory registration with packed remote
// keys, and endpoints that issue one-sided gets and puts whose completion is tracked in
// batches. The same code runs over RDMA (rc/ud/dc), TCP and shared memory (posix, sysv,
// cma); UCX picks the transport from the context's list and the peer's address.
//
// Threading: a Worker and everything made from it (endpoints, batches) is used by one
// thread at a time (UCS_THREAD_MODE_SINGLE); callers serialise.
#ifndef APRUNTIME_KVSTORE_UCX_UCX_H_
#define APRUNTIME_KVSTORE_UCX_UCX_H_

#include <ucp/api/ucp.h>

#include <cstddef>
#include <cstdint>
#include <memory>
#include <string>
#include <string_view>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/time/time.h"

namespace apr::kvstore::ucx {

// A UCX status as an absl::Status (Unavailable for connection failures, DeadlineExceeded
// for timeouts, ...), the message naming `what` and UCX's own words.
absl::Status FromUcs(ucs_status_t status, std::string_view what);

struct ContextOptions {
  // UCX_TLS for this context ("tcp", "sm,self", "rc,ud,sm,self"); empty keeps UCX's
  // default or the environment's UCX_TLS.
  std::string tls;
  // UCX_NET_DEVICES ("lo" keeps TCP on the loopback interface); empty: UCX's default.
  std::string net_devices;
  // Whether workers can sleep on an event fd (UCP_FEATURE_WAKEUP).
  bool wakeup = false;
};

class Context {
 public:
  static absl::StatusOr<std::unique_ptr<Context>> Create(const ContextOptions& options);
  ~Context();
  Context(const Context&) = delete;
  Context& operator=(const Context&) = delete;

  ucp_context_h get() const { return context_; }
  bool wakeup() const { return wakeup_; }

 private:
  Context(ucp_context_h c, bool wakeup) : context_(c), wakeup_(wakeup) {}
  ucp_context_h context_;
  bool wakeup_;
};

// Host memory registered with a context. The memory must outlive the registration.
class MemoryMap {
 public:
  static absl::StatusOr<std::unique_ptr<MemoryMap>> Map(const Context& context, void* address,
                                                        size_t length);
  ~MemoryMap();
  MemoryMap(const MemoryMap&) = delete;
  MemoryMap& operator=(const MemoryMap&) = delete;

  ucp_mem_h handle() const { return memh_; }
  void* address() const { return address_; }
  size_t length() const { return length_; }
  // The remote key a peer unpacks to read or write this memory (Endpoint::UnpackRkey).
  absl::StatusOr<std::string> PackRkey() const;

 private:
  MemoryMap(ucp_context_h c, ucp_mem_h m, void* a, size_t n)
      : context_(c), memh_(m), address_(a), length_(n) {}
  ucp_context_h context_;
  ucp_mem_h memh_;
  void* address_;
  size_t length_;
};

class Worker {
 public:
  static absl::StatusOr<std::unique_ptr<Worker>> Create(const Context& context);
  ~Worker();
  Worker(const Worker&) = delete;
  Worker& operator=(const Worker&) = delete;

  ucp_worker_h get() const { return worker_; }
  // The address a peer passes to Endpoint::Connect.
  absl::StatusOr<std::string> Address() const;
  // Runs UCX's progress engine once; returns the number of events processed.
  unsigned Progress() { return ucp_worker_progress(worker_); }
  // Sleeps until the worker has something to do or `timeout` passes (needs a context
  // with wakeup; otherwise sleeps briefly). Call only after Progress() returned 0.
  void WaitForEvents(absl::Duration timeout);

 private:
  Worker(ucp_worker_h w, int efd) : worker_(w), efd_(efd) {}
  ucp_worker_h worker_;
  int efd_;  // -1 without wakeup
};

// Completion of a group of non-blocking operations. Must stay alive (and at the same
// address) until done(), or until the endpoint that started them is closed and its
// worker destroyed (UCX completes the operations of a failed endpoint only then).
class OpBatch {
 public:
  OpBatch() = default;
  OpBatch(const OpBatch&) = delete;
  OpBatch& operator=(const OpBatch&) = delete;

  bool done() const { return pending_ == 0; }
  int64_t pending() const { return pending_; }
  // The first error of any operation (OK while none failed).
  ucs_status_t status() const { return status_; }

 private:
  friend class Endpoint;
  static void OnComplete(void* request, ucs_status_t status, void* user_data);
  void Track(ucs_status_ptr_t request);
  int64_t pending_ = 0;
  ucs_status_t status_ = UCS_OK;
};

// A connection from a worker to a peer worker, with the peer's memory key for one-sided
// access to [remote_base, remote_base + remote_length). Peer failure (a crashed or killed
// process, a broken link) is reported through failed() and fails outstanding operations;
// nothing waits forever.
class Endpoint {
 public:
  // With `peer_failure_detection` UCX watches the peer (UCP_ERR_HANDLING_MODE_PEER);
  // UCX 1.13's shared-memory transports (posix, sysv) cannot, and connecting with it over
  // them fails with Unreachable/FailedPrecondition. Without it, a dead peer shows up as
  // failed operations (cma reads of a gone process) or as Wait's deadline.
  static absl::StatusOr<std::unique_ptr<Endpoint>> Connect(
      Worker& worker, std::string_view peer_address, std::string_view packed_rkey,
      uint64_t remote_base, uint64_t remote_length, bool peer_failure_detection);
  // Closes the connection, cancelling what is outstanding (their batches complete with
  // UCS_ERR_CANCELED while this runs).
  ~Endpoint();
  Endpoint(const Endpoint&) = delete;
  Endpoint& operator=(const Endpoint&) = delete;

  // One-sided read of `length` bytes at remote_base + `offset` into `local`. `local_memh`
  // (may be null) is the registration covering `local`, which saves UCX a lookup.
  absl::Status Get(void* local, size_t length, uint64_t offset, ucp_mem_h local_memh,
                   OpBatch* batch);
  // One-sided write.
  absl::Status Put(const void* local, size_t length, uint64_t offset, ucp_mem_h local_memh,
                   OpBatch* batch);
  // Completes when every operation issued before it is complete at the peer (puts
  // visible to later gets).
  absl::Status Flush(OpBatch* batch);

  // Progresses the worker until `batch` is done, the peer fails, or `timeout` passes:
  // OK, Unavailable (naming the peer failure or the operation error) or DeadlineExceeded.
  absl::Status Wait(OpBatch* batch, absl::Duration timeout);

  // UCS_OK while the peer is reachable; the failure status once the error handler ran.
  ucs_status_t failed() const { return failed_; }
  uint64_t remote_length() const { return remote_length_; }

 private:
  Endpoint(Worker& w) : worker_(w) {}
  static void OnError(void* arg, ucp_ep_h ep, ucs_status_t status);
  absl::Status CheckRange(size_t length, uint64_t offset) const;

  Worker& worker_;
  ucp_ep_h ep_ = nullptr;
  ucp_rkey_h rkey_ = nullptr;
  uint64_t remote_base_ = 0;
  uint64_t remote_length_ = 0;
  ucs_status_t failed_ = UCS_OK;
};

}  // namespace apr::kvstore::ucx

#endif  // APRUNTIME_KVSTORE_UCX_UCX_H_
