// The image mapper on every format: a kernel-like layout (text RX, rodata R,
// data and bss RW) mapped at a load address other than its link address,
// checked page by page through query(), leaf by leaf against a greedy model
// of "the largest leaf the alignment allows", and in its report; every bad
// layout refused by name with nothing changed; an engine failure in a later
// section undone.
//
// Layouts are written in the format's own geometry: P is the smallest page,
// B the level-1 block, H the level-2 leaf where the format has one (x86-64
// with 1G pages: 4K, 2M, 1G).
#include <algorithm>
#include <map>
#include <set>
#include <string>

#include "ptkit/early/image_mapper.hpp"
#include "support.hpp"

namespace ptkit::test {
namespace {

using early::ImageLayout;
using early::ImageReport;
using early::ImageSection;
using early::map_image;

/// A section of a test layout, at an offset from the link base.
struct Sec {
  const char* name;
  u64 offset;
  u64 size;
  Perm perm;
};

constexpr Attrs image_attrs(Perm p) { return Attrs{p, MemType::WriteBack, true}; }

template <class Config>
class ImageMapperTest : public ::testing::Test {
 protected:
  Fixture<Config> fx;
  auto& s() { return fx.s(); }

  u64 P() const { return fx.page(); }
  u64 B() const { return fx.block(); }
  u64 H() const { return fx.huge(); }
  /// The link base: a quarter into the space, aligned to every leaf below the
  /// root (upper half for TTBR1).
  u64 link() const { return fx.va_base(); }
  /// A physical base aligned to every leaf the tests use, never 0.
  u64 pa_base() const { return std::max<u64>(4 * GiB, H()); }

  /// Text 2B RX, rodata B R, a gap of B, data B RW, bss 2B RW: every
  /// boundary on a block.
  std::vector<Sec> block_kernel() const {
    return {{"text", 0, 2 * B(), RX},
            {"rodata", 2 * B(), B(), Perm::R},
            {"data", 4 * B(), B(), RW},
            {"bss", 5 * B(), 2 * B(), RW}};
  }
  /// Only page boundaries: text a block and 3 pages, rodata 5 pages, a gap to
  /// the next block, data 3 pages, bss to 4 blocks and 5 pages, so that the
  /// block holding data's 3 pages is shared with bss.
  std::vector<Sec> page_kernel() const {
    return {{"text", 0, B() + 3 * P(), RX},
            {"rodata", B() + 3 * P(), 5 * P(), Perm::R},
            {"data", 2 * B(), 3 * P(), RW},
            {"bss", 2 * B() + 3 * P(), 2 * B() + 2 * P(), RW}};
  }

  std::vector<ImageSection> sections(const std::vector<Sec>& secs, u64 base = 0) const {
    if (base == 0) base = link();
    std::vector<ImageSection> out;
    for (const Sec& s : secs)
      out.push_back(ImageSection{s.name, VirtAddr(base + s.offset), s.size, s.perm});
    return out;
  }
  static ImageLayout layout(const std::vector<ImageSection>& v, u64 base, u64 alignment) {
    return ImageLayout{v.data(), unsigned(v.size()), VirtAddr(base), alignment};
  }

  // ---- Reference -------------------------------------------------------------------

  /// The ranges one map() each: adjacent sections with the same permissions
  /// merged (written here independently of the mapper).
  static std::vector<Sec> merged(const std::vector<Sec>& secs) {
    std::vector<Sec> out;
    for (const Sec& s : secs) {
      if (!out.empty() && out.back().offset + out.back().size == s.offset &&
          out.back().perm == s.perm) {
        out.back().size += s.size;
        continue;
      }
      out.push_back(s);
    }
    return out;
  }

