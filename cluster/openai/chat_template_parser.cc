// The chat-template parser: recursive descent over the lexer's tokens, with Jinja's
// operator precedence (lowest first): a if b else c, or, and, not, comparisons and in,
// + -, ~, %, unary -, then attributes, subscripts and calls, then | filters and is tests.
// Filters, tests and methods are checked here, so an unsupported one fails at Parse.
#include <algorithm>
#include <charconv>

#include "base/status_macros.h"
#include "cluster/openai/chat_template_internal.h"

namespace apr::cluster::openai::chat_template_internal {
namespace {

// What a filter, test or method accepts: a count of positional arguments and at most one
// keyword ("" for none).
struct Signature {
  std::string_view name;
  int min_args;
  int max_args;
  std::string_view keyword;
};

constexpr Signature kFilters[] = {
    {"trim", 0, 1, ""}, {"length", 0, 0, ""}, {"string", 0, 0, ""}, {"tojson", 0, 0, "indent"}};
constexpr Signature kTests[] = {{"defined", 0, 0, ""}, {"undefined", 0, 0, ""}, {"none", 0, 0, ""},
                                {"string", 0, 0, ""},  {"true", 0, 0, ""},      {"false", 0, 0, ""},
                                {"mapping", 0, 0, ""}, {"iterable", 0, 0, ""}};
constexpr Signature kMethods[] = {{"strip", 0, 1, ""},    {"lstrip", 0, 1, ""},
                                  {"rstrip", 0, 1, ""},   {"startswith", 1, 1, ""},
                                  {"endswith", 1, 1, ""}, {"split", 0, 1, ""}};

template <size_t N>
const Signature* FindSignature(const Signature (&table)[N], std::string_view name) {
  for (const Signature& signature : table) {
    if (signature.name == name) return &signature;
  }
  return nullptr;
}

// Tags that close or continue a block: met where none is open, they are misplaced.
bool IsBlockContinuation(std::string_view tag) {
  return tag == "elif" || tag == "else" || tag == "endif" || tag == "endfor" || tag == "endset";
}

std::string Describe(const Token& token) {
  switch (token.kind) {
    case TokenKind::kText:
      return "template text";
    case TokenKind::kExprBegin:
      return "'{{'";
    case TokenKind::kExprEnd:
      return "'}}'";
    case TokenKind::kStmtBegin:
      return "'{%'";
    case TokenKind::kStmtEnd:
      return "'%}'";
    case TokenKind::kString:
      return "a string literal";
    case TokenKind::kEnd:
      return "the end of the template";
    default:
      return "'" + token.text + "'";
  }
}

ExprPtr MakeExpr(ExprKind kind, Position pos, std::vector<ExprPtr> operands = {}) {
  auto expr = std::make_unique<Expr>();
  expr->kind = kind;
  expr->pos = pos;
  expr->operands = std::move(operands);
  return expr;
}

std::vector<ExprPtr> Operands(ExprPtr a, ExprPtr b = nullptr) {
  std::vector<ExprPtr> operands;
  operands.push_back(std::move(a));
  if (b) operands.push_back(std::move(b));
  return operands;
}

class Parser {
 public:
  explicit Parser(std::vector<Token> tokens) : tokens_(std::move(tokens)) {}

  absl::StatusOr<NodeList> ParseTemplate() {
    NodeList nodes;
    std::string end_tag;
    APR_RETURN_IF_ERROR(ParseBody({}, "", {}, &nodes, &end_tag));
    return nodes;
  }

 private:
  // Counts nesting of blocks and expressions, failing past kMaxNesting.
  class DepthGuard {
   public:
    explicit DepthGuard(int* depth) : depth_(depth) { ++*depth_; }
    ~DepthGuard() { --*depth_; }
    bool too_deep() const { return *depth_ > kMaxNesting; }

   private:
    int* depth_;
  };

