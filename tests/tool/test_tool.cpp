// The ptkit tool as users run it: golden outputs of formats and build, the
// build -> dump round trip for every format, check on traces, and bad input
// with the exit status and the message it must give.
#include <gtest/gtest.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cstdint>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>
#include <sstream>
#include <string>
#include <vector>

namespace {

namespace fs = std::filesystem;
using u64 = std::uint64_t;
using json = nlohmann::json;

const std::string kTool = PTKIT_TOOL;
const std::string kSource = PTKIT_SOURCE_DIR;
const std::string kTestDir = PTKIT_TOOL_TEST_DIR;
const std::string kTmp = PTKIT_TOOL_TMP;

// Every format `ptkit formats` lists; the golden files cover a subset.
const std::vector<std::string> kAllFormats = {
    "x86_64-4l",      "x86_64-5l",      "aarch64-4k-39",  "aarch64-4k-48",  "aarch64-4k-52",
    "aarch64-16k-39", "aarch64-16k-48", "aarch64-16k-52", "aarch64-64k-39", "aarch64-64k-48",
    "aarch64-64k-52", "riscv-sv39",     "riscv-sv48",     "riscv-sv57"};
const std::vector<std::string> kGoldenFormats = {
    "x86_64-4l",      "x86_64-5l",  "aarch64-4k-48", "aarch64-16k-39",
    "aarch64-64k-52", "riscv-sv39", "riscv-sv57"};
// "builtin" is `ptkit build` without a layout; the others are examples/*.toml.
const std::vector<std::string> kLayouts = {"builtin", "board", "identity"};

std::string read_text(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  std::stringstream s;
  s << in.rdbuf();
  return s.str();
}

void write_text(const std::string& path, const std::string& text) {
  std::ofstream out(path, std::ios::binary | std::ios::trunc);
  out << text;
}

std::string quote(const std::string& s) {
  std::string q = "'";
  for (char c : s) q += c == '\'' ? std::string("'\\''") : std::string(1, c);
  return q + "'";
}

/// A scratch path unique to this test process.
std::string tmp(const std::string& name) {
  return kTmp + "/" + std::to_string(getpid()) + "-" + name;
}

struct Ran {
  int status = -1;
  std::string out, err;
};

Ran run(const std::vector<std::string>& args) {
  static int counter = 0;
  const std::string base = tmp("run" + std::to_string(counter++));
  std::string cmd = quote(kTool);
  for (const std::string& a : args) cmd += " " + quote(a);
  cmd += " >" + quote(base + ".out") + " 2>" + quote(base + ".err") + " </dev/null";
  const int rc = std::system(cmd.c_str());
  Ran r;
  r.status = WIFEXITED(rc) ? WEXITSTATUS(rc) : -1;
  r.out = read_text(base + ".out");
  r.err = read_text(base + ".err");
  return r;
}

std::vector<std::string> build_args(const std::string& layout) {
  if (layout == "builtin") return {"build"};
  return {"build", kSource + "/examples/" + layout + ".toml"};
}

/// Compares with golden/<name>, or rewrites it when PTKIT_UPDATE_GOLDEN is set.
void expect_golden(const std::string& name, const std::string& actual) {
  const std::string path = kTestDir + "/golden/" + name;
  if (std::getenv("PTKIT_UPDATE_GOLDEN")) {
    write_text(path, actual);
    return;
  }
  ASSERT_TRUE(fs::exists(path)) << path << " is missing; regenerate (tests/tool/README.md)";
  EXPECT_EQ(actual, read_text(path))
      << "output differs from " << path << "; if the change is intended, regenerate with "
      << "PTKIT_UPDATE_GOLDEN=1 ctest --test-dir <build> -R '^tool\\.' and review the diff";
}

u64 parse_hex(const json& j) { return std::stoull(j.get<std::string>(), nullptr, 16); }

/// Text without the section markers (which only `build --dump` knows).
std::string without_markers(const std::string& text) {
  std::istringstream in(text);
  std::string line, out;
  while (std::getline(in, line))
    if (line.rfind("---[", 0) != 0) out += line + "\n";
  return out;
}

// ---- formats, --help, --version ---------------------------------------------------

TEST(ToolFormats, Golden) {
  const Ran r = run({"formats"});
  ASSERT_EQ(r.status, 0) << r.err;
  expect_golden("formats.txt", r.out);
  // One line per format, and every listed name is accepted by build.
  std::istringstream in(r.out);
  std::string line;
  std::vector<std::string> names;
  while (std::getline(in, line)) names.push_back(line.substr(0, line.find(' ')));
  EXPECT_EQ(names, kAllFormats);
}

TEST(ToolHelp, EveryCommandHasHelpWithExamples) {
  for (const char* cmd : {"formats", "build", "dump", "check"}) {
    const Ran r = run({cmd, "--help"});
    EXPECT_EQ(r.status, 0) << cmd;
    EXPECT_NE(r.out.find("Example"), std::string::npos) << cmd << ":\n" << r.out;
  }
  const Ran top = run({"--help"});
  EXPECT_EQ(top.status, 0);
  EXPECT_NE(top.out.find("Exit status"), std::string::npos);
}

TEST(ToolHelp, VersionAndUsageErrors) {
  const Ran v = run({"--version"});
  EXPECT_EQ(v.status, 0);
  EXPECT_EQ(v.out.rfind("ptkit ", 0), 0u) << v.out;
  EXPECT_EQ(run({}).status, 1);                      // no command
  EXPECT_EQ(run({"frobnicate"}).status, 1);          // unknown command
  EXPECT_EQ(run({"build", "--no-such"}).status, 1);  // unknown option
  const Ran bad_root = run({"dump", "x.bin", "--root", "0xzz", "--format", "x86_64-4l"});
  EXPECT_EQ(bad_root.status, 1);
  EXPECT_NE(bad_root.err.find("--root: expected a hex"), std::string::npos) << bad_root.err;
}

// ---- build: golden outputs -----------------------------------------------------------

class ToolBuildGolden : public testing::TestWithParam<std::tuple<std::string, std::string>> {};

TEST_P(ToolBuildGolden, JsonAndDump) {
  const auto& [layout, format] = GetParam();
  auto args = build_args(layout);
  args.insert(args.end(), {"--format", format});
  auto json_args = args;
  json_args.push_back("--json");
  const Ran j = run(json_args);
  ASSERT_EQ(j.status, 0) << j.err;
  expect_golden(layout + "." + format + ".json", j.out);
  const json stats = json::parse(j.out);
  for (const char* key : {"format", "root", "tables", "leaves", "table_bytes"})
    EXPECT_TRUE(stats.contains(key)) << key;
  EXPECT_EQ(stats["format"], format);
  EXPECT_EQ(stats["table_bytes"].get<u64>() % 4096, 0u);

  auto dump_args = args;
  dump_args.push_back("--dump");
  const Ran d = run(dump_args);
  ASSERT_EQ(d.status, 0) << d.err;
  expect_golden(layout + "." + format + ".dump.txt", d.out);
}

INSTANTIATE_TEST_SUITE_P(Layouts, ToolBuildGolden,
                         testing::Combine(testing::ValuesIn(kLayouts),
                                          testing::ValuesIn(kGoldenFormats)),
                         [](const auto& info) {
                           std::string n = std::get<0>(info.param) + "_" + std::get<1>(info.param);
                           for (char& c : n)
                             if (c == '-') c = '_';
                           return n;
                         });

TEST(ToolBuild, BuiltinIsExamplesKernelToml) {
  for (const std::string& f : kGoldenFormats) {
    const Ran builtin = run({"build", "--format", f, "--json"});
    const Ran file = run({"build", kSource + "/examples/kernel.toml", "--format", f, "--json"});
    ASSERT_EQ(builtin.status, 0) << builtin.err;
    EXPECT_EQ(builtin.out, file.out) << f;
  }
}

TEST(ToolBuild, DefaultOutputIsASummary) {
  const Ran r = run({"build"});
  ASSERT_EQ(r.status, 0) << r.err;
  EXPECT_NE(r.out.find("x86_64-4l: 6 ranges in 6 table pages"), std::string::npos) << r.out;
  EXPECT_NE(r.out.find("5 x 1G"), std::string::npos) << r.out;
}

// ---- build --out, then dump: the round trip ------------------------------------------

class ToolRoundTrip : public testing::TestWithParam<std::tuple<std::string, std::string>> {};

TEST_P(ToolRoundTrip, DumpReproducesTheLayout) {
  const auto& [layout, format] = GetParam();
  const std::string blob = tmp(layout + "-" + format + ".bin");
  auto args = build_args(layout);
  args.insert(args.end(), {"--format", format, "--out", blob, "--json"});
  const Ran b = run(args);
  ASSERT_EQ(b.status, 0) << b.err;
  const json stats = json::parse(b.out);
  const json side = json::parse(read_text(blob + ".json"));
  EXPECT_EQ(side["format"], format);
  EXPECT_EQ(side["root"], stats["root"]);
  EXPECT_EQ(side["size"].get<u64>(), fs::file_size(blob));
  EXPECT_EQ(side["size"], stats["table_bytes"]);

  std::vector<std::string> dump = {"dump",   blob,         "--root",   side["root"],
                                   "--base", side["base"], "--format", format};
  if (side.contains("half")) {
    dump.push_back("--half");
    dump.push_back(side["half"] == "ttbr1" ? "upper" : "lower");
  }
  auto dump_json = dump;
  dump_json.push_back("--json");
  const Ran d = run(dump_json);
  ASSERT_EQ(d.status, 0) << d.err;
  const json runs = json::parse(d.out);
  ASSERT_TRUE(runs.is_array());

  // Every mapping of the layout is covered, byte for byte, by runs with its
  // physical offset, permissions and memory type; nothing else is mapped.
  u64 mapped = 0;
  for (const json& m : stats["mappings"]) {
    const u64 va = parse_hex(m["va"]), pa = parse_hex(m["pa"]), size = m["size"].get<u64>();
    const std::string perm = m["perm"];  // "rw-u" style
    const bool user = perm[3] == 'u';
    mapped += size;
    u64 done = 0;
    while (done < size) {
      const u64 at = va + done;
      const json* hit = nullptr;
      for (const json& r : runs) {
        const u64 rva = parse_hex(r["va"]);
        if (at >= rva && at - rva < r["size"].get<u64>()) hit = &r;
      }
      ASSERT_NE(hit, nullptr) << m["name"] << ": va " << std::hex << at << " not mapped";
      const u64 rva = parse_hex((*hit)["va"]);
      EXPECT_EQ(parse_hex((*hit)["pa"]) + (at - rva), pa + done) << m["name"];
      EXPECT_EQ((*hit)[user ? "user" : "perms"], perm.substr(0, 3)) << m["name"];
      EXPECT_EQ((*hit)["mem"], m["mem"] == "device" ? (*hit)["mem"] : m["mem"]) << m["name"];
      EXPECT_EQ((*hit)["global"], m["global"]) << m["name"];
      const u64 run_left = (*hit)["size"].get<u64>() - (at - rva);
      done += std::min(run_left, size - done);
    }
  }
  u64 dumped = 0;
  for (const json& r : runs) dumped += r["size"].get<u64>();
  EXPECT_EQ(dumped, mapped);

  // And dump's text is build --dump's without the section markers.
  const Ran text = run(dump);
  ASSERT_EQ(text.status, 0) << text.err;
  auto build_dump = build_args(layout);
  build_dump.insert(build_dump.end(), {"--format", format, "--dump"});
  const Ran bd = run(build_dump);
  EXPECT_EQ(without_markers(text.out), without_markers(bd.out));
}

INSTANTIATE_TEST_SUITE_P(AllFormats, ToolRoundTrip,
                         testing::Combine(testing::ValuesIn(kLayouts),
                                          testing::ValuesIn(kAllFormats)),
                         [](const auto& info) {
                           std::string n = std::get<0>(info.param) + "_" + std::get<1>(info.param);
                           for (char& c : n)
                             if (c == '-') c = '_';
                           return n;
                         });

// ---- bad layouts ----------------------------------------------------------------------

const std::string kGoodHead =
    "[tables]\nbase = \"16M\"\n[[memory]]\nkind = \"ram\"\nbase = 0\nsize = \"1G\"\n";

Ran build_text(const std::string& name, const std::string& text,
               std::vector<std::string> extra = {}) {
  const std::string path = tmp(name);
  write_text(path, text);
  std::vector<std::string> args = {"build", path};
  args.insert(args.end(), extra.begin(), extra.end());
  return run(args);
}

TEST(ToolBadLayout, MalformedTomlNamesTheLine) {
  const Ran r = build_text("syntax.toml", kGoodHead + "[[map]]\nkind = \"fixed\"\nva = = 3\n");
  EXPECT_EQ(r.status, 2);
  EXPECT_NE(r.err.find("syntax.toml:9: TOML syntax"), std::string::npos) << r.err;
}

TEST(ToolBadLayout, UnknownKeyNamesLineAndWhatWasExpected) {
  const Ran r = build_text("key.toml", kGoodHead +
                                           "[[map]]\nname = \"slot\"\nkind = \"fixed\"\nva = "
                                           "\"upper\"\npa = \"1M\"\nsise = \"4K\"\n");
  EXPECT_EQ(r.status, 2);
  EXPECT_NE(r.err.find("key.toml:12: map 'slot': unknown key 'sise' (expected one of: name, kind"),
            std::string::npos)
      << r.err;
}

TEST(ToolBadLayout, BadValueNamesTheLine) {
  const Ran r = build_text("value.toml", kGoodHead +
                                             "[[map]]\nname = \"slot\"\nkind = \"fixed\"\nva = "
                                             "\"upper\"\npa = \"1Q\"\nsize = \"4K\"\n");
  EXPECT_EQ(r.status, 2);
  EXPECT_NE(r.err.find("value.toml:11: map 'slot': 'pa': expected a hex"), std::string::npos)
      << r.err;
}

TEST(ToolBadLayout, UnknownFormatInTheLayoutIsBadInput) {
  const Ran r = build_text("format.toml", "format = \"pdp11\"\n" + kGoodHead +
                                              "[[map]]\nkind = \"direct\"\nva = \"upper\"\n");
  EXPECT_EQ(r.status, 2);
  EXPECT_NE(r.err.find("format.toml:1: 'format': unknown paging format \"pdp11\""),
            std::string::npos)
      << r.err;
}

TEST(ToolBadLayout, UnknownFormatOptionIsAUsageError) {
  const Ran r = run({"build", "--format", "aarch64-8k-48"});
  EXPECT_EQ(r.status, 1);
  EXPECT_NE(r.err.find("unknown AArch64 granule '8k'"), std::string::npos) << r.err;
}

TEST(ToolBadLayout, TooSmallTableAreaSaysSo) {
  const Ran r = build_text("small.toml",
                           "[tables]\nbase = \"16M\"\nsize = \"8K\"\n"
                           "[[memory]]\nkind = \"ram\"\nbase = 0\nsize = \"1G\"\n"
                           "[[map]]\nname = \"dm\"\nkind = \"direct\"\nva = "
                           "\"upper\"\nmax_page = \"4K\"\n");
  EXPECT_EQ(r.status, 2);
  EXPECT_NE(r.err.find("small.toml:8: map 'dm': map failed"), std::string::npos) << r.err;
  EXPECT_NE(r.err.find("raise [tables] size"), std::string::npos) << r.err;
}

TEST(ToolBadLayout, MmioOutsideDeviceMemoryIsRefused) {
  const Ran r = build_text("mmio.toml", kGoodHead +
                                            "[[map]]\nname = \"uart\"\nkind = \"mmio\"\nva = "
                                            "\"upper\"\npa = \"1M\"\nsize = \"4K\"\n");
  EXPECT_EQ(r.status, 2);
  EXPECT_NE(r.err.find("mmio.toml:7: map 'uart': pa 0x100000+0x1000 is not inside one \"device\""),
            std::string::npos)
      << r.err;
}

TEST(ToolBadLayout, MisalignedImageSectionIsNamed) {
  const Ran r = build_text("image.toml",
                           kGoodHead +
                               "[[map]]\nname = \"k\"\nkind = \"image\"\nva = \"-2G\"\npa = "
                               "\"2M\"\nsections = [ { name = \".text\", size = \"6K\", perm = "
                               "\"rx\" }, { name = \".data\", size = \"4K\", perm = \"rw\" } ]\n");
  EXPECT_EQ(r.status, 2);
  EXPECT_NE(r.err.find("image.toml:7: map 'k':"), std::string::npos) << r.err;
  EXPECT_NE(r.err.find("'.text'"), std::string::npos) << r.err;
}

TEST(ToolBadLayout, MissingFileIsBadInput) {
  const Ran r = run({"build", tmp("no-such.toml")});
  EXPECT_EQ(r.status, 2);
  EXPECT_NE(r.err.find("no-such.toml: cannot open"), std::string::npos) << r.err;
}

// ---- bad memory images ----------------------------------------------------------------

/// An x86-64 4-level image at physical 16 MiB: the root at offset 0 and
/// `words` written at the given word offsets.
std::string x86_image(const std::string& name, u64 bytes,
                      const std::vector<std::pair<u64, u64>>& words) {
  std::string data(bytes, '\0');
  for (const auto& [index, value] : words)
    for (int b = 0; b < 8; ++b) data[index * 8 + b] = char((value >> (8 * b)) & 0xff);
  const std::string path = tmp(name);
  write_text(path, data);
  return path;
}

Ran dump_x86(const std::string& path, const std::string& root = "16M") {
  return run({"dump", path, "--root", root, "--base", "16M", "--format", "x86_64-4l"});
}

TEST(ToolBadImage, TruncatedImage) {
  const std::string blob = tmp("trunc-src.bin");
  ASSERT_EQ(run({"build", "--out", blob}).status, 0);
  std::string data = read_text(blob);
  data.resize(5000);  // the root and part of the next table
  write_text(blob, data);
  const Ran r = dump_x86(blob);
  EXPECT_EQ(r.status, 2);
  EXPECT_NE(r.err.find("at pa 0x1001000 (offset 0x1000) needs 4096 bytes but the image ends at "
                       "offset 0x1388: truncated image?"),
            std::string::npos)
      << r.err;
}

TEST(ToolBadImage, RootOutsideTheImage) {
  const std::string path = x86_image("small.bin", 4096, {});
  const Ran r = dump_x86(path, "0x2000000");
  EXPECT_EQ(r.status, 2);
  EXPECT_NE(r.err.find("root table at pa 0x2000000 is outside the image (pa 0x1000000-0x1001000"),
            std::string::npos)
      << r.err;
}

TEST(ToolBadImage, PointerOutsideTheImage) {
  // PML4[3] points to a PDPT at 1 GiB, far past the 8 KiB image.
  const std::string path = x86_image("wild.bin", 8192, {{3, 0x40000000 | 3}});
  const Ran r = dump_x86(path);
  EXPECT_EQ(r.status, 2);
  EXPECT_NE(r.err.find("PDPT table (from PML4 entry 3 of the table at pa 0x1000000) at pa "
                       "0x40000000 is outside the image"),
            std::string::npos)
      << r.err;
}

TEST(ToolBadImage, TableThatPointsToItself) {
  const std::string path = x86_image("loop.bin", 4096, {{0, 0x1000000 | 3}});
  const Ran r = dump_x86(path);
  EXPECT_EQ(r.status, 2);
  EXPECT_NE(r.err.find("at pa 0x1000000 (offset 0x0) is also a table higher up the same walk: "
                       "the tables loop"),
            std::string::npos)
      << r.err;
}

TEST(ToolBadImage, SharedTablesCannotMakeTheWalkRunAway) {
  // PML4 -> PDPT whose 512 entries all point to one PD whose 512 entries all
  // point to one PT of 512 pages: 2^27 leaves without a loop. The walk stops.
  std::vector<std::pair<u64, u64>> words = {{0, 0x1001000 | 3}};
  for (u64 i = 0; i < 512; ++i) {
    words.push_back({512 + i, 0x1002000 | 3});
    words.push_back({1024 + i, 0x1003000 | 3});
    words.push_back({1536 + i, (i << 12) | 3});
  }
  const std::string path = x86_image("fan.bin", 4 * 4096, words);
  const Ran r = dump_x86(path);
  EXPECT_EQ(r.status, 2);
  EXPECT_NE(r.err.find("walk stopped after"), std::string::npos) << r.err;
}

// ---- check ----------------------------------------------------------------------------

TEST(ToolCheck, ViolationsExitThreeWithEventRuleAndSection) {
  const Ran r = run({"check", kTestDir + "/data/stale.trace"});
  EXPECT_EQ(r.status, 3) << r.err;
  EXPECT_NE(r.out.find("line 15 (event 9): stale-translation at va 0x1000 level 0"),
            std::string::npos)
      << r.out;
  EXPECT_NE(r.out.find("[Intel SDM vol. 3A 4.10.4"), std::string::npos) << r.out;

  const Ran j = run({"check", kTestDir + "/data/stale.trace", "--json"});
  EXPECT_EQ(j.status, 3);
  const json v = json::parse(j.out)["violations"];
  ASSERT_EQ(v.size(), 1u);
  EXPECT_EQ(v[0]["event"], 9);
  EXPECT_EQ(v[0]["rule"], "stale-translation");
  EXPECT_NE(v[0]["section"].get<std::string>().find("4.10.4"), std::string::npos);
}

TEST(ToolCheck, CleanTraceExitsZero) {
  const Ran r = run({"check", kTestDir + "/data/clean.trace"});
  EXPECT_EQ(r.status, 0) << r.err;
  EXPECT_NE(r.out.find("11 events, 0 violations"), std::string::npos) << r.out;
}

TEST(ToolCheck, MalformedTraceNamesTheLine) {
  const Ran r = run({"check", kTestDir + "/data/malformed.trace"});
  EXPECT_EQ(r.status, 2);
  EXPECT_NE(r.err.find("malformed.trace:4: 'write': expected the entry index"), std::string::npos)
      << r.err;
}

}  // namespace
