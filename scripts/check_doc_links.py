"""Check the relative links and the quoted repository paths of the Markdown docs (standard library only).

Usage: python scripts/check_doc_links.py [FILE.md ...]   (default: README.md and docs/**/*.md)

A link `[text](path#anchor)` must name a file or folder that exists, relative to the file it is in,
and its anchor a heading of that file as GitHub spells anchors. A path in backquotes that starts
with a top-level folder of the repository (`tests/serve/rpc.rs`, `bench/compare.sh`) must exist
too, except under `target/`, `models/` and `tests/fixtures/generated/` (built, not committed)
and in docs/research/ (notes that quote other projects' files).
Prints each broken one as FILE:LINE: what; exits 1 if there is any.
"""

import re
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
LINK = re.compile(r"\[[^\]]*\]\(([^)\s]+)\)")
QUOTED = re.compile(r"`([A-Za-z0-9_.-]+/[^`\s*{}<>|:]*)(?::[0-9-]+)?`")  # a path, maybe with :LINES
BUILT = ("target/", "models/", "tests/fixtures/generated/", ".venv", ".tools/")


def anchors(md: Path) -> set[str]:
    """GitHub's anchor of every heading: lower case, punctuation but - and _ dropped, spaces to -."""
    out, code = set(), False
    for line in md.read_text(encoding="utf-8").splitlines():
        if line.startswith("```"):
            code = not code
        elif not code and (m := re.match(r"#+\s+(.*)", line)):
            text = re.sub(r"[^\w\- ]", "", m.group(1).strip().lower())
            out.add(text.replace(" ", "-"))
    return out


def problems(md: Path) -> list[str]:
    out, code = [], False
    tops = {p.name for p in ROOT.iterdir()}
    quoted_paths = "research" not in md.relative_to(ROOT).parts  # notes on other projects' files
    for n, line in enumerate(md.read_text(encoding="utf-8").splitlines(), 1):
        if line.startswith("```"):
            code = not code
            continue
        if code:
            continue
        for target in LINK.findall(line):
            if re.match(r"[a-z]+:", target):
                continue  # http:, https:, mailto:
            path, _, anchor = target.partition("#")
            dest = (md.parent / path).resolve() if path else md
            if not dest.exists():
                out.append(f"{md.relative_to(ROOT)}:{n}: link to missing {path}")
            elif anchor and dest.suffix == ".md" and anchor not in anchors(dest):
                out.append(f"{md.relative_to(ROOT)}:{n}: no heading #{anchor} in {dest.relative_to(ROOT)}")
        for path in QUOTED.findall(line) if quoted_paths else []:
            if path.split("/")[0] in tops and not path.startswith(BUILT) and not (ROOT / path).exists():
                out.append(f"{md.relative_to(ROOT)}:{n}: `{path}` does not exist")
    return out


def main(files: list[str]) -> int:
    mds = [Path(f).resolve() for f in files] or [ROOT / "README.md", *sorted((ROOT / "docs").rglob("*.md"))]
    found = [p for md in mds for p in problems(md)]
    print("\n".join(found) or f"{len(mds)} files: every relative link and quoted path resolves")
    return 1 if found else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
