// The recorder behind a RecordingWriter (ptkit/writer.hpp) for the two-pass
// direct map: it sorts every entry write into what it did to the
// translation, per pass, so the kernel can show on the real tables that no
// write changed a page size together with the frame or the attributes
// (SDM vol. 3A §4.10.2.3), which is the whole point of two passes.
//
// A live write that turns a leaf into a table (split) or a table into a leaf
// (merge) is checked for equivalence at the moment it happens: the table's
// entries (just filled for a split, still in place for a merge) must all be
// leaves that continue the leaf's frame with the leaf's attributes.
#pragma once

#include "ptkit/format.hpp"
#include "ptkit/writer.hpp"

namespace kernel {

struct WriteCounts {
  ptkit::u64 fresh = 0;          // into tables no walker reaches yet
  ptkit::u64 added = 0;          // invalid -> valid
  ptkit::u64 removed = 0;        // valid -> invalid
  ptkit::u64 size_changes = 0;   // leaf <-> table
  ptkit::u64 equivalent = 0;     // ... of which every address kept frame and attributes
  ptkit::u64 attr_only = 0;      // leaf -> leaf, same size and frame, other attributes
  ptkit::u64 frame_changes = 0;  // leaf -> leaf or table -> table elsewhere
};

template <class Format, class Access>
class WriteAudit {
 public:
  WriteAudit(Format format, Access access) : format_(format), access_(access) {}

  /// Writes from now on count for pass `p` (0 or 1).
  void set_pass(unsigned p) { pass_ = p; }
  [[nodiscard]] const WriteCounts& pass(unsigned p) const { return counts_[p]; }

  void on_write(const ptkit::WriteSite& site, ptkit::u64 old_raw, ptkit::u64 new_raw, bool fresh) {
    WriteCounts& c = counts_[pass_];
    if (fresh) {
      ++c.fresh;
      return;
    }
    const ptkit::Entry before = format_.decode(old_raw, site.level);
    const ptkit::Entry after = format_.decode(new_raw, site.level);
    if (!before.valid() || !after.valid()) {
      if (before.valid() != after.valid()) ++(after.valid() ? c.added : c.removed);
      return;
    }
    if (before.kind != after.kind) {
      ++c.size_changes;
      const ptkit::Entry& leaf = before.is_leaf() ? before : after;
      const ptkit::Entry& table = before.is_leaf() ? after : before;
      if (equivalent(leaf, site.level, table.pa)) ++c.equivalent;
      return;
    }
    if (before.pa != after.pa)
      ++c.frame_changes;
    else if (before.is_leaf() && before.attrs != after.attrs)
      ++c.attr_only;
  }

 private:
  /// Whether the table at `table` (one level below `level`) translates
  /// exactly like `leaf`: same frames in order, same attributes.
  bool equivalent(const ptkit::Entry& leaf, unsigned level, ptkit::PhysAddr table) {
    const unsigned below = level - 1;
    const ptkit::u64 step = ptkit::u64{1} << (format_.page_shift() + format_.index_bits(0) * below);
    const ptkit::u64 entries = ptkit::u64{1} << format_.index_bits(below);
    ptkit::u64* t = access_.table(table);
    if (t == nullptr) return false;
    bool same = true;
    for (ptkit::u64 k = 0; same && k < entries; ++k) {
      const ptkit::Entry e = format_.decode(t[k], below);
      same = e.is_leaf() && e.pa == leaf.pa + k * step && e.attrs == leaf.attrs;
    }
    access_.done(t);
    return same;
  }

  Format format_;
  Access access_;
  unsigned pass_ = 0;
  WriteCounts counts_[2];
};

}  // namespace kernel
