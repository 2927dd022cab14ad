// The ptkit tool as users run it: golden outputs of formats and build, the
// build -> dump round trip for every format, check on traces, and bad input
// with the exit status and the message it must give.
#include <elf.h>
#include <gtest/gtest.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <map>
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

// Every format `ptkit formats` lists; every one has golden files.
const std::vector<std::string> kAllFormats = {
    "x86_64-4l",      "x86_64-5l",      "aarch64-4k-39",  "aarch64-4k-48",  "aarch64-4k-52",
    "aarch64-16k-39", "aarch64-16k-48", "aarch64-16k-52", "aarch64-64k-39", "aarch64-64k-48",
    "aarch64-64k-52", "riscv-sv39",     "riscv-sv48",     "riscv-sv57"};
const std::vector<std::string>& kGoldenFormats = kAllFormats;
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

std::string hex_text(u64 v) {
  std::ostringstream s;
  s << "0x" << std::hex << v;
  return s.str();
}

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
  for (const char* cmd : {"formats", "build", "image", "dump", "check"}) {
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

  // The audit finds nothing but the identity map's rwx RAM (early boot),
  // which is also an executable direct map. The direct map may write the
  // tables; the sidecar says where it is.
  auto audit_args = dump;
  audit_args.push_back("--audit");
  if (side.contains("direct_map"))
    audit_args.insert(audit_args.end(), {"--direct-map", side["direct_map"]});
  const Ran a = run(audit_args);
  EXPECT_EQ(a.status, layout == "identity" ? 3 : 0) << a.out << a.err;
  if (layout == "identity") {
    EXPECT_NE(a.out.find("wx              0x0000000040000000-0x0000000080000000"),
              std::string::npos)
        << a.out;
    EXPECT_NE(a.out.find("exec-direct-map 0x0000000040000000-0x0000000080000000"),
              std::string::npos)
        << a.out;
    EXPECT_NE(a.out.find(": 2 findings (1 exec-direct-map, 1 wx)"), std::string::npos) << a.out;
  }

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

// ---- dump --audit ---------------------------------------------------------------------

/// A table blob written by `build --out`, to corrupt on purpose.
struct Blob {
  std::string bytes;
  u64 base = 0, root = 0;
  std::string direct_map;  // the sidecar's, for --direct-map; empty: none

  [[nodiscard]] u64 word(u64 pa) const {
    u64 v = 0;
    for (int b = 0; b < 8; ++b) v |= u64(std::uint8_t(bytes.at(pa - base + b))) << (8 * b);
    return v;
  }
  void set(u64 pa, u64 v) {
    for (int b = 0; b < 8; ++b) bytes.at(pa - base + b) = char((v >> (8 * b)) & 0xff);
  }
  /// The pa of the entry translating `va` at `level` (0 = the 4K level) of
  /// a 4-level, 4K-granule tree (x86-64 4-level, AArch64 4K/48): nine index
  /// bits a level and the next table at bits 47:12, as both manuals say.
  [[nodiscard]] u64 entry(u64 va, unsigned level) const {
    u64 table = root;
    for (unsigned l = 3;; --l) {
      const u64 at = table + ((va >> (12 + 9 * l)) & 511) * 8;
      if (l == level) return at;
      table = word(at) & 0x0000fffffffff000;
    }
  }
};

Blob built_blob(const std::string& format, const std::string& path) {
  EXPECT_EQ(run({"build", "--format", format, "--out", path}).status, 0);
  const json side = json::parse(read_text(path + ".json"));
  return {read_text(path), parse_hex(side["base"]), parse_hex(side["root"]),
          side.value("direct_map", std::string())};
}

Ran audit(const Blob& b, const std::string& format, const std::string& path,
          std::vector<std::string> extra = {}) {
  write_text(path, b.bytes);
  std::vector<std::string> args = {"dump",           path,     "--root",
                                   hex_text(b.root), "--base", hex_text(b.base),
                                   "--format",       format,   "--audit"};
  // The direct map writes the tables; --direct-map says where it is.
  if (!b.direct_map.empty()) args.insert(args.end(), {"--direct-map", b.direct_map});
  args.insert(args.end(), extra.begin(), extra.end());
  return run(args);
}

TEST(ToolAudit, CorruptedX86TablesGiveOneFindingEach) {
  const std::string path = tmp("audit-x86.bin");
  Blob b = built_blob("x86_64-4l", path);
  const Ran clean = audit(b, "x86_64-4l", path);
  EXPECT_EQ(clean.status, 0) << clean.out << clean.err;
  EXPECT_EQ(clean.out, "x86_64-4l: no findings\n");

  // The built-in example: kernel text at -2G in 2M leaves, the direct map at
  // 0xffff800000000000 in 1G leaves (PML4 slot 256), slots 1-3 and 300 free.
  const u64 text = 0xffffffff80000000, direct = 0xffff800000000000;
  b.set(b.entry(text, 1), b.word(b.entry(text, 1)) | 2);  // R/W on text: W+X
  for (unsigned level : {3u, 2u})                         // U/S on every level of one 1G leaf
    b.set(b.entry(direct, level), b.word(b.entry(direct, level)) | 4);
  const u64 text2 = text + (2 << 20);
  b.set(b.entry(text2, 1), b.word(b.entry(text2, 1)) | (1 << 13));  // reserved in a 2M leaf
  b.set(b.root + 1 * 8, 0x40000000 | 3);                            // a PDPT far outside
  b.set(b.root + 3 * 8, b.root | 3);                                // the root again
  b.set(b.root + 300 * 8, b.word(b.entry(direct, 3)));              // slot 256's PDPT again
  const Ran r = audit(b, "x86_64-4l", path);
  EXPECT_EQ(r.status, 3) << r.err;
  expect_golden("audit.corrupt.x86_64-4l.txt", r.out);

  const Ran j = audit(b, "x86_64-4l", path, {"--json"});
  EXPECT_EQ(j.status, 3) << j.err;
  const json report = json::parse(j.out);
  const json want = {{"wx", 1},   {"user-kernel", 1}, {"reserved", 1}, {"outside-image", 1},
                     {"loop", 1}, {"shared-table", 1}};
  EXPECT_EQ(report["counts"], want) << j.out;
  std::map<std::string, u64> va_of;
  for (const json& f : report["findings"]) va_of[f["kind"]] = parse_hex(f["va"]);
  EXPECT_EQ(va_of["wx"], text);
  EXPECT_EQ(va_of["user-kernel"], direct);
  EXPECT_EQ(va_of["reserved"], text2);
  EXPECT_EQ(va_of["outside-image"], u64{1} << 39);
  EXPECT_EQ(va_of["loop"], u64{3} << 39);
  EXPECT_EQ(va_of["shared-table"], 0xffff960000000000);  // slot 300: the second pointer
  for (const json& f : report["findings"]) {
    if (f["kind"] == "wx") {
      EXPECT_EQ(f["size"], 2 << 20);
      EXPECT_EQ(f["perms"], "rwx");
    }
    if (f["kind"] == "user-kernel") {
      EXPECT_EQ(f["size"], 1 << 30);
      EXPECT_EQ(f["user"], "rw-");
    }
    if (f["kind"] == "outside-image") {
      EXPECT_EQ(parse_hex(f["target"]), 0x40000000u);
    }
  }
  // A plain dump still refuses what the audit reports.
  const Ran d = run({"dump", path, "--root", hex_text(b.root), "--base", hex_text(b.base),
                     "--format", "x86_64-4l"});
  EXPECT_EQ(d.status, 2) << d.out;
}

TEST(ToolAudit, AArch64UserAccessOnlyMattersInTheKernelHalf) {
  const std::string path = tmp("audit-arm.bin");
  Blob b = built_blob("aarch64-4k-48", path);  // the built-in example lies in TTBR1
  const u64 text = 0xffffffff80000000;
  b.set(b.entry(text, 1), b.word(b.entry(text, 1)) | (1 << 6));  // AP[1]: EL0 access
  const Ran r = audit(b, "aarch64-4k-48", path, {"--half", "upper", "--json"});
  EXPECT_EQ(r.status, 3) << r.err;
  const json report = json::parse(r.out);
  ASSERT_EQ(report["findings"].size(), 1u) << r.out;
  EXPECT_EQ(report["findings"][0]["kind"], "user-kernel");
  EXPECT_EQ(parse_hex(report["findings"][0]["va"]), text);
  EXPECT_EQ(report["findings"][0]["user"], "r--");
  EXPECT_EQ(report["half"], "ttbr1");
  // The same tables as a TTBR0 root: user mappings are what TTBR0 is for.
  // (The direct map at 0xffff000000000000 in TTBR1 is at 0 seen from TTBR0.)
  b.direct_map.clear();
  const Ran lower = audit(b, "aarch64-4k-48", path, {"--half", "lower", "--direct-map", "0"});
  EXPECT_EQ(lower.status, 0) << lower.out;
}

TEST(ToolAudit, RiscvMisalignedSuperpageIsReserved) {
  // Sv39 root at 16M: entry 2 (va 2G) a 1G leaf whose PPN is not 1G-aligned,
  // which the walk refuses (privileged spec 4.3.2 step 6).
  const u64 ppn = (u64{0x80000000} >> 12) | 1;
  const std::string path = x86_image("rv-misaligned.bin", 4096, {{2, (ppn << 10) | 0xcb}});
  const Ran r = run({"dump", path, "--root", "16M", "--base", "16M", "--format", "riscv-sv39",
                     "--audit", "--json"});
  EXPECT_EQ(r.status, 3) << r.err;
  const json report = json::parse(r.out);
  ASSERT_EQ(report["findings"].size(), 1u) << r.out;
  EXPECT_EQ(report["findings"][0]["kind"], "reserved") << r.out;
  EXPECT_EQ(parse_hex(report["findings"][0]["va"]), 0x80000000u);
  EXPECT_EQ(report["findings"][0]["size"], 1 << 30);
  EXPECT_EQ(report["findings"][0]["level"], "L2");
}

TEST(ToolAudit, ManyProblemsAreCountedNotAllListed) {
  // 511 PML4 entries with the reserved PS bit, and a PDPT of 512 1G leaves
  // with reserved bit 13: 1023 findings, 1000 of a kind listed.
  std::vector<std::pair<u64, u64>> words = {{0, 0x1001000 | 3}};
  for (u64 i = 1; i < 512; ++i) words.push_back({i, 0x80 | 3});
  for (u64 i = 0; i < 512; ++i) words.push_back({512 + i, (i << 30) | 0x2000 | 0x80 | 3});
  const std::string path = x86_image("many.bin", 8192, words);
  const Ran r =
      run({"dump", path, "--root", "16M", "--base", "16M", "--format", "x86_64-4l", "--audit"});
  EXPECT_EQ(r.status, 3);
  EXPECT_NE(r.out.find("... and 23 more entry problems (at most 1000 of a kind are listed)"),
            std::string::npos)
      << r.out.substr(r.out.size() - 300);
  EXPECT_NE(r.out.find("x86_64-4l: 1023 findings (1000 reserved)"), std::string::npos)
      << r.out.substr(r.out.size() - 300);
  const Ran j = run({"dump", path, "--root", "16M", "--base", "16M", "--format", "x86_64-4l",
                     "--audit", "--json"});
  EXPECT_EQ(json::parse(j.out)["omitted"], 23);
}

TEST(ToolAudit, SharedTablesAreWalkedOnce) {
  // The run-away image of ToolBadImage: a plain dump stops, an audit walks
  // each table once and reports the 511 + 511 second pointers (1000 listed),
  // and the 2M of rwx pages the one walk reaches.
  std::vector<std::pair<u64, u64>> words = {{0, 0x1001000 | 3}};
  for (u64 i = 0; i < 512; ++i) {
    words.push_back({512 + i, 0x1002000 | 3});
    words.push_back({1024 + i, 0x1003000 | 3});
    words.push_back({1536 + i, (i << 12) | 3});
  }
  const std::string path = x86_image("fan-audit.bin", 4 * 4096, words);
  const Ran r = run({"dump", path, "--root", "16M", "--base", "16M", "--format", "x86_64-4l",
                     "--audit", "--json"});
  EXPECT_EQ(r.status, 3) << r.err;
  const json report = json::parse(r.out);
  EXPECT_EQ(report["counts"], json({{"shared-table", 1000}, {"wx", 1}}));
  EXPECT_EQ(report["omitted"], 22);
}

TEST(ToolAudit, RootOutsideTheImageIsStillBadInput) {
  const std::string path = x86_image("audit-small.bin", 4096, {});
  const Ran r = run(
      {"dump", path, "--root", "0x2000000", "--base", "16M", "--format", "x86_64-4l", "--audit"});
  EXPECT_EQ(r.status, 2);
  EXPECT_NE(r.err.find("root table at pa 0x2000000 is outside the image"), std::string::npos)
      << r.err;
}

// ---- image ----------------------------------------------------------------------------

Elf64_Phdr load_segment(u64 vaddr, u64 paddr, u64 memsz, unsigned flags) {
  Elf64_Phdr p{};
  p.p_type = PT_LOAD;
  p.p_flags = flags;
  p.p_vaddr = vaddr;
  p.p_paddr = paddr;
  p.p_memsz = memsz;  // no file bytes: the tool only needs the headers
  p.p_align = 0x1000;
  return p;
}

/// `text` without every occurrence of `part` (a scratch-path prefix).
std::string without(std::string text, const std::string& part) {
  for (std::size_t at; (at = text.find(part)) != std::string::npos;) text.erase(at, part.size());
  return text;
}

/// A hand-made 64-bit little-endian ELF executable: header and program
/// headers only (for machines the host compiler cannot target).
std::string crafted_elf(const std::string& name, unsigned machine,
                        const std::vector<Elf64_Phdr>& phdrs) {
  Elf64_Ehdr eh{};
  std::memcpy(eh.e_ident, ELFMAG, SELFMAG);
  eh.e_ident[EI_CLASS] = ELFCLASS64;
  eh.e_ident[EI_DATA] = ELFDATA2LSB;
  eh.e_ident[EI_VERSION] = EV_CURRENT;
  eh.e_type = ET_EXEC;
  eh.e_machine = Elf64_Half(machine);
  eh.e_version = EV_CURRENT;
  eh.e_entry = phdrs.empty() ? 0 : phdrs[0].p_vaddr;
  eh.e_phoff = sizeof(Elf64_Ehdr);
  eh.e_ehsize = sizeof(Elf64_Ehdr);
  eh.e_phentsize = sizeof(Elf64_Phdr);
  eh.e_phnum = Elf64_Half(phdrs.size());
  std::string data(reinterpret_cast<const char*>(&eh), sizeof eh);
  for (const Elf64_Phdr& p : phdrs) data.append(reinterpret_cast<const char*>(&p), sizeof p);
  const std::string path = tmp(name);
  write_text(path, data);
  return path;
}

const std::vector<Elf64_Phdr> kArmSegments = {
    load_segment(0xffff000008000000, 0x40200000, 0x201000, PF_R | PF_X),
    load_segment(0xffff000008400000, 0x40600000, 0x3000, PF_R),
    load_segment(0xffff000008600000, 0x40800000, 0x400000, PF_R | PF_W)};

TEST(ToolImage, FormatFromEMachine) {
  struct Case {
    unsigned machine;
    std::string format, name;
    std::vector<Elf64_Phdr> segs;
  };
  const std::vector<Case> cases = {
      {EM_AARCH64, "aarch64-4k-48", "arm64", kArmSegments},
      {EM_RISCV,
       "riscv-sv48",
       "riscv",
       {load_segment(0xffffffff80000000, 0x80200000, 0x1800, PF_R | PF_X),
        load_segment(0xffffffff80200000, 0x80400000, 0x200000, PF_R | PF_W)}}};
  for (const Case& c : cases) {
    const std::string elf = crafted_elf(c.name + ".elf", c.machine, c.segs);
    const Ran j = run({"image", elf, "--json"});
    ASSERT_EQ(j.status, 0) << j.err;
    const json stats = json::parse(j.out);
    EXPECT_EQ(stats["format"], c.format);
    EXPECT_EQ(stats["elf"]["segments"].size(), c.segs.size());
    expect_golden("image." + c.name + ".json", without(j.out, std::to_string(getpid()) + "-"));
    const Ran d = run({"image", elf, "--dump"});
    ASSERT_EQ(d.status, 0) << d.err;
    expect_golden("image." + c.name + ".dump.txt", without(d.out, std::to_string(getpid()) + "-"));
  }
  // A machine without a default needs --format.
  const std::string mips = crafted_elf("mips.elf", EM_MIPS, kArmSegments);
  const Ran r = run({"image", mips});
  EXPECT_EQ(r.status, 2);
  EXPECT_NE(r.err.find("e_machine 8 has no default paging format; pass --format"),
            std::string::npos)
      << r.err;
  EXPECT_EQ(run({"image", mips, "--format", "aarch64-4k-48"}).status, 0);
}

TEST(ToolImage, LoadPaRelocatesKeepingOffsets) {
  const std::string elf = crafted_elf("reloc.elf", EM_AARCH64, kArmSegments);
  const Ran j = run({"image", elf, "--load-pa", "0x80000000", "--json"});
  ASSERT_EQ(j.status, 0) << j.err;
  const json maps = json::parse(j.out)["mappings"];
  ASSERT_EQ(maps.size(), 3u);
  EXPECT_EQ(parse_hex(maps[0]["pa"]), 0x80000000u);
  EXPECT_EQ(parse_hex(maps[1]["pa"]), 0x80400000u);
  EXPECT_EQ(parse_hex(maps[2]["pa"]), 0x80600000u);
  EXPECT_EQ(maps[0]["perm"], "r-x-");
  EXPECT_EQ(maps[1]["perm"], "r---");
  EXPECT_EQ(maps[2]["perm"], "rw--");
  // A misaligned --load-pa is a wrong command line (exit 1, like dump's
  // --root), and nothing is written.
  const std::string blob = tmp("reloc-bad.bin");
  const Ran bad = run({"image", elf, "--load-pa", "0x80000800", "--out", blob});
  EXPECT_EQ(bad.status, 1);
  EXPECT_NE(bad.err.find("--load-pa 0x80000800: must be aligned to 4K"), std::string::npos)
      << bad.err;
  EXPECT_FALSE(fs::exists(blob));
  EXPECT_FALSE(fs::exists(blob + ".json"));
  const Ran big = run({"image", elf, "--align", "2M", "--load-pa", "0x80100000"});
  EXPECT_EQ(big.status, 1);
  EXPECT_NE(big.err.find("--load-pa 0x80100000: must be aligned to 2M"), std::string::npos)
      << big.err;
}

TEST(ToolImage, LoadPaIgnoresThePaddrs) {
  // A toolchain that leaves p_paddr 0 (or meaningless): with --load-pa only
  // the vaddrs count.
  const std::string elf = crafted_elf("nopaddr.elf", EM_X86_64,
                                      {load_segment(0xffffffff80000000, 0, 0x1000, PF_R | PF_X),
                                       load_segment(0xffffffff80001040, 0, 0x100, PF_R | PF_W)});
  EXPECT_EQ(run({"image", elf}).status, 2);
  const Ran j = run({"image", elf, "--load-pa", "0x1000000", "--json"});
  ASSERT_EQ(j.status, 0) << j.err;
  const json maps = json::parse(j.out)["mappings"];
  ASSERT_EQ(maps.size(), 2u);
  EXPECT_EQ(parse_hex(maps[1]["va"]), 0xffffffff80001000u);
  EXPECT_EQ(parse_hex(maps[1]["pa"]), 0x1001000u);
}

TEST(ToolImage, SegmentsMayNotShareThePhysicalPages) {
  // Both at paddr 0: text and data would alias, code writable through data.
  const std::string elf = crafted_elf("alias.elf", EM_X86_64,
                                      {load_segment(0xffffffff80000000, 0, 0x1000, PF_R | PF_X),
                                       load_segment(0xffffffff80200000, 0, 0x1000, PF_R | PF_W)});
  const Ran r = run({"image", elf});
  EXPECT_EQ(r.status, 2);
  EXPECT_NE(r.err.find("segment 1 (vaddr 0xffffffff80200000, paddr 0x0, memsz 0x1000) and "
                       "segment 0 (vaddr 0xffffffff80000000, paddr 0x0, memsz 0x1000) land on "
                       "the same physical memory (pa 0x0)"),
            std::string::npos)
      << r.err;
  EXPECT_EQ(run({"image", elf, "--load-pa", "0x1000000"}).status, 0);
}

TEST(ToolImage, TableAreaOptions) {
  const std::string elf = crafted_elf("tables.elf", EM_AARCH64, kArmSegments);
  const Ran j = run({"image", elf, "--tables", "0x50000000", "--tables-size", "64K", "--json"});
  ASSERT_EQ(j.status, 0) << j.err;
  const json stats = json::parse(j.out);
  EXPECT_EQ(parse_hex(stats["table_area"]["base"]), 0x50000000u);
  EXPECT_EQ(stats["table_area"]["size"], 65536);
  // Right after the image by default: the last segment ends at 0x40c00000.
  const Ran d = run({"image", elf, "--json"});
  ASSERT_EQ(d.status, 0) << d.err;
  EXPECT_EQ(parse_hex(json::parse(d.out)["table_area"]["base"]), 0x40c00000u);

  struct Case {
    std::vector<std::string> args;
    std::string message;
  };
  const std::vector<Case> cases = {
      {{"--tables", "0x50000800"}, "--tables 0x50000800: must be aligned to the 4K page"},
      {{"--tables", "0x40600000"},
       "--tables 0x40600000: the table area 0x40600000-0x40700000 "
       "overlaps the image at 0x40200000-0x40c00000"},
      {{"--tables-size", "6000"}, "--tables-size 0x1770: must be a multiple of the 4K page"},
      {{"--tables-size", "0"}, "--tables-size 0x0: must be a multiple"},
      {{"--tables", "0xfffffffffff00000", "--tables-size", "2M"},
       "the table area runs past the top of physical memory"},
      {{"--align", "3K"}, "--align 3K: must be a power of two of at least the 4K page"},
  };
  for (const Case& c : cases) {
    std::vector<std::string> args = {"image", elf};
    args.insert(args.end(), c.args.begin(), c.args.end());
    const Ran r = run(args);
    EXPECT_EQ(r.status, 1) << c.args[0];
    EXPECT_NE(r.err.find(c.message), std::string::npos) << r.err;
  }
  // Too small for the tables the image needs: the hint names the option.
  const Ran small = run({"image", elf, "--tables-size", "8K"});
  EXPECT_EQ(small.status, 2);
  EXPECT_NE(small.err.find("raise --tables-size"), std::string::npos) << small.err;
}

TEST(ToolImage, MisalignedSegmentsAreNamed) {
  const std::string skew =
      crafted_elf("skew.elf", EM_X86_64,
                  {load_segment(0xffffffff80000000, 0x200000, 0x1000, PF_R | PF_X),
                   load_segment(0xffffffff80001000, 0x201800, 0x1000, PF_R)});
  const Ran r = run({"image", skew});
  EXPECT_EQ(r.status, 2);
  EXPECT_NE(r.err.find("segment 1 (vaddr 0xffffffff80001000, paddr 0x201800, memsz 0x1000): "
                       "vaddr and paddr differ within a page; needs 4K alignment"),
            std::string::npos)
      << r.err;
  const std::string arm = crafted_elf("arm-align.elf", EM_AARCH64, kArmSegments);
  const Ran a = run({"image", arm, "--align", "2M", "--load-pa", "0x40000000"});
  EXPECT_EQ(a.status, 0) << a.err;
  const std::string shared =
      crafted_elf("shared.elf", EM_X86_64,
                  {load_segment(0xffffffff80000000, 0x200000, 0x1800, PF_R | PF_X),
                   load_segment(0xffffffff80001800, 0x201800, 0x1000, PF_R | PF_W)});
  const Ran sh = run({"image", shared});
  EXPECT_EQ(sh.status, 2);
  EXPECT_NE(sh.err.find("segment 1 (vaddr 0xffffffff80001800, paddr 0x201800, memsz 0x1000) "
                        "shares the page at 0xffffffff80001000 with segment 0"),
            std::string::npos)
      << sh.err;
  EXPECT_NE(sh.err.find("need 4K alignment"), std::string::npos) << sh.err;
}

TEST(ToolImage, TruncatedAndGarbageFiles) {
  const std::string garbage = tmp("garbage.elf");
  write_text(garbage, "this is not an ELF file at all, just text\n");
  const Ran g = run({"image", garbage});
  EXPECT_EQ(g.status, 2);
  EXPECT_NE(g.err.find("garbage.elf: offset 0: not an ELF file"), std::string::npos) << g.err;

  const std::string full = crafted_elf("full.elf", EM_AARCH64, kArmSegments);
  std::string data = read_text(full);
  const std::string cut = tmp("cut.elf");
  write_text(cut, data.substr(0, sizeof(Elf64_Ehdr) + sizeof(Elf64_Phdr) + 10));
  const Ran c = run({"image", cut});
  EXPECT_EQ(c.status, 2);
  EXPECT_NE(c.err.find("program headers at offset 0x40 (3 of 56 bytes) run past the end of the "
                       "file (130 bytes): truncated?"),
            std::string::npos)
      << c.err;
  write_text(cut, data.substr(0, 30));
  const Ran h = run({"image", cut});
  EXPECT_EQ(h.status, 2);
  EXPECT_NE(h.err.find("truncated ELF header: the file has 30 bytes"), std::string::npos) << h.err;

  data[EI_CLASS] = ELFCLASS32;
  write_text(cut, data);
  const Ran k = run({"image", cut});
  EXPECT_EQ(k.status, 2);
  EXPECT_NE(k.err.find("offset 4: ELF class 1: only 64-bit"), std::string::npos) << k.err;

  const std::string none = crafted_elf("none.elf", EM_X86_64, {});
  const Ran n = run({"image", none});
  EXPECT_EQ(n.status, 2);
  EXPECT_NE(n.err.find("no program headers"), std::string::npos) << n.err;

  Elf64_Phdr note = load_segment(0, 0, 0x100, PF_R);
  note.p_type = PT_NOTE;
  const std::string noload = crafted_elf(
      "noload.elf", EM_X86_64, {note, load_segment(0xffffffff80000000, 0x200000, 0, PF_R | PF_X)});
  const Ran nl = run({"image", noload});
  EXPECT_EQ(nl.status, 2);
  EXPECT_NE(nl.err.find("noload.elf: no PT_LOAD segment with a size: nothing to map"),
            std::string::npos)
      << nl.err;
}

TEST(ToolImage, BadInputWritesNothing) {
  const std::string full = crafted_elf("whole.elf", EM_AARCH64, kArmSegments);
  const std::string data = read_text(full);
  std::string elf32 = data;
  elf32[EI_CLASS] = ELFCLASS32;
  const std::vector<std::pair<std::string, std::string>> inputs = {
      {"not-elf", "MZ: a PE file, say"},
      {"elf32", elf32},
      {"cut-header", data.substr(0, 40)},
      {"cut-phdrs", data.substr(0, sizeof(Elf64_Ehdr) + sizeof(Elf64_Phdr))}};
  for (const auto& [name, bytes] : inputs) {
    const std::string elf = tmp(name + ".elf");
    write_text(elf, bytes);
    const std::string blob = tmp(name + ".bin");
    const Ran r = run({"image", elf, "--out", blob});
    EXPECT_EQ(r.status, 2) << name;
    EXPECT_NE(r.err.find(name + ".elf: "), std::string::npos) << r.err;
    EXPECT_EQ(r.out, "") << name;
    EXPECT_FALSE(fs::exists(blob)) << name;
    EXPECT_FALSE(fs::exists(blob + ".json")) << name;
  }
  // An existing output is left alone by a failed run.
  const std::string blob = tmp("kept.bin");
  ASSERT_EQ(run({"image", full, "--out", blob}).status, 0);
  const std::string before = read_text(blob);
  EXPECT_EQ(run({"image", tmp("elf32.elf"), "--out", blob}).status, 2);
  EXPECT_EQ(read_text(blob), before);
  // Outputs are renamed into place: no temporary is left behind.
  EXPECT_FALSE(fs::exists(blob + ".ptkit-tmp"));
  EXPECT_FALSE(fs::exists(blob + ".json.ptkit-tmp"));
  // An unwritable --out is a usage error.
  const Ran w = run({"image", full, "--out", tmp("no-such-dir/tables.bin")});
  EXPECT_EQ(w.status, 1);
  EXPECT_NE(w.err.find("no-such-dir/tables.bin: cannot write"), std::string::npos) << w.err;
}

#ifdef PTKIT_TEST_KERNELS
const std::string kKernels = PTKIT_TEST_KERNELS;

TEST(ToolImage, RealElfGoldenAndRoundTrip) {
  for (const std::string variant : {"2m", "4k"}) {
    const std::string elf = kKernels + "/kernel_" + variant + ".elf";
    const Ran d = run({"image", elf, "--dump"});
    ASSERT_EQ(d.status, 0) << d.err;
    expect_golden("image.kernel_" + variant + ".dump.txt", d.out);

    const Ran j = run({"image", elf, "--json"});
    ASSERT_EQ(j.status, 0) << j.err;
    nlohmann::ordered_json stats = nlohmann::ordered_json::parse(j.out);
    for (const char* key : {"format", "root", "tables", "leaves", "table_bytes", "elf"})
      EXPECT_TRUE(stats.contains(key)) << key;
    EXPECT_EQ(stats["format"], "x86_64-4l");
    ASSERT_EQ(stats["elf"]["segments"].size(), 3u);
    EXPECT_TRUE(stats["leaves"].contains("2M")) << j.out;  // the 4 MiB bss
    // The segments' byte sizes depend on the compiler; everything else is
    // fixed by the linker script.
    for (auto& seg : stats["elf"]["segments"]) {
      EXPECT_GT(seg["memsz"].get<u64>(), 0u);
      seg.erase("memsz");
    }
    EXPECT_NE(stats["elf"]["segments"][2]["sections"].get<std::string>().find(".bss"),
              std::string::npos);
    expect_golden("image.kernel_" + variant + ".json", stats.dump(2) + "\n");

    const std::string blob = tmp("kernel_" + variant + ".bin");
    ASSERT_EQ(run({"image", elf, "--out", blob}).status, 0);
    const json side = json::parse(read_text(blob + ".json"));
    const Ran back = run(
        {"dump", blob, "--root", side["root"], "--base", side["base"], "--format", "x86_64-4l"});
    ASSERT_EQ(back.status, 0) << back.err;
    EXPECT_EQ(without_markers(back.out), without_markers(d.out));
  }
}

TEST(ToolImage, RealElfWithSharedPageIsRefused) {
  const Ran r = run({"image", kKernels + "/kernel_bad.elf"});
  EXPECT_EQ(r.status, 2);
  EXPECT_NE(r.err.find("kernel_bad.elf: segment 1 (vaddr 0xffffffff80"), std::string::npos)
      << r.err;
  EXPECT_NE(r.err.find("need 4K alignment"), std::string::npos) << r.err;
}
#endif

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

/// `trace` without its header lines (ptkit-trace, format, root).
std::string headerless(const std::string& trace) {
  std::istringstream in(read_text(trace));
  std::string line, out;
  while (std::getline(in, line))
    if (line.rfind("ptkit-trace", 0) != 0 && line.rfind("format", 0) != 0 &&
        line.rfind("root", 0) != 0)
      out += line + "\n";
  return out;
}

TEST(ToolCheck, FormatAndRootStandInForAMissingHeader) {
  const std::string stale = tmp("stale-events.trace");
  write_text(stale, headerless(kTestDir + "/data/stale.trace"));
  const Ran r = run({"check", stale, "--format", "x86_64-4l", "--root", "0x1000"});
  EXPECT_EQ(r.status, 3) << r.err;
  // Line 15 of data/stale.trace, 12 once its three header lines are gone.
  EXPECT_NE(r.out.find("line 12 (event 9): stale-translation at va 0x1000 level 0"),
            std::string::npos)
      << r.out;
  const Ran j = run({"check", stale, "--format", "x86_64-4l", "--root", "4096", "--json"});
  EXPECT_EQ(j.status, 3);
  EXPECT_EQ(json::parse(j.out)["violations"][0]["line"], 12);
  EXPECT_EQ(json::parse(j.out)["format"], "x86_64-4l");

  const std::string clean = tmp("clean-events.trace");
  write_text(clean, headerless(kTestDir + "/data/clean.trace"));
  const Ran c = run({"check", clean, "--format", "x86_64-4l", "--root", "0x1000"});
  EXPECT_EQ(c.status, 0) << c.err;
  EXPECT_NE(c.out.find("11 events, 0 violations"), std::string::npos) << c.out;

  // A feature word reaches the checker: a 2M leaf is fine on x86-64 but
  // breaks Xen's rules for a PV guest.
  const std::string large = tmp("large-events.trace");
  write_text(large,
             "alloc 0x2000\nalloc 0x3000\nwrite 0x1000 0 3 0x2003\nwrite 0x2000 0 2 0x3003\n"
             "write 0x3000 0 1 0x200083\nsync\n");
  EXPECT_EQ(run({"check", large, "--format", "x86_64-4l", "--root", "0x1000"}).status, 0);
  const Ran x =
      run({"check", large, "--format", "x86_64-4l", "--feature", "xen-pv", "--root", "0x1000"});
  EXPECT_EQ(x.status, 3) << x.err;
  EXPECT_NE(x.out.find("line 5 (event 4): xen-large-page"), std::string::npos) << x.out;
}

TEST(ToolCheck, HeaderOptionsMistakes) {
  const std::string events = tmp("events.trace");
  write_text(events, headerless(kTestDir + "/data/clean.trace"));
  const Ran none = run({"check", events});
  EXPECT_EQ(none.status, 2);
  EXPECT_NE(none.err.find("(a trace without a header needs --format and --root)"),
            std::string::npos)
      << none.err;
  const Ran no_root = run({"check", events, "--format", "x86_64-4l"});
  EXPECT_EQ(no_root.status, 1);
  EXPECT_NE(no_root.err.find("--root: a trace without a header needs"), std::string::npos)
      << no_root.err;
  const Ran bad = run({"check", events, "--format", "x86_64-3l", "--root", "0x1000"});
  EXPECT_EQ(bad.status, 1);
  EXPECT_NE(bad.err.find("--format x86_64-3l: "), std::string::npos) << bad.err;
  const Ran feature =
      run({"check", events, "--format", "riscv-sv39", "--feature", "ttbr1", "--root", "0x1000"});
  EXPECT_EQ(feature.status, 1);
  EXPECT_NE(feature.err.find("'ttbr1'"), std::string::npos) << feature.err;

  // A trace with a header: --format may repeat it, and must agree.
  const std::string headed = kTestDir + "/data/clean.trace";
  EXPECT_EQ(run({"check", headed, "--format", "x86_64-4l"}).status, 0);
  const Ran other = run({"check", headed, "--format", "riscv-sv39"});
  EXPECT_EQ(other.status, 1);
  EXPECT_NE(other.err.find("--format riscv-sv39: " + headed + " says format x86_64-4l"),
            std::string::npos)
      << other.err;
  const Ran root = run({"check", headed, "--root", "0x1000"});
  EXPECT_EQ(root.status, 1);
  EXPECT_NE(root.err.find("has a header, which gives them"), std::string::npos) << root.err;

  // Errors in the events name the file's own line.
  write_text(events, "# events only\nalloc 0x2000\nwrite 0x1000\n");
  const Ran malformed = run({"check", events, "--format", "x86_64-4l", "--root", "0x1000"});
  EXPECT_EQ(malformed.status, 2);
  EXPECT_NE(malformed.err.find("events.trace:3: 'write'"), std::string::npos) << malformed.err;
}

// ---- audit: writable tables, executable direct map ------------------------------------

TEST(ToolAudit, WritableMappingsOfTablesOutsideTheDirectMap) {
  const std::string path = tmp("audit-writable.bin");
  Blob b = built_blob("x86_64-4l", path);
  ASSERT_EQ(b.direct_map, "0xffff800000000000");
  // Without --direct-map the direct map is one more writable mapping of the
  // tables (the table area at 16M lies in the RAM it maps).
  Blob unnamed = b;
  unnamed.direct_map.clear();
  const Ran r = audit(unnamed, "x86_64-4l", path);
  EXPECT_EQ(r.status, 3) << r.out << r.err;
  EXPECT_NE(r.out.find("writable-table  0xffff800000000000-0xffff8000c0000000      3G  pa "
                       "0x0000000000000000  kern rw- user ---  PDPT: writable mapping of "),
            std::string::npos)
      << r.out;
  EXPECT_NE(r.out.find("(first at pa 0x0000000001000000)"), std::string::npos) << r.out;
  EXPECT_NE(r.out.find(": 1 finding (1 writable-table)"), std::string::npos) << r.out;
  // A direct map elsewhere does not excuse this one.
  const Ran other = audit(unnamed, "x86_64-4l", path, {"--direct-map", "0xffff888000000000"});
  EXPECT_EQ(other.status, 3) << other.out;
  const Ran json_out = audit(unnamed, "x86_64-4l", path, {"--json"});
  const json j = json::parse(json_out.out);
  ASSERT_EQ(j["findings"].size(), 1u) << json_out.out;
  EXPECT_EQ(j["findings"][0]["kind"], "writable-table");
  EXPECT_EQ(j["counts"]["writable-table"], 1);
}

TEST(ToolAudit, ExecutableDirectMap) {
  // The direct map's 1G leaf at PML4 slot 256 made executable (XD cleared).
  const std::string path = tmp("audit-xdm.bin");
  Blob b = built_blob("x86_64-4l", path);
  const u64 leaf = b.entry(0xffff800000000000, 2);
  ASSERT_NE(b.word(leaf) & (u64{1} << 63), 0u) << "direct map not XD in the built-in example?";
  b.set(leaf, b.word(leaf) & ~(u64{1} << 63));
  const Ran r = audit(b, "x86_64-4l", path);
  EXPECT_EQ(r.status, 3) << r.out << r.err;
  // Writable and now executable: both findings for the same range.
  EXPECT_NE(r.out.find("exec-direct-map 0xffff800000000000-0xffff800040000000      1G  pa "
                       "0x0000000000000000  kern rwx user ---  PDPT: executable mapping in the "
                       "direct map"),
            std::string::npos)
      << r.out;
  EXPECT_NE(r.out.find(": 2 findings (1 exec-direct-map, 1 wx)"), std::string::npos) << r.out;
}

// ---- build --out: the C header --------------------------------------------------------

/// Compiles `program` as C with the host compiler, runs it, returns stdout.
std::string run_c(const std::string& name, const std::string& program,
                  const std::string& include_dir) {
  const std::string src = tmp(name + ".c"), exe = tmp(name);
  write_text(src, program);
  const std::string cc = std::string(PTKIT_HOST_CC) + " -x c -std=c99 -Wall -Werror -I" +
                         quote(include_dir) + " " + quote(src) + " -o " + quote(exe);
  EXPECT_EQ(std::system(cc.c_str()), 0) << cc;
  const std::string out = tmp(name + ".txt");
  EXPECT_EQ(std::system((quote(exe) + " >" + quote(out)).c_str()), 0);
  return read_text(out);
}

TEST(ToolOut, CHeaderAgreesWithTheJsonSidecar) {
  for (const std::string format : {"x86_64-5l", "aarch64-4k-48", "aarch64-64k-52", "riscv-sv39"}) {
    SCOPED_TRACE(format);
    const std::string dir = tmp("hdr-" + format);
    fs::create_directories(dir);
    ASSERT_EQ(run({"build", "--format", format, "--out", dir + "/tables.bin"}).status, 0);
    const json side = json::parse(read_text(dir + "/tables.bin.json"));
    const std::string out = run_c("hdr-prog-" + format, R"(#include <stdio.h>
#include "tables.bin.h"
#define PRINT_ENTRY(i, va, raw) printf("%u %llx %llx\n", (unsigned)(i), va, raw);
int main(void) {
  printf("%s %llx %llx %llx %d\n", PTKIT_TABLES_FORMAT, PTKIT_TABLES_ROOT, PTKIT_TABLES_BASE,
         PTKIT_TABLES_SIZE, PTKIT_TABLES_ROOT_ENTRY_COUNT);
  PTKIT_TABLES_ROOT_ENTRIES(PRINT_ENTRY)
  return 0;
}
)",
                                  dir);
    std::ostringstream want;
    want << format << " " << std::hex << parse_hex(side["root"]) << " " << parse_hex(side["base"])
         << " " << side["size"].get<u64>() << " " << std::dec << side["root_entries"].size()
         << "\n";
    for (const json& e : side["root_entries"])
      want << e["index"].get<u64>() << " " << std::hex << parse_hex(e["va"]) << " "
           << parse_hex(e["raw"]) << std::dec << "\n";
    EXPECT_EQ(out, want.str());
    EXPECT_FALSE(side["root_entries"].empty());
    // The root entries are the root table's valid words, read from the blob.
    const std::string blob = read_text(dir + "/tables.bin");
    for (const json& e : side["root_entries"]) {
      u64 raw = 0;
      const u64 at = parse_hex(side["root"]) - parse_hex(side["base"]) + e["index"].get<u64>() * 8;
      std::memcpy(&raw, blob.data() + at, 8);
      EXPECT_EQ(raw, parse_hex(e["raw"]));
    }
    const std::string header = read_text(dir + "/tables.bin.h");
    if (format.rfind("aarch64", 0) == 0) {
      EXPECT_NE(header.find("#define PTKIT_TABLES_MAIR_EL1 0x"), std::string::npos) << header;
      EXPECT_NE(header.find("#define PTKIT_TABLES_TTBR"), std::string::npos) << header;
    } else if (format.rfind("riscv", 0) == 0) {
      // satp: MODE 8 (Sv39) in bits 63:60, the root's PPN below.
      const u64 satp = u64{8} << 60 | parse_hex(side["root"]) >> 12;
      EXPECT_EQ(parse_hex(side["satp"]), satp);
    } else {
      EXPECT_EQ(side["cr3"], side["root"]);
    }
  }
}

