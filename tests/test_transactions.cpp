// Transactions: an allocation failure injected at every page of every update
// of a random sequence must leave the tables bit-for-bit unchanged, report
// the number of tables needed, and keep no page.
#include <algorithm>

#include "checked.hpp"

namespace ptkit::test {
namespace {

template <class Config>
class TransactionTest : public ::testing::Test {};
TYPED_TEST_SUITE(TransactionTest, AllFormats);

// Shorter under PTKIT_TEST_SCALE (the sanitizer build).
const u64 kOps = scaled(1500, 200);

TYPED_TEST(TransactionTest, AllocationFailureAtEveryPageChangesNothing) {
  const u64 seed = test_seed();
  std::printf("PTKIT_SEED=%llu (set it to replay)\n", static_cast<unsigned long long>(seed));
  std::mt19937_64 rng(seed);
  auto pick = [&](u64 n) { return std::uniform_int_distribution<u64>(0, n - 1)(rng); };

  Fixture<TypeParam> fx(4096);
  // The successful updates go past the simulator's rule checker too.
  CheckedTrace<TypeParam> checked(fx);
  using Format = typename TypeParam::Format;
  using Failing = FailingAllocator<FreeList>;
  using FailingSpace = AddressSpace<Format, OffsetAccess, Failing&, RecWriter, RecSink>;
  const u64 base = fx.va_base();
  const u64 page = fx.page(), block = fx.block(), per_table = fx.entries(0);
  // Ranges start in one of up to 2^16 blocks and reach at most `margin`
  // blocks further, all within the canonical room above base (base is a
  // quarter of the space in; the half may end one to three quarters later).
  const u64 quarter = base & (~base + 1);
  u64 room = 3 * quarter;
  while (!fx.s().format().is_canonical(VirtAddr(base + room - 1))) room -= quarter;
  const u64 margin = ((per_table + 2049) * page + block - 1) / block;
  const u64 blocks = std::min(u64{1} << 16, room / block - margin);
  u64 injected = 0;

  for (u64 op = 0; op < kOps; ++op) {
    const u64 va = base + pick(blocks) * block + (pick(2) ? pick(per_table) * page : 0);
    const u64 size = (1 + pick(pick(4) == 0 ? 2048 : 8)) * page;
    const u64 pa = pick(2) ? va - base : (va - base) + page * (1 + pick(per_table - 1));
    const int kind = int(pick(3));
    const AttrChange change{pick(2) ? Perm::X : Perm::None, pick(2) ? Perm::W : Perm::None};
    SCOPED_TRACE(::testing::Message() << "seed " << seed << " op " << op << " kind " << kind
                                      << std::hex << " va " << va << " size " << size);
    MapOptions mo;
    mo.allow_split = true;  // random ops may cut superpages
    mo.existing = OnExisting::Replace;
    mo.merge = pick(2) == 0;
    UnmapOptions uo;
    uo.allow_split = true;  // random ops may cut superpages
    ProtectOptions po;
    po.allow_split = true;  // random ops may cut superpages
    po.holes = OnHole::Skip;
    po.merge = pick(2) == 0;

    auto run = [&](auto& space) {
      if (kind == 0) return space.map(VirtAddr(va), PhysAddr(pa), size, Attrs{RW}, mo);
      if (kind == 1) return space.unmap(VirtAddr(va), size, uo);
      return space.protect(VirtAddr(va), size, change, po);
    };
    auto plan = kind == 0   ? fx.s().plan_map(VirtAddr(va), PhysAddr(pa), size, Attrs{RW}, mo)
                : kind == 1 ? fx.s().plan_unmap(VirtAddr(va), size, uo)
                            : fx.s().plan_protect(VirtAddr(va), size, change, po);
    ASSERT_TRUE(plan.ok()) << to_string(plan.error());
    const u64 needed = plan->tables_needed;
    const auto before = fx.snapshot();
    const u64 free_before = fx.alloc.pages_free();
    for (u64 fail_at = 1; fail_at <= needed; ++fail_at) {
      Failing failing(fx.alloc, fail_at);
      FailingSpace space(Format(TypeParam::make()), fx.memory.access(), failing,
                         RecWriter(fx.recorder), RecSink(fx.recorder), fx.s().root());
      fx.recorder.events.clear();
      auto r = run(space);
      ASSERT_FALSE(r.ok()) << "fail_at " << fail_at << " of " << needed;
      ASSERT_EQ(r.error(), Error::OutOfTables);
      EXPECT_EQ(r.failure().needed, needed);
      EXPECT_TRUE(failing.failed());
      ASSERT_TRUE(fx.recorder.events.empty()) << "a failed update touched the tables or the TLB";
      ASSERT_EQ(fx.snapshot(), before);
      ASSERT_EQ(fx.alloc.pages_free(), free_before);
      ++injected;
    }
    auto r = run(fx.s());
    ASSERT_TRUE(r.ok()) << to_string(r.error());
    EXPECT_EQ(r->stats.tables_allocated, needed) << "the plan counted exactly what was used";
    checked.sync();
  }
  const sim::CheckResult rules = checked.check_and_restart();
  ASSERT_TRUE(rules.ok()) << first_violations(rules);
  std::printf("%llu injected failures\n", static_cast<unsigned long long>(injected));
  EXPECT_GT(injected, kOps / 8);
  ASSERT_TRUE(fx.s().unmap(VirtAddr(base), (blocks + margin) * block).ok());
  EXPECT_EQ(fx.tables_in_use(), 1u);
}

TYPED_TEST(TransactionTest, ARealShortageOfOnePageIsRefusedCleanly) {
  Fixture<TypeParam> fx(4096);
  using Format = typename TypeParam::Format;
  // pa one page off the block alignment: page leaves only, filling 32 tables.
  const u64 va = fx.va_base();
  const PhysAddr pa(fx.page());
  const u64 size = 32 * fx.entries(0) * fx.page();
  auto plan = fx.s().plan_map(VirtAddr(va), pa, size, Attrs{RW});
  ASSERT_TRUE(plan.ok());
  const u64 needed = plan->tables_needed;
  ASSERT_GE(needed, 32u);  // 32 with two levels (64K/39), more with more
  // A bump allocator with exactly one page less than the update needs.
  const u64 page_size = fx.memory.page_size();
  BumpAllocator bump(fx.memory.base() + 2048 * page_size, needed - 1, page_size);
  AddressSpace<Format, OffsetAccess, BumpAllocator&> space(
      Format(TypeParam::make()), fx.memory.access(), bump, {}, {}, fx.s().root());
  const auto before = fx.snapshot();
  auto r = space.map(VirtAddr(va), pa, size, Attrs{RW});
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(r.error(), Error::OutOfTables);
  EXPECT_EQ(r.failure().needed, needed);
  EXPECT_EQ(fx.snapshot(), before);
  EXPECT_EQ(bump.pages_free(), needed - 1);
  // With the one page more it goes through and uses all of them.
  BumpAllocator enough(fx.memory.base() + 2048 * page_size, needed, page_size);
  AddressSpace<Format, OffsetAccess, BumpAllocator&> space2(
      Format(TypeParam::make()), fx.memory.access(), enough, {}, {}, fx.s().root());
  ASSERT_TRUE(space2.map(VirtAddr(va), pa, size, Attrs{RW}).ok());
  EXPECT_EQ(enough.pages_free(), 0u);
}

}  // namespace
}  // namespace ptkit::test