  /// Leaves by size that "the largest leaf alignment allows" gives: from each
  /// address, the largest leaf the format has that fits the rest of the range
  /// and whose size divides both the address and pa - va.
  std::map<u64, u64> expected_leaves(const std::vector<Sec>& secs, u64 base, u64 load_pa) {
    std::vector<u64> sizes;
    const auto& f = s().format();
    for (unsigned level = f.levels(); level-- > 0;)
      if (f.leaf_allowed(level)) sizes.push_back(s().leaf_size(level));
    const u64 delta = load_pa - base;
    std::map<u64, u64> out;
    for (const Sec& r : merged(secs)) {
      u64 cur = base + r.offset;
      const u64 end = cur + r.size;
      while (cur != end) {
        u64 leaf = 0;
        for (u64 size : sizes) {
          if (cur % size == 0 && delta % size == 0 && end - cur >= size) {
            leaf = size;
            break;
          }
        }
        EXPECT_NE(leaf, 0u);
        if (leaf == 0) return out;
        ++out[leaf];
        cur += leaf;
      }
    }
    return out;
  }

  /// Leaves by size the tables hold over [lo, lo + size), from walk().
  std::map<u64, u64> leaves_in(u64 lo, u64 size) {
    std::map<u64, u64> out;
    EXPECT_TRUE(s().walk(VirtAddr(lo), size,
                         [&](const Mapping& m) {
                           ++out[m.size];
                           return true;
                         })
                    .ok());
    return out;
  }

  static std::map<u64, u64> leaves_of(const early::LeafCount (&counts)[early::kMaxImageLevels]) {
    std::map<u64, u64> out;
    for (const auto& c : counts)
      if (c.count != 0) out[c.size] = c.count;
    return out;
  }

  /// Every `stride`-th page of every section (and each section's last page)
  /// translates to its place in the loaded image with its permissions; the
  /// pages around and between sections stay unmapped.
  void expect_translations(const std::vector<Sec>& secs, u64 base, u64 load_pa, u64 stride = 0) {
    if (stride == 0) stride = P();
    u64 checked = 0;
    auto expect_page = [&](const Sec& sec, u64 off) {
      const u64 va = base + sec.offset + off;
      auto q = s().query(VirtAddr(va));
      ASSERT_TRUE(q.ok()) << sec.name << " +" << std::hex << off;
      EXPECT_EQ(q->pa.value() + (va - q->va.value()), load_pa + sec.offset + off)
          << sec.name << " +" << std::hex << off;
      EXPECT_EQ(q->attrs, image_attrs(sec.perm)) << sec.name;
      ++checked;
    };
    for (const Sec& sec : secs) {
      for (u64 off = 0; off < sec.size; off += stride) expect_page(sec, off);
      expect_page(sec, sec.size - P());
    }
    // Unmapped: the page before the image, every gap's first and last page,
    // the page after the image.
    auto expect_unmapped = [&](u64 va) {
      auto q = s().query(VirtAddr(va));
      ASSERT_FALSE(q.ok()) << std::hex << va;
      EXPECT_EQ(q.error(), Error::NotMapped);
    };
    expect_unmapped(base + secs.front().offset - P());
    for (size_t i = 1; i < secs.size(); ++i) {
      const u64 gap_lo = secs[i - 1].offset + secs[i - 1].size, gap_hi = secs[i].offset;
      if (gap_lo == gap_hi) continue;
      expect_unmapped(base + gap_lo);
      expect_unmapped(base + gap_hi - P());
    }
    expect_unmapped(base + secs.back().offset + secs.back().size);
    EXPECT_GT(checked, secs.size());
  }

  /// The root entries whose raw value differs between two snapshots.
  static std::set<unsigned> changed_root_entries(
      const std::vector<std::pair<u64, std::vector<u64>>>& before,
      const std::vector<std::pair<u64, std::vector<u64>>>& after) {
    std::set<unsigned> out;
    const auto& a = before.front().second;
    const auto& b = after.front().second;
    for (unsigned i = 0; i < a.size(); ++i)
      if (a[i] != b[i]) out.insert(i);
    return out;
  }
  static std::set<unsigned> slots_of(const ImageReport& r) {
    std::set<unsigned> out;
    for (unsigned i = 0; i < r.slot_range_count; ++i)
      for (unsigned k = 0; k < r.slots[i].count; ++k) out.insert(r.slots[i].first + k);
    return out;
  }

