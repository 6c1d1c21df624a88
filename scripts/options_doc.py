"""Write docs/options.md, the options reference, from the config dataclasses.

python -m scripts.options_doc            # (re)write docs/options.md
python -m scripts.options_doc --check    # exit 1 when docs/options.md and the code disagree

Nothing is listed by hand. The generator walks ``ExperimentConfig``'s fields, recursing into
every nested dataclass, then every config of ``strategies.registry.REGISTRY`` and the keys that
``CompareConfig`` adds; the config groups (``strategy=``, ``data=``, ``model=``) and their
choices come from Hydra's ConfigStore and their defaults from ``simulations/conf/config.yaml``.
A field's meaning is its comment: the comment on its line, else the comment lines directly
above it, from the first class in its MRO whose source comments it.
"""

from __future__ import annotations

import argparse
import ast
import dataclasses
import inspect
import io
import logging
import re
import sys
import textwrap
import tokenize
from pathlib import Path
from typing import Any, NamedTuple

from hydra.core.config_store import ConfigStore
from omegaconf import OmegaConf

from fedhyper.config import ExperimentConfig
from simulations.config import CompareConfig, register_configs
from strategies import registry

ROOT = Path(__file__).resolve().parents[1]
DOC = ROOT / "docs" / "options.md"
RUN_CONFIG = ROOT / "simulations" / "conf" / "config.yaml"
COMMAND = "python -m scripts.options_doc"
PRAGMAS = ("noqa", "fmt:", "type:")  # tool comments, not meanings
log = logging.getLogger("fedhyper")


class Row(NamedTuple):
    key: str  # the dotted override, e.g. sim.num_rounds
    type: str
    default: str
    meaning: str


def _comments(source: str) -> dict[int, str]:
    """Line number -> the text of the comment on that line, tool pragmas dropped."""
    found = {}
    for tok in tokenize.generate_tokens(io.StringIO(source).readline):
        if tok.type != tokenize.COMMENT:
            continue
        parts = re.split(r"\s+#\s*", tok.string.lstrip("#").strip())  # a comment may end in a tool pragma
        text = " ".join(part for part in parts if not part.startswith(PRAGMAS))
        if text:
            found[tok.start[0]] = text
    return found


def _class_fields(cls: type) -> tuple[dict[str, tuple[str, str]], str]:
    """Field name -> (annotation, comment) as ``cls``'s own source writes them, and its docstring."""
    try:
        source = textwrap.dedent(inspect.getsource(cls))
    except (OSError, TypeError):  # a class without source (built in, or made at run time)
        return {}, ""
    node = ast.parse(source).body[0]
    if not isinstance(node, ast.ClassDef):
        return {}, ""
    comments, lines = _comments(source), source.splitlines()
    fields = {}
    for stmt in node.body:
        if not (isinstance(stmt, ast.AnnAssign) and isinstance(stmt.target, ast.Name)):
            continue
        own = [comments[n] for n in range(stmt.lineno, (stmt.end_lineno or stmt.lineno) + 1) if n in comments]
        above, n = [], stmt.lineno - 1
        while n >= 1 and lines[n - 1].lstrip().startswith("#") and n in comments:
            above.insert(0, comments[n])
            n -= 1
        fields[stmt.target.id] = (ast.get_source_segment(source, stmt.annotation) or "", " ".join(own or above))
    return fields, ast.get_docstring(node) or ""


def field_docs(cls: type) -> dict[str, tuple[str, str]]:
    """Field name -> (annotation, meaning), inherited fields included: the nearest comment wins."""
    merged: dict[str, tuple[str, str]] = {}
    for klass in cls.__mro__:
        for name, (annotation, comment) in _class_fields(klass)[0].items():
            old_annotation, old_comment = merged.get(name, ("", ""))
            merged[name] = (old_annotation or annotation, old_comment or comment)
    return merged