  const Token& Peek(size_t ahead = 0) const {
    return tokens_[std::min(index_ + ahead, tokens_.size() - 1)];
  }
  const Token& Next() {
    const Token& token = Peek();
    if (index_ < tokens_.size() - 1) ++index_;
    return token;
  }
  bool AtOperator(std::string_view op, size_t ahead = 0) const {
    return Peek(ahead).kind == TokenKind::kOperator && Peek(ahead).text == op;
  }
  bool AtName(std::string_view name, size_t ahead = 0) const {
    return Peek(ahead).kind == TokenKind::kName && Peek(ahead).text == name;
  }
  absl::Status Unexpected(const std::string& expected) const {
    return ErrorAt(Peek().pos, "expected " + expected + " but found " + Describe(Peek()));
  }
  absl::Status ExpectOperator(std::string_view op) {
    if (!AtOperator(op)) return Unexpected("'" + std::string(op) + "'");
    Next();
    return absl::OkStatus();
  }
  absl::Status ExpectKind(TokenKind kind, const std::string& expected) {
    if (Peek().kind != kind) return Unexpected(expected);
    Next();
    return absl::OkStatus();
  }
  absl::StatusOr<std::string> ExpectName(const std::string& expected) {
    if (Peek().kind != TokenKind::kName) return Unexpected(expected);
    return Next().text;
  }

  // ---- Statements ----

  // Parses nodes until one of `end_tags` (whose "{% name" is consumed and stored in
  // *end_tag) or, for the top level (no end tags), the end of the template.
  absl::Status ParseBody(const std::vector<std::string_view>& end_tags, std::string_view opener,
                         Position opened, NodeList* body, std::string* end_tag) {
    while (true) {
      const Token& token = Peek();
      if (token.kind == TokenKind::kEnd) {
        if (end_tags.empty()) return absl::OkStatus();
        return ErrorAt(opened, "'{% " + std::string(opener) + " %}' is never closed with '{% " +
                                   std::string(end_tags.back()) + " %}'");
      }
      if (token.kind == TokenKind::kText) {
        Node node{NodeKind::kText, token.pos};
        node.text = Next().text;
        body->push_back(std::move(node));
      } else if (token.kind == TokenKind::kExprBegin) {
        Next();
        Node node{NodeKind::kOutput, token.pos};
        absl::StatusOr<ExprPtr> expr = ParseExpression();
        if (!expr.ok()) return expr.status();
        node.expr = *std::move(expr);
        if (absl::Status status = ExpectKind(TokenKind::kExprEnd, "'}}'"); !status.ok()) {
          return status;
        }
        body->push_back(std::move(node));
      } else if (token.kind == TokenKind::kStmtBegin) {
        for (std::string_view end : end_tags) {
          if (AtName(end, 1)) {
            Next();
            *end_tag = Next().text;
            return absl::OkStatus();
          }
        }
        APR_RETURN_IF_ERROR(ParseStatement(opener, body));
      } else {
        return Unexpected("template text or a tag");
      }
    }
  }

  absl::Status ParseStatement(std::string_view enclosing, NodeList* body) {
    const Position pos = Next().pos;  // {%
    DepthGuard guard(&depth_);
    if (guard.too_deep()) return ErrorAt(pos, "blocks nested too deeply");
    absl::StatusOr<std::string> tag = ExpectName("a tag name");
    if (!tag.ok()) return tag.status();
    absl::StatusOr<Node> node = absl::InternalError("unreached");
    if (*tag == "if") {
      node = ParseIf(pos);
    } else if (*tag == "for") {
      node = ParseFor(pos);
    } else if (*tag == "set") {
      node = ParseSet(pos);
    } else if (*tag == "else" && enclosing == "for") {
      return ErrorAt(pos, "'{% else %}' in a for loop is not supported");
    } else if (IsBlockContinuation(*tag)) {
      return ErrorAt(pos, "unexpected '{% " + *tag + " %}'");
    } else {
      return ErrorAt(pos, "tag '" + *tag + "' is not supported");
    }
    if (!node.ok()) return node.status();
    body->push_back(*std::move(node));
    return absl::OkStatus();
  }

  absl::Status ExpectStmtEnd() { return ExpectKind(TokenKind::kStmtEnd, "'%}'"); }

