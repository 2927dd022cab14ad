// The trace's text format (docs/trace-format.md): print/parse round trips,
// and every malformed line rejected with its line number and what was
// expected.
#include <gtest/gtest.h>

#include "ptkit/sim/trace.hpp"

namespace ptkit::sim {
namespace {

using Kind = TraceEvent::Kind;

Trace every_event() {
  Trace t;
  t.format = "aarch64-4k-48";
  t.features = {"bbm2", "ttbr1"};
  t.root = 0x4000'0000;
  t.events.push_back(TraceEvent::simple(Kind::Mem, 0x4000'0000, 0x4000'1003));
  t.events.push_back(TraceEvent::simple(Kind::Alloc, 0x4000'2000));
  t.events.push_back(TraceEvent::write(0x4000'2000, 511, 0, 0x8000'0000'0070'0743));
  t.events.push_back(TraceEvent::write(0x4000'2000, 0, 1, 0, 0x743));
  t.events.push_back(TraceEvent::simple(Kind::Publish));
  t.events.push_back(TraceEvent::invalidate(0xffff'8000'0000'0000, 0xffff'8000'001f'ffff, 21));
  t.events.push_back(TraceEvent::invalidate(0x1000, 0x1fff, 12, true, true));
  t.events.push_back(TraceEvent::invalidate(0x1000, 0x1fff, 12, false, true));
  t.events.push_back(TraceEvent::invalidate_all());
  t.events.push_back(TraceEvent::invalidate_all(true));
  t.events.push_back(TraceEvent::simple(Kind::Complete));
  t.events.push_back(TraceEvent::simple(Kind::Free, 0x4000'2000));
  t.events.push_back(TraceEvent::simple(Kind::Live, 0x20'0000, 0x20'ffff));
  t.events.push_back(TraceEvent::simple(Kind::Sync));
  t.events.push_back(TraceEvent::use(0x1234));
  t.events.push_back(TraceEvent::use(0x1234, AccessType::Write, true));
  t.events.push_back(TraceEvent::use(0x1234, AccessType::Execute));
  return t;
}

TEST(TraceText, PrintThenParseGivesTheSameTraceAndTheSameText) {
  const Trace t = every_event();
  const std::string text = print_trace(t);
  Trace back;
  ParseError err;
  ASSERT_TRUE(parse_trace(text, back, err)) << "line " << err.line << ": " << err.message;
  EXPECT_EQ(back.version, kTraceVersion);
  EXPECT_EQ(back.format, t.format);
  EXPECT_EQ(back.features, t.features);
  EXPECT_EQ(back.root, t.root);
  ASSERT_EQ(back.events.size(), t.events.size());
  for (size_t i = 0; i < t.events.size(); ++i) {
    EXPECT_EQ(back.events[i], t.events[i]) << "event " << i << ": " << format_event(t.events[i]);
    EXPECT_EQ(back.events[i].line, i + 4) << "the header takes three lines";
  }
  EXPECT_EQ(print_trace(back), text);
}

TEST(TraceText, ReadsCommentsBlankLinesDecimalAndHexAndDefaults) {
  const char* text =
      "# a user's trace\n"
      "\n"
      "ptkit-trace 1   # version\n"
      "format x86_64-4l nonxe\n"
      "root 4096\n"
      "  write 0x1000 3 3 0x2003   \n"
      "\twrite 0x2000 0 2 0X83 old 0\n"
      "use 0x40000000\n"
      "use 0x40000000 w\n"
      "sync";
  Trace t;
  ParseError err;
  ASSERT_TRUE(parse_trace(text, t, err)) << "line " << err.line << ": " << err.message;
  EXPECT_EQ(t.format, "x86_64-4l");
  EXPECT_EQ(t.features, std::vector<std::string>{"nonxe"});
  EXPECT_EQ(t.root, 0x1000u);
  ASSERT_EQ(t.events.size(), 5u);
  EXPECT_EQ(t.events[0], TraceEvent::write(0x1000, 3, 3, 0x2003));
  EXPECT_EQ(t.events[0].line, 6u);
  EXPECT_EQ(t.events[1], TraceEvent::write(0x2000, 0, 2, 0x83, 0));
  EXPECT_EQ(t.events[2].access.type, AccessType::Read);  // r is the default
  EXPECT_FALSE(t.events[2].access.user);
  EXPECT_EQ(t.events[3].access.type, AccessType::Write);
  EXPECT_EQ(t.events[4].kind, Kind::Sync);
  EXPECT_EQ(t.events[4].line, 10u);
}

TEST(TraceText, FeatureWordsSetTheConfiguration) {
  TraceConfig c;
  std::string error;
  ASSERT_TRUE(trace_config("x86_64-4l", {"xen-pv", "no-page_1g", "nonxe"}, c, error)) << error;
  EXPECT_TRUE(c.xen_pv);
  EXPECT_FALSE(c.mmu.x86_page_1g);
  EXPECT_FALSE(c.mmu.x86_nxe);
  ASSERT_TRUE(trace_config("aarch64-16k-48", {"bbm2", "ttbr1"}, c, error)) << error;
  EXPECT_TRUE(c.bbm2);
  EXPECT_TRUE(c.mmu.arm_upper);
  ASSERT_TRUE(trace_config("riscv-sv39", {"svnapot", "svpbmt", "svadu"}, c, error)) << error;
  EXPECT_TRUE(c.mmu.rv_svnapot && c.mmu.rv_svpbmt && c.mmu.rv_svadu);
  EXPECT_FALSE(trace_config("x86_64-5l", {"xen-pv"}, c, error));
  EXPECT_NE(error.find("x86_64-4l"), std::string::npos) << error;
  EXPECT_FALSE(trace_config("riscv-sv48", {"bbm2"}, c, error));
  EXPECT_NE(error.find("aarch64"), std::string::npos) << error;
  EXPECT_FALSE(trace_config("x86_64-4l", {"turbo"}, c, error));
  EXPECT_NE(error.find("unknown feature 'turbo'"), std::string::npos) << error;
}

struct Bad {
  const char* body;      // lines after the three header lines (unless header)
  unsigned line;         // the line the error must name
  const char* expected;  // a part of the message
  bool header = false;   // body is the whole text
};

TEST(TraceText, EveryMalformedLineIsNamedWithWhatWasExpected) {
  const Bad cases[] = {
      {"", 1, "empty trace", true},
      {"format x86_64-4l\n", 1, "expected the header 'ptkit-trace 1'", true},
      {"ptkit-trace\n", 1, "expected the format version", true},
      {"ptkit-trace one\n", 1, "expected the format version (a number", true},
      {"ptkit-trace 2\n", 1, "unsupported trace version 2", true},
      {"ptkit-trace 1 extra\n", 1, "unexpected 'extra'", true},
      {"ptkit-trace 1\nroot 0x1000\nsync\n", 3, "expected 'format <name>'", true},
      {"ptkit-trace 1\nformat x86_64-4l\nsync\n", 3, "expected 'root <pa>'", true},
      {"ptkit-trace 1\nformat\n", 2, "expected a format name", true},
      {"ptkit-trace 1\nformat sparc\n", 2, "unknown paging format 'sparc'", true},
      {"ptkit-trace 1\nformat aarch64-4k-48 svnapot\n", 2, "riscv formats only", true},
      {"ptkit-trace 1\nformat x86_64-4l\nformat x86_64-4l\n", 3, "a second 'format'", true},
      {"ptkit-trace 1\nformat x86_64-4l\nroot\n", 3, "expected the root table", true},
      {"ptkit-trace 1\nformat x86_64-4l\nroot 0x1000\nroot 0x2000\n", 4, "a second 'root'", true},
      {"ptkit-trace 1\nformat x86_64-4l\nroot 0x1000 0x2000\n", 3, "unexpected '0x2000'", true},
      {"ptkit-trace 1\nformat x86_64-4l\n", 3, "end of trace: expected 'root <pa>'", true},
      {"sync\nformat x86_64-5l\n", 5, "a second 'format' line"},
      {"sync\nroot 0x5000\n", 5, "a second 'root' line"},
      {"frobnicate 1 2\n", 4, "unknown event 'frobnicate'"},
      {"write\n", 4, "expected the table's physical address after 'write'"},
      {"write 0x1000\n", 4, "expected the entry index"},
      {"write 0x1000 8192 0 0x3\n", 4, "entry index 8192 is out of range"},
      {"write 0x1000 1\n", 4, "expected the table's level"},
      {"write 0x1000 1 5 0x3\n", 4, "level 5 is out of range"},
      {"write 0x1000 1 0\n", 4, "expected the new raw value"},
      {"write 0x1000 1 0 0xZZ\n", 4, "expected the new raw value (a number"},
      {"write 0x1000 1 0 0x10000000000000000\n", 4, "expected the new raw value (a number"},
      {"write 0x1000 1 0 -1\n", 4, "expected the new raw value (a number"},
      {"write 0x1000 1 0 3 new 5\n", 4, "expected 'old <raw>'"},
      {"write 0x1000 1 0 3 old\n", 4, "expected the old raw value"},
      {"write 0x1000 1 0 3 old 5 6\n", 4, "unexpected '6'"},
      {"publish now\n", 4, "unexpected 'now'"},
      {"complete 1\n", 4, "unexpected '1'"},
      {"sync x\n", 4, "unexpected 'x'"},
      {"invalidate 0x1000\n", 4, "expected the last virtual address"},
      {"invalidate 0x2000 0x1000 12\n", 4, "the last address is below the first"},
      {"invalidate 0x1000 0x1fff\n", 4, "expected the stride shift"},
      {"invalidate 0x1000 0x1fff 64\n", 4, "stride shift 64 is out of range"},
      {"invalidate 0x1000 0x1fff 12 asid\n", 4, "expected 'global' or 'tables', got 'asid'"},
      {"invalidate 0x1000 0x1fff 12 global global\n", 4, "expected 'global' or 'tables'"},
      {"invalidate-all local\n", 4, "expected 'global' or the end of the line"},
      {"invalidate-all global global\n", 4, "unexpected 'global'"},
      {"alloc\n", 4, "expected a physical address"},
      {"free 0x1000 0x2000\n", 4, "unexpected '0x2000'"},
      {"live 0x2000\n", 4, "expected the last virtual address"},
      {"live 0x2000 0x1000\n", 4, "the last address is below the first"},
      {"use\n", 4, "expected a virtual address"},
      {"use 0x1000 rw\n", 4, "expected 'r', 'w', 'x' or 'user', got 'rw'"},
      {"use 0x1000 r w\n", 4, "got 'w'"},
      {"mem 0x1000\n", 4, "expected a raw entry value"},
      {"sync\nmem 0x1000 3\n", 5, "must come before every other event"},
      {"# fine\n\nsync\n\n  # fine\nbogus\n", 9, "unknown event 'bogus'"},
  };
  for (const Bad& b : cases) {
    const std::string text =
        b.header ? std::string(b.body)
                 : "ptkit-trace 1\nformat x86_64-4l\nroot 0x1000\n" + std::string(b.body);
    Trace t;
    ParseError err;
    EXPECT_FALSE(parse_trace(text, t, err)) << text;
    EXPECT_EQ(err.line, b.line) << text << "\n-> " << err.message;
    EXPECT_NE(err.message.find(b.expected), std::string::npos)
        << text << "\n-> line " << err.line << ": " << err.message << "\nexpected: " << b.expected;
  }
}

TEST(TraceText, HostileInputIsRejectedWithoutCrashing) {
  // Random bytes and truncations of a valid trace never crash the parser.
  const std::string good = print_trace(every_event());
  std::uint64_t x = 88172645463325252ull;
  for (int round = 0; round < 20000; ++round) {
    std::string text = good.substr(0, (x >> 7) % (good.size() + 1));
    x ^= x << 13;
    x ^= x >> 7;
    x ^= x << 17;
    if (!text.empty() && (x & 1)) text[(x >> 9) % text.size()] = char(x >> 40);
    Trace t;
    ParseError err;
    if (!parse_trace(text, t, err)) {
      EXPECT_GE(err.line, 1u);
      EXPECT_FALSE(err.message.empty());
    }
  }
}

}  // namespace
}  // namespace ptkit::sim
