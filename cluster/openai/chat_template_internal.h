// The pieces of cluster/openai/chat_template.h: values, tokens, the syntax tree, and the
// lexer, parser and renderer that pass them along. Internal to the chat_template library.
#ifndef APRUNTIME_CLUSTER_OPENAI_CHAT_TEMPLATE_INTERNAL_H_
#define APRUNTIME_CLUSTER_OPENAI_CHAT_TEMPLATE_INTERNAL_H_

#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <utility>
#include <variant>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"

namespace apr::cluster::openai::chat_template_internal {

// Bounds that keep a hostile template from exhausting the stack or the memory.
inline constexpr int kMaxNesting = 100;                      // blocks and expressions
inline constexpr size_t kMaxStringBytes = size_t{64} << 20;  // any string, and the output
inline constexpr size_t kMaxListLength = size_t{1} << 20;

struct Position {
  int line = 0;
  int column = 0;
};

// "chat template LINE:COLUMN: message".
absl::Status ErrorAt(Position pos, const std::string& message);

// ---- Values: Python's objects as far as templates use them ----

struct Value;
struct Namespace;
using ValueList = std::vector<Value>;
// Insertion-ordered like a Python dict, so tojson writes keys in the order given.
using ValueDict = std::vector<std::pair<std::string, Value>>;

// Jinja's Undefined: prints as "", is false, fails when used otherwise.
struct Undefined {
  std::string name;  // what was looked up, for error messages
};
struct None {};

struct Value {
  std::variant<Undefined, None, bool, int64_t, std::string, std::shared_ptr<const ValueList>,
               std::shared_ptr<const ValueDict>, std::shared_ptr<Namespace>>
      data;

  static Value MakeUndefined(std::string name) { return Value{Undefined{std::move(name)}}; }
  static Value MakeNone() { return Value{None{}}; }
  static Value Bool(bool b) { return Value{b}; }
  static Value Int(int64_t i) { return Value{i}; }
  static Value String(std::string s) { return Value{std::move(s)}; }
  static Value List(ValueList items) {
    return Value{std::make_shared<const ValueList>(std::move(items))};
  }
  static Value Dict(ValueDict items) {
    return Value{std::make_shared<const ValueDict>(std::move(items))};
  }

  bool is_undefined() const { return std::holds_alternative<Undefined>(data); }
  bool is_none() const { return std::holds_alternative<None>(data); }
  const std::string* string() const { return std::get_if<std::string>(&data); }
  const ValueList* list() const;
  const ValueDict* dict() const;
  Namespace* name_space() const;
  // Python treats bool as an int in arithmetic and comparisons.
  std::optional<int64_t> integer() const;
};

// The mutable object of {% set ns = namespace(...) %}.
struct Namespace {
  ValueDict attributes;
};

const Value* FindInDict(const ValueDict& dict, std::string_view key);
bool Truthy(const Value& value);
std::string TypeName(const Value& value);
std::string ToDisplayString(const Value& value);  // Python's str()
std::string ToRepr(const Value& value);           // Python's repr()
bool Equals(const Value& a, const Value& b);      // Python's ==
// Python's json.dumps(value, ensure_ascii=False, indent=indent), as transformers' tojson.
absl::StatusOr<std::string> ToJson(const Value& value, std::optional<int64_t> indent);

// UTF-8 text as Python sees a str: code points, and str.strip()/split() semantics.
std::vector<std::string> CodePoints(std::string_view text);
// chars == nullopt strips whitespace.
std::string StripString(std::string_view text, const std::optional<std::string>& chars, bool left,
                        bool right);
// separator == nullopt splits on runs of whitespace.
std::vector<std::string> SplitString(std::string_view text,
                                     const std::optional<std::string>& separator);

// ---- Tokens ----

enum class TokenKind {
  kText,       // template text between tags
  kExprBegin,  // {{
  kExprEnd,    // }}
  kStmtBegin,  // {%
  kStmtEnd,    // %}
  kName,
  kString,  // text is the decoded value
  kInt,
  kOperator,  // punctuation and operators: == ( [ | . , ...
  kEnd,       // end of the template
};

struct Token {
  TokenKind kind;
  std::string text;
  Position pos;
};

// Splits the source into text and tag tokens, applying Jinja's whitespace control as
// transformers configures it (trim_blocks, lstrip_blocks).
absl::StatusOr<std::vector<Token>> Lex(std::string_view source);

// ---- Syntax tree ----

struct Expr;
// Built by the parser, then only read (the tree is shared const by every Render).
using ExprPtr = std::unique_ptr<Expr>;

enum class ExprKind {
  kLiteral,      // literal
  kList,         // operands: items
  kName,         // name
  kGetAttr,      // operands[0].name
  kGetItem,      // operands[0][operands[1]]
  kSlice,        // operands[0][operands[1]:operands[2]:operands[3]], null when omitted
  kNegate,       // -operands[0]
  kNot,          // not operands[0]
  kAnd,          // operands[0] and operands[1]
  kOr,           // operands[0] or operands[1]
  kBinary,       // operands[0] name operands[1]; name is + - % ~
  kCompare,      // operands[0] ops[0] operands[1] ops[1] operands[2] ...
  kConditional,  // operands[0] if operands[1] else operands[2] (null: undefined)
  kFilter,       // operands[0] | name(operands[1:], keyword_args)
  kTest,         // operands[0] is [not] name
  kCall,         // name(operands, keyword_args)
  kMethodCall,   // operands[0].name(operands[1:])
};

struct Expr {
  ExprKind kind;
  Position pos;
  Value literal;
  std::string name;
  std::vector<std::string> ops;
  std::vector<ExprPtr> operands;
  std::vector<std::pair<std::string, ExprPtr>> keyword_args;
  bool negated = false;  // kTest: "is not"
};

struct Node;
using NodeList = std::vector<Node>;

struct IfBranch {
  ExprPtr condition;  // null for {% else %}
  NodeList body;
};

enum class NodeKind { kText, kOutput, kIf, kFor, kSet };

struct Node {
  NodeKind kind;
  Position pos;
  std::string text;                // kText: the text; kFor: the loop variable; kSet: the variable
  std::string attribute;           // kSet: the namespace attribute, "" for a plain variable
  ExprPtr expr;                    // kOutput: the value; kFor: what it iterates; kSet: the value
  std::vector<IfBranch> branches;  // kIf
  NodeList body;                   // kFor
};

absl::StatusOr<NodeList> ParseTokens(std::vector<Token> tokens);

// Renders with `globals` as the outermost variables.
absl::StatusOr<std::string> RenderNodes(const NodeList& nodes,
                                        std::vector<std::pair<std::string, Value>> globals);

}  // namespace apr::cluster::openai::chat_template_internal

#endif  // APRUNTIME_CLUSTER_OPENAI_CHAT_TEMPLATE_INTERNAL_H_