  absl::StatusOr<Node> ParseIf(Position pos) {
    Node node{NodeKind::kIf, pos};
    std::string tag = "if";
    while (tag != "endif") {
      IfBranch branch;
      if (tag != "else") {
        absl::StatusOr<ExprPtr> condition = ParseExpression();
        if (!condition.ok()) return condition.status();
        branch.condition = *std::move(condition);
      }
      APR_RETURN_IF_ERROR(ExpectStmtEnd());
      static const std::vector<std::string_view> kAfterElse = {"endif"};
      static const std::vector<std::string_view> kAfterCondition = {"elif", "else", "endif"};
      const auto& end_tags = tag == "else" ? kAfterElse : kAfterCondition;
      APR_RETURN_IF_ERROR(ParseBody(end_tags, "if", pos, &branch.body, &tag));
      node.branches.push_back(std::move(branch));
    }
    APR_RETURN_IF_ERROR(ExpectStmtEnd());
    return node;
  }

  absl::StatusOr<Node> ParseFor(Position pos) {
    Node node{NodeKind::kFor, pos};
    absl::StatusOr<std::string> target = ExpectName("a loop variable");
    if (!target.ok()) return target.status();
    node.text = *target;
    if (AtOperator(",")) {
      return ErrorAt(Peek().pos, "unpacking several loop variables is not supported");
    }
    if (!AtName("in")) return Unexpected("'in'");
    Next();
    // Jinja reads the iterable without a conditional: "if" here filters the loop.
    absl::StatusOr<ExprPtr> iterable = ParseOr();
    if (!iterable.ok()) return iterable.status();
    node.expr = *std::move(iterable);
    if (AtName("if")) return ErrorAt(Peek().pos, "'{% for ... if %}' filtering is not supported");
    if (AtName("recursive")) return ErrorAt(Peek().pos, "recursive loops are not supported");
    APR_RETURN_IF_ERROR(ExpectStmtEnd());
    std::string end_tag;
    APR_RETURN_IF_ERROR(ParseBody({"endfor"}, "for", pos, &node.body, &end_tag));
    APR_RETURN_IF_ERROR(ExpectStmtEnd());
    return node;
  }

  absl::StatusOr<Node> ParseSet(Position pos) {
    Node node{NodeKind::kSet, pos};
    absl::StatusOr<std::string> target = ExpectName("a variable name");
    if (!target.ok()) return target.status();
    node.text = *target;
    if (AtOperator(".")) {
      Next();
      absl::StatusOr<std::string> attribute = ExpectName("an attribute name");
      if (!attribute.ok()) return attribute.status();
      node.attribute = *attribute;
    }
    if (AtOperator(",")) return ErrorAt(Peek().pos, "setting several variables is not supported");
    if (Peek().kind == TokenKind::kStmtEnd) {
      return ErrorAt(pos, "block assignments '{% set x %}...{% endset %}' are not supported");
    }
    APR_RETURN_IF_ERROR(ExpectOperator("="));
    absl::StatusOr<ExprPtr> value = ParseExpression();
    if (!value.ok()) return value.status();
    node.expr = *std::move(value);
    APR_RETURN_IF_ERROR(ExpectStmtEnd());
    return node;
  }

  // ---- Expressions, lowest precedence first ----

  absl::StatusOr<ExprPtr> ParseExpression() {
    absl::StatusOr<ExprPtr> value = ParseOr();
    while (value.ok() && AtName("if")) {
      const Position pos = Next().pos;
      absl::StatusOr<ExprPtr> condition = ParseOr();
      if (!condition.ok()) return condition.status();
      ExprPtr otherwise;
      if (AtName("else")) {
        Next();
        absl::StatusOr<ExprPtr> parsed = ParseExpression();
        if (!parsed.ok()) return parsed.status();
        otherwise = *std::move(parsed);
      }
      std::vector<ExprPtr> operands = Operands(*std::move(value), *std::move(condition));
      operands.push_back(std::move(otherwise));
      value = MakeExpr(ExprKind::kConditional, pos, std::move(operands));
    }
    return value;
  }

