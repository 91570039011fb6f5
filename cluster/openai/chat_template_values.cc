// Values of the chat-template renderer: Python's truthiness, str(), ==, json.dumps and the
// str methods, on UTF-8 text.
#include <algorithm>
#include <cstdio>

#include "base/status_macros.h"
#include "cluster/openai/chat_template_internal.h"

namespace apr::cluster::openai::chat_template_internal {
namespace {

// Values nest only as deep as a template builds them; past this, printing stops.
constexpr int kMaxPrintDepth = 64;

// Decodes the code point at text[*pos] and advances past it; invalid bytes are taken one
// at a time, as themselves, so that nothing is lost.
char32_t DecodeUtf8(std::string_view text, size_t* pos) {
  const auto byte = [&](size_t i) { return static_cast<unsigned char>(text[i]); };
  const unsigned char first = byte(*pos);
  int length = first < 0x80           ? 1
               : (first >> 5) == 0x6  ? 2
               : (first >> 4) == 0xE  ? 3
               : (first >> 3) == 0x1E ? 4
                                      : 0;
  if (length == 0 || *pos + length > text.size()) {
    ++*pos;
    return 0xFFFD;
  }
  char32_t code = length == 1 ? first : first & (0x7F >> length);
  for (int i = 1; i < length; ++i) {
    if ((byte(*pos + i) & 0xC0) != 0x80) {
      ++*pos;
      return 0xFFFD;
    }
    code = (code << 6) | (byte(*pos + i) & 0x3F);
  }
  *pos += length;
  return code;
}

// Python's str.isspace().
bool IsPythonSpace(char32_t c) {
  return (c >= 0x09 && c <= 0x0D) || (c >= 0x1C && c <= 0x20) || c == 0x85 || c == 0xA0 ||
         c == 0x1680 || (c >= 0x2000 && c <= 0x200A) || c == 0x2028 || c == 0x2029 || c == 0x202F ||
         c == 0x205F || c == 0x3000;
}

std::string PythonRepr(const std::string& text) {
  const bool double_quoted =
      text.find('\'') != std::string::npos && text.find('"') == std::string::npos;
  const char quote = double_quoted ? '"' : '\'';
  std::string out(1, quote);
  for (char c : text) {
    const auto u = static_cast<unsigned char>(c);
    if (c == quote || c == '\\') {
      out += '\\';
      out += c;
    } else if (c == '\n') {
      out += "\\n";
    } else if (c == '\r') {
      out += "\\r";
    } else if (c == '\t') {
      out += "\\t";
    } else if (u < 0x20 || u == 0x7F) {
      char buffer[8];
      std::snprintf(buffer, sizeof(buffer), "\\x%02x", u);
      out += buffer;
    } else {
      out += c;
    }
  }
  out += quote;
  return out;
}

std::string Repr(const Value& value, int depth);

std::string ListRepr(const ValueList& list, int depth) {
  std::string out = "[";
  for (size_t i = 0; i < list.size(); ++i) {
    if (i > 0) out += ", ";
    out += Repr(list[i], depth + 1);
  }
  return out + "]";
}

std::string DictRepr(const ValueDict& dict, int depth) {
  std::string out = "{";
  for (size_t i = 0; i < dict.size(); ++i) {
    if (i > 0) out += ", ";
    out += PythonRepr(dict[i].first) + ": " + Repr(dict[i].second, depth + 1);
  }
  return out + "}";
}

// str() of a value; strings inside containers are repr()'d, as Python does.
std::string Str(const Value& value, int depth, bool quote_strings) {
  if (depth > kMaxPrintDepth) return "...";
  if (value.is_undefined()) return quote_strings ? "Undefined" : "";
  if (value.is_none()) return "None";
  if (const bool* b = std::get_if<bool>(&value.data)) return *b ? "True" : "False";
  if (const int64_t* i = std::get_if<int64_t>(&value.data)) return std::to_string(*i);
  if (const std::string* s = value.string()) return quote_strings ? PythonRepr(*s) : *s;
  if (const ValueList* list = value.list()) return ListRepr(*list, depth);
  if (const ValueDict* dict = value.dict()) return DictRepr(*dict, depth);
  return "<Namespace " + DictRepr(value.name_space()->attributes, depth) + ">";
}

std::string Repr(const Value& value, int depth) { return Str(value, depth, true); }

std::string JsonString(const std::string& text) {
  std::string out = "\"";
  for (char c : text) {
    const auto u = static_cast<unsigned char>(c);
    switch (c) {
      case '"':
        out += "\\\"";
        break;
      case '\\':
        out += "\\\\";
        break;
      case '\n':
        out += "\\n";
        break;
      case '\r':
        out += "\\r";
        break;
      case '\t':
        out += "\\t";
        break;
      case '\b':
        out += "\\b";
        break;
      case '\f':
        out += "\\f";
        break;
      default:
        if (u < 0x20) {
          char buffer[8];
          std::snprintf(buffer, sizeof(buffer), "\\u%04x", u);
          out += buffer;
        } else {
          out += c;
        }
    }
  }
  return out + "\"";
}

// Python's json.dumps layout: ", " between items on one line, or one item a line when
// indented (with "," at line ends).
class JsonWriter {
 public:
  explicit JsonWriter(std::optional<int64_t> indent) : indent_(indent) {}

