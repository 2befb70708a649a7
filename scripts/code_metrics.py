"""Size and structure figures of a crossrank checkout, from the source alone (standard library only).

Usage: python scripts/code_metrics.py [CHECKOUT=.]

Prints: Rust files over 300 and 600 lines (../shared/STYLE.md: split before ~600), functions over
50 lines, `Result<_, String>` in src/, the test binaries `cargo test` links, and for each model
file name the src/ files that name it in a string literal (how many places read that file).

Approximate by design: a small lexer blanks comments and string literals, then `fn NAME` items
are measured from the `fn` line to their matching closing brace (closures are not counted;
nested functions are counted on their own and inside their parent).
"""

import re
import sys
from pathlib import Path

SKIP_TOP = {"target", ".git", ".venv", ".venv-clients", ".tools", "models"}  # top-level folders only
MODEL_FILES = ["config.json", "tokenizer.json", "tokenizer_config.json", "config_sentence_transformers.json",
               "sentence_bert_config.json", "modules.json", "chat_template.jinja", "special_tokens_map.json"]
BIG_FILE, HUGE_FILE, LONG_FN = 300, 600, 50
RAW = re.compile(r'b?r(#*)"')  # the start of a raw string literal


def rust_files(root: Path) -> list[Path]:
    out = []
    for path in sorted(root.rglob("*.rs")):
        parts = path.relative_to(root).parts
        if parts[0] not in SKIP_TOP and parts[:3] != ("tests", "fixtures", "generated"):
            out.append(path)
    return out


def lex(text: str) -> tuple[str, list[str]]:
    """(the code with comments and literals blanked to spaces, newlines kept; the string literals)."""
    code, literals, i, n = [], [], 0, len(text)

    def blank(s: str) -> str:
        return "".join(c if c == "\n" else " " for c in s)

    while i < n:
        c = text[i]
        if text.startswith("//", i):
            j = text.find("\n", i)
            j = n if j < 0 else j
        elif text.startswith("/*", i):
            depth, j = 1, i + 2
            while j < n and depth:
                depth += text.startswith("/*", j) - text.startswith("*/", j)
                j += 2 if text.startswith(("/*", "*/"), j) else 1
        elif (m := RAW.match(text, i)) and not _ident(text, i):
            end = text.find('"' + m.group(1), m.end())
            j = n if end < 0 else end + 1 + len(m.group(1))
            literals.append(text[m.end() : max(m.end(), end)])
        elif c == '"':
            j = i + 1
            while j < n and text[j] != '"':
                j += 2 if text[j] == "\\" else 1
            literals.append(text[i + 1 : j])
            j += 1
        elif c == "'" and i + 1 < n and (text[i + 1] == "\\" or (i + 2 < n and text[i + 2] == "'")):
            j = text.find("'", i + 2 + (text[i + 1] == "\\")) + 1 or n  # a char literal
        else:
            code.append(c)
            i += 1
            continue
        code.append(blank(text[i:j]))
        i = j
    return "".join(code), literals


def _ident(text: str, i: int) -> bool:
    """Whether position i continues an identifier (so `r"` there is not a raw string)."""
    return i > 0 and (text[i - 1].isalnum() or text[i - 1] == "_")


def functions(code: str) -> list[tuple[str, int, int]]:
    """(name, first line, lines) of each `fn` item with a body."""
    out = []
    for m in re.finditer(r"\bfn\s+(\w+)", code):
        brace, semi = code.find("{", m.end()), code.find(";", m.end())
        if brace < 0 or (0 <= semi < brace):
            continue
        depth, j = 0, brace
        while j < len(code):
            depth += (code[j] == "{") - (code[j] == "}")
            if depth == 0:
                break
            j += 1
        first = code.count("\n", 0, m.start()) + 1
        out.append((m.group(1), first, code.count("\n", m.start(), j) + 1))
    return out