TEST(ToolBuild, JsonReportsTheTlbWork) {
  const Ran r = run({"build", "--json"});
  ASSERT_EQ(r.status, 0) << r.err;
  const json j = json::parse(r.out);
  // Built into empty tables: every map publishes its entries, nothing is
  // invalidated (no translation existed to be cached).
  EXPECT_EQ(j["tlb"]["invalidations"], 0);
  EXPECT_EQ(j["tlb"]["full_flushes"], 0);
  EXPECT_GE(j["tlb"]["publishes"].get<u64>(), j["mappings"].size());
}

// ---- dump of an ELF core (QEMU dump-guest-memory) -------------------------------------

struct CoreSegment {
  u64 pa = 0;
  std::string bytes;
};

/// An ELF64 core like QEMU's dump-guest-memory writes: PT_LOAD segments
/// holding guest physical memory at p_paddr (and a PT_NOTE, ignored).
std::string crafted_core(const std::string& name, const std::vector<CoreSegment>& segs,
                         u64 truncate_to = 0) {
  Elf64_Ehdr eh{};
  std::memcpy(eh.e_ident, ELFMAG, SELFMAG);
  eh.e_ident[EI_CLASS] = ELFCLASS64;
  eh.e_ident[EI_DATA] = ELFDATA2LSB;
  eh.e_ident[EI_VERSION] = EV_CURRENT;
  eh.e_type = ET_CORE;
  eh.e_machine = EM_X86_64;
  eh.e_version = EV_CURRENT;
  eh.e_phoff = sizeof(Elf64_Ehdr);
  eh.e_ehsize = sizeof(Elf64_Ehdr);
  eh.e_phentsize = sizeof(Elf64_Phdr);
  eh.e_phnum = Elf64_Half(segs.size() + 1);
  std::string data(reinterpret_cast<const char*>(&eh), sizeof eh);
  u64 offset = sizeof(Elf64_Ehdr) + (segs.size() + 1) * sizeof(Elf64_Phdr);
  Elf64_Phdr note{};
  note.p_type = PT_NOTE;
  note.p_offset = offset;
  data.append(reinterpret_cast<const char*>(&note), sizeof note);
  for (const CoreSegment& s : segs) {
    Elf64_Phdr p{};
    p.p_type = PT_LOAD;
    p.p_flags = PF_R | PF_W | PF_X;
    p.p_offset = offset;
    p.p_paddr = s.pa;
    p.p_filesz = p.p_memsz = s.bytes.size();
    offset += s.bytes.size();
    data.append(reinterpret_cast<const char*>(&p), sizeof p);
  }
  for (const CoreSegment& s : segs) data += s.bytes;
  if (truncate_to != 0) data.resize(truncate_to);
  const std::string path = tmp(name);
  write_text(path, data);
  return path;
}