  absl::Status Write(const Value& value, int depth) {
    if (depth > kMaxPrintDepth)
      return absl::InvalidArgumentError("tojson: value nested too deeply");
    if (out_.size() > kMaxStringBytes) return absl::InvalidArgumentError("tojson: value too large");
    if (value.is_none()) {
      out_ += "null";
    } else if (const bool* b = std::get_if<bool>(&value.data)) {
      out_ += *b ? "true" : "false";
    } else if (const int64_t* i = std::get_if<int64_t>(&value.data)) {
      out_ += std::to_string(*i);
    } else if (const std::string* s = value.string()) {
      out_ += JsonString(*s);
    } else if (const ValueList* list = value.list()) {
      return WriteItems('[', ']', list->size(), depth,
                        [&](size_t i) { return Write((*list)[i], depth + 1); });
    } else if (const ValueDict* dict = value.dict()) {
      return WriteItems('{', '}', dict->size(), depth, [&](size_t i) {
        out_ += JsonString((*dict)[i].first) + ": ";
        return Write((*dict)[i].second, depth + 1);
      });
    } else {
      return absl::InvalidArgumentError("tojson: " + TypeName(value) + " is not JSON serializable");
    }
    return absl::OkStatus();
  }

  std::string& out() { return out_; }

 private:
  template <typename WriteItem>
  absl::Status WriteItems(char open, char close, size_t count, int depth, WriteItem write_item) {
    out_ += open;
    for (size_t i = 0; i < count; ++i) {
      if (i > 0) out_ += indent_ ? "," : ", ";
      NewLine(depth + 1);
      APR_RETURN_IF_ERROR(write_item(i));
    }
    if (count > 0) NewLine(depth);
    out_ += close;
    return absl::OkStatus();
  }

  void NewLine(int depth) {
    if (!indent_) return;
    out_ += '\n';
    out_.append(static_cast<size_t>(std::max<int64_t>(0, *indent_)) * depth, ' ');
  }

