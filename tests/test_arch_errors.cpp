// Bad input that only some architectures refuse, through AddressSpace: a leaf
// size the declared CPU lacks, attributes the format cannot express, an
// address outside the configured half, an output address above the declared
// physical size. Each is its own clear error and changes nothing: no table
// byte, no page, no write or TLB event. (Undefined granule/size combinations
// are refused before a space exists: test_aarch64_format, test_riscv_format.)
#include "support.hpp"

namespace ptkit::test {
namespace {

/// Runs `update` on a space that already holds a mapping and checks that it
/// fails with `e` and leaves everything as it was.
template <class Fx, class Update>
void expect_refused(Fx& fx, Error e, Update&& update) {
  const auto before = fx.snapshot();
  const u64 in_use = fx.tables_in_use();
  fx.recorder.events.clear();
  auto r = update(fx.s());
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(r.error(), e) << "got: " << to_string(r.error());
  EXPECT_EQ(fx.snapshot(), before);
  EXPECT_EQ(fx.tables_in_use(), in_use);
  EXPECT_TRUE(fx.recorder.events.empty());
}

/// A fixture with one page-granular and one block-granular mapping in place.
template <class Config>
struct Populated : Fixture<Config> {
  Populated() {
    const u64 va = this->va_base();
    if (!this->s().map(VirtAddr(va), PhysAddr(GiB), 4 * this->page(), Attrs{RW}).ok()) std::abort();
    if (!this->s()
             .map(VirtAddr(va + 4 * this->block()), PhysAddr(2 * GiB), this->block(), Attrs{RW})
             .ok())
      std::abort();
  }
  [[nodiscard]] u64 free_va() const { return this->va_base() + 16 * this->block(); }
};

template <class Fx>
auto map_with_leaf(Fx& fx, u64 leaf) {
  return [&fx, leaf](auto& s) {
    MapOptions o;
    o.leaf_sizes = leaf;
    return s.map(VirtAddr(align_down(fx.free_va() + leaf, leaf)), PhysAddr(0), leaf, Attrs{RW}, o);
  };
}

TEST(ArchErrors, ArmLeafSizesNeedTheirCpuFeatures) {
  // 512G level-0 blocks (4K) and 64G level-1 blocks (16K) need FEAT_LPA2;
  // 4T level-1 blocks (64K) need FEAT_LPA.
  Populated<A64_4K_48> k4;
  expect_refused(k4, Error::LeafSizeUnsupported, map_with_leaf(k4, 512 * GiB));
  Populated<A64_16K_48> k16;
  expect_refused(k16, Error::LeafSizeUnsupported, map_with_leaf(k16, 64 * GiB));
  Populated<A64_64K_48> k64;
  expect_refused(k64, Error::LeafSizeUnsupported, map_with_leaf(k64, 4 * TiB));
  // With the feature the same request goes through (4K at 52 bits: LPA2).
  Populated<A64_4K_52> lpa2;
  auto ok = map_with_leaf(lpa2, 512 * GiB)(lpa2.s());
  ASSERT_TRUE(ok.ok()) << to_string(ok.error());
  EXPECT_EQ(lpa2.s().query(VirtAddr(align_down(lpa2.free_va() + 512 * GiB, 512 * GiB)))->size,
            512 * GiB);
}

TEST(ArchErrors, RiscvSv39HasNoLevel3Leaf) {
  // A 512G range does not fit one half of Sv39, so ask for a page while
  // allowing 512G leaves: the size is not one Sv39 has.
  Populated<Rv_Sv39> sv39;
  expect_refused(sv39, Error::LeafSizeUnsupported, [&](auto& s) {
    MapOptions o;
    o.leaf_sizes = 512 * GiB | sv39.page();
    return s.map(VirtAddr(sv39.free_va()), PhysAddr(0), sv39.page(), Attrs{RW}, o);
  });
  Populated<Rv_Sv48> sv48;  // Sv48 has it
  MapOptions o;
  o.leaf_sizes = 512 * GiB | sv48.page();
  auto r = sv48.s().map(VirtAddr(sv48.free_va()), PhysAddr(0), sv48.page(), Attrs{RW}, o);
  EXPECT_TRUE(r.ok()) << to_string(r.error());
}

TEST(ArchErrors, ArmRefusesWhatMairAndApCannotExpress) {
  Populated<A64_4K_48> fx;
  const u64 va = fx.free_va();
  // UC- and WP have no Arm memory type; stage 1 has no write-only page.
  expect_refused(fx, Error::AttrUnsupported, [&](auto& s) {
    return s.map(VirtAddr(va), PhysAddr(0), fx.page(), Attrs{RW, MemType::UncachedMinus});
  });
  expect_refused(fx, Error::AttrUnsupported, [&](auto& s) {
    return s.map(VirtAddr(va), PhysAddr(0), fx.page(), Attrs{Perm::W, MemType::WriteBack});
  });
  AttrChange to_wp;
  to_wp.change_mem = true;
  to_wp.mem = MemType::WriteProtect;
  expect_refused(fx, Error::AttrUnsupported,
                 [&](auto& s) { return s.protect(VirtAddr(fx.va_base()), fx.page(), to_wp); });
  AttrChange no_read;
  no_read.clear = Perm::R;
  expect_refused(fx, Error::AttrUnsupported, [&](auto& s) {
    return s.protect(VirtAddr(fx.va_base() + 4 * fx.block()), fx.block(), no_read);
  });
}

TEST(ArchErrors, RiscvRefusesWWithoutRAndTypesWithoutSvpbmt) {
  Populated<Rv_Sv39_Plain> plain;
  const u64 va = plain.free_va();
  // W without R is a reserved encoding (privileged spec, Table 4.5).
  expect_refused(plain, Error::AttrUnsupported, [&](auto& s) {
    return s.map(VirtAddr(va), PhysAddr(0), plain.page(), Attrs{Perm::W | Perm::X});
  });
  // Without Svpbmt the PMA decides the type: only write-back is expressible.
  expect_refused(plain, Error::AttrUnsupported, [&](auto& s) {
    return s.map(VirtAddr(va), PhysAddr(0), plain.page(), Attrs{RW, MemType::Device});
  });
  AttrChange to_nc;
  to_nc.change_mem = true;
  to_nc.mem = MemType::WriteCombining;
  expect_refused(plain, Error::AttrUnsupported, [&](auto& s) {
    return s.protect(VirtAddr(plain.va_base()), plain.page(), to_nc);
  });
  // With Svpbmt the same change is fine.
  Populated<Rv_Sv39> pbmt;
  auto r = pbmt.s().protect(VirtAddr(pbmt.va_base()), pbmt.page(), to_nc);
  ASSERT_TRUE(r.ok()) << to_string(r.error());
  EXPECT_EQ(pbmt.s().query(VirtAddr(pbmt.va_base()))->attrs.mem, MemType::WriteCombining);
  // Execute-only is a valid RISC-V encoding, unlike on x86 and Arm.
  auto xo = pbmt.s().map(VirtAddr(pbmt.free_va()), PhysAddr(0), pbmt.page(), Attrs{Perm::X});
  ASSERT_TRUE(xo.ok()) << to_string(xo.error());
}

TEST(ArchErrors, AddressesOutsideTheConfiguredHalf) {
  Populated<A64_4K_48_Ttbr1> ttbr1;
  // A TTBR1 space holds only [2^64 - 2^48, 2^64).
  expect_refused(ttbr1, Error::NonCanonical, [&](auto& s) {
    return s.map(VirtAddr(0x1000), PhysAddr(0), ttbr1.page(), Attrs{RW});
  });
  Populated<A64_4K_39> ttbr0;
  expect_refused(ttbr0, Error::NonCanonical, [&](auto& s) {
    return s.map(VirtAddr(u64{1} << 39), PhysAddr(0), ttbr0.page(), Attrs{RW});
  });
  Populated<Rv_Sv39> sv39;
  // Sv39's lower half ends at 2^38; 2^38 itself is not canonical.
  expect_refused(sv39, Error::NonCanonical, [&](auto& s) {
    return s.map(VirtAddr(u64{1} << 38), PhysAddr(0), sv39.page(), Attrs{RW});
  });
  expect_refused(sv39, Error::NonCanonical, [&](auto& s) {
    return s.unmap(VirtAddr((u64{1} << 38) - sv39.page()), 2 * sv39.page());
  });
}

TEST(ArchErrors, OutputAddressAboveThePhysicalSize) {
  Populated<A64_4K_48> fx;  // 48-bit output addresses
  expect_refused(fx, Error::PhysTooLarge, [&](auto& s) {
    return s.map(VirtAddr(fx.free_va()), PhysAddr(u64{1} << 48), fx.page(), Attrs{RW});
  });
  Populated<A64_64K_52> wide;  // 52 bits with FEAT_LPA: the same address is fine
  auto r = wide.s().map(VirtAddr(wide.free_va()), PhysAddr(u64{1} << 48), wide.page(), Attrs{RW});
  ASSERT_TRUE(r.ok()) << to_string(r.error());
  EXPECT_EQ(wide.s().query(VirtAddr(wide.free_va()))->pa.value(), u64{1} << 48);
}

}  // namespace
}  // namespace ptkit::test
