#!/usr/bin/env python3
"""code_shape.py against hand-built sources whose function lengths are known."""

import os
import sys
import tempfile
import unittest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import code_shape  # noqa: E402


def Function(name, body_lines, head="void {name}()"):
    """A function whose braces span exactly body_lines + 2 lines."""
    return head.format(name=name) + " {\n" + "  x();\n" * body_lines + "}\n"


class LongFunctionsTest(unittest.TestCase):
    def Lengths(self, text, limit=0):
        return [length for _, length in code_shape.LongFunctions(text, limit)]

    def test_counts_from_opening_to_closing_brace(self):
        self.assertEqual(self.Lengths(Function("F", 78)), [80])
        self.assertEqual(code_shape.LongFunctions(Function("F", 78), 80), [])
        self.assertEqual(code_shape.LongFunctions(Function("F", 79), 80), [(1, 81)])

    def test_namespaces_classes_and_control_blocks_are_not_functions(self):
        inner = Function("F", 3)  # 5 lines
        text = (
            "namespace a {\nclass C {\n public:\n"
            + inner
            + "};\nstruct S { int x; };\nenum class E { kA, kB };\n}  // namespace a\n"
        )
        self.assertEqual(self.Lengths(text), [5])
        loop = "void G() {\n  for (int i = 0; i < 3; ++i) {\n    x();\n  }\n  if (y) {\n  } else {\n  }\n}\n"
        self.assertEqual(self.Lengths(loop), [8])

    def test_lambdas_count_inside_their_function(self):
        text = "void F() {\n  auto f = [&](int i) {\n    x(i);\n  };\n  f(1);\n}\n"
        self.assertEqual(sorted(self.Lengths(text)), [3, 6])

    def test_braces_in_strings_comments_and_preprocessor_are_ignored(self):
        text = (
            "#define OPEN {\n"
            "#if X\n#else\n#endif\n"
            'const char* s = "}{ // not a comment";\n'
            "char c = '{';\n"
            "/* { */\n"
            'const char* r = R"x(} ")x";\n'
            + Function("F", 1)
        )
        self.assertEqual(self.Lengths(text), [3])

    def test_constructor_with_initialiser_list_and_const_method(self):
        text = (
            "A::A(int v) : v_(v), w_{v} {\n  x();\n}\n"
            "int A::Get() const {\n  return v_;\n}\n"
            "auto A::Make() -> std::unique_ptr<A> {\n  return nullptr;\n}\n"
        )
        self.assertEqual(self.Lengths(text), [3, 3, 3])

    def test_unbalanced_braces_are_reported(self):
        with self.assertRaises(ValueError):
            code_shape.LongFunctions("void F() {\n}\n}\n", 80)


class CheckTest(unittest.TestCase):
    def test_files_and_functions_over_the_limits_and_tests_exempt(self):
        with tempfile.TemporaryDirectory() as root:
            files = {
                "ok.cc": Function("F", 78),
                "long_function.cc": Function("F", 79),
                "long_file.h": "int x;\n" * 801,
                "exact_file.h": "int x;\n" * 800,
                "long_test.cc": Function("F", 200) + "int x;\n" * 900,
                "notes.txt": "{\n" * 1000,
            }
            for name, text in files.items():
                with open(os.path.join(root, name), "w") as f:
                    f.write(text)
            breaches = code_shape.Check(root, sorted(files), 800, 80)
        self.assertEqual(
            breaches,
            [
                "long_file.h:1: 801 lines (limit 800)",
                "long_function.cc:1: function of 81 lines (limit 80)",
            ],
        )


if __name__ == "__main__":
    unittest.main()
