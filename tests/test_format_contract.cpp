// What every format promises beside decode() and encode(): its optional
// members agree with them. table_address() is decode()'s answer for tables,
// for every raw value, so descending through it is descending through decode().
#include <gtest/gtest.h>

#include <cstdio>
#include <random>

#include "support.hpp"

namespace ptkit::test {
namespace {

template <class Config>
class FormatContractTest : public ::testing::Test {};
TYPED_TEST_SUITE(FormatContractTest, AllFormats);

TYPED_TEST(FormatContractTest, TableAddressIsWhatDecodeSays) {
  const auto f = TypeParam::make();
  if constexpr (!requires { f.table_address(u64{0}, 0u); }) {
    GTEST_SKIP() << "no table_address(): the engine descends with decode()";
  } else {
    const u64 seed = test_seed();
    std::printf("seed %llu (PTKIT_SEED replays)\n", static_cast<unsigned long long>(seed));
    std::mt19937_64 rng(seed);
    u64 tables = 0;
    const auto check = [&](u64 raw, unsigned level) {
      const Entry e = f.decode(raw, level);
      const u64 want = e.is_table() ? e.pa.value() : kNotTable;
      ASSERT_EQ(f.table_address(raw, level), want)
          << std::hex << "raw 0x" << raw << " level " << std::dec << level;
      if (e.is_table()) ++tables;
    };
    const Attrs attrs{RW, MemType::WriteBack, false};
    for (unsigned level = 0; level < f.levels(); ++level) {
      for (int i = 0; i < 20000; ++i) {
        // Random bits, random bits with the low (type) bits of a table or a
        // leaf, and what encode() writes.
        const u64 noise = rng();
        const u64 page =
            noise & ~((u64{1} << f.page_shift()) - 1) & ((u64{1} << f.phys_bits()) - 1);
        check(noise, level);
        if (level != 0) check(f.encode(Entry::table(PhysAddr(page)), level), level);
        if (f.leaf_allowed(level)) {
          const u64 leaf_pa = page & ~((u64{1} << (f.page_shift() + level * f.index_bits(0))) - 1);
          check(f.encode(Entry::leaf(PhysAddr(leaf_pa), attrs), level), level);
        }
        check(noise ^ (rng() & 0xFFF), level);
        check(0, level);
      }
    }
    EXPECT_GT(tables, 0u) << "no table entry was checked";
  }
}

}  // namespace
}  // namespace ptkit::test
