// The chat-template renderer: walks the syntax tree with Python's semantics for values
// and Jinja's for scopes (a for loop's variables, and what {% set %} assigns inside it,
// end with the loop; that is why templates carry state out of loops in a namespace).
#include <algorithm>
#include <map>

#include "base/status_macros.h"
#include "cluster/openai/chat_template_internal.h"

namespace apr::cluster::openai::chat_template_internal {
namespace {

using Scope = std::map<std::string, Value, std::less<>>;

absl::Status UndefinedError(Position pos, const Value& value) {
  return ErrorAt(pos, "'" + std::get<Undefined>(value.data).name + "' is undefined");
}

absl::StatusOr<Value> StringResult(Position pos, std::string text) {
  if (text.size() > kMaxStringBytes) return ErrorAt(pos, "string result too large");
  return Value::String(std::move(text));
}

// Python's a[i] with negative i counting from the end; nullopt when out of range.
std::optional<size_t> ResolveIndex(int64_t index, size_t size) {
  const int64_t resolved = index < 0 ? index + static_cast<int64_t>(size) : index;
  if (resolved < 0 || resolved >= static_cast<int64_t>(size)) return std::nullopt;
  return static_cast<size_t>(resolved);
}

// Python's slice.indices(): the positions a[start:stop:step] visits.
std::vector<size_t> SliceIndices(size_t size, std::optional<int64_t> start,
                                 std::optional<int64_t> stop, int64_t step) {
  const int64_t n = static_cast<int64_t>(size);
  // A step past the size visits what n + 1 visits, and cannot overflow below.
  step = std::clamp<int64_t>(step, -(n + 1), n + 1);
  const auto adjust = [&](std::optional<int64_t> bound, int64_t fallback) {
    if (!bound) return fallback;
    if (*bound < 0)
      return std::max<int64_t>(*bound, -n - 1) + n < 0 ? (step < 0 ? -1 : 0) : *bound + n;
    return *bound >= n ? (step < 0 ? n - 1 : n) : *bound;
  };
  const int64_t first = adjust(start, step < 0 ? n - 1 : 0);
  const int64_t end = adjust(stop, step < 0 ? -1 : n);
  std::vector<size_t> indices;
  for (int64_t i = first; step > 0 ? i < end : i > end; i += step) {
    indices.push_back(static_cast<size_t>(i));
  }
  return indices;
}

class Renderer {
 public:
  explicit Renderer(std::vector<std::pair<std::string, Value>> globals) {
    scopes_.emplace_back();
    for (auto& [name, value] : globals) scopes_.back()[name] = std::move(value);
  }

  // Namespaces may hold themselves ({% set ns.me = ns %}); emptying them frees the cycle.
  ~Renderer() {
    for (const auto& name_space : namespaces_) name_space->attributes.clear();
  }

  absl::StatusOr<std::string> Run(const NodeList& nodes) {
    APR_RETURN_IF_ERROR(Execute(nodes));
    return std::move(out_);
  }

 private:
  absl::Status Execute(const NodeList& nodes) {
    for (const Node& node : nodes) {
      absl::Status status = ExecuteNode(node);
      if (!status.ok()) return status;
    }
    return absl::OkStatus();
  }

  absl::Status ExecuteNode(const Node& node) {
    switch (node.kind) {
      case NodeKind::kText:
        return Emit(node.pos, node.text);
      case NodeKind::kOutput: {
        absl::StatusOr<Value> value = Evaluate(*node.expr);
        if (!value.ok()) return value.status();
        return Emit(node.pos, ToDisplayString(*value));
      }
      case NodeKind::kIf:
        for (const IfBranch& branch : node.branches) {
          bool taken = true;
          if (branch.condition) {
            absl::StatusOr<Value> condition = Evaluate(*branch.condition);
            if (!condition.ok()) return condition.status();
            taken = Truthy(*condition);
          }
          if (taken) return Execute(branch.body);
        }
        return absl::OkStatus();
      case NodeKind::kFor:
        return ExecuteFor(node);
      case NodeKind::kSet:
        return ExecuteSet(node);
    }
    return absl::InternalError("unknown node kind");
  }

