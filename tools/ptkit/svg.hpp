// `--svg FILE`: the address space as a picture. One band per run of
// identically-mapped pages, top to bottom by virtual address; colour by the
// kernel's permissions, stripes where user mode has access, band height by
// leaf size; unmapped stretches between bands are collapsed into a labelled
// gap, so a layout spanning 2^64 bytes still fits. Beyond kMaxBands runs,
// neighbours are grouped into one band each (labelled with their count and
// striped when their permissions differ), so tens of thousands of runs stay
// a readable, bounded file.
#pragma once

#include <string>
#include <vector>

#include "dump.hpp"

namespace ptkit::tool {

/// Bands drawn at most; more runs are grouped.
inline constexpr std::size_t kMaxBands = 2000;

/// The SVG document. `title` heads it (e.g. the file and format); markers
/// (layout names, halves) label the bands they fall in.
std::string svg_map(const DumpResult& d, const Format& format, std::vector<Marker> markers,
                    const std::string& title);

/// Writes `svg_map` to `file`: UsageError when it cannot be written.
void write_svg(const std::string& file, const std::string& svg);

}  // namespace ptkit::tool
