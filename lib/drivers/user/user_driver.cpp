// SPDX-License-Identifier: Apache-2.0
// A caller's driver, given as rolayer_driver_ops, behind the same rolayer::Driver interface as
// the built-in drivers. Callback failures become Error(Code::User) with the callback's value
// and message; exceptions never cross into the caller's code.
#include <exception>
#include <string>
#include <vector>

#include "drivers/user/user_driver.h"

#include "core/error.h"

struct rolayer_driver_error {
  std::string message;
};

extern "C" ROLAYER_API void rolayer_driver_error_set(rolayer_driver_error* derr, const char* message) {
  if (!derr) return;
  try {
    derr->message = message ? message : "";
  } catch (...) {
  }
}

namespace rolayer {
namespace {

[[noreturn]] void callback_failed(const char* op, int rc, const rolayer_driver_error& derr, const std::string& id) {
  std::string msg = std::string("driver callback ") + op + " failed for layer " + id + " (returned " +
                    std::to_string(rc) + ")";
  if (!derr.message.empty()) msg += ": " + derr.message;
  throw Error(Code::User, msg).with_user_code(rc);
}

struct ReadTrampoline {
  ByteSource* src;
  std::exception_ptr failure;
  static int read(void* buf, size_t cap, size_t* n_read, void* ud) noexcept {
    auto* self = static_cast<ReadTrampoline*>(ud);
    *n_read = 0;
    if (self->failure) return -1;
    try {
      *n_read = self->src->read(static_cast<uint8_t*>(buf), cap);
      return 0;
    } catch (...) {
      self->failure = std::current_exception();
      return -1;
    }
  }
};

class UserDriver;

class UserDiff : public ByteSource {
 public:
  UserDiff(const rolayer_driver_ops& ops, void* ud, void* stream, std::string id)
      : ops_(ops), ud_(ud), stream_(stream), id_(std::move(id)) {}
  ~UserDiff() override {
    if (stream_ && ops_.diff_close) ops_.diff_close(stream_, ud_);
  }
  size_t read(uint8_t* buf, size_t cap) override {
    rolayer_driver_error derr;
    size_t n = 0;
    int rc = ops_.diff_read(stream_, buf, cap, &n, &derr, ud_);
    if (rc != 0) callback_failed("diff_read", rc, derr, id_);
    if (n > cap) throw Error(Code::User, "driver callback diff_read reported more bytes than the buffer holds");
    return n;
  }

 private:
  const rolayer_driver_ops& ops_;
  void* ud_;
  void* stream_;
  std::string id_;
};

class UserPayload : public PayloadFile {
 public:
  UserPayload(const rolayer_driver_ops& ops, void* ud, void* p, std::string path)
      : ops_(ops), ud_(ud), p_(p), path_(std::move(path)) {}
  ~UserPayload() override {
    if (p_ && ops_.payload_close) ops_.payload_close(p_, ud_);
  }
  size_t pread(uint64_t offset, uint8_t* buf, size_t cap) override {
    rolayer_driver_error derr;
    size_t n = 0;
    int rc = ops_.payload_read(p_, offset, buf, cap, &n, &derr, ud_);
    if (rc != 0) {
      try {
        callback_failed("payload_read", rc, derr, path_);
      } catch (Error& e) {
        e.with_path(path_);
        throw;
      }
    }
    if (n > cap) throw Error(Code::User, "driver callback payload_read reported more bytes than the buffer holds");
    return n;
  }

 private:
  const rolayer_driver_ops& ops_;
  void* ud_;
  void* p_;
  std::string path_;
};

class UserSession : public PayloadSession {
 public:
  UserSession(const rolayer_driver_ops& ops, void* ud, std::string id) : ops_(ops), ud_(ud), id_(std::move(id)) {}
  std::unique_ptr<PayloadFile> open(const std::string& path) override {
    rolayer_driver_error derr;
    void* p = nullptr;
    int rc = ops_.payload_open(&p, id_.c_str(), path.c_str(), &derr, ud_);
    if (rc != 0) {
      try {
        callback_failed("payload_open", rc, derr, id_);
      } catch (Error& e) {
        e.with_path(path);
        throw;
      }
    }
    return std::make_unique<UserPayload>(ops_, ud_, p, path);
  }