  // Left-associative binary levels: `ops` are the operators (names for and/or).
  template <typename ParseOperand>
  absl::StatusOr<ExprPtr> ParseBinaryLevel(std::initializer_list<std::string_view> ops,
                                           ExprKind kind, ParseOperand parse_operand) {
    absl::StatusOr<ExprPtr> left = (this->*parse_operand)();
    while (left.ok()) {
      std::string_view op;
      for (std::string_view candidate : ops) {
        if (AtOperator(candidate) || AtName(candidate)) op = candidate;
      }
      if (op.empty()) break;
      const Position pos = Next().pos;
      absl::StatusOr<ExprPtr> right = (this->*parse_operand)();
      if (!right.ok()) return right.status();
      ExprPtr expr = MakeExpr(kind, pos, Operands(*std::move(left), *std::move(right)));
      expr->name = std::string(op);
      left = std::move(expr);
    }
    return left;
  }

  absl::StatusOr<ExprPtr> ParseOr() {
    return ParseBinaryLevel({"or"}, ExprKind::kOr, &Parser::ParseAnd);
  }
  absl::StatusOr<ExprPtr> ParseAnd() {
    return ParseBinaryLevel({"and"}, ExprKind::kAnd, &Parser::ParseNot);
  }

  absl::StatusOr<ExprPtr> ParseNot() {
    if (!AtName("not")) return ParseCompare();
    const Position pos = Next().pos;
    DepthGuard guard(&depth_);
    if (guard.too_deep()) return ErrorAt(pos, "expression nested too deeply");
    absl::StatusOr<ExprPtr> operand = ParseNot();
    if (!operand.ok()) return operand.status();
    return MakeExpr(ExprKind::kNot, pos, Operands(*std::move(operand)));
  }

  // Chains like a < b < c, evaluated as Python does.
  absl::StatusOr<ExprPtr> ParseCompare() {
    absl::StatusOr<ExprPtr> first = ParseAdditive();
    if (!first.ok()) return first;
    const Position pos = (*first)->pos;
    ExprPtr compare = MakeExpr(ExprKind::kCompare, pos, Operands(*std::move(first)));
    while (true) {
      std::string op;
      if (Peek().kind == TokenKind::kOperator &&
          (Peek().text == "==" || Peek().text == "!=" || Peek().text == "<" || Peek().text == ">" ||
           Peek().text == "<=" || Peek().text == ">=")) {
        op = Next().text;
      } else if (AtName("in")) {
        op = Next().text;
      } else if (AtName("not") && AtName("in", 1)) {
        Next();
        Next();
        op = "not in";
      } else {
        break;
      }
      absl::StatusOr<ExprPtr> operand = ParseAdditive();
      if (!operand.ok()) return operand.status();
      compare->ops.push_back(op);
      compare->operands.push_back(*std::move(operand));
    }
    if (compare->ops.empty()) return std::move(compare->operands[0]);
    return compare;
  }

  absl::StatusOr<ExprPtr> ParseAdditive() {
    return ParseBinaryLevel({"+", "-"}, ExprKind::kBinary, &Parser::ParseConcat);
  }
  absl::StatusOr<ExprPtr> ParseConcat() {
    return ParseBinaryLevel({"~"}, ExprKind::kBinary, &Parser::ParseModulo);
  }

  absl::StatusOr<ExprPtr> ParseModulo() {
    absl::StatusOr<ExprPtr> value =
        ParseBinaryLevel({"%"}, ExprKind::kBinary, &Parser::ParseUnaryWithFilters);
    for (std::string_view op : {"*", "/", "//", "**"}) {
      if (value.ok() && AtOperator(op)) {
        return ErrorAt(Peek().pos, "operator '" + std::string(op) + "' is not supported");
      }
    }
    return value;
  }

  absl::StatusOr<ExprPtr> ParseUnaryWithFilters() { return ParseUnary(/*with_filters=*/true); }

