// The commands main.cpp wires to the command line. Each returns the exit
// status (util.hpp) and throws UsageError or InputError for the caller to
// report.
#pragma once

#include <optional>
#include <string>
#include <vector>

#include "util.hpp"

namespace ptkit::tool {

int cmd_formats();

struct BuildArgs {
  std::string layout;  // empty: the built-in example
  std::optional<std::string> format;
  std::string out;
  bool dump = false;
  bool json = false;
  std::string svg;
};
int cmd_build(const BuildArgs& a);

struct ImageArgs {
  std::string elf;
  std::optional<std::string> load_pa;
  std::optional<std::string> format;
  std::optional<std::string> align;        // promised segment alignment; default the page
  std::optional<std::string> tables;       // table area base; default right after the image
  std::optional<std::string> tables_size;  // default 1M
  std::string out;
  bool dump = false;
  bool json = false;
  std::string svg;
};
int cmd_image(const ImageArgs& a);

struct DumpArgs {
  std::string memory;
  std::string root;
  std::string base = "0";
  std::string format;
  std::string half = "lower";
  std::optional<std::string> direct_map;  // --direct-map VA: where pa 0 is mapped
  bool audit = false;
  bool json = false;
  std::string svg;
};
int cmd_dump(const DumpArgs& a);

struct CheckArgs {
  std::string trace;
  // The header of a trace that has none (kernels often log only events).
  std::optional<std::string> format;
  std::vector<std::string> features;
  std::optional<std::string> root;
  bool json = false;
};
int cmd_check(const CheckArgs& a);

}  // namespace ptkit::tool