TEST(ToolDumpCore, SegmentsAtTheirPhysicalAddresses) {
  const std::string blob = tmp("core-src.bin");
  Blob b = built_blob("x86_64-4l", blob);
  // Low memory, then the table area; a hole between them.
  const std::string core =
      crafted_core("guest.core", {{0x100000, std::string(0x10000, '\x5a')}, {b.base, b.bytes}});
  const Ran raw = run({"dump", blob, "--root", hex_text(b.root), "--base", hex_text(b.base),
                       "--format", "x86_64-4l"});
  ASSERT_EQ(raw.status, 0) << raw.err;
  const Ran r = run({"dump", core, "--root", hex_text(b.root), "--format", "x86_64-4l"});
  ASSERT_EQ(r.status, 0) << r.err;
  EXPECT_EQ(r.out, raw.out);
  const Ran a = run({"dump", core, "--root", hex_text(b.root), "--format", "x86_64-4l", "--audit",
                     "--direct-map", b.direct_map});
  EXPECT_EQ(a.status, 0) << a.out << a.err;
}

TEST(ToolDumpCore, BadCores) {
  const std::string blob = tmp("core-bad-src.bin");
  Blob b = built_blob("x86_64-4l", blob);
  const std::vector<std::string> dump = {"--root", hex_text(b.root), "--format", "x86_64-4l"};
  auto run_dump = [&](const std::string& file, std::vector<std::string> extra = {}) {
    std::vector<std::string> args = {"dump", file};
    args.insert(args.end(), dump.begin(), dump.end());
    args.insert(args.end(), extra.begin(), extra.end());
    return run(args);
  };
  // A core gives its own physical addresses: --base is a usage error.
  const std::string good = crafted_core("good.core", {{b.base, b.bytes}});
  const Ran base = run_dump(good, {"--base", "16M"});
  EXPECT_EQ(base.status, 1);
  EXPECT_NE(base.err.find("is an ELF core, which gives each segment's physical address itself"),
            std::string::npos)
      << base.err;
  // The root's segment missing: the message lists the segments there are.
  const std::string other = crafted_core("other.core", {{0x100000, std::string(4096, '\0')}});
  const Ran outside = run_dump(other);
  EXPECT_EQ(outside.status, 2);
  EXPECT_NE(outside.err.find("root table at pa 0x1000000 is outside the image (pa "
                             "0x100000-0x101000"),
            std::string::npos)
      << outside.err;
  // Cut inside the table area's segment.
  const std::string cut = crafted_core("cut.core", {{b.base, b.bytes}}, 4096);
  const Ran truncated = run_dump(cut);
  EXPECT_EQ(truncated.status, 2);
  EXPECT_NE(truncated.err.find("run past the end of the file"), std::string::npos) << truncated.err;
  // Two segments claiming the same physical memory.
  const std::string overlap =
      crafted_core("overlap.core", {{b.base, b.bytes}, {b.base + 4096, std::string(8192, '\0')}});
  const Ran twice = run_dump(overlap);
  EXPECT_EQ(twice.status, 2);
  EXPECT_NE(twice.err.find("overlap in physical memory (pa 0x1000000 and 0x1001000)"),
            std::string::npos)
      << twice.err;
  // An executable is not a memory image.
  const std::string exe = crafted_elf("not-a-core.elf", EM_X86_64, kArmSegments);
  const Ran wrong = run_dump(exe);
  EXPECT_EQ(wrong.status, 2);
  EXPECT_NE(wrong.err.find("is not a core file (ET_CORE"), std::string::npos) << wrong.err;
}

