#include "ptkit/sim/trace.hpp"

#include <charconv>
#include <cstdio>

namespace ptkit::sim {

const char* to_string(TraceEvent::Kind k) {
  using K = TraceEvent::Kind;
  switch (k) {
    case K::Mem: return "mem";
    case K::Write: return "write";
    case K::Publish: return "publish";
    case K::Complete: return "complete";
    case K::Invalidate: return "invalidate";
    case K::InvalidateAll: return "invalidate-all";
    case K::Alloc: return "alloc";
    case K::Free: return "free";
    case K::Live: return "live";
    case K::Sync: return "sync";
    case K::Use: return "use";
  }
  return "?";
}

bool Trace::has_feature(std::string_view f) const {
  for (const std::string& s : features)
    if (s == f) return true;
  return false;
}

bool trace_config(std::string_view format, const std::vector<std::string>& features,
                  TraceConfig& out, std::string& error) {
  TraceConfig c;
  if (!MmuConfig::from_name(format, c.mmu, error)) return false;
  const Arch arch = c.mmu.arch;
  for (const std::string& f : features) {
    auto only = [&](Arch a, const char* what) {
      if (arch == a) return true;
      error = "feature '" + f + "' applies to " + what + " formats only";
      return false;
    };
    if (f == "page_1g") {
      if (!only(Arch::X86_64, "x86_64")) return false;
      c.mmu.x86_page_1g = true;
    } else if (f == "no-page_1g") {
      if (!only(Arch::X86_64, "x86_64")) return false;
      c.mmu.x86_page_1g = false;
    } else if (f == "nonxe") {
      if (!only(Arch::X86_64, "x86_64")) return false;
      c.mmu.x86_nxe = false;
    } else if (f == "smep" || f == "smap") {
      if (!only(Arch::X86_64, "x86_64")) return false;
      (f == "smep" ? c.mmu.x86_smep : c.mmu.x86_smap) = true;
    } else if (f == "xen-pv") {
      if (!only(Arch::X86_64, "x86_64")) return false;
      if (c.mmu.x86_levels != 4) {
        error = "feature 'xen-pv' needs x86_64-4l (Xen PV guests use 4-level paging)";
        return false;
      }
      c.xen_pv = true;
    } else if (f == "bbm2") {
      if (!only(Arch::AArch64, "aarch64")) return false;
      c.bbm2 = true;
    } else if (f == "ttbr1") {
      if (!only(Arch::AArch64, "aarch64")) return false;
      c.mmu.arm_upper = true;
    } else if (f == "svnapot" || f == "svpbmt" || f == "svadu") {
      if (!only(Arch::RiscV, "riscv")) return false;
      (f == "svnapot" ? c.mmu.rv_svnapot : f == "svpbmt" ? c.mmu.rv_svpbmt : c.mmu.rv_svadu) = true;
    } else {
      error = "unknown feature '" + f +
              "' (page_1g, no-page_1g, nonxe, smep, smap, xen-pv, bbm2, ttbr1, svnapot, svpbmt, "
              "svadu)";
      return false;
    }
  }
  out = c;
  return true;
}

namespace {

using Kind = TraceEvent::Kind;

std::vector<std::string_view> tokens_of(std::string_view line) {
  std::vector<std::string_view> out;
  size_t i = 0;
  while (i < line.size()) {
    while (i < line.size() && (line[i] == ' ' || line[i] == '\t' || line[i] == '\r')) ++i;
    if (i == line.size()) break;
    size_t j = i;
    while (j < line.size() && line[j] != ' ' && line[j] != '\t' && line[j] != '\r') ++j;
    out.push_back(line.substr(i, j - i));
    i = j;
  }
  return out;
}

/// A number in hex (0x...) or decimal, the whole token, within 64 bits.
bool number(std::string_view t, u64& out) {
  int base = 10;
  if (t.size() > 2 && t[0] == '0' && (t[1] == 'x' || t[1] == 'X')) {
    t.remove_prefix(2);
    base = 16;
  }
  if (t.empty()) return false;
  const char* end = t.data() + t.size();
  auto [ptr, ec] = std::from_chars(t.data(), end, out, base);
  return ec == std::errc{} && ptr == end;
}

class LineParser {
 public:
  LineParser(unsigned line, const std::vector<std::string_view>& toks, ParseError& err)
      : line_(line), toks_(toks), err_(err) {}

  bool fail(const std::string& what) {
    err_.line = line_;
    err_.message = what;
    return false;
  }
  /// Token `i` as a number named `what`, at most `max`.
  bool num(size_t i, const char* what, u64& out, u64 max = ~u64{0}) {
    if (i >= toks_.size())
      return fail(std::string("'") + std::string(toks_[0]) + "': expected " + what + " after '" +
                  std::string(toks_[i - 1]) + "'");
    if (!number(toks_[i], out))
      return fail(std::string("'") + std::string(toks_[0]) + "': expected " + what +
                  " (a number, 0x for hex), got '" + std::string(toks_[i]) + "'");
    if (out > max)
      return fail(std::string("'") + std::string(toks_[0]) + "': " + what + " " +
                  std::string(toks_[i]) + " is out of range (at most " + std::to_string(max) + ")");
    return true;
  }
  bool at_most(size_t n, const char* usage) {
    if (toks_.size() <= n) return true;
    return fail("unexpected '" + std::string(toks_[n]) + "'; expected " + usage);
  }