  /// Maps `secs` and checks everything a successful mapping promises: the
  /// translations, the leaves against the model and the report, the slots
  /// against the root entries that changed, the tables against the count.
  ImageReport map_and_check(const std::vector<Sec>& secs, u64 alignment, u64 load_pa,
                            u64 stride = 0) {
    const u64 base = link();
    const auto v = sections(secs, base);
    const auto before = fx.snapshot();
    auto r = map_image(s(), layout(v, base, alignment), PhysAddr(load_pa));
    EXPECT_TRUE(r.ok()) << (r.ok() ? "" : to_string(r.error()));
    if (!r.ok()) return ImageReport{};
    const ImageReport& rep = r.value();
    expect_translations(secs, base, load_pa, stride);

    const u64 span = secs.back().offset + secs.back().size;
    const auto walked = leaves_in(base, span);
    EXPECT_EQ(walked, expected_leaves(secs, base, load_pa)) << "not the largest leaves";
    EXPECT_EQ(leaves_of(rep.leaves), walked);

    // Per section: the leaves that translate part of it.
    EXPECT_EQ(rep.section_count, secs.size());
    for (size_t i = 0; i < secs.size() && i < rep.section_count; ++i) {
      const early::SectionReport& sr = rep.sections[i];
      EXPECT_STREQ(sr.name, secs[i].name);
      EXPECT_EQ(sr.va.value(), base + secs[i].offset);
      EXPECT_EQ(sr.pa.value(), load_pa + secs[i].offset);
      EXPECT_EQ(sr.size, secs[i].size);
      EXPECT_EQ(sr.attrs, image_attrs(secs[i].perm));
      EXPECT_EQ(leaves_of(sr.leaves), leaves_in(base + secs[i].offset, secs[i].size)) << sr.name;
    }
    EXPECT_EQ(rep.range_count, merged(secs).size());

    const auto after = fx.snapshot();
    EXPECT_EQ(slots_of(rep), changed_root_entries(before, after));
    EXPECT_EQ(rep.root_level, s().format().levels() - 1);
    EXPECT_EQ(rep.slot_span, s().leaf_size(rep.root_level));
    EXPECT_EQ(fx.tables_in_use(), 1 + rep.tables_allocated);
    return rep;
  }

  /// Runs `update`, which must fail with `e`, and checks that no table byte
  /// changed, no page is held and nothing was written or invalidated.
  template <class Update>
  Failure expect_rejected(Error e, Update&& update) {
    const auto before = fx.snapshot();
    const u64 in_use = fx.tables_in_use();
    fx.recorder.events.clear();
    auto r = update();
    EXPECT_FALSE(r.ok());
    if (r.ok()) return {};
    EXPECT_EQ(r.error(), e) << "got: " << to_string(r.error());
    EXPECT_EQ(fx.snapshot(), before);
    EXPECT_EQ(fx.tables_in_use(), in_use);
    EXPECT_TRUE(fx.recorder.events.empty());
    return r.failure();
  }