// ---- --svg ----------------------------------------------------------------------------

std::size_t count(const std::string& text, const std::string& part) {
  std::size_t n = 0;
  for (std::size_t at = 0; (at = text.find(part, at)) != std::string::npos; at += part.size()) ++n;
  return n;
}

TEST(ToolSvg, OneBandPerRangeColouredByPermission) {
  const std::string svg = tmp("builtin.svg");
  ASSERT_EQ(run({"build", "--svg", svg}).status, 0);
  const Ran j = run({"build", "--json"});
  const std::string blob = tmp("svg-src.bin");
  Blob b = built_blob("x86_64-4l", blob);
  const Ran d = run({"dump", blob, "--root", hex_text(b.root), "--base", hex_text(b.base),
                     "--format", "x86_64-4l", "--json"});
  const json runs = json::parse(d.out);
  const std::string text = read_text(svg);
  EXPECT_EQ(text.rfind("<?xml", 0), 0u);
  EXPECT_NE(text.find("</svg>\n"), std::string::npos);
  EXPECT_EQ(count(text, "<g class='band'>"), runs.size());
  // Names are escaped (the built-in example's name has angle brackets).
  EXPECT_NE(text.find("&lt;built-in kernel example&gt; (x86_64-4l)"), std::string::npos);
  EXPECT_EQ(text.find("<built-in"), std::string::npos);
  // The kernel text (r-x) is orange, the direct map (rw-) green, and the
  // layout's names label the bands.
  EXPECT_NE(text.find("0xffffffff80000000-0xffffffff80600000</text><rect x='330' y="),
            std::string::npos)
      << text;
  EXPECT_NE(text.find("fill='#ff9f1c'/><text x='600'"), std::string::npos);
  EXPECT_NE(text.find("kern rw- user ---  wb GLB  1G leaves"), std::string::npos);
  EXPECT_NE(text.find("class='marker'>kernel image .text<"), std::string::npos);
  EXPECT_NE(text.find("class='gaptext'>unmapped "), std::string::npos);
  // dump --svg draws the same ranges.
  const std::string dumped = tmp("dumped.svg");
  ASSERT_EQ(run({"dump", blob, "--root", hex_text(b.root), "--base", hex_text(b.base), "--format",
                 "x86_64-4l", "--svg", dumped})
                .status,
            0);
  EXPECT_EQ(count(read_text(dumped), "<g class='band'>"), runs.size());
}

