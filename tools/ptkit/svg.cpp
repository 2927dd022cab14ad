#include "svg.hpp"

#include <fmt/format.h>

#include <algorithm>
#include <bit>
#include <fstream>

namespace ptkit::tool {

namespace {

constexpr int kWidth = 1100;
constexpr int kLabelX = 8;      // virtual range text
constexpr int kBarX = 330;      // where bars start
constexpr int kBarMax = 260;    // bar length for a 2^64-byte range
constexpr int kDetailX = 600;   // size, pa, leaf, permissions
constexpr int kGapHeight = 14;  // a collapsed unmapped stretch

std::string escape(const std::string& s) {
  std::string out;
  for (char c : s) {
    switch (c) {
      case '&': out += "&amp;"; break;
      case '<': out += "&lt;"; break;
      case '>': out += "&gt;"; break;
      case '"': out += "&quot;"; break;
      case '\'': out += "&apos;"; break;
      default:
        // Control bytes are not allowed in XML 1.0 text.
        out += static_cast<unsigned char>(c) < 0x20 ? '?' : c;
    }
  }
  return out;
}

/// The fill of a kernel permission set: what people look for first is
/// writable+executable (red), then code (orange), data (green), read-only
/// (blue).
const char* fill_for(bool r, bool w, bool x) {
  if (w && x) return "#d62728";
  if (x) return "#ff9f1c";
  if (w) return "#2ca02c";
  if (r) return "#1f77b4";
  return "#9e9e9e";  // no kernel access (user-only or execute-only)
}

/// Band height grows with the leaf size: 4K pages are thin, 1G leaves thick.
int height_for(u64 leaf_size) {
  const int log =
      static_cast<int>(std::bit_width(leaf_size)) - 1;  // 12 for 4K, 21 for 2M, 30 for 1G
  return std::clamp(10 + (log - 12) / 3 * 2, 10, 28);
}

/// Bar length on a log scale: a 4K range is short, 2^64 bytes is kBarMax.
int bar_for(u64 size) {
  const int log = static_cast<int>(std::bit_width(size)) - 1;
  return std::max(4, (log - 10) * kBarMax / 54);
}

/// A size for people, rounded: "1.5G", "122T" (gaps are rarely exact).
std::string approx_size(u64 bytes) {
  static constexpr const char* kUnits[] = {"", "K", "M", "G", "T", "P", "E"};
  auto v = static_cast<double>(bytes);
  unsigned unit = 0;
  while (v >= 1024 && unit < 6) {
    v /= 1024;
    ++unit;
  }
  return v >= 100 || v == static_cast<double>(static_cast<u64>(v))
             ? fmt::format("{:.0f}{}", v, kUnits[unit])
             : fmt::format("{:.1f}{}", v, kUnits[unit]);
}

/// A band: one run, or a group of neighbouring runs past kMaxBands.
struct Band {
  u64 va = 0, end = 0;  // [va, end) may wrap to 0 at the top of the space
  const Run* first = nullptr;
  std::size_t count = 0;
  u64 leaf_size = 0;  // the largest in the band
  bool mixed = false;
  bool user = false;
};

std::vector<Band> bands_for(const std::vector<Run>& runs) {
  const std::size_t per_band = (runs.size() + kMaxBands - 1) / kMaxBands;
  std::vector<Band> out;
  for (std::size_t i = 0; i < runs.size(); i += std::max<std::size_t>(per_band, 1)) {
    Band b;
    b.first = &runs[i];
    b.va = runs[i].va;
    const std::size_t n = std::min(std::max<std::size_t>(per_band, 1), runs.size() - i);
    for (std::size_t k = i; k < i + n; ++k) {
      const Run& r = runs[k];
      b.end = r.va + r.size;
      b.leaf_size = std::max(b.leaf_size, r.leaf_size);
      b.user = b.user || r.read[1] || r.write[1] || r.exec[1];
      b.mixed = b.mixed || r.read[0] != runs[i].read[0] || r.write[0] != runs[i].write[0] ||
                r.exec[0] != runs[i].exec[0];
    }
    b.count = n;
    out.push_back(b);
  }
  return out;
}

}  // namespace

std::string svg_map(const DumpResult& d, const Format& format, std::vector<Marker> markers,
                    const std::string& title) {
  std::stable_sort(markers.begin(), markers.end(),
                   [](const Marker& a, const Marker& b) { return a.va < b.va; });
  const std::vector<Band> bands = bands_for(d.runs);
  std::string body;
  int y = 70;
  std::size_t next_marker = 0;
  u64 prev_end = 0;
  bool have_prev = false;
  for (const Band& b : bands) {
    // Collapsed gap: the unmapped bytes between this band and the last.
    if (have_prev && b.va != prev_end) {
      body += fmt::format(
          "<line x1='{}' y1='{}' x2='{}' y2='{}' class='gap'/>"
          "<text x='{}' y='{}' class='gaptext'>unmapped {}</text>\n",
          kBarX, y + kGapHeight / 2, kWidth - 10, y + kGapHeight / 2, kDetailX,
          y + kGapHeight / 2 + 4, approx_size(b.va - prev_end));
      y += kGapHeight;
    }
    std::string names;
    while (next_marker < markers.size() &&
           (markers[next_marker].va < b.va || markers[next_marker].va - b.va < b.end - b.va)) {
      names += (names.empty() ? "" : ", ") + markers[next_marker++].name;
    }
    if (!names.empty()) {
      body += fmt::format("<text x='{}' y='{}' class='marker'>{}</text>\n", kLabelX, y + 12,
                          escape(names));
      y += 16;
    }
    const Run& r = *b.first;
    const int h = height_for(b.leaf_size);
    const char* fill = fill_for(r.read[0], r.write[0], r.exec[0]);
    const u64 size = b.end - b.va;
    std::string detail;
    if (b.count == 1) {
      detail =
          fmt::format("{:>6}  pa {}  kern {} user {}  {}{}  {} leaves", size_name(size), hex(r.pa),
                      perm_string(r.read[0], r.write[0], r.exec[0]),
                      perm_string(r.read[1], r.write[1], r.exec[1]), format.mem_name(r.mem_index),
                      r.global ? " GLB" : "", size_name(r.leaf_size));
    } else {
      detail = fmt::format("{:>6}  {} ranges{}  largest leaf {}", size_name(size), b.count,
                           b.mixed ? ", mixed permissions" : "", size_name(b.leaf_size));
    }
    body += fmt::format(
        "<g class='band'><title>{}-{}: {}</title>"
        "<text x='{}' y='{}' class='va'>{}-{}</text>"
        "<rect x='{}' y='{}' width='{}' height='{}' fill='{}'/>",
        hex(b.va), hex(b.end), escape(detail), kLabelX, y + h / 2 + 4, hex(b.va), hex(b.end), kBarX,
        y + 1, bar_for(size), h - 2, fill);
    if (b.user || b.mixed) {
      body += fmt::format("<rect x='{}' y='{}' width='{}' height='{}' fill='url(#{})'/>", kBarX,
                          y + 1, bar_for(size), h - 2, b.user ? "user" : "mixed");
    }
    body += fmt::format("<text x='{}' y='{}' class='detail'>{}</text></g>\n", kDetailX,
                        y + h / 2 + 4, escape(detail));
    y += h;
    prev_end = b.end;
    have_prev = true;
  }
  if (bands.empty()) {
    body +=
        fmt::format("<text x='{}' y='{}' class='detail'>nothing mapped</text>\n", kLabelX, y + 12);
    y += 20;
  }

  const int height = y + 20;
  std::string out = fmt::format(
      "<?xml version='1.0' encoding='UTF-8'?>\n"
      "<svg xmlns='http://www.w3.org/2000/svg' width='{}' height='{}' viewBox='0 0 {} {}' "
      "font-family='monospace' font-size='11'>\n"
      "<style>.va{{fill:#222}} .detail{{fill:#333}} .marker{{fill:#000;font-weight:bold}} "
      ".gap{{stroke:#bbb;stroke-dasharray:4 3}} .gaptext{{fill:#888;font-style:italic}} "
      ".title{{font-size:14px;font-weight:bold}}</style>\n"
      "<defs><pattern id='user' width='6' height='6' patternUnits='userSpaceOnUse' "
      "patternTransform='rotate(45)'><rect width='2' height='6' fill='#fff' opacity='0.7'/>"
      "</pattern><pattern id='mixed' width='4' height='4' patternUnits='userSpaceOnUse'>"
      "<rect width='2' height='2' fill='#000' opacity='0.35'/></pattern></defs>\n"
      "<text x='{}' y='20' class='title'>{}</text>\n",
      kWidth, height, kWidth, height, kLabelX, escape(title));
  // The legend: colours, stripes, heights.
  struct Key {
    const char* fill;
    const char* text;
  };
  const Key keys[] = {{fill_for(true, true, true), "rwx"},
                      {fill_for(true, false, true), "r-x"},
                      {fill_for(true, true, false), "rw-"},
                      {fill_for(true, false, false), "r--"},
                      {fill_for(false, false, false), "no kernel access"}};
  int x = kLabelX;
  for (const Key& k : keys) {
    out += fmt::format(
        "<rect x='{}' y='32' width='14' height='10' fill='{}'/>"
        "<text x='{}' y='41'>{}</text>\n",
        x, k.fill, x + 18, k.text);
    x += 30 + 7 * int(std::char_traits<char>::length(k.text));
  }
  out += fmt::format(
      "<rect x='{}' y='32' width='14' height='10' fill='#1f77b4'/><rect x='{}' y='32' width='14' "
      "height='10' fill='url(#user)'/><text x='{}' y='41'>user access</text>\n"
      "<text x='{}' y='58'>band height: leaf size (4K thin ... 1G thick); bar length: size, "
      "log scale; {} ranges{}</text>\n",
      x, x, x + 18, kLabelX, d.runs.size(),
      bands.size() < d.runs.size() ? fmt::format(" in {} bands", bands.size()) : "");
  out += body;
  out += "</svg>\n";
  return out;
}

void write_svg(const std::string& file, const std::string& svg) {
  std::ofstream f(file, std::ios::binary | std::ios::trunc);
  f << svg;
  f.close();
  if (!f) throw UsageError(fmt::format("--svg {}: cannot write", file));
}

}  // namespace ptkit::tool