def docstring(cls: type) -> str:
    """The class's own docstring (not the signature dataclasses invent), else its module's first line."""
    own = _class_fields(cls)[1]
    if own:
        return own
    module = (sys.modules[cls.__module__].__doc__ or "").strip()
    return " ".join(module.split("\n\n")[0].split())  # its first paragraph, on one line


def shown(value: Any) -> str:
    """A default as a Hydra override would write it."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return str(value).lower()
    if isinstance(value, str):
        return value or '""'
    if isinstance(value, list | tuple):
        return "[" + ", ".join(shown(v) for v in value) + "]"
    if isinstance(value, dict):
        return "keys " + ", ".join(str(k) for k in value) if value else "{}"
    return repr(value)


def rows(
    config: Any, prefix: str = "", skip: frozenset[str] = frozenset(), shared: frozenset[type] = frozenset()
) -> list[Row]:
    """One row per leaf field of the dataclass instance ``config``; nested dataclasses are flattened.

    A nested dataclass of a type in ``shared`` (documented in its own section) gets one row that
    points there, followed by the rows of the fields whose defaults differ from that section's.
    """
    docs = field_docs(type(config))
    result = []
    for f in dataclasses.fields(config):
        if f.name in skip:
            continue
        value = getattr(config, f.name)
        annotation, meaning = docs.get(f.name, (str(f.type), ""))
        if type(value) in shared:
            result.append(Row(f"{prefix}{f.name}.*", annotation, "as above", meaning or docstring(type(value))))
            default = type(value)()
            same = frozenset(
                g.name for g in dataclasses.fields(value) if getattr(value, g.name) == getattr(default, g.name)
            )
            result += rows(value, f"{prefix}{f.name}.", skip=same)
        elif dataclasses.is_dataclass(value):
            result += rows(value, f"{prefix}{f.name}.", shared=shared)
        else:
            result.append(Row(prefix + f.name, annotation, shown(value), meaning))
    return result


def cell(text: str) -> str:
    return text.replace("|", "\\|") if text else "–"


def table(items: list[Row]) -> list[str]:
    lines = ["| option | type | default | meaning |", "|---|---|---|---|"]
    lines += [f"| `{r.key}` | {cell(r.type)} | `{cell(r.default)}` | {cell(r.meaning)} |" for r in items]
    return lines + [""]


def section(title: str, intro: str, items: list[Row]) -> list[str]:
    return [f"## {title}", "", *([intro, ""] if intro else []), *table(items)]


def group_rows(config: ExperimentConfig) -> list[Row]:
    """The config groups (``strategy=``, ``data=``, ``model=``): their choices and default choice."""
    register_configs()
    store = ConfigStore.instance()
    defaults: dict[str, str] = {}
    for item in OmegaConf.load(RUN_CONFIG).get("defaults", []):
        if isinstance(item, dict | type(OmegaConf.create({}))):
            defaults.update({str(k): str(v) for k, v in item.items()})
    docs = field_docs(type(config))
    result = []
    for name in (f.name for f in dataclasses.fields(config)):
        if name in store.list("/"):
            choices = ", ".join(f"`{c.removesuffix('.yaml')}`" for c in store.list(name))
            meaning = "; ".join(filter(None, [docs.get(name, ("", ""))[1], f"one of {choices}"]))
            result.append(Row(name, "config group", defaults.get(name, ""), meaning))
    return result


HEADER = [
    "# Options",
    "",
    f"<!-- Generated by `{COMMAND}` from the config dataclasses. Do not edit: change the comment -->",
    "<!-- beside the field in the code and run the command again; tests/test_docs.py compares. -->",
    f"Generated by `{COMMAND}` from the config dataclasses; a field's meaning is its comment in",
    "the code. Every option is a Hydra override: `python -m simulations.run sim.num_rounds=20`",
    '(or `make run ARGS="sim.num_rounds=20"`; `flwr run . --run-config "overrides=\'sim.num_rounds=20\'"`).',
    "A bad option stops the run before any engine starts, with one line naming it and exit status 2.",
    "",
]


def experiment_sections() -> list[str]:
    """The top-level options and config groups, then one section per nested config (``sim.*``, ...)."""
    experiment = ExperimentConfig()
    groups = group_rows(experiment)
    docs = field_docs(ExperimentConfig)
    nested = [f.name for f in dataclasses.fields(experiment) if dataclasses.is_dataclass(getattr(experiment, f.name))]
    top = rows(experiment, skip=frozenset(nested) | {r.key for r in groups})
    title = f"`python -m simulations.run`: {ExperimentConfig.__name__}"
    lines = section(title, docstring(ExperimentConfig), groups + top)
    for name in nested:
        config = getattr(experiment, name)
        comment = docs.get(name, ("", ""))[1]
        intro = docstring(type(config)) + (f" (`{name}`: {comment})" if comment else "")
        lines += section(f"`{name}.*`: {type(config).__name__}", intro, rows(config, f"{name}."))
    return lines


def registered_configs() -> dict[str, type]:
    """Each registered strategy's name and config dataclass: the one place that reads the registry."""
    return {name: entry.config_cls for name, entry in registry.REGISTRY.items()}


