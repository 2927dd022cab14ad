// A trace of page-table updates: the entry writes, barriers, TLB
// invalidations, table-page lifetimes and CPU accesses of a sequence of
// operations, in program order. The rule checker (checker.hpp) replays it.
//
// The text form is documented in docs/trace-format.md (version 1): a header
// (`ptkit-trace 1`, `format <name> [features]`, `root <pa>`), then one event
// per line. The core's RecordingWriter and RecordingSink produce the same
// events; users produce them from their own kernels.
#pragma once

#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

#include "ptkit/sim/mmu.hpp"

namespace ptkit::sim {

inline constexpr unsigned kTraceVersion = 1;

struct TraceEvent {
  enum class Kind : std::uint8_t {
    Mem,            // mem <pa> <raw>: the initial memory image (before every other event)
    Write,          // write <table> <index> <level> <new> [old <raw>]
    Publish,        // writes so far are visible to the table walker
    Complete,       // invalidations so far have finished, context synchronised
    Invalidate,     // invalidate <first> <last> <stride shift> [global] [tables]
    InvalidateAll,  // invalidate-all [global]
    Alloc,          // alloc <pa>: a page becomes a page-table page
    Free,           // free <pa>: a page-table page is given back
    Live,           // live <first> <last>: must never become invalid
    Sync,           // the software claims the TLB is coherent
    Use,            // use <va> [r|w|x] [user]: the CPU accesses an address
  };
  Kind kind = Kind::Sync;
  u64 a = 0;           // mem/alloc/free: pa; write: table pa; invalidate/live: first; use: va
  u64 b = 0;           // mem: raw; write: new raw; invalidate/live: last
  unsigned index = 0;  // write: entry index
  unsigned level = 0;  // write: level of the table (0 = smallest pages)
  unsigned stride_shift = 12;  // invalidate
  bool has_old = false;        // write: `old <raw>` given
  u64 old = 0;
  bool global = false;  // invalidate, invalidate-all
  bool tables = false;  // invalidate: table entries removed or replaced
  Access access{};      // use
  unsigned line = 0;    // source line, 0 if the event was not parsed

  bool operator==(const TraceEvent& o) const {
    return kind == o.kind && a == o.a && b == o.b && index == o.index && level == o.level &&
           stride_shift == o.stride_shift && has_old == o.has_old && old == o.old &&
           global == o.global && tables == o.tables && access.type == o.access.type &&
           access.user == o.access.user;
  }

  static TraceEvent write(u64 table, unsigned index, unsigned level, u64 new_raw) {
    TraceEvent e{Kind::Write, table, new_raw};
    e.index = index;
    e.level = level;
    return e;
  }
  static TraceEvent write(u64 table, unsigned index, unsigned level, u64 new_raw, u64 old_raw) {
    TraceEvent e = write(table, index, level, new_raw);
    e.has_old = true;
    e.old = old_raw;
    return e;
  }
  static TraceEvent invalidate(u64 first, u64 last, unsigned stride_shift, bool global = false,
                               bool tables = false) {
    TraceEvent e{Kind::Invalidate, first, last};
    e.stride_shift = stride_shift;
    e.global = global;
    e.tables = tables;
    return e;
  }
  static TraceEvent invalidate_all(bool global = false) {
    TraceEvent e{Kind::InvalidateAll};
    e.global = global;
    return e;
  }
  static TraceEvent use(u64 va, AccessType type = AccessType::Read, bool user = false) {
    TraceEvent e{Kind::Use, va};
    e.access = Access{type, user};
    return e;
  }
  static TraceEvent simple(Kind k, u64 a = 0, u64 b = 0) { return TraceEvent{k, a, b}; }
};

const char* to_string(TraceEvent::Kind k);

/// A whole trace: the paging configuration, the root and the events.
struct Trace {
  unsigned version = kTraceVersion;
  std::string format;                 // a MmuConfig::from_name name
  std::vector<std::string> features;  // feature words, in the order given
  u64 root = 0;
  std::vector<TraceEvent> events;

  [[nodiscard]] bool has_feature(std::string_view f) const;
};

/// What the checker needs beyond the MMU registers: rules the format name
/// alone does not say.
struct TraceConfig {
  MmuConfig mmu;
  bool bbm2 = false;    // Arm FEAT_BBM level 2
  bool xen_pv = false;  // Xen PV guest rules (x86-64 4-level)
};

/// The configuration a format name and feature words stand for. Returns false
/// with `error` saying which word is wrong.
bool trace_config(std::string_view format, const std::vector<std::string>& features,
                  TraceConfig& out, std::string& error);

struct ParseError {
  unsigned line = 0;
  std::string message;  // what was expected, and what was found
};

/// Parses the text form. On failure returns false with the first error.
/// Memory use is proportional to the text's size.
bool parse_trace(std::string_view text, Trace& out, ParseError& error);

/// One event as its text line (no newline).
std::string format_event(const TraceEvent& e);
/// The whole trace as text, parseable by parse_trace into an equal trace.
std::string print_trace(const Trace& trace);

}  // namespace ptkit::sim