 private:
  const rolayer_driver_ops& ops_;
  void* ud_;
  std::string id_;
};

class UserDriver : public Driver {
 public:
  UserDriver(const rolayer_driver_ops& ops, void* ud) : ops_(ops), ud_(ud), name_(ops.name) {}
  ~UserDriver() override {
    if (ops_.destroy) ops_.destroy(ud_);
  }
  std::string name() const override { return name_; }
  DriverCaps caps() const override { return DriverCaps{(ops_.capabilities & ROLAYER_DRIVER_CAP_EXACT_DIFFS) != 0}; }
  std::vector<std::string> init(const std::string&) override { return {}; }

  void create(const std::string& id, const std::string& parent) override {
    rolayer_driver_error derr;
    int rc = ops_.create(id.c_str(), parent.empty() ? nullptr : parent.c_str(), &derr, ud_);
    if (rc != 0) callback_failed("create", rc, derr, id);
  }
  void remove(const std::string& id) override {
    rolayer_driver_error derr;
    int rc = ops_.remove(id.c_str(), &derr, ud_);
    if (rc != 0) callback_failed("remove", rc, derr, id);
  }
  int64_t apply_diff(const std::string& id, const std::string& parent, ByteSource& tar) override {
    rolayer_driver_error derr;
    ReadTrampoline tr{&tar, nullptr};
    int64_t size = 0;
    int rc = ops_.apply_diff(id.c_str(), parent.empty() ? nullptr : parent.c_str(), &ReadTrampoline::read, &tr,
                             &size, &derr, ud_);
    if (tr.failure) std::rethrow_exception(tr.failure);  // the input's own error comes first
    if (rc != 0) callback_failed("apply_diff", rc, derr, id);
    return size;
  }
  std::unique_ptr<ByteSource> diff(const std::string& id, const std::string& ancestor) override {
    rolayer_driver_error derr;
    void* stream = nullptr;
    int rc = ops_.diff_open(&stream, id.c_str(), ancestor.empty() ? nullptr : ancestor.c_str(), &derr, ud_);
    if (rc != 0) callback_failed("diff_open", rc, derr, id);
    return std::make_unique<UserDiff>(ops_, ud_, stream, id);
  }
  std::unique_ptr<PayloadSession> payloads(const std::string& id) override {
    if (!ops_.payload_open || !ops_.payload_read)
      throw Error(Code::Unsupported, "driver \"" + name_ + "\" gives no payload access");
    return std::make_unique<UserSession>(ops_, ud_, id);
  }
  std::vector<std::pair<std::string, std::string>> metadata(const std::string& id) override {
    std::vector<std::pair<std::string, std::string>> out;
    if (!ops_.metadata) return out;
    struct Ctx {
      std::vector<std::pair<std::string, std::string>>* out;
      bool failed = false;
    } ctx{&out};
    auto emit = [](const char* k, const char* v, void* d) noexcept -> int {
      auto* c = static_cast<Ctx*>(d);
      try {
        c->out->emplace_back(k ? k : "", v ? v : "");
        return 0;
      } catch (...) {
        c->failed = true;
        return 1;
      }
    };
    rolayer_driver_error derr;
    int rc = ops_.metadata(id.c_str(), emit, &ctx, &derr, ud_);
    if (ctx.failed) throw std::bad_alloc();
    if (rc != 0) callback_failed("metadata", rc, derr, id);
    return out;
  }

 private:
  rolayer_driver_ops ops_;
  void* ud_;
  std::string name_;
};

}  // namespace
}  // namespace rolayer

std::unique_ptr<rolayer::Driver> rolayer::make_user_driver(const rolayer_driver_ops* ops, void* user_data) {
  using rolayer::Code;
  using rolayer::Error;
  if (ops->version != ROLAYER_DRIVER_OPS_VERSION)
    throw Error(Code::Unsupported, "rolayer_driver_ops.version " + std::to_string(ops->version) +
                                       " is not supported (this library speaks version " +
                                       std::to_string(ROLAYER_DRIVER_OPS_VERSION) + ")");
  const char* missing = nullptr;
  if (!ops->name || !*ops->name) missing = "rolayer_driver_ops.name must be set";
  else if (!ops->create || !ops->remove || !ops->apply_diff || !ops->diff_open || !ops->diff_read)
    missing = "rolayer_driver_ops needs create, remove, apply_diff, diff_open and diff_read";
  else if (!(ops->capabilities & ROLAYER_DRIVER_CAP_EXACT_DIFFS) && (!ops->payload_open || !ops->payload_read))
    missing = "a driver without ROLAYER_DRIVER_CAP_EXACT_DIFFS needs payload_open and payload_read";
  if (missing) throw Error(Code::Inval, missing);  // the caller (lib/capi) still calls destroy
  return std::make_unique<rolayer::UserDriver>(*ops, user_data);
}