def strategy_sections() -> list[str]:
    """Configs that several strategies nest (``strategy.local.*``) once, then one section per strategy."""
    configs = {name: cls() for name, cls in registered_configs().items()}
    seen: dict[type, list[str]] = {}
    for config in configs.values():
        for f in dataclasses.fields(config):
            if dataclasses.is_dataclass(value := getattr(config, f.name)):
                seen.setdefault(type(value), []).append(f.name)
    shared = frozenset(t for t, names in seen.items() if len(names) > 1)
    lines = []
    for cls in [t for t in seen if t in shared]:  # in the order first met
        key = seen[cls][0]
        intro = f"{docstring(cls)} Nested as `strategy.{key}` by several strategies; their sections list what differs."
        lines += section(f"`strategy.{key}.*`: {cls.__name__}", intro, rows(cls(), f"strategy.{key}."))
    for name, config in configs.items():
        # `strategy=<name>` sets strategy.name: the heading says it, the table need not.
        items = rows(config, "strategy.", skip=frozenset({"name"}), shared=shared)
        lines += section(f"`strategy={name}`: {type(config).__name__}", docstring(type(config)), items)
    return lines


def compare_section() -> list[str]:
    """The keys ``python -m simulations.compare`` adds to the experiment's."""
    intro = docstring(CompareConfig) + "\n\nEvery option above applies too, to every run of the grid."
    own = rows(CompareConfig(), skip=frozenset(f.name for f in dataclasses.fields(ExperimentConfig)))
    return section(f"`python -m simulations.compare`: {CompareConfig.__name__}", intro, own)


def render() -> str:
    """The whole of docs/options.md, from the code as it is now."""
    lines = HEADER + experiment_sections() + strategy_sections() + compare_section()
    return "\n".join(lines).rstrip() + "\n"


def undocumented(text: str) -> list[str]:
    """Options whose meaning is missing (a field without a comment)."""
    keys = [line.split("`")[1] for line in text.splitlines() if line.startswith("| `") and line.endswith("| – |")]
    return list(dict.fromkeys(keys))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--check", action="store_true", help="exit 1 when the file differs from the code")
    args = parser.parse_args()
    logging.basicConfig(format="%(message)s", level=logging.INFO)
    text = render()
    if args.check:
        if not DOC.exists() or DOC.read_text() != text:
            log.error("%s is stale: run `%s` and commit it", DOC.relative_to(ROOT), COMMAND)
            sys.exit(1)
        return
    DOC.parent.mkdir(exist_ok=True)
    DOC.write_text(text)
    missing = undocumented(text)
    log.info("wrote %s (%d options)", DOC.relative_to(ROOT), text.count("\n| `"))
    if missing:
        log.info("%d options have no comment in the code: %s", len(missing), ", ".join(missing))


if __name__ == "__main__":
    main()
