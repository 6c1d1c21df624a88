"""The documentation agrees with the code: the generated options reference, and every link."""

from __future__ import annotations

import dataclasses
import difflib
import re
from pathlib import Path

from fedhyper.config import SimConfig
from fedhyper.data import DataConfig
from scripts import options_doc

ROOT = Path(__file__).resolve().parents[1]
# Docs that README.md or docs/ link to and that another engineer is still writing. The lead
# empties this when they land; until then links to them are not checked.
PENDING_DOCS: set[str] = set()
LINK = re.compile(r"\[[^\]]*\]\(([^)\s]+)[^)]*\)")
FENCE = re.compile(r"^```.*?^```", re.M | re.S)
CODE_SPAN = re.compile(r"`[^`\n]*`")


def markdown_files() -> list[Path]:
    return [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]


def slug(heading: str) -> str:
    """GitHub's anchor for a heading: lower case, punctuation dropped, spaces as hyphens."""
    return re.sub(r"[^\w\- ]", "", heading.strip().lower()).replace(" ", "-")


def anchors(path: Path) -> set[str]:
    found: set[str] = set()
    for line in FENCE.sub("", path.read_text()).splitlines():
        if match := re.match(r"#+\s+(.*)", line):
            base = slug(match.group(1))
            anchor, n = base, 0
            while anchor in found:  # GitHub numbers repeated headings
                n += 1
                anchor = f"{base}-{n}"
            found.add(anchor)
    return found


def links(path: Path) -> list[str]:
    text = CODE_SPAN.sub("", FENCE.sub("", path.read_text()))
    return [target for target in LINK.findall(text) if not re.match(r"[a-z]+:", target)]


def test_options_doc_matches_the_code() -> None:
    written = options_doc.DOC.read_text() if options_doc.DOC.exists() else ""
    fresh = options_doc.render()
    diff = difflib.unified_diff(written.splitlines(), fresh.splitlines(), "docs/options.md", "the code", lineterm="")
    diff = "\n".join(list(diff)[:40])
    assert written == fresh, f"docs/options.md is stale: run `{options_doc.COMMAND}`\n{diff}"


def test_options_doc_lists_every_field_of_every_config() -> None:
    text = options_doc.render()
    keys = set(re.findall(r"^\| `([^`]+)` \|", text, re.M))
    assert {"sim.num_rounds", "hnet.input", "strategy.outer.aggregate", "strategy.mu", "out_dir"} <= keys
    for name, cls in options_doc.registered_configs().items():
        assert f"## `strategy={name}`: {cls.__name__}" in text
    assert {f"sim.{f.name}" for f in dataclasses.fields(SimConfig)} <= keys
    assert {f"data.{f.name}" for f in dataclasses.fields(DataConfig)} <= keys


@dataclasses.dataclass
class _Inner:
    depth: int = 3  # layers


@dataclasses.dataclass
class _Example:
    """An example config."""

    # Read above the field,
    # over two lines.
    above: float = 0.5
    # Not this one: the comment on the field's line wins.
    inline: str | None = None  # on the line  # noqa: E501
    bare: list[int] = dataclasses.field(default_factory=lambda: [1, 2])
    inner: _Inner = dataclasses.field(default_factory=_Inner)


def test_rows_read_each_fields_comment_default_and_type() -> None:
    rows = options_doc.rows(_Example(), "ex.")
    assert rows == [
        options_doc.Row("ex.above", "float", "0.5", "Read above the field, over two lines."),
        options_doc.Row("ex.inline", "str | None", "null", "on the line"),
        options_doc.Row("ex.bare", "list[int]", "[1, 2]", ""),
        options_doc.Row("ex.inner.depth", "int", "3", "layers"),
    ]


def test_inherited_fields_take_the_nearest_comment() -> None:
    @dataclasses.dataclass
    class Child(_Example):
        above: float = 1.0
        bare: list[int] = dataclasses.field(default_factory=list)  # now commented

    docs = options_doc.field_docs(Child)
    assert docs["above"] == ("float", "Read above the field, over two lines.")
    assert docs["bare"] == ("list[int]", "now commented")


def test_every_relative_link_points_at_a_file_and_heading() -> None:
    broken = []
    for path in markdown_files():
        for target in links(path):
            file_part, _, anchor = target.partition("#")
            dest = (path.parent / file_part).resolve() if file_part else path
            if dest.relative_to(ROOT).as_posix() in PENDING_DOCS:
                continue
            if not dest.exists():
                broken.append(f"{path.relative_to(ROOT)}: {target} (no such file)")
            elif anchor and dest.suffix == ".md" and anchor not in anchors(dest):
                broken.append(f"{path.relative_to(ROOT)}: {target} (no such heading)")
    assert not broken, "broken links:\n" + "\n".join(broken)


def test_pending_docs_are_still_pending() -> None:
    landed = sorted(p for p in PENDING_DOCS if (ROOT / p).exists())
    assert not landed, f"{landed} exist now: remove them from PENDING_DOCS in tests/test_docs.py"
