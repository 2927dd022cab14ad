// The simulator's sparse physical memory and the architecture-neutral parts
// of the MMU model.
#include <gtest/gtest.h>

#include "ptkit/sim/mmu.hpp"

namespace ptkit::sim {
namespace {

TEST(PhysMemory, ReadsZeroUntilWrittenAndTouchesOnlyWrittenChunks) {
  PhysMemory m;
  EXPECT_EQ(m.read64(0x1234'5000), 0u);
  EXPECT_FALSE(m.touched(0x1234'5000));
  EXPECT_EQ(m.chunks(), 0u);
  m.write64(0x1234'5008, 0xdead'beef);
  EXPECT_EQ(m.read64(0x1234'5008), 0xdead'beefu);
  EXPECT_EQ(m.read64(0x1234'5000), 0u);
  EXPECT_TRUE(m.touched(0x1234'0000));  // the same 64 KiB chunk
  EXPECT_FALSE(m.touched(0x1235'0000));
  EXPECT_EQ(m.chunks(), 1u);
  // A 64 KiB table is one contiguous host block.
  u64* first = m.word(0x50'0000);
  EXPECT_EQ(m.word(0x50'0000 + 0xFFF8), first + 0x1FFF);
  m.write64(u64{1} << 51, 7);  // the top of a 52-bit space
  EXPECT_EQ(m.read64(u64{1} << 51), 7u);
  EXPECT_EQ(m.chunks(), 3u);
}

TEST(Translation, CheckAppliesPermissionsAccessAndDirtyInArmFaultOrder) {
  Translation t;
  t.read[0] = t.write[0] = true;
  t.exec[1] = true;
  EXPECT_EQ(t.check({AccessType::Read, false}), FaultKind::None);
  EXPECT_EQ(t.check({AccessType::Write, false}), FaultKind::None);
  EXPECT_EQ(t.check({AccessType::Execute, false}), FaultKind::Permission);
  EXPECT_EQ(t.check({AccessType::Read, true}), FaultKind::Permission);
  EXPECT_EQ(t.check({AccessType::Execute, true}), FaultKind::None);
  t.dirty = false;
  EXPECT_EQ(t.check({AccessType::Write, false}), FaultKind::AccessFlag);
  EXPECT_EQ(t.check({AccessType::Read, false}), FaultKind::None);
  t.accessed = false;  // an access-flag fault comes before a permission fault
  EXPECT_EQ(t.check({AccessType::Read, true}), FaultKind::AccessFlag);
  t.fault = FaultKind::NotPresent;
  EXPECT_EQ(t.check({AccessType::Read, false}), FaultKind::NotPresent);
}

TEST(MmuConfig, FromNameKnowsEveryFormatNameAndExplainsTheRest) {
  MmuConfig c;
  std::string error;
  ASSERT_TRUE(MmuConfig::from_name("x86_64-5l", c, error));
  EXPECT_EQ(c.arch, Arch::X86_64);
  EXPECT_EQ(c.x86_levels, 5u);
  ASSERT_TRUE(MmuConfig::from_name("aarch64-16k-48", c, error));
  EXPECT_EQ(c.arch, Arch::AArch64);
  EXPECT_EQ(c.arm_granule, 16384u);
  EXPECT_EQ(c.arm_va_bits, 48u);
  EXPECT_FALSE(c.arm_ds);
  ASSERT_TRUE(MmuConfig::from_name("aarch64-4k-52", c, error));
  EXPECT_TRUE(c.arm_ds);
  EXPECT_EQ(c.phys_bits, 52u);
  ASSERT_TRUE(MmuConfig::from_name("aarch64-64k-52", c, error));
  EXPECT_TRUE(c.arm_lpa);
  EXPECT_FALSE(c.arm_ds);
  ASSERT_TRUE(MmuConfig::from_name("riscv-sv57", c, error));
  EXPECT_EQ(c.arch, Arch::RiscV);
  EXPECT_EQ(c.rv_va_bits, 57u);
  EXPECT_FALSE(MmuConfig::from_name("aarch64-8k-48", c, error));
  EXPECT_NE(error.find("granule"), std::string::npos) << error;
  EXPECT_FALSE(MmuConfig::from_name("aarch64-4k-60", c, error));
  EXPECT_NE(error.find("25 to 52"), std::string::npos) << error;
  EXPECT_FALSE(MmuConfig::from_name("sparc", c, error));
  EXPECT_NE(error.find("unknown paging format 'sparc'"), std::string::npos) << error;
}

}  // namespace
}  // namespace ptkit::sim