  absl::StatusOr<ExprPtr> ParseUnary(bool with_filters) {
    const Position pos = Peek().pos;
    DepthGuard guard(&depth_);
    if (guard.too_deep()) return ErrorAt(pos, "expression nested too deeply");
    absl::StatusOr<ExprPtr> value;
    if (AtOperator("-")) {
      Next();
      absl::StatusOr<ExprPtr> operand = ParseUnary(/*with_filters=*/false);
      if (!operand.ok()) return operand.status();
      value = MakeExpr(ExprKind::kNegate, pos, Operands(*std::move(operand)));
    } else if (AtOperator("+")) {
      return ErrorAt(pos, "unary '+' is not supported");
    } else {
      value = ParsePrimary();
    }
    if (value.ok()) value = ParsePostfix(*std::move(value));
    if (value.ok() && with_filters) value = ParseFiltersAndTests(*std::move(value));
    return value;
  }

  absl::StatusOr<ExprPtr> ParsePrimary();
  absl::StatusOr<ExprPtr> ParseList(Position pos);
  absl::StatusOr<ExprPtr> ParsePostfix(ExprPtr value);
  absl::StatusOr<ExprPtr> ParseSubscript(ExprPtr value);
  absl::StatusOr<ExprPtr> ParseCall(ExprPtr callee);
  absl::Status ParseArguments(Expr* call);
  absl::StatusOr<ExprPtr> ParseFiltersAndTests(ExprPtr value);
  absl::StatusOr<ExprPtr> ParseFilter(ExprPtr value);
  absl::StatusOr<ExprPtr> ParseTest(ExprPtr value);