TEST(ToolSvg, TensOfThousandsOfRangesStayReadable) {
  // One PD with 40 page tables whose 4K pages alternate read-only and
  // read-write: 20,480 runs of one page each.
  std::vector<std::pair<u64, u64>> words = {{0, 0x1001000 | 3}, {512, 0x1002000 | 3}};
  const u64 tables = 40;
  for (u64 t = 0; t < tables; ++t) {
    words.push_back({1024 + t, (0x1003000 + t * 4096) | 3});
    for (u64 i = 0; i < 512; ++i)
      words.push_back({(3 + t) * 512 + i, ((t * 512 + i) << 12) | (i % 2 ? 3 : 1)});
  }
  const std::string path = x86_image("many.bin", (3 + tables) * 4096, words);
  const std::string svg = tmp("many.svg");
  const Ran r = run({"dump", path, "--root", "16M", "--base", "16M", "--format", "x86_64-4l",
                     "--svg", svg, "--json"});
  ASSERT_EQ(r.status, 0) << r.err;
  ASSERT_EQ(json::parse(r.out).size(), tables * 512);
  const std::string text = read_text(svg);
  const std::size_t bands = count(text, "<g class='band'>");
  EXPECT_LE(bands, 2000u);
  EXPECT_GE(bands, 1000u);
  EXPECT_NE(text.find("20480 ranges in " + std::to_string(bands) + " bands"), std::string::npos);
  EXPECT_NE(text.find("ranges, mixed permissions"), std::string::npos);
  EXPECT_LT(text.size(), 2u << 20) << "the picture should stay a few hundred bytes a band";
}

TEST(ToolSvg, UnwritableFileIsAUsageError) {
  const Ran r = run({"build", "--svg", "/nonexistent-dir/x.svg"});
  EXPECT_EQ(r.status, 1);
  EXPECT_NE(r.err.find("--svg /nonexistent-dir/x.svg: cannot write"), std::string::npos) << r.err;
}
}  // namespace
