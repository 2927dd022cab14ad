#include "layout.hpp"

#include <fmt/format.h>
#include <toml++/toml.h>

#include <set>

namespace ptkit::tool {

std::string Where::str() const { return line ? fmt::format("{}:{}", file, line) : file; }

const char* to_string(MemKind k) {
  switch (k) {
    case MemKind::Ram: return "ram";
    case MemKind::Device: return "device";
    case MemKind::Reserved: return "reserved";
  }
  return "?";
}

const char* to_string(MapKind k) {
  switch (k) {
    case MapKind::Direct: return "direct";
    case MapKind::Image: return "image";
    case MapKind::Fixed: return "fixed";
    case MapKind::Mmio: return "mmio";
  }
  return "?";
}

namespace {

/// Reads one TOML table, checking the keys it has against the keys allowed,
/// so that a misspelt key is an error rather than a silent default.
class Reader {
 public:
  Reader(const toml::table& t, std::string file, std::string what)
      : t_(t), file_(std::move(file)), what_(std::move(what)) {}

  [[nodiscard]] Where where() const { return at(t_); }
  [[nodiscard]] Where at(const toml::node& n) const {
    return Where{file_, static_cast<unsigned>(n.source().begin.line)};
  }
  [[noreturn]] void fail(const toml::node& n, const std::string& msg) const {
    throw InputError(fmt::format("{}: {}: {}", at(n).str(), what_, msg));
  }

  void allow(std::initializer_list<std::string_view> keys) const {
    const std::set<std::string_view> allowed(keys);
    for (const auto& [key, value] : t_) {
      if (!allowed.count(key.str())) {
        std::string list;
        for (std::string_view k : keys) list += fmt::format("{}{}", list.empty() ? "" : ", ", k);
        fail(value, fmt::format("unknown key '{}' (expected one of: {})", key.str(), list));
      }
    }
  }

  [[noreturn]] void missing(std::string_view key) const {
    fail(t_, fmt::format("missing '{}'", key));
  }

  [[nodiscard]] const toml::node* find(std::string_view key) const { return t_.get(key); }

  /// A number: a TOML integer (not negative) or a string parse_number takes.
  [[nodiscard]] std::optional<u64> number(std::string_view key) const {
    const toml::node* n = find(key);
    if (!n) return std::nullopt;
    if (const auto* i = n->as_integer()) {
      if (i->get() < 0) fail(*n, fmt::format("'{}' must not be negative", key));
      return static_cast<u64>(i->get());
    }
    if (const auto* s = n->as_string()) {
      if (auto v = parse_number(s->get())) return v;
      fail(*n, fmt::format("'{}': expected a hex (0x...) or decimal number with an optional "
                           "K/M/G/T suffix, got \"{}\"",
                           key, s->get()));
    }
    fail(*n, fmt::format("'{}' must be a number or a string such as \"0x1000\" or \"16M\"", key));
  }
  [[nodiscard]] u64 required_number(std::string_view key) const {
    if (auto v = number(key)) return *v;
    fail(t_, fmt::format("missing '{}'", key));
  }

  [[nodiscard]] std::optional<std::string> string(std::string_view key) const {
    const toml::node* n = find(key);
    if (!n) return std::nullopt;
    if (const auto* s = n->as_string()) return s->get();
    fail(*n, fmt::format("'{}' must be a string", key));
  }
  [[nodiscard]] std::string required_string(std::string_view key) const {
    if (auto v = string(key)) return *v;
    fail(t_, fmt::format("missing '{}'", key));
  }

  [[nodiscard]] std::optional<bool> boolean(std::string_view key) const {
    const toml::node* n = find(key);
    if (!n) return std::nullopt;
    if (const auto* b = n->as_boolean()) return b->get();
    fail(*n, fmt::format("'{}' must be true or false", key));
  }