  std::vector<Token> tokens_;
  size_t index_ = 0;
  int depth_ = 0;
};

absl::Status CheckArguments(const Signature& signature, const Expr& call, size_t first_arg,
                            const std::string& what) {
  const int positional = static_cast<int>(call.operands.size() - first_arg);
  if (positional < signature.min_args || positional > signature.max_args) {
    const std::string count =
        signature.min_args == signature.max_args
            ? std::to_string(signature.min_args)
            : std::to_string(signature.min_args) + " to " + std::to_string(signature.max_args);
    return ErrorAt(call.pos, what + " takes " + count + " positional argument(s), got " +
                                 std::to_string(positional));
  }
  for (const auto& [keyword, value] : call.keyword_args) {
    if (keyword != signature.keyword) {
      return ErrorAt(call.pos, what + " has no supported argument '" + keyword + "'");
    }
  }
  return absl::OkStatus();
}

absl::StatusOr<ExprPtr> Parser::ParsePrimary() {
  const Token& token = Peek();
  const Position pos = token.pos;
  if (token.kind == TokenKind::kName) {
    const std::string& name = Next().text;
    ExprPtr expr = MakeExpr(ExprKind::kLiteral, pos);
    if (name == "true" || name == "True") {
      expr->literal = Value::Bool(true);
    } else if (name == "false" || name == "False") {
      expr->literal = Value::Bool(false);
    } else if (name == "none" || name == "None") {
      expr->literal = Value::MakeNone();
    } else {
      expr->kind = ExprKind::kName;
      expr->name = name;
    }
    return expr;
  }
  if (token.kind == TokenKind::kString) {
    std::string text;
    while (Peek().kind == TokenKind::kString) text += Next().text;  // 'a' 'b' is 'ab'
    ExprPtr expr = MakeExpr(ExprKind::kLiteral, pos);
    expr->literal = Value::String(std::move(text));
    return expr;
  }
  if (token.kind == TokenKind::kInt) {
    int64_t number = 0;
    const std::string& digits = Next().text;
    auto [end, ec] = std::from_chars(digits.data(), digits.data() + digits.size(), number);
    if (ec != std::errc()) return ErrorAt(pos, "integer literal " + digits + " is out of range");
    ExprPtr expr = MakeExpr(ExprKind::kLiteral, pos);
    expr->literal = Value::Int(number);
    return expr;
  }
  if (AtOperator("(")) {
    Next();
    absl::StatusOr<ExprPtr> inner = ParseExpression();
    if (!inner.ok()) return inner;
    if (AtOperator(",")) return ErrorAt(Peek().pos, "tuples are not supported");
    APR_RETURN_IF_ERROR(ExpectOperator(")"));
    return inner;
  }
  if (AtOperator("[")) return ParseList(Next().pos);
  if (AtOperator("{")) return ErrorAt(pos, "dict literals are not supported");
  return Unexpected("an expression");
}

absl::StatusOr<ExprPtr> Parser::ParseList(Position pos) {
  ExprPtr list = MakeExpr(ExprKind::kList, pos);
  while (!AtOperator("]")) {
    absl::StatusOr<ExprPtr> item = ParseExpression();
    if (!item.ok()) return item;
    list->operands.push_back(*std::move(item));
    if (!AtOperator(",")) break;
    Next();
  }
  APR_RETURN_IF_ERROR(ExpectOperator("]"));
  return list;
}

absl::StatusOr<ExprPtr> Parser::ParsePostfix(ExprPtr value) {
  while (true) {
    if (AtOperator(".")) {
      Next();
      const Position pos = Peek().pos;  // errors point at the attribute or method name
      absl::StatusOr<std::string> attribute = ExpectName("an attribute name");
      if (!attribute.ok()) return attribute.status();
      ExprPtr get = MakeExpr(ExprKind::kGetAttr, pos, Operands(std::move(value)));
      get->name = *attribute;
      value = std::move(get);
    } else if (AtOperator("[")) {
      absl::StatusOr<ExprPtr> subscript = ParseSubscript(std::move(value));
      if (!subscript.ok()) return subscript;
      value = *std::move(subscript);
    } else if (AtOperator("(")) {
      absl::StatusOr<ExprPtr> call = ParseCall(std::move(value));
      if (!call.ok()) return call;
      value = *std::move(call);
    } else {
      return value;
    }
  }
}

// x[i] or x[start:stop:step], each part optional.
absl::StatusOr<ExprPtr> Parser::ParseSubscript(ExprPtr value) {
  const Position pos = Next().pos;  // [
  std::vector<ExprPtr> parts;
  bool is_slice = false;
  for (int part = 0; part < 3; ++part) {
    if (part > 0) {
      if (!AtOperator(":")) break;
      Next();
      is_slice = true;
    }
    ExprPtr expr;
    if (!AtOperator(":") && !AtOperator("]")) {
      absl::StatusOr<ExprPtr> parsed = ParseExpression();
      if (!parsed.ok()) return parsed;
      expr = *std::move(parsed);
    } else if (part == 0 && AtOperator("]")) {
      return Unexpected("a subscript");
    }
    parts.push_back(std::move(expr));
  }
  if (AtOperator(",")) return ErrorAt(Peek().pos, "tuple subscripts are not supported");
  APR_RETURN_IF_ERROR(ExpectOperator("]"));
  std::vector<ExprPtr> operands = Operands(std::move(value));
  for (ExprPtr& part : parts) operands.push_back(std::move(part));
  if (!is_slice) return MakeExpr(ExprKind::kGetItem, pos, std::move(operands));
  operands.resize(4);  // missing stop or step: null
  return MakeExpr(ExprKind::kSlice, pos, std::move(operands));
}

// name(...) is a function call; x.name(...) a string method.
absl::StatusOr<ExprPtr> Parser::ParseCall(ExprPtr callee) {
  const Position pos = Peek().pos;
  ExprPtr call;
  if (callee->kind == ExprKind::kName) {
    call = MakeExpr(ExprKind::kCall, callee->pos);
  } else if (callee->kind == ExprKind::kGetAttr) {
    if (FindSignature(kMethods, callee->name) == nullptr) {
      return ErrorAt(callee->pos, "method '" + callee->name + "' is not supported");
    }
    call = MakeExpr(ExprKind::kMethodCall, callee->pos, Operands(std::move(callee->operands[0])));
  } else {
    return ErrorAt(pos, "only functions and string methods can be called");
  }
  call->name = callee->name;
  APR_RETURN_IF_ERROR(ParseArguments(call.get()));
  if (call->kind == ExprKind::kMethodCall) {
    absl::Status status = CheckArguments(*FindSignature(kMethods, call->name), *call, 1,
                                         "method '" + call->name + "'");
    if (!status.ok()) return status;
  }
  return call;
}

// "(" positional, ..., keyword=value, ... ")" appended to call's operands and keyword_args.
absl::Status Parser::ParseArguments(Expr* call) {
  APR_RETURN_IF_ERROR(ExpectOperator("("));
  while (!AtOperator(")")) {
    std::string keyword;
    if (Peek().kind == TokenKind::kName && AtOperator("=", 1)) {
      keyword = Next().text;
      Next();
    } else if (!call->keyword_args.empty()) {
      return ErrorAt(Peek().pos, "positional argument after a keyword argument");
    }
    absl::StatusOr<ExprPtr> argument = ParseExpression();
    if (!argument.ok()) return argument.status();
    if (keyword.empty()) {
      call->operands.push_back(*std::move(argument));
    } else {
      call->keyword_args.emplace_back(keyword, *std::move(argument));
    }
    if (!AtOperator(",")) break;
    Next();
  }
  return ExpectOperator(")");
}

absl::StatusOr<ExprPtr> Parser::ParseFiltersAndTests(ExprPtr value) {
  while (true) {
    absl::StatusOr<ExprPtr> next;
    if (AtOperator("|")) {
      next = ParseFilter(std::move(value));
    } else if (AtName("is")) {
      next = ParseTest(std::move(value));
    } else if (AtOperator("(")) {
      return ErrorAt(Peek().pos, "only functions and string methods can be called");
    } else {
      return value;
    }
    if (!next.ok()) return next;
    value = *std::move(next);
  }
}

absl::StatusOr<ExprPtr> Parser::ParseFilter(ExprPtr value) {
  Next();  // |
  const Position pos = Peek().pos;
  absl::StatusOr<std::string> name = ExpectName("a filter name");
  if (!name.ok()) return name.status();
  const Signature* signature = FindSignature(kFilters, *name);
  if (signature == nullptr) return ErrorAt(pos, "filter '" + *name + "' is not supported");
  ExprPtr filter = MakeExpr(ExprKind::kFilter, pos, Operands(std::move(value)));
  filter->name = *name;
  if (AtOperator("(")) {
    APR_RETURN_IF_ERROR(ParseArguments(filter.get()));
  }
  absl::Status status = CheckArguments(*signature, *filter, 1, "filter '" + *name + "'");
  if (!status.ok()) return status;
  return filter;
}

absl::StatusOr<ExprPtr> Parser::ParseTest(ExprPtr value) {
  Next();  // is
  ExprPtr test = MakeExpr(ExprKind::kTest, Peek().pos, Operands(std::move(value)));
  if (AtName("not")) {
    Next();
    test->negated = true;
  }
  const Position pos = Peek().pos;
  absl::StatusOr<std::string> name = ExpectName("a test name");
  if (!name.ok()) return name.status();
  if (FindSignature(kTests, *name) == nullptr) {
    return ErrorAt(pos, "test '" + *name + "' is not supported");
  }
  test->name = *name;
  test->pos = pos;
  // Jinja reads "x is test arg" and "x is test(arg)"; none of the supported tests take one.
  const Token& next = Peek();
  const bool argument_follows =
      AtOperator("(") || AtOperator("[") || next.kind == TokenKind::kString ||
      next.kind == TokenKind::kInt ||
      (next.kind == TokenKind::kName && !AtName("else") && !AtName("or") && !AtName("and"));
  if (argument_follows) return ErrorAt(next.pos, "test '" + *name + "' takes no argument");
  return test;
}

}  // namespace

absl::StatusOr<NodeList> ParseTokens(std::vector<Token> tokens) {
  return Parser(std::move(tokens)).ParseTemplate();
}

}  // namespace apr::cluster::openai::chat_template_internal