 private:
  unsigned line_;
  const std::vector<std::string_view>& toks_;
  ParseError& err_;
};

// Bounds that hold for every format: a table has at most 8192 entries (64 KiB
// granule), at most 5 levels (x86 5-level, Sv57, Arm LPA2 4K), strides below 64.
constexpr u64 kMaxIndex = 8191;
constexpr u64 kMaxLevel = 4;
constexpr u64 kMaxShift = 63;

bool parse_event(unsigned line, const std::vector<std::string_view>& t, TraceEvent& e,
                 ParseError& err) {
  LineParser p(line, t, err);
  const std::string_view w = t[0];
  e = TraceEvent{};
  e.line = line;
  u64 v = 0;
  if (w == "mem") {
    e.kind = Kind::Mem;
    return p.num(1, "a physical address", e.a) && p.num(2, "a raw entry value", e.b) &&
           p.at_most(3, "'mem <pa> <raw>'");
  }
  if (w == "write") {
    e.kind = Kind::Write;
    if (!p.num(1, "the table's physical address", e.a)) return false;
    if (!p.num(2, "the entry index", v, kMaxIndex)) return false;
    e.index = unsigned(v);
    if (!p.num(3, "the table's level", v, kMaxLevel)) return false;
    e.level = unsigned(v);
    if (!p.num(4, "the new raw value", e.b)) return false;
    if (t.size() > 5) {
      if (t[5] != "old")
        return p.fail("'write': expected 'old <raw>' or the end of the line, got '" +
                      std::string(t[5]) + "'");
      if (!p.num(6, "the old raw value", e.old)) return false;
      e.has_old = true;
    }
    return p.at_most(7, "'write <table> <index> <level> <new> [old <raw>]'");
  }
  if (w == "invalidate") {
    e.kind = Kind::Invalidate;
    if (!p.num(1, "the first virtual address", e.a) || !p.num(2, "the last virtual address", e.b))
      return false;
    if (e.b < e.a) return p.fail("'invalidate': the last address is below the first");
    if (!p.num(3, "the stride shift", v, kMaxShift)) return false;
    e.stride_shift = unsigned(v);
    for (size_t i = 4; i < t.size(); ++i) {
      if (t[i] == "global" && !e.global) {
        e.global = true;
      } else if (t[i] == "tables" && !e.tables) {
        e.tables = true;
      } else {
        return p.fail("'invalidate': expected 'global' or 'tables', got '" + std::string(t[i]) +
                      "'");
      }
    }
    return true;
  }
  if (w == "invalidate-all") {
    e.kind = Kind::InvalidateAll;
    if (t.size() > 1) {
      if (t[1] != "global")
        return p.fail("'invalidate-all': expected 'global' or the end of the line, got '" +
                      std::string(t[1]) + "'");
      e.global = true;
    }
    return p.at_most(2, "'invalidate-all [global]'");
  }
  if (w == "alloc" || w == "free") {
    e.kind = w == "alloc" ? Kind::Alloc : Kind::Free;
    return p.num(1, "a physical address", e.a) && p.at_most(2, "one physical address");
  }
  if (w == "live") {
    e.kind = Kind::Live;
    if (!p.num(1, "the first virtual address", e.a) || !p.num(2, "the last virtual address", e.b))
      return false;
    if (e.b < e.a) return p.fail("'live': the last address is below the first");
    return p.at_most(3, "'live <first> <last>'");
  }
  if (w == "use") {
    e.kind = Kind::Use;
    if (!p.num(1, "a virtual address", e.a)) return false;
    bool have_type = false;
    for (size_t i = 2; i < t.size(); ++i) {
      const std::string_view x = t[i];
      if (!have_type && (x == "r" || x == "w" || x == "x")) {
        e.access.type = x == "r"   ? AccessType::Read
                        : x == "w" ? AccessType::Write
                                   : AccessType::Execute;
        have_type = true;
      } else if (x == "user" && !e.access.user) {
        e.access.user = true;
      } else {
        return p.fail("'use': expected 'r', 'w', 'x' or 'user', got '" + std::string(x) + "'");
      }
    }
    return true;
  }
  auto bare = [&](Kind k) {
    e.kind = k;
    return p.at_most(1, std::string("nothing after '" + std::string(w) + "'").c_str());
  };
  if (w == "publish") return bare(Kind::Publish);
  if (w == "complete") return bare(Kind::Complete);
  if (w == "sync") return bare(Kind::Sync);
  return p.fail("unknown event '" + std::string(w) +
                "' (expected write, publish, complete, invalidate, invalidate-all, alloc, free, "
                "live, sync, use or mem)");
}

}  // namespace

bool parse_trace(std::string_view text, Trace& out, ParseError& err) {
  Trace trace;
  bool have_header = false, have_format = false, have_root = false, seen_event = false;
  unsigned line = 0;
  size_t pos = 0;
  while (pos <= text.size()) {
    size_t nl = text.find('\n', pos);
    if (nl == std::string_view::npos) nl = text.size();
    std::string_view raw = text.substr(pos, nl - pos);
    pos = nl + 1;
    ++line;
    if (const size_t hash = raw.find('#'); hash != std::string_view::npos)
      raw = raw.substr(0, hash);
    const std::vector<std::string_view> t = tokens_of(raw);
    if (t.empty()) {
      if (nl == text.size()) break;
      continue;
    }
    LineParser p(line, t, err);
    if (!have_header) {
      if (t[0] != "ptkit-trace")
        return p.fail("expected the header 'ptkit-trace " + std::to_string(kTraceVersion) +
                      "', got '" + std::string(t[0]) + "'");
      u64 v = 0;
      if (!p.num(1, "the format version", v)) return false;
      if (v != kTraceVersion)
        return p.fail("unsupported trace version " + std::to_string(v) + " (this reader knows " +
                      std::to_string(kTraceVersion) + ")");
      if (!p.at_most(2, "'ptkit-trace <version>'")) return false;
      trace.version = unsigned(v);
      have_header = true;
      continue;
    }
    if (t[0] == "format") {
      if (have_format) return p.fail("a second 'format' line");
      if (t.size() < 2) return p.fail("'format': expected a format name such as x86_64-4l");
      trace.format = std::string(t[1]);
      for (size_t i = 2; i < t.size(); ++i) trace.features.emplace_back(t[i]);
      TraceConfig c;
      std::string why;
      if (!trace_config(trace.format, trace.features, c, why)) return p.fail("'format': " + why);
      have_format = true;
      continue;
    }
    if (t[0] == "root") {
      if (have_root) return p.fail("a second 'root' line");
      u64 v = 0;
      if (!p.num(1, "the root table's physical address", v) || !p.at_most(2, "'root <pa>'"))
        return false;
      trace.root = v;
      have_root = true;
      continue;
    }
    if (!have_format) return p.fail("expected 'format <name>' before the first event");
    if (!have_root) return p.fail("expected 'root <pa>' before the first event");
    TraceEvent e;
    if (!parse_event(line, t, e, err)) return false;
    if (e.kind == Kind::Mem && seen_event && trace.events.back().kind != Kind::Mem)
      return p.fail("'mem' lines seed the initial memory and must come before every other event");
    seen_event = true;
    trace.events.push_back(e);
    if (nl == text.size()) break;
  }
  if (!have_header) {
    err = ParseError{line, "empty trace: expected the header 'ptkit-trace 1'"};
    return false;
  }
  if (!have_format || !have_root) {
    err = ParseError{line, have_format ? "end of trace: expected 'root <pa>'"
                                       : "end of trace: expected 'format <name>'"};
    return false;
  }
  out = std::move(trace);
  return true;
}

namespace {

std::string hex(u64 v) {
  char buf[24];
  std::snprintf(buf, sizeof buf, "%#llx", static_cast<unsigned long long>(v));
  return v == 0 ? "0x0" : buf;
}

}  // namespace

std::string format_event(const TraceEvent& e) {
  std::string s = to_string(e.kind);
  switch (e.kind) {
    case Kind::Mem: return s + " " + hex(e.a) + " " + hex(e.b);
    case Kind::Write:
      s += " " + hex(e.a) + " " + std::to_string(e.index) + " " + std::to_string(e.level) + " " +
           hex(e.b);
      if (e.has_old) s += " old " + hex(e.old);
      return s;
    case Kind::Invalidate:
      s += " " + hex(e.a) + " " + hex(e.b) + " " + std::to_string(e.stride_shift);
      if (e.global) s += " global";
      if (e.tables) s += " tables";
      return s;
    case Kind::InvalidateAll: return e.global ? s + " global" : s;
    case Kind::Alloc:
    case Kind::Free: return s + " " + hex(e.a);
    case Kind::Live: return s + " " + hex(e.a) + " " + hex(e.b);
    case Kind::Use:
      s += " " + hex(e.a);
      s += e.access.type == AccessType::Read    ? " r"
           : e.access.type == AccessType::Write ? " w"
                                                : " x";
      if (e.access.user) s += " user";
      return s;
    case Kind::Publish:
    case Kind::Complete:
    case Kind::Sync: return s;
  }
  return s;
}

std::string print_trace(const Trace& trace) {
  std::string s = "ptkit-trace " + std::to_string(trace.version) + "\nformat " + trace.format;
  for (const std::string& f : trace.features) s += " " + f;
  s += "\nroot " + hex(trace.root) + "\n";
  for (const TraceEvent& e : trace.events) s += format_event(e) + "\n";
  return s;
}

}  // namespace ptkit::sim
