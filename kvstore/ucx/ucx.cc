#include "kvstore/ucx/ucx.h"

#include <poll.h>
#include <sched.h>
#include <unistd.h>

#include <string>
#include <utility>

#include "absl/strings/str_cat.h"
#include "base/status_macros.h"

namespace apr::kvstore::ucx {
namespace {

// Waits for a request from a *_nbx call that has no callback of ours (close, flush at
// teardown); gives up after `timeout` so that teardown never hangs.
ucs_status_t WaitRequest(ucp_worker_h worker, ucs_status_ptr_t request, absl::Duration timeout) {
  if (request == nullptr) return UCS_OK;
  if (UCS_PTR_IS_ERR(request)) return UCS_PTR_STATUS(request);
  const absl::Time deadline = absl::Now() + timeout;
  ucs_status_t status;
  while ((status = ucp_request_check_status(request)) == UCS_INPROGRESS) {
    if (ucp_worker_progress(worker) == 0 && absl::Now() > deadline) break;
  }
  ucp_request_free(request);
  return status;
}

}  // namespace

absl::Status FromUcs(ucs_status_t status, std::string_view what) {
  if (status == UCS_OK) return absl::OkStatus();
  const std::string msg = absl::StrCat(std::string(what), ": UCX ", ucs_status_string(status));
  switch (status) {
    case UCS_ERR_NO_MEMORY:
    case UCS_ERR_EXCEEDS_LIMIT:
      return absl::ResourceExhaustedError(msg);
    case UCS_ERR_INVALID_PARAM:
    case UCS_ERR_INVALID_ADDR:
      return absl::InvalidArgumentError(msg);
    case UCS_ERR_UNSUPPORTED:
    case UCS_ERR_UNREACHABLE:
    case UCS_ERR_NO_RESOURCE:
    case UCS_ERR_NO_DEVICE:
      return absl::FailedPreconditionError(msg);
    case UCS_ERR_TIMED_OUT:
      return absl::DeadlineExceededError(msg);
    case UCS_ERR_CANCELED:
      return absl::CancelledError(msg);
    case UCS_ERR_CONNECTION_RESET:
    case UCS_ERR_REJECTED:
    case UCS_ERR_IO_ERROR:
    case UCS_ERR_NOT_CONNECTED:
    default:
      return absl::UnavailableError(msg);
  }
}

absl::StatusOr<std::unique_ptr<Context>> Context::Create(const ContextOptions& options) {
  ucp_config_t* config = nullptr;
  if (ucs_status_t s = ucp_config_read(nullptr, nullptr, &config); s != UCS_OK) {
    return FromUcs(s, "reading the UCX configuration");
  }
  auto release = [&] { ucp_config_release(config); };
  if (!options.tls.empty()) {
    if (ucs_status_t s = ucp_config_modify(config, "TLS", options.tls.c_str()); s != UCS_OK) {
      release();
      return FromUcs(s, absl::StrCat("setting UCX_TLS to '", options.tls, "'"));
    }
  }
  if (!options.net_devices.empty()) {
    if (ucs_status_t s = ucp_config_modify(config, "NET_DEVICES", options.net_devices.c_str());
        s != UCS_OK) {
      release();
      return FromUcs(s, absl::StrCat("setting UCX_NET_DEVICES to '", options.net_devices, "'"));
    }
  }
  ucp_params_t params = {};
  params.field_mask = UCP_PARAM_FIELD_FEATURES | UCP_PARAM_FIELD_NAME;
  params.features = UCP_FEATURE_RMA | (options.wakeup ? UCP_FEATURE_WAKEUP : 0);
  params.name = "apr-kvstore";
  ucp_context_h context = nullptr;
  ucs_status_t s = ucp_init(&params, config, &context);
  release();
  if (s != UCS_OK) {
    return FromUcs(s, absl::StrCat("ucp_init (UCX_TLS '", options.tls, "')"));
  }
  return std::unique_ptr<Context>(new Context(context, options.wakeup));
}

Context::~Context() { ucp_cleanup(context_); }

absl::StatusOr<std::unique_ptr<MemoryMap>> MemoryMap::Map(const Context& context, void* address,
                                                          size_t length) {
  ucp_mem_map_params_t params = {};
  params.field_mask = UCP_MEM_MAP_PARAM_FIELD_ADDRESS | UCP_MEM_MAP_PARAM_FIELD_LENGTH;
  params.address = address;
  params.length = length;
  ucp_mem_h memh = nullptr;
  if (ucs_status_t s = ucp_mem_map(context.get(), &params, &memh); s != UCS_OK) {
    return FromUcs(s, absl::StrCat("registering ", length, " bytes with UCX (ucp_mem_map)"));
  }
  return std::unique_ptr<MemoryMap>(new MemoryMap(context.get(), memh, address, length));
}

MemoryMap::~MemoryMap() { ucp_mem_unmap(context_, memh_); }

absl::StatusOr<std::string> MemoryMap::PackRkey() const {
  void* buffer = nullptr;
  size_t size = 0;
  if (ucs_status_t s = ucp_rkey_pack(context_, memh_, &buffer, &size); s != UCS_OK) {
    return FromUcs(s, "packing the remote key (ucp_rkey_pack)");
  }
  std::string out(static_cast<const char*>(buffer), size);
  ucp_rkey_buffer_release(buffer);
  return out;
}

absl::StatusOr<std::unique_ptr<Worker>> Worker::Create(const Context& context) {
  ucp_worker_params_t params = {};
  params.field_mask = UCP_WORKER_PARAM_FIELD_THREAD_MODE;
  params.thread_mode = UCS_THREAD_MODE_SINGLE;
  ucp_worker_h worker = nullptr;
  if (ucs_status_t s = ucp_worker_create(context.get(), &params, &worker); s != UCS_OK) {
    return FromUcs(s, "ucp_worker_create");
  }
  int efd = -1;
  if (context.wakeup()) {
    if (ucs_status_t s = ucp_worker_get_efd(worker, &efd); s != UCS_OK) {
      ucp_worker_destroy(worker);
      return FromUcs(s, "ucp_worker_get_efd");
    }
  }
  return std::unique_ptr<Worker>(new Worker(worker, efd));
}

Worker::~Worker() { ucp_worker_destroy(worker_); }

absl::StatusOr<std::string> Worker::Address() const {
  ucp_address_t* address = nullptr;
  size_t length = 0;
  if (ucs_status_t s = ucp_worker_get_address(worker_, &address, &length); s != UCS_OK) {
    return FromUcs(s, "ucp_worker_get_address");
  }
  std::string out(reinterpret_cast<const char*>(address), length);
  ucp_worker_release_address(worker_, address);
  return out;
}

void Worker::WaitForEvents(absl::Duration timeout) {
  if (efd_ < 0) {
    usleep(static_cast<useconds_t>(std::min<int64_t>(absl::ToInt64Microseconds(timeout), 50)));
    return;
  }
  // Arm, then sleep: UCS_ERR_BUSY means events arrived between Progress() and here.
  if (ucp_worker_arm(worker_) == UCS_ERR_BUSY) return;
  pollfd p = {efd_, POLLIN, 0};
  poll(&p, 1, static_cast<int>(absl::ToInt64Milliseconds(timeout)));
}

void OpBatch::OnComplete(void* request, ucs_status_t status, void* user_data) {
  auto* b = static_cast<OpBatch*>(user_data);
  if (status != UCS_OK && b->status_ == UCS_OK) b->status_ = status;
  --b->pending_;
  ucp_request_free(request);
}

void OpBatch::Track(ucs_status_ptr_t request) {
  if (request == nullptr) return;  // completed in place
  if (UCS_PTR_IS_ERR(request)) {
    if (status_ == UCS_OK) status_ = UCS_PTR_STATUS(request);
    return;
  }
  ++pending_;
}

absl::StatusOr<std::unique_ptr<Endpoint>> Endpoint::Connect(
    Worker& worker, std::string_view peer_address, std::string_view packed_rkey,
    uint64_t remote_base, uint64_t remote_length, bool peer_failure_detection) {
  std::unique_ptr<Endpoint> e(new Endpoint(worker));
  ucp_ep_params_t params = {};
  params.field_mask = UCP_EP_PARAM_FIELD_REMOTE_ADDRESS | UCP_EP_PARAM_FIELD_ERR_HANDLING_MODE |
                      UCP_EP_PARAM_FIELD_ERR_HANDLER;
  params.address = reinterpret_cast<const ucp_address_t*>(peer_address.data());
  params.err_mode =
      peer_failure_detection ? UCP_ERR_HANDLING_MODE_PEER : UCP_ERR_HANDLING_MODE_NONE;
  params.err_handler.cb = &Endpoint::OnError;
  params.err_handler.arg = e.get();
  if (ucs_status_t s = ucp_ep_create(worker.get(), &params, &e->ep_); s != UCS_OK) {
    e->ep_ = nullptr;
    return FromUcs(s, "connecting to the storage node's UCX worker (ucp_ep_create)");
  }
  if (ucs_status_t s = ucp_ep_rkey_unpack(e->ep_, packed_rkey.data(), &e->rkey_); s != UCS_OK) {
    e->rkey_ = nullptr;
    return FromUcs(s, "unpacking the storage node's memory key (ucp_ep_rkey_unpack)");
  }
  e->remote_base_ = remote_base;
  e->remote_length_ = remote_length;
  return e;
}

Endpoint::~Endpoint() {
  // Close first (cancelling what is in flight, whose requests may use the key), then drop
  // the key.
  if (ep_ != nullptr) {
    ucp_request_param_t p = {};
    p.op_attr_mask = UCP_OP_ATTR_FIELD_FLAGS;
    p.flags = UCP_EP_CLOSE_FLAG_FORCE;
    WaitRequest(worker_.get(), ucp_ep_close_nbx(ep_, &p), absl::Seconds(5));
  }
  if (rkey_ != nullptr) ucp_rkey_destroy(rkey_);
}

void Endpoint::OnError(void* arg, ucp_ep_h, ucs_status_t status) {
  auto* e = static_cast<Endpoint*>(arg);
  if (e->failed_ == UCS_OK) e->failed_ = status;
}

absl::Status Endpoint::CheckRange(size_t length, uint64_t offset) const {
  if (failed_ != UCS_OK) return FromUcs(failed_, "the storage node's UCX endpoint failed earlier");
  if (offset > remote_length_ || length > remote_length_ - offset) {
    return absl::OutOfRangeError(absl::StrCat("remote access of ", length, " bytes at offset ",
                                              offset, " is outside the ", remote_length_,
                                              "-byte registered region"));
  }
  return absl::OkStatus();
}

absl::Status Endpoint::Get(void* local, size_t length, uint64_t offset, ucp_mem_h local_memh,
                           OpBatch* batch) {
  APR_RETURN_IF_ERROR(CheckRange(length, offset));
  ucp_request_param_t p = {};
  p.op_attr_mask = UCP_OP_ATTR_FIELD_CALLBACK | UCP_OP_ATTR_FIELD_USER_DATA;
  p.cb.send = &OpBatch::OnComplete;
  p.user_data = batch;
  if (local_memh != nullptr) {
    p.op_attr_mask |= UCP_OP_ATTR_FIELD_MEMH;
    p.memh = local_memh;
  }
  batch->Track(ucp_get_nbx(ep_, local, length, remote_base_ + offset, rkey_, &p));
  return absl::OkStatus();
}

absl::Status Endpoint::Put(const void* local, size_t length, uint64_t offset, ucp_mem_h local_memh,
                           OpBatch* batch) {
  APR_RETURN_IF_ERROR(CheckRange(length, offset));
  ucp_request_param_t p = {};
  p.op_attr_mask = UCP_OP_ATTR_FIELD_CALLBACK | UCP_OP_ATTR_FIELD_USER_DATA;
  p.cb.send = &OpBatch::OnComplete;
  p.user_data = batch;
  if (local_memh != nullptr) {
    p.op_attr_mask |= UCP_OP_ATTR_FIELD_MEMH;
    p.memh = local_memh;
  }
  batch->Track(ucp_put_nbx(ep_, local, length, remote_base_ + offset, rkey_, &p));
  return absl::OkStatus();
}

absl::Status Endpoint::Flush(OpBatch* batch) {
  if (failed_ != UCS_OK) return FromUcs(failed_, "the storage node's UCX endpoint failed earlier");
  ucp_request_param_t p = {};
  p.op_attr_mask = UCP_OP_ATTR_FIELD_CALLBACK | UCP_OP_ATTR_FIELD_USER_DATA;
  p.cb.send = &OpBatch::OnComplete;
  p.user_data = batch;
  batch->Track(ucp_ep_flush_nbx(ep_, &p));
  return absl::OkStatus();
}

absl::Status Endpoint::Wait(OpBatch* batch, absl::Duration timeout) {
  const absl::Time deadline = absl::Now() + timeout;
  int idle = 0;
  while (!batch->done()) {
    if (failed_ != UCS_OK) break;
    if (worker_.Progress() != 0) {
      idle = 0;
      continue;
    }
    // Check the clock every few idle rounds only; absl::Now() costs about as much as a
    // progress call.
    if (++idle % 64 == 0) {
      if (absl::Now() > deadline) {
        return absl::DeadlineExceededError(absl::StrCat(
            "UCX operations to the storage node did not complete within ",
            absl::FormatDuration(timeout), " (", batch->pending(), " still outstanding)"));
      }
      sched_yield();
    }
  }
  if (failed_ != UCS_OK) return FromUcs(failed_, "the storage node's UCX endpoint failed");
  if (batch->status() != UCS_OK) return FromUcs(batch->status(), "a UCX get/put failed");
  return absl::OkStatus();
}

}  // namespace apr::kvstore::ucx