def string_results(code: str) -> int:
    """`Result<..., String>` types: the last top-level generic argument is `String`."""
    count = 0
    for m in re.finditer(r"\bResult<", code):
        depth, j, last = 1, m.end(), m.end()
        while j < len(code) and depth:
            if code.startswith("->", j):
                j += 2
                continue
            ch = code[j]
            depth += (ch == "<") - (ch == ">")
            if ch == "," and depth == 1:
                last = j + 1
            j += 1
        count += code[last : j - 1].strip() == "String"
    return count


def test_binaries(root: Path, src_code: dict[Path, str]) -> list[str]:
    tests = root / "tests"
    bins = [f"tests/{p.name}" for p in sorted(tests.glob("*.rs"))]
    bins += [f"tests/{p.parent.name}/main.rs" for p in sorted(tests.glob("*/main.rs"))]
    bin_roots = {root / "src/main.rs", root / "src/cli"}
    lib = any("#[test]" in c or "#[tokio::test" in c for p, c in src_code.items()
              if not any(p == b or b in p.parents for b in bin_roots))
    binary = any("#[test]" in c or "#[tokio::test" in c for p, c in src_code.items()
                 if any(p == b or b in p.parents for b in bin_roots))
    return bins + ["src/lib.rs (unit tests)"] * lib + ["src/main.rs (unit tests)"] * binary


def main(root: Path) -> None:
    files = rust_files(root)
    lexed = {p: lex(p.read_text(encoding="utf-8", errors="replace")) for p in files}
    lines = {p: p.read_text(encoding="utf-8", errors="replace").count("\n") for p in files}
    rel = {p: str(p.relative_to(root)) for p in files}

    print(f"# code metrics of {root.resolve()}\n")
    print(f"## Rust files ({len(files)}, {sum(lines.values())} lines)")
    for top in sorted({rel[p].split("/")[0] for p in files}):
        mine = [p for p in files if rel[p].split("/")[0] == top]
        print(f"- {top}: {len(mine)} files, {sum(1 for p in mine if lines[p] > BIG_FILE)} over {BIG_FILE} lines, "
              f"{sum(1 for p in mine if lines[p] > HUGE_FILE)} over {HUGE_FILE}")
    print(f"over {HUGE_FILE} lines:")
    for p in sorted((p for p in files if lines[p] > HUGE_FILE), key=lambda p: -lines[p]):
        print(f"  {lines[p]:5}  {rel[p]}")

    print(f"\n## functions over {LONG_FN} lines (approximate: `fn` line to its closing brace)")
    long_fns = []
    for p in files:
        long_fns += [(size, f"{rel[p]}:{line}", name) for name, line, size in functions(lexed[p][0]) if size > LONG_FN]
    for top in sorted({rel[p].split("/")[0] for p in files}):
        total = sum(len(functions(lexed[p][0])) for p in files if rel[p].split("/")[0] == top)
        over = sum(1 for _, where, _ in long_fns if where.split("/")[0] == top)
        print(f"- {top}: {over} of {total} functions")
    for size, where, name in sorted(long_fns, reverse=True):
        print(f"  {size:5}  {where}  {name}")

    src = {p: lexed[p][0] for p in files if rel[p].startswith("src/")}
    print(f"\n## `Result<_, String>` in src/: {sum(string_results(c) for c in src.values())}")
    for p in files:
        if p in src and (k := string_results(src[p])):
            print(f"  {k:3}  {rel[p]}")

    bins = test_binaries(root, src)
    print(f"\n## test binaries: {len(bins)}")
    print("  " + " ".join(bins))

    print("\n## src/ files naming each model file in a string literal")
    for name in MODEL_FILES:
        pattern = re.compile(r"(?<![\w.-])" + re.escape(name))
        hits = [rel[p] for p in files if p in src and any(pattern.search(s) for s in lexed[p][1])]
        print(f"- {name}: {len(hits)}" + (f"  ({', '.join(hits)})" if hits else ""))


if __name__ == "__main__":
    main(Path(sys.argv[1] if len(sys.argv) > 1 else "."))