  std::optional<int64_t> indent_;
  std::string out_;
};

}  // namespace

absl::Status ErrorAt(Position pos, const std::string& message) {
  return absl::InvalidArgumentError("chat template " + std::to_string(pos.line) + ":" +
                                    std::to_string(pos.column) + ": " + message);
}

const ValueList* Value::list() const {
  const auto* p = std::get_if<std::shared_ptr<const ValueList>>(&data);
  return p ? p->get() : nullptr;
}

const ValueDict* Value::dict() const {
  const auto* p = std::get_if<std::shared_ptr<const ValueDict>>(&data);
  return p ? p->get() : nullptr;
}

Namespace* Value::name_space() const {
  const auto* p = std::get_if<std::shared_ptr<Namespace>>(&data);
  return p ? p->get() : nullptr;
}

std::optional<int64_t> Value::integer() const {
  if (const int64_t* i = std::get_if<int64_t>(&data)) return *i;
  if (const bool* b = std::get_if<bool>(&data)) return *b ? 1 : 0;
  return std::nullopt;
}

const Value* FindInDict(const ValueDict& dict, std::string_view key) {
  for (const auto& [name, value] : dict) {
    if (name == key) return &value;
  }
  return nullptr;
}

bool Truthy(const Value& value) {
  if (value.is_undefined() || value.is_none()) return false;
  if (std::optional<int64_t> i = value.integer()) return *i != 0;
  if (const std::string* s = value.string()) return !s->empty();
  if (const ValueList* list = value.list()) return !list->empty();
  if (const ValueDict* dict = value.dict()) return !dict->empty();
  return true;  // a namespace
}

std::string TypeName(const Value& value) {
  if (value.is_undefined()) return "undefined";
  if (value.is_none()) return "none";
  if (std::holds_alternative<bool>(value.data)) return "bool";
  if (std::holds_alternative<int64_t>(value.data)) return "int";
  if (value.string()) return "string";
  if (value.list()) return "list";
  if (value.dict()) return "dict";
  return "namespace";
}

std::string ToDisplayString(const Value& value) { return Str(value, 0, false); }

std::string ToRepr(const Value& value) { return Repr(value, 0); }

bool Equals(const Value& a, const Value& b) {
  if (a.is_undefined() || b.is_undefined()) return a.is_undefined() && b.is_undefined();
  if (a.is_none() || b.is_none()) return a.is_none() && b.is_none();
  std::optional<int64_t> ai = a.integer(), bi = b.integer();
  if (ai || bi) return ai && bi && *ai == *bi;
  if (a.string() || b.string()) return a.string() && b.string() && *a.string() == *b.string();
  if (a.list() || b.list()) {
    if (!a.list() || !b.list() || a.list()->size() != b.list()->size()) return false;
    for (size_t i = 0; i < a.list()->size(); ++i) {
      if (!Equals((*a.list())[i], (*b.list())[i])) return false;
    }
    return true;
  }
  if (a.dict() || b.dict()) {
    if (!a.dict() || !b.dict() || a.dict()->size() != b.dict()->size()) return false;
    for (const auto& [key, value] : *a.dict()) {
      const Value* other = FindInDict(*b.dict(), key);
      if (other == nullptr || !Equals(value, *other)) return false;
    }
    return true;
  }
  return a.name_space() == b.name_space();
}

absl::StatusOr<std::string> ToJson(const Value& value, std::optional<int64_t> indent) {
  JsonWriter writer(indent);
  APR_RETURN_IF_ERROR(writer.Write(value, 0));
  return std::move(writer.out());
}

std::vector<std::string> CodePoints(std::string_view text) {
  std::vector<std::string> points;
  for (size_t pos = 0; pos < text.size();) {
    const size_t start = pos;
    DecodeUtf8(text, &pos);
    points.emplace_back(text.substr(start, pos - start));
  }
  return points;
}

std::string StripString(std::string_view text, const std::optional<std::string>& chars, bool left,
                        bool right) {
  std::vector<char32_t> strip_set;
  if (chars) {
    for (size_t pos = 0; pos < chars->size();) strip_set.push_back(DecodeUtf8(*chars, &pos));
  }
  const auto strips = [&](char32_t c) {
    if (!chars) return IsPythonSpace(c);
    return std::find(strip_set.begin(), strip_set.end(), c) != strip_set.end();
  };
  // Code-point boundaries, so that the right end strips whole characters.
  std::vector<size_t> starts;
  std::vector<char32_t> points;
  for (size_t pos = 0; pos < text.size();) {
    starts.push_back(pos);
    points.push_back(DecodeUtf8(text, &pos));
  }
  size_t begin = 0, end = points.size();
  while (left && begin < end && strips(points[begin])) ++begin;
  while (right && end > begin && strips(points[end - 1])) --end;
  const size_t byte_begin = begin < starts.size() ? starts[begin] : text.size();
  const size_t byte_end = end < starts.size() ? starts[end] : text.size();
  return std::string(text.substr(byte_begin, byte_end - byte_begin));
}

std::vector<std::string> SplitString(std::string_view text,
                                     const std::optional<std::string>& separator) {
  std::vector<std::string> parts;
  if (separator) {
    size_t start = 0;
    for (size_t found; (found = text.find(*separator, start)) != std::string_view::npos;
         start = found + separator->size()) {
      parts.emplace_back(text.substr(start, found - start));
    }
    parts.emplace_back(text.substr(start));
    return parts;
  }
  std::string current;
  bool in_word = false;
  for (size_t pos = 0; pos < text.size();) {
    const size_t start = pos;
    if (IsPythonSpace(DecodeUtf8(text, &pos))) {
      if (in_word) parts.push_back(std::move(current));
      current.clear();
      in_word = false;
    } else {
      current.append(text.substr(start, pos - start));
      in_word = true;
    }
  }
  if (in_word) parts.push_back(std::move(current));
  return parts;
}

}  // namespace apr::cluster::openai::chat_template_internal
