// The Xen PV test guest (issue 9): booted as dom0 of a real Xen, it checks
// that ptkit's Xen PV mode (include/ptkit/early/xen_pv.hpp) builds an
// address space Xen accepts.
#include "check.hpp"
#include "machine.hpp"
#include "serial.hpp"
#include "xen.hpp"

using ptkit::u64;

namespace kernel {
namespace {

bool starts_with(const char* s, const char* prefix) {
  for (; *prefix != 0; ++s, ++prefix)
    if (*s != *prefix) return false;
  return true;
}

}  // namespace
}  // namespace kernel

extern "C" [[noreturn]] void kmain(const kernel::xen::StartInfo* si) {
  using namespace kernel;
  serial::write("ptkit xen pv guest\n");
  {
    Check c("start-info");
    c.expect(starts_with(si->magic, "xen-3.0-x86_64"), "magic xen-3.0-x86_64");
    c.expect(si->nr_pages > 0, "nr_pages", si->nr_pages);
    serial::write("info nr_pages ");
    serial::dec(si->nr_pages);
    serial::write(" pt_base ");
    serial::hex(si->pt_base);
    serial::write(" nr_pt_frames ");
    serial::dec(si->nr_pt_frames);
    serial::write(" mfn_list ");
    serial::hex(si->mfn_list);
    serial::write("\n");
  }
  finish();
}