  absl::Status Emit(Position pos, const std::string& text) {
    if (out_.size() + text.size() > kMaxStringBytes) return ErrorAt(pos, "output too large");
    out_ += text;
    return absl::OkStatus();
  }

  absl::StatusOr<ValueList> Iterate(Position pos, const Value& value) {
    if (value.is_undefined()) return ValueList{};
    if (const ValueList* list = value.list()) return *list;
    if (const ValueDict* dict = value.dict()) {
      ValueList keys;
      for (const auto& [key, unused] : *dict) keys.push_back(Value::String(key));
      return keys;
    }
    if (const std::string* text = value.string()) {
      ValueList characters;
      for (std::string& c : CodePoints(*text)) characters.push_back(Value::String(std::move(c)));
      return characters;
    }
    return ErrorAt(pos, "cannot iterate over " + TypeName(value));
  }

  absl::Status ExecuteFor(const Node& node) {
    absl::StatusOr<Value> iterable = Evaluate(*node.expr);
    if (!iterable.ok()) return iterable.status();
    absl::StatusOr<ValueList> items = Iterate(node.expr->pos, *iterable);
    if (!items.ok()) return items.status();
    const int64_t length = static_cast<int64_t>(items->size());
    scopes_.emplace_back();
    absl::Status status = absl::OkStatus();
    for (int64_t i = 0; i < length && status.ok(); ++i) {
      scopes_.back()[node.text] = (*items)[i];
      scopes_.back()["loop"] = Value::Dict({
          {"index0", Value::Int(i)},
          {"index", Value::Int(i + 1)},
          {"revindex0", Value::Int(length - i - 1)},
          {"revindex", Value::Int(length - i)},
          {"first", Value::Bool(i == 0)},
          {"last", Value::Bool(i == length - 1)},
          {"length", Value::Int(length)},
      });
      status = Execute(node.body);
    }
    scopes_.pop_back();
    return status;
  }

  absl::Status ExecuteSet(const Node& node) {
    absl::StatusOr<Value> value = Evaluate(*node.expr);
    if (!value.ok()) return value.status();
    if (node.attribute.empty()) {
      scopes_.back()[node.text] = *std::move(value);
      return absl::OkStatus();
    }
    Namespace* target = Lookup(node.text).name_space();
    if (target == nullptr) {
      return ErrorAt(node.pos, "cannot set attribute '" + node.attribute + "' of '" + node.text +
                                   "': it is not a namespace()");
    }
    for (auto& [name, existing] : target->attributes) {
      if (name == node.attribute) {
        existing = *std::move(value);
        return absl::OkStatus();
      }
    }
    target->attributes.emplace_back(node.attribute, *std::move(value));
    return absl::OkStatus();
  }

  Value Lookup(const std::string& name) const {
    for (auto scope = scopes_.rbegin(); scope != scopes_.rend(); ++scope) {
      if (auto found = scope->find(name); found != scope->end()) return found->second;
    }
    return Value::MakeUndefined(name);
  }

  absl::StatusOr<Value> Evaluate(const Expr& expr);
  absl::StatusOr<std::vector<Value>> EvaluateOperands(const Expr& expr, size_t from);
  absl::StatusOr<Value> GetItem(Position pos, const Value& object, const Value& key);
  absl::StatusOr<Value> Slice(const Expr& expr);
  absl::StatusOr<Value> Binary(Position pos, const std::string& op, const Value& a, const Value& b);
  absl::StatusOr<Value> Compare(const Expr& expr);
  absl::StatusOr<bool> CompareTwo(Position pos, const std::string& op, const Value& a,
                                  const Value& b);
  absl::StatusOr<bool> Contains(Position pos, const Value& container, const Value& item);
  absl::StatusOr<Value> Filter(const Expr& expr);
  absl::StatusOr<Value> Test(const Expr& expr);
  absl::StatusOr<Value> Call(const Expr& expr);
  absl::StatusOr<Value> MethodCall(const Expr& expr);

