// One named check per scope: conditions are expected inside it, and when it
// ends it prints `ok <name>` or `FAIL <name>: <first failed condition> ...`
// on the serial port. tests/qemu/run_kernel.sh requires every expected `ok`
// line. Shared by every architecture's kernel (serial.hpp is each one's own).
#pragma once

#include "ptkit/status.hpp"
#include "serial.hpp"

namespace kernel {

inline unsigned g_checks_passed = 0;
inline unsigned g_checks_failed = 0;

class Check {
 public:
  explicit Check(const char* name) : name_(name) {}
  Check(const Check&) = delete;
  Check& operator=(const Check&) = delete;
  ~Check() {
    if (failed_) {
      ++g_checks_failed;
      return;
    }
    ++g_checks_passed;
    serial::write("ok ");
    serial::write(name_);
    serial::write("\n");
  }

  /// Records `what` as failed unless `cond`; `a` and `b` are printed with it.
  bool expect(bool cond, const char* what, ptkit::u64 a = 0, ptkit::u64 b = 0) {
    if (cond) return true;
    if (!failed_) {
      serial::write("FAIL ");
      serial::write(name_);
      serial::write(": ");
      serial::write(what);
      serial::write(" (");
      serial::hex(a);
      serial::write(", ");
      serial::hex(b);
      serial::write(")\n");
    }
    failed_ = true;
    return false;
  }

  /// Records a ptkit failure with what, where and why.
  template <class T>
  bool expect_ok(const ptkit::Result<T>& r, const char* what) {
    if (r.ok()) return true;
    if (!failed_) {
      const ptkit::Failure& f = r.failure();
      serial::write("FAIL ");
      serial::write(name_);
      serial::write(": ");
      serial::write(what);
      serial::write(": ");
      serial::write(ptkit::to_string(f.op));
      serial::write(" ");
      serial::write(ptkit::to_string(f.error));
      serial::write(" va=");
      serial::hex(f.va.value());
      serial::write(" pa=");
      serial::hex(f.pa.value());
      serial::write(" level=");
      if (f.level < 0)
        serial::write("none");
      else
        serial::dec(static_cast<ptkit::u64>(f.level));
      if (f.subject != nullptr) {
        serial::write(" subject=");
        serial::write(f.subject);
      }
      serial::write("\n");
    }
    failed_ = true;
    return false;
  }

  [[nodiscard]] bool failed() const { return failed_; }

 private:
  const char* name_;
  bool failed_ = false;
};

}  // namespace kernel