 private:
  const toml::table& t_;
  std::string file_;
  std::string what_;
};

VaExpr parse_va(const Reader& r, std::string_view key) {
  const toml::node* n = r.find(key);
  if (!n) r.missing(key);
  VaExpr e;
  if (const auto* i = n->as_integer()) {
    if (i->get() < 0) r.fail(*n, "a negative 'va' must be a string such as \"-2G\"");
    e.offset = static_cast<u64>(i->get());
    e.text = fmt::format("{:#x}", e.offset);
    return e;
  }
  const auto* s = n->as_string();
  if (!s) r.fail(*n, "'va' must be a number or a string");
  std::string_view text = s->get();
  e.text = std::string(text);
  std::optional<u64> offset;
  if (text.starts_with("-")) {
    e.from = VaExpr::From::Top;
    offset = parse_number(text.substr(1));
    if (offset && *offset == 0) offset.reset();
  } else if (text.starts_with("upper")) {
    e.from = VaExpr::From::Upper;
    text.remove_prefix(5);
    offset = text.empty()            ? std::optional<u64>(0)
             : text.starts_with("+") ? parse_number(text.substr(1))
                                     : std::nullopt;
  } else {
    offset = parse_number(text);
  }
  if (!offset)
    r.fail(*n, fmt::format("'va': expected an address (\"0xffff888000000000\"), an offset below "
                           "the top (\"-2G\") or from the upper half (\"upper\", \"upper+64G\"), "
                           "got \"{}\"",
                           s->get()));
  e.offset = *offset;
  return e;
}

MemRange parse_memory(const toml::table& t, const std::string& file, unsigned index) {
  Reader r(t, file, fmt::format("memory[{}]", index));
  r.allow({"kind", "base", "size"});
  MemRange m;
  m.where = r.where();
  const std::string kind = r.required_string("kind");
  if (kind == "ram")
    m.kind = MemKind::Ram;
  else if (kind == "device")
    m.kind = MemKind::Device;
  else if (kind == "reserved")
    m.kind = MemKind::Reserved;
  else
    r.fail(*t.get("kind"),
           fmt::format("'kind' must be \"ram\", \"device\" or \"reserved\", got \"{}\"", kind));
  m.base = r.required_number("base");
  m.size = r.required_number("size");
  if (m.size == 0) r.fail(*t.get("size"), "'size' must not be 0");
  if (m.base + (m.size - 1) < m.base) r.fail(t, "the range wraps around the top of memory");
  return m;
}

MapSpec parse_map(const toml::table& t, const std::string& file, unsigned index) {
  const std::string name = t.get("name") && t.get("name")->as_string()
                               ? t.get("name")->as_string()->get()
                               : fmt::format("map[{}]", index);
  Reader r(t, file, fmt::format("map '{}'", name));
  MapSpec m;
  m.name = name;
  m.where = r.where();
  const std::string kind = r.required_string("kind");
  if (kind == "direct") {
    m.kind = MapKind::Direct;
    r.allow({"name", "kind", "va", "perm", "mem", "global", "max_page"});
  } else if (kind == "image") {
    m.kind = MapKind::Image;
    r.allow({"name", "kind", "va", "pa", "align", "sections", "mem", "global", "max_page"});
  } else if (kind == "fixed" || kind == "mmio") {
    m.kind = kind == "fixed" ? MapKind::Fixed : MapKind::Mmio;
    r.allow({"name", "kind", "va", "pa", "size", "perm", "mem", "global", "max_page"});
  } else {
    r.fail(*t.get("kind"),
           fmt::format("'kind' must be \"direct\", \"image\", \"fixed\" or \"mmio\", got \"{}\"",
                       kind));
  }
  m.va = parse_va(r, "va");
  m.perm = r.string("perm").value_or(m.kind == MapKind::Fixed ? "r" : "rw");
  m.mem = r.string("mem").value_or(m.kind == MapKind::Mmio ? "device" : "wb");
  m.global = r.boolean("global").value_or(true);
  m.max_page = r.number("max_page");
  if (m.kind == MapKind::Fixed || m.kind == MapKind::Mmio) {
    m.pa = r.required_number("pa");
    m.size = r.required_number("size");
    if (m.size == 0) r.fail(*t.get("size"), "'size' must not be 0");
  }
  if (m.kind == MapKind::Image) {
    m.pa = r.required_number("pa");
    m.align = r.number("align").value_or(0);
    const toml::node* s = t.get("sections");
    if (!s) r.fail(t, "missing 'sections' (an array of { name, size, perm })");
    const toml::array* arr = s->as_array();
    if (!arr || arr->empty()) r.fail(*s, "'sections' must be a non-empty array of tables");
    unsigned k = 0;
    for (const toml::node& sec : *arr) {
      const toml::table* st = sec.as_table();
      if (!st) r.fail(sec, fmt::format("sections[{}] must be a table {{ name, size, perm }}", k));
      Reader sr(*st, file, fmt::format("map '{}' sections[{}]", name, k));
      sr.allow({"name", "size", "perm"});
      SectionSpec spec;
      spec.where = sr.at(sec);
      spec.name = sr.required_string("name");
      spec.size = sr.required_number("size");
      if (spec.size == 0) sr.fail(sec, "'size' must not be 0");
      spec.perm = sr.required_string("perm");
      m.size += spec.size;
      m.sections.push_back(std::move(spec));
      ++k;
    }
  }
  return m;
}

}  // namespace

Layout parse_layout_text(const std::string& text, const std::string& file) {
  toml::table root;
  try {
    root = toml::parse(text, file);
  } catch (const toml::parse_error& e) {
    throw InputError(
        fmt::format("{}:{}: TOML syntax: {}", file, e.source().begin.line, e.description()));
  }
  Layout layout;
  layout.file = file;
  Reader top(root, file, "layout");
  top.allow({"format", "tables", "memory", "map"});
  layout.format = top.string("format");
  if (const toml::node* f = root.get("format")) layout.format_where = top.at(*f);

  const toml::node* tables = root.get("tables");
  if (!tables || !tables->as_table())
    throw InputError(
        fmt::format("{}: layout: missing [tables] (the table area's base and size)", file));
  Reader tr(*tables->as_table(), file, "[tables]");
  tr.allow({"base", "size"});
  layout.tables_where = tr.where();
  layout.table_base = tr.required_number("base");
  layout.table_size = tr.number("size").value_or(u64{1} << 20);
  if (layout.table_size == 0 || layout.table_size > kMaxTableArea)
    tr.fail(*tables, fmt::format("'size' must be between 1 byte and {}", size_name(kMaxTableArea)));

  auto array_of_tables = [&](std::string_view key, auto&& each) {
    const toml::node* n = root.get(key);
    if (!n) return;
    const toml::array* arr = n->as_array();
    if (!arr) top.fail(*n, fmt::format("'{}' must be an array of tables ([[{}]])", key, key));
    unsigned i = 0;
    for (const toml::node& e : *arr) {
      const toml::table* t = e.as_table();
      if (!t) top.fail(e, fmt::format("'{}' entries must be tables ([[{}]])", key, key));
      each(*t, i++);
    }
  };
  array_of_tables("memory", [&](const toml::table& t, unsigned i) {
    layout.memory.push_back(parse_memory(t, file, i));
  });
  array_of_tables("map", [&](const toml::table& t, unsigned i) {
    layout.maps.push_back(parse_map(t, file, i));
  });
  if (layout.memory.empty())
    throw InputError(fmt::format("{}: layout: no [[memory]] ranges (at least one \"ram\")", file));
  if (layout.maps.empty())
    throw InputError(fmt::format("{}: layout: no [[map]] entries: nothing to build", file));
  return layout;
}

Layout parse_layout_file(const std::string& path) {
  const auto bytes = read_file(path);
  return parse_layout_text(std::string(bytes.begin(), bytes.end()), path);
}

}  // namespace ptkit::tool