  Failure expect_layout_rejected(Error e, const std::vector<Sec>& secs, u64 alignment, u64 load_pa,
                                 u64 base = 0) {
    if (base == 0) base = link();
    const auto v = sections(secs, link());
    return expect_rejected(
        e, [&] { return map_image(s(), layout(v, base, alignment), PhysAddr(load_pa)); });
  }
};

TYPED_TEST_SUITE(ImageMapperTest, AllFormats);

std::string subject_of(const Failure& f) { return f.subject != nullptr ? f.subject : "(none)"; }

// ---- Mapping ------------------------------------------------------------------------

TYPED_TEST(ImageMapperTest, BlockAlignedLayoutIsMappedWithBlocks) {
  const u64 B = this->B();
  // Block-aligned, not aligned to anything larger: blocks are the largest.
  const u64 load = this->pa_base() + B;
  const ImageReport rep = this->map_and_check(this->block_kernel(), B, load);
  EXPECT_EQ(rep.leaves_of_size(B), 6u);
  EXPECT_EQ(rep.leaves_of_size(this->P()), 0u);
  EXPECT_EQ(rep.sections[0].leaves_of_size(B), 2u);  // text
  EXPECT_EQ(rep.sections[1].leaves_of_size(B), 1u);  // rodata
  EXPECT_EQ(rep.sections[2].leaves_of_size(B), 1u);  // data
  EXPECT_EQ(rep.sections[3].leaves_of_size(B), 2u);  // bss
  // text, rodata, data+bss (the gap separates rodata from data anyway).
  ASSERT_EQ(rep.range_count, 3u);
  EXPECT_EQ(rep.ranges[2].first_section, 2u);
  EXPECT_EQ(rep.ranges[2].section_count, 2u);
  EXPECT_EQ(rep.sections[3].range, 2u);
}

TYPED_TEST(ImageMapperTest, PageAlignedLayoutUsesBlocksWhereAlignmentAllows) {
  const u64 P = this->P(), B = this->B();
  const u64 load = this->pa_base() + 3 * B;
  const ImageReport rep = this->map_and_check(this->page_kernel(), P, load);
  // text: one block, 3 pages; rodata 5 pages; data+bss: 2 blocks, 5 pages.
  EXPECT_EQ(rep.leaves_of_size(B), 3u);
  EXPECT_EQ(rep.leaves_of_size(P), 13u);
  EXPECT_EQ(rep.sections[0].leaves_of_size(B), 1u);
  EXPECT_EQ(rep.sections[0].leaves_of_size(P), 3u);
  EXPECT_EQ(rep.sections[1].leaves_of_size(P), 5u);
}

TYPED_TEST(ImageMapperTest, AdjacentSectionsWithTheSamePermissionsShareLeaves) {
  const u64 P = this->P(), B = this->B();
  const u64 load = this->pa_base() + 3 * B;
  const ImageReport rep = this->map_and_check(this->page_kernel(), P, load);
  // data's 3 pages and bss's first B - 3P are one block leaf.
  const u64 data = this->link() + 2 * B;
  auto q = this->s().query(VirtAddr(data));
  ASSERT_TRUE(q.ok());
  EXPECT_EQ(q->va.value(), data);
  EXPECT_EQ(q->size, B);
  auto q2 = this->s().query(VirtAddr(data + 3 * P));  // bss's first page
  ASSERT_TRUE(q2.ok());
  EXPECT_EQ(q2->va, q->va);
  EXPECT_EQ(rep.sections[2].leaves_of_size(B), 1u);  // data: the shared block
  EXPECT_EQ(rep.sections[2].leaves_of_size(P), 0u);
  EXPECT_EQ(rep.sections[3].leaves_of_size(B), 2u);  // bss: the shared one and its own
  EXPECT_EQ(rep.sections[3].leaves_of_size(P), 5u);
  EXPECT_EQ(rep.sections[2].range, rep.sections[3].range);
  // Counted once for the image.
  EXPECT_EQ(rep.ranges[rep.sections[3].range].size, 2 * B + 5 * P);
}

TYPED_TEST(ImageMapperTest, PageAlignedLoadAddressGetsPagesOnly) {
  const u64 P = this->P(), B = this->B();
  // The layout promises pages only, and the load address is only that: no
  // block can be aligned in both address spaces.
  const u64 load = this->pa_base() + B + P;
  const ImageReport rep = this->map_and_check(this->page_kernel(), P, load);
  EXPECT_EQ(rep.leaves_of_size(B), 0u);
  EXPECT_EQ(rep.leaves_of_size(P), (3 * B + 13 * P) / P);
}

TYPED_TEST(ImageMapperTest, HugeLeafSpansDataAndBss) {
  const u64 H = this->H(), B = this->B();
  if (H == 0) GTEST_SKIP() << "no level-2 leaves on this format";
  // data and bss together fill one level-2 span; the load address is aligned
  // to it, the layout promises blocks.
  const std::vector<Sec> secs{{"text", 0, B, RX}, {"data", H, B, RW}, {"bss", H + B, H - B, RW}};
  const ImageReport rep = this->map_and_check(secs, B, this->pa_base(), B);
  EXPECT_EQ(rep.leaves_of_size(H), 1u);
  EXPECT_EQ(rep.leaves_of_size(B), 1u);
  EXPECT_EQ(rep.sections[1].leaves_of_size(H), 1u);
  EXPECT_EQ(rep.sections[2].leaves_of_size(H), 1u);
}

TYPED_TEST(ImageMapperTest, ReportNamesEveryRootEntryTheImageOccupies) {
  const u64 B = this->B();
  const u64 slot = this->s().leaf_size(this->s().format().levels() - 1);
  // text ends at a root entry's end, rodata starts the next; data, if the
  // space has room, in the second root entry after that.
  const u64 base = align_down(this->link() + slot, slot) - B;
  std::vector<Sec> secs{{"text", 0, B, RX}, {"rodata", B, B, Perm::R}};
  const u64 far = B + 2 * slot;
  if (this->s().format().is_canonical(VirtAddr(base + far + B - 1)) &&
      ((base + far) / slot) % this->s().entries(this->s().format().levels() - 1) ==
          ((base / slot) % this->s().entries(this->s().format().levels() - 1)) + 3)
    secs.push_back({"data", far, B, RW});
  const auto v = this->sections(secs, base);
  const auto before = this->fx.snapshot();
  auto r = map_image(this->s(), this->layout(v, base, B), PhysAddr(this->pa_base()));
  ASSERT_TRUE(r.ok()) << to_string(r.error());
  const auto changed = this->changed_root_entries(before, this->fx.snapshot());
  EXPECT_EQ(this->slots_of(*r), changed);
  EXPECT_EQ(r->slot_count(), secs.size());
  EXPECT_EQ(r->slot_range_count, secs.size() == 3 ? 2u : 1u);
  const unsigned first = r->slots[0].first;
  EXPECT_EQ(r->sections[0].slots.first, first);
  EXPECT_EQ(r->sections[1].slots.first, first + 1);
  EXPECT_TRUE(r->uses_slot(first + 1));
  EXPECT_FALSE(r->uses_slot(first + 2));
  if (secs.size() == 3) {
    EXPECT_EQ(r->sections[2].slots.first, first + 3);
  }
}

// ---- Refusals, before anything changes ---------------------------------------------------

TYPED_TEST(ImageMapperTest, MisalignedLoadAddressIsRefused) {
  const u64 P = this->P(), B = this->B();
  const Failure f =
      this->expect_layout_rejected(Error::Unaligned, this->block_kernel(), B, this->pa_base() + P);
  EXPECT_EQ(subject_of(f), "load address");
  EXPECT_EQ(f.alignment, B);
  EXPECT_EQ(f.pa.value(), this->pa_base() + P);
  // A page-aligned layout refuses half a page.
  const Failure g = this->expect_layout_rejected(Error::Unaligned, this->page_kernel(), P,
                                                 this->pa_base() + P / 2);
  EXPECT_EQ(subject_of(g), "load address");
  EXPECT_EQ(g.alignment, P);
}

TYPED_TEST(ImageMapperTest, MisalignedSectionIsRefusedByName) {
  const u64 P = this->P(), B = this->B(), load = this->pa_base();
  // rodata starts a page after a block boundary.
  auto secs = this->block_kernel();
  secs[1].offset += P;
  Failure f = this->expect_layout_rejected(Error::Unaligned, secs, B, load);
  EXPECT_EQ(subject_of(f), "rodata");
  EXPECT_EQ(f.alignment, B);
  EXPECT_EQ(f.va.value(), this->link() + 2 * B + P);
  // text ends a page past a block boundary (rodata still starts on one).
  secs = this->block_kernel();
  secs[0].size += P;
  f = this->expect_layout_rejected(Error::Unaligned, secs, B, load);
  EXPECT_EQ(subject_of(f), "text");
  EXPECT_EQ(f.alignment, B);
  EXPECT_EQ(f.va.value(), this->link() + 2 * B + P);
  // Only the last section is off: nothing of the others is mapped either.
  secs = this->block_kernel();
  secs[3].size -= P;
  f = this->expect_layout_rejected(Error::Unaligned, secs, B, load);
  EXPECT_EQ(subject_of(f), "bss");
}

TYPED_TEST(ImageMapperTest, BadLayoutsAreRefusedByName) {
  const u64 P = this->P(), B = this->B(), load = this->pa_base();
  // rodata overlaps text.
  std::vector<Sec> overlap{{"text", 0, 2 * B, RX}, {"rodata", B, B, Perm::R}};
  Failure f = this->expect_layout_rejected(Error::AlreadyMapped, overlap, B, load);
  EXPECT_EQ(subject_of(f), "rodata");
  // rodata listed after data, below it.
  std::vector<Sec> unsorted{
      {"text", 0, 2 * B, RX}, {"data", 4 * B, B, RW}, {"rodata", 2 * B, B, Perm::R}};
  f = this->expect_layout_rejected(Error::BadConfig, unsorted, B, load);
  EXPECT_EQ(subject_of(f), "rodata");
  // A section the format cannot express (write without read), last.
  auto secs = this->block_kernel();
  secs[3].perm = Perm::W;
  f = this->expect_layout_rejected(Error::AttrUnsupported, secs, B, load);
  EXPECT_EQ(subject_of(f), "bss");
  // A section of no size.
  secs = this->block_kernel();
  secs[1].size = 0;
  f = this->expect_layout_rejected(Error::BadSize, secs, B, load);
  EXPECT_EQ(subject_of(f), "rodata");
  // A section below the link base.
  f = this->expect_layout_rejected(Error::BadConfig, this->block_kernel(), B, load,
                                   this->link() + B);
  EXPECT_EQ(subject_of(f), "text");
  // A link base off the promised alignment.
  f = this->expect_layout_rejected(Error::Unaligned, this->page_kernel(), B, load,
                                   this->link() - P);
  EXPECT_EQ(subject_of(f), "link base");
  // A promise smaller than a page, or no power of two.
  f = this->expect_layout_rejected(Error::Unaligned, this->block_kernel(), P / 2, load);
  EXPECT_EQ(subject_of(f), "layout alignment");
  EXPECT_EQ(f.alignment, P);
  f = this->expect_layout_rejected(Error::BadConfig, this->block_kernel(), 3 * B, load);
  EXPECT_EQ(subject_of(f), "layout alignment");
  // No sections at all.
  f = this->expect_rejected(Error::BadSize, [&] {
    return map_image(this->s(), ImageLayout{nullptr, 0, VirtAddr(this->link()), B}, PhysAddr(load));
  });
  EXPECT_EQ(subject_of(f), "layout");
}

TYPED_TEST(ImageMapperTest, ExistingMappingUnderALaterSectionIsRefusedFirst) {
  const u64 P = this->P(), B = this->B();
  // Something already lives in bss's last page.
  const u64 bss_last = this->link() + 7 * B - P;
  ASSERT_TRUE(this->s().map(VirtAddr(bss_last), PhysAddr(P), P, Attrs{RW}).ok());
  const Failure f = this->expect_layout_rejected(Error::AlreadyMapped, this->block_kernel(), B,
                                                 this->pa_base() + B);
  EXPECT_EQ(subject_of(f), "bss");
  EXPECT_EQ(f.va.value(), bss_last);
}

// ---- An engine failure mid-image is undone ------------------------------------------------

TYPED_TEST(ImageMapperTest, AllocationFailureInALaterSectionLeavesTheSpaceAsBefore) {
  using Format = typename TypeParam::Format;
  using Failing = FailingAllocator<FreeList>;
  using FailingSpace = AddressSpace<Format, OffsetAccess, Failing&, RecWriter, RecSink>;
  const u64 P = this->P(), B = this->B();
  const auto secs = this->page_kernel();
  const auto v = this->sections(secs, this->link());
  const ImageLayout lay = this->layout(v, this->link(), P);
  const PhysAddr load(this->pa_base() + 3 * B);
  // Something unrelated already mapped, so "as before" is not "empty".
  const u64 other = this->link() + 8 * B;
  ASSERT_TRUE(this->s().map(VirtAddr(other), PhysAddr(P), 3 * P, Attrs{RW}).ok());

  // The tables the whole image needs, from a space of its own.
  u64 needed = 0;
  {
    Fixture<TypeParam> probe;
    ASSERT_TRUE(probe.s().map(VirtAddr(other), PhysAddr(P), 3 * P, Attrs{RW}).ok());
    auto r = map_image(probe.s(), lay, load);
    ASSERT_TRUE(r.ok());
    needed = r->tables_allocated;
  }
  ASSERT_GE(needed, 2u);  // text's pages and bss's pages need a table each at least

  const auto before = this->fx.snapshot();
  const u64 free_before = this->fx.alloc.pages_free();
  std::set<std::string> failed_in;
  for (u64 fail_at = 1; fail_at <= needed; ++fail_at) {
    Failing failing(this->fx.alloc, fail_at);
    FailingSpace space(Format(TypeParam::make()), this->fx.memory.access(), failing,
                       RecWriter(this->fx.recorder), RecSink(this->fx.recorder),
                       this->fx.s().root());
    auto r = map_image(space, lay, load);
    ASSERT_FALSE(r.ok()) << "fail_at " << fail_at << " of " << needed;
    EXPECT_EQ(r.error(), Error::OutOfTables);
    EXPECT_TRUE(failing.failed());
    failed_in.insert(subject_of(r.failure()));
    ASSERT_EQ(this->fx.snapshot(), before) << "fail_at " << fail_at;
    ASSERT_EQ(this->fx.alloc.pages_free(), free_before) << "fail_at " << fail_at;
  }
  // The first range failed, and so did a later one after earlier ones were
  // mapped (and undone).
  EXPECT_TRUE(failed_in.count("text"));
  EXPECT_TRUE(failed_in.count("data")) << "no failure after the first range";

  // With enough tables it goes through on the same space.
  auto ok = map_image(this->s(), lay, load);
  ASSERT_TRUE(ok.ok());
  EXPECT_EQ(ok->tables_allocated, needed);
}

TYPED_TEST(ImageMapperTest, TinyBootAllocatorRunningDryLeavesTheTablesAsBefore) {
  using Format = typename TypeParam::Format;
  const u64 P = this->P(), B = this->B();
  const auto v = this->sections(this->page_kernel(), this->link());
  const ImageLayout lay = this->layout(v, this->link(), P);
  const PhysAddr load(this->pa_base() + 3 * B);
  Fixture<TypeParam> probe;
  auto probed = map_image(probe.s(), lay, load);
  ASSERT_TRUE(probed.ok());
  const u64 needed = probed->tables_allocated;

  // One page short: the last range to need a table fails, after the ones
  // before it were mapped. A bump allocator takes back only its latest page,
  // so the rollback leaks the others; the tables are as before regardless.
  const u64 page_size = this->fx.memory.page_size();
  BumpAllocator dry(this->fx.memory.base() + 448 * page_size, needed - 1, page_size);
  AddressSpace<Format, OffsetAccess, BumpAllocator&> space2(
      Format(TypeParam::make()), this->fx.memory.access(), dry, {}, {}, this->fx.s().root());
  const auto before = this->fx.snapshot();
  auto failed = map_image(space2, lay, load);
  ASSERT_FALSE(failed.ok());
  EXPECT_EQ(failed.error(), Error::OutOfTables);
  EXPECT_EQ(subject_of(failed.failure()), "data");
  EXPECT_EQ(this->fx.snapshot(), before);
}

}  // namespace
}  // namespace ptkit::test