  std::vector<Scope> scopes_;
  std::vector<std::shared_ptr<Namespace>> namespaces_;
  std::string out_;
};

absl::StatusOr<Value> Renderer::Evaluate(const Expr& expr) {
  const auto operand = [&](size_t i) { return Evaluate(*expr.operands[i]); };
  switch (expr.kind) {
    case ExprKind::kLiteral:
      return expr.literal;
    case ExprKind::kName:
      return Lookup(expr.name);
    case ExprKind::kList: {
      absl::StatusOr<std::vector<Value>> items = EvaluateOperands(expr, 0);
      if (!items.ok()) return items.status();
      return Value::List(*std::move(items));
    }
    case ExprKind::kGetAttr: {
      absl::StatusOr<Value> object = operand(0);
      if (!object.ok()) return object;
      return GetItem(expr.pos, *object, Value::String(expr.name));
    }
    case ExprKind::kGetItem: {
      absl::StatusOr<std::vector<Value>> values = EvaluateOperands(expr, 0);
      if (!values.ok()) return values.status();
      return GetItem(expr.pos, (*values)[0], (*values)[1]);
    }
    case ExprKind::kSlice:
      return Slice(expr);
    case ExprKind::kNegate: {
      absl::StatusOr<Value> value = operand(0);
      if (!value.ok()) return value;
      if (value->is_undefined()) return UndefinedError(expr.pos, *value);
      std::optional<int64_t> number = value->integer();
      if (!number) return ErrorAt(expr.pos, "cannot negate " + TypeName(*value));
      if (*number == INT64_MIN) return ErrorAt(expr.pos, "integer overflow");
      return Value::Int(-*number);
    }
    case ExprKind::kNot: {
      absl::StatusOr<Value> value = operand(0);
      if (!value.ok()) return value;
      return Value::Bool(!Truthy(*value));
    }
    case ExprKind::kAnd:
    case ExprKind::kOr: {
      // Python returns the deciding operand, not a bool.
      absl::StatusOr<Value> left = operand(0);
      if (!left.ok() || Truthy(*left) == (expr.kind == ExprKind::kOr)) return left;
      return operand(1);
    }
    case ExprKind::kBinary: {
      absl::StatusOr<std::vector<Value>> values = EvaluateOperands(expr, 0);
      if (!values.ok()) return values.status();
      return Binary(expr.pos, expr.name, (*values)[0], (*values)[1]);
    }
    case ExprKind::kCompare:
      return Compare(expr);
    case ExprKind::kConditional: {
      absl::StatusOr<Value> condition = operand(1);
      if (!condition.ok()) return condition;
      if (Truthy(*condition)) return operand(0);
      if (expr.operands[2]) return operand(2);
      return Value::MakeUndefined("value of an if without else");
    }
    case ExprKind::kFilter:
      return Filter(expr);
    case ExprKind::kTest:
      return Test(expr);
    case ExprKind::kCall:
      return Call(expr);
    case ExprKind::kMethodCall:
      return MethodCall(expr);
  }
  return absl::InternalError("unknown expression kind");
}

absl::StatusOr<std::vector<Value>> Renderer::EvaluateOperands(const Expr& expr, size_t from) {
  std::vector<Value> values;
  for (size_t i = from; i < expr.operands.size(); ++i) {
    absl::StatusOr<Value> value = Evaluate(*expr.operands[i]);
    if (!value.ok()) return value.status();
    values.push_back(*std::move(value));
  }
  return values;
}

// Jinja's lookup for both x.key and x[key]: what is missing is undefined, and only
// reading from an undefined value fails.
absl::StatusOr<Value> Renderer::GetItem(Position pos, const Value& object, const Value& key) {
  if (object.is_undefined()) {
    return ErrorAt(pos, "cannot read " + ToRepr(key) + ": '" +
                            std::get<Undefined>(object.data).name + "' is undefined");
  }
  const std::string* name = key.string();
  if (name != nullptr) {
    if (const ValueDict* dict = object.dict()) {
      if (const Value* found = FindInDict(*dict, *name)) return *found;
    } else if (const Namespace* name_space = object.name_space()) {
      if (const Value* found = FindInDict(name_space->attributes, *name)) return *found;
    }
    return Value::MakeUndefined(*name);
  }
  std::optional<int64_t> index = key.integer();
  if (index && object.list()) {
    if (auto at = ResolveIndex(*index, object.list()->size())) return (*object.list())[*at];
  } else if (index && object.string()) {
    std::vector<std::string> characters = CodePoints(*object.string());
    if (auto at = ResolveIndex(*index, characters.size())) return Value::String(characters[*at]);
  }
  return Value::MakeUndefined("[" + ToDisplayString(key) + "]");
}

absl::StatusOr<Value> Renderer::Slice(const Expr& expr) {
  absl::StatusOr<Value> object = Evaluate(*expr.operands[0]);
  if (!object.ok()) return object;
  if (object->is_undefined()) return UndefinedError(expr.pos, *object);
  std::optional<int64_t> bounds[3];
  for (int i = 0; i < 3; ++i) {
    if (!expr.operands[i + 1]) continue;
    absl::StatusOr<Value> bound = Evaluate(*expr.operands[i + 1]);
    if (!bound.ok()) return bound;
    if (bound->is_none()) continue;
    bounds[i] = bound->integer();
    if (!bounds[i]) return ErrorAt(expr.pos, "slice bounds must be integers");
  }
  const int64_t step = bounds[2].value_or(1);
  if (step == 0) return ErrorAt(expr.pos, "slice step cannot be zero");
  if (const ValueList* list = object->list()) {
    ValueList sliced;
    for (size_t i : SliceIndices(list->size(), bounds[0], bounds[1], step)) {
      sliced.push_back((*list)[i]);
    }
    return Value::List(std::move(sliced));
  }
  if (const std::string* text = object->string()) {
    std::vector<std::string> characters = CodePoints(*text);
    std::string sliced;
    for (size_t i : SliceIndices(characters.size(), bounds[0], bounds[1], step)) {
      sliced += characters[i];
    }
    return Value::String(std::move(sliced));
  }
  return ErrorAt(expr.pos, "cannot slice " + TypeName(*object));
}

absl::StatusOr<Value> Renderer::Binary(Position pos, const std::string& op, const Value& a,
                                       const Value& b) {
  if (op == "~") return StringResult(pos, ToDisplayString(a) + ToDisplayString(b));
  if (a.is_undefined()) return UndefinedError(pos, a);
  if (b.is_undefined()) return UndefinedError(pos, b);
  std::optional<int64_t> x = a.integer(), y = b.integer();
  if (x && y) {
    int64_t result = 0;
    if (op == "%") {
      if (*y == 0) return ErrorAt(pos, "modulo by zero");
      // Python's modulo takes the divisor's sign; INT64_MIN % -1 would trap in C++.
      result = *y == -1 ? 0 : *x % *y;
      if (result != 0 && (result < 0) != (*y < 0)) result += *y;
    } else if (op == "+" ? __builtin_add_overflow(*x, *y, &result)
                         : __builtin_sub_overflow(*x, *y, &result)) {
      return ErrorAt(pos, "integer overflow");
    }
    return Value::Int(result);
  }
  if (op == "+" && a.string() && b.string()) return StringResult(pos, *a.string() + *b.string());
  if (op == "+" && a.list() && b.list()) {
    if (a.list()->size() + b.list()->size() > kMaxListLength) {
      return ErrorAt(pos, "list result too large");
    }
    ValueList joined = *a.list();
    joined.insert(joined.end(), b.list()->begin(), b.list()->end());
    return Value::List(std::move(joined));
  }
  return ErrorAt(
      pos, "unsupported operand types for " + op + ": " + TypeName(a) + " and " + TypeName(b));
}

absl::StatusOr<Value> Renderer::Compare(const Expr& expr) {
  absl::StatusOr<Value> left = Evaluate(*expr.operands[0]);
  if (!left.ok()) return left;
  for (size_t i = 0; i < expr.ops.size(); ++i) {
    absl::StatusOr<Value> right = Evaluate(*expr.operands[i + 1]);
    if (!right.ok()) return right;
    absl::StatusOr<bool> holds = CompareTwo(expr.pos, expr.ops[i], *left, *right);
    if (!holds.ok()) return holds.status();
    if (!*holds) return Value::Bool(false);
    left = std::move(right);
  }
  return Value::Bool(true);
}

absl::StatusOr<bool> Renderer::CompareTwo(Position pos, const std::string& op, const Value& a,
                                          const Value& b) {
  if (op == "==") return Equals(a, b);
  if (op == "!=") return !Equals(a, b);
  if (op == "in" || op == "not in") {
    absl::StatusOr<bool> found = Contains(pos, b, a);
    if (!found.ok()) return found;
    return *found == (op == "in");
  }
  if (a.is_undefined()) return UndefinedError(pos, a);
  if (b.is_undefined()) return UndefinedError(pos, b);
  int order = 0;
  if (a.integer() && b.integer()) {
    order = *a.integer() < *b.integer() ? -1 : *a.integer() > *b.integer() ? 1 : 0;
  } else if (a.string() && b.string()) {
    order = a.string()->compare(*b.string());  // bytewise is code-point order in UTF-8
  } else {
    return ErrorAt(pos, "cannot order " + TypeName(a) + " and " + TypeName(b) + " with " + op);
  }
  if (op == "<") return order < 0;
  if (op == ">") return order > 0;
  if (op == "<=") return order <= 0;
  return order >= 0;
}

absl::StatusOr<bool> Renderer::Contains(Position pos, const Value& container, const Value& item) {
  if (container.is_undefined()) return false;  // iterating an undefined value finds nothing
  if (const std::string* text = container.string()) {
    if (item.string() == nullptr) {
      return ErrorAt(pos, "'in <string>' needs a string on the left, not " + TypeName(item));
    }
    return text->find(*item.string()) != std::string::npos;
  }
  if (const ValueList* list = container.list()) {
    for (const Value& element : *list) {
      if (Equals(element, item)) return true;
    }
    return false;
  }
  if (const ValueDict* dict = container.dict()) {
    return item.string() != nullptr && FindInDict(*dict, *item.string()) != nullptr;
  }
  return ErrorAt(pos, "'in' needs a string, list or dict on the right, not " + TypeName(container));
}

absl::StatusOr<Value> Renderer::Filter(const Expr& expr) {
  absl::StatusOr<std::vector<Value>> args = EvaluateOperands(expr, 0);
  if (!args.ok()) return args.status();
  const Value& subject = (*args)[0];
  if (expr.name == "trim") {
    std::optional<std::string> chars;
    if (args->size() > 1 && !(*args)[1].is_none()) {
      if (!(*args)[1].string()) return ErrorAt(expr.pos, "trim(chars) needs a string");
      chars = *(*args)[1].string();
    }
    return Value::String(StripString(ToDisplayString(subject), chars, true, true));
  }
  if (expr.name == "string") return Value::String(ToDisplayString(subject));
  if (expr.name == "length") {
    if (subject.is_undefined()) return Value::Int(0);
    if (const std::string* text = subject.string()) {
      return Value::Int(static_cast<int64_t>(CodePoints(*text).size()));
    }
    if (const ValueList* list = subject.list())
      return Value::Int(static_cast<int64_t>(list->size()));
    if (const ValueDict* dict = subject.dict())
      return Value::Int(static_cast<int64_t>(dict->size()));
    return ErrorAt(expr.pos, "object of type " + TypeName(subject) + " has no length");
  }
  // tojson(indent=N)
  std::optional<int64_t> indent;
  if (!expr.keyword_args.empty()) {
    absl::StatusOr<Value> value = Evaluate(*expr.keyword_args[0].second);
    if (!value.ok()) return value;
    if (!value->is_none() && !value->integer()) {
      return ErrorAt(expr.pos, "tojson(indent=) needs an integer");
    }
    if (!value->is_none()) indent = std::min<int64_t>(*value->integer(), 64);
  }
  if (subject.is_undefined()) return UndefinedError(expr.pos, subject);
  absl::StatusOr<std::string> json = ToJson(subject, indent);
  if (!json.ok()) return ErrorAt(expr.pos, std::string(json.status().message()));
  return StringResult(expr.pos, *std::move(json));
}

absl::StatusOr<Value> Renderer::Test(const Expr& expr) {
  absl::StatusOr<Value> subject = Evaluate(*expr.operands[0]);
  if (!subject.ok()) return subject;
  const Value& v = *subject;
  bool result = false;
  if (expr.name == "defined") result = !v.is_undefined();
  if (expr.name == "undefined") result = v.is_undefined();
  if (expr.name == "none") result = v.is_none();
  if (expr.name == "string") result = v.string() != nullptr;
  if (expr.name == "true" || expr.name == "false") {
    const bool* b = std::get_if<bool>(&v.data);
    result = b != nullptr && *b == (expr.name == "true");
  }
  if (expr.name == "mapping") result = v.dict() != nullptr;
  if (expr.name == "iterable") {
    result = v.is_undefined() || v.string() || v.list() || v.dict();
  }
  return Value::Bool(result != expr.negated);
}

absl::StatusOr<Value> Renderer::Call(const Expr& expr) {
  absl::StatusOr<std::vector<Value>> args = EvaluateOperands(expr, 0);
  if (!args.ok()) return args.status();
  if (expr.name == "raise_exception") {
    if (args->size() != 1 || !expr.keyword_args.empty()) {
      return ErrorAt(expr.pos, "raise_exception takes one argument, the message");
    }
    return absl::InvalidArgumentError(ToDisplayString((*args)[0]));
  }
  if (expr.name == "namespace") {
    if (!args->empty()) return ErrorAt(expr.pos, "namespace() takes keyword arguments only");
    auto name_space = std::make_shared<Namespace>();
    for (const auto& [keyword, argument] : expr.keyword_args) {
      absl::StatusOr<Value> value = Evaluate(*argument);
      if (!value.ok()) return value;
      name_space->attributes.emplace_back(keyword, *std::move(value));
    }
    namespaces_.push_back(name_space);
    return Value{name_space};
  }
  return ErrorAt(expr.pos, "function '" + expr.name + "' is not supported");
}

absl::StatusOr<Value> Renderer::MethodCall(const Expr& expr) {
  absl::StatusOr<std::vector<Value>> args = EvaluateOperands(expr, 0);
  if (!args.ok()) return args.status();
  const Value& subject = (*args)[0];
  if (subject.is_undefined()) return UndefinedError(expr.pos, subject);
  if (!subject.string()) {
    return ErrorAt(expr.pos, "'." + expr.name + "()' needs a string, not " + TypeName(subject));
  }
  const std::string& text = *subject.string();
  std::optional<std::string> argument;  // the one argument every supported method takes
  if (args->size() > 1 && !(*args)[1].is_none()) {
    if (!(*args)[1].string()) {
      return ErrorAt(expr.pos,
                     "'." + expr.name + "()' needs a string argument, not " + TypeName((*args)[1]));
    }
    argument = *(*args)[1].string();
  }
  if (expr.name == "strip" || expr.name == "lstrip" || expr.name == "rstrip") {
    return Value::String(StripString(text, argument, expr.name != "rstrip", expr.name != "lstrip"));
  }
  if (expr.name == "split") {
    if (argument && argument->empty()) return ErrorAt(expr.pos, "split() with an empty separator");
    ValueList parts;
    for (std::string& part : SplitString(text, argument)) {
      parts.push_back(Value::String(std::move(part)));
    }
    return Value::List(std::move(parts));
  }
  if (!argument) return ErrorAt(expr.pos, "'." + expr.name + "()' needs a string argument");
  if (expr.name == "startswith") return Value::Bool(text.rfind(*argument, 0) == 0);
  return Value::Bool(text.size() >= argument->size() &&  // endswith
                     text.compare(text.size() - argument->size(), argument->size(), *argument) ==
                         0);
}

}  // namespace

absl::StatusOr<std::string> RenderNodes(const NodeList& nodes,
                                        std::vector<std::pair<std::string, Value>> globals) {
  return Renderer(std::move(globals)).Run(nodes);
}

}  // namespace apr::cluster::openai::chat_template_internal
