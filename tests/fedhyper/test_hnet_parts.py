"""The hypernetwork's parts compose: registries, the conditioner interface, the slot wrapper, imports."""

import ast
import re
from pathlib import Path

import pytest
import torch

from fedhyper.hnet.bodies import AttentionBody, MLPBody, SlotEmbedded
from fedhyper.hnet.config import BODIES, INITS, INPUTS, OUTPUTS, Registry
from fedhyper.hypernet import HyperNetConfig, HyperNetwork
from fedhyper.models import ModelConfig, build_model, target_shapes
from fedhyper.outer import HyperNetTrainer, OuterConfig

ROOT = Path(__file__).resolve().parents[2]
SHAPES = target_shapes(build_model(ModelConfig(name="mlp", hidden=8), (1, 4, 4), 3))


def doc_examples() -> list[str]:
    """The Python blocks of docs/hypernetwork.md's section on adding a part."""
    text = (ROOT / "docs" / "hypernetwork.md").read_text()
    section = text.split("## Adding a body, an input or an output", 1)[1]
    return re.findall(r"```python\n(.*?)```", section, flags=re.DOTALL)


@pytest.fixture
def fresh_registries(monkeypatch):
    """Registrations made in a test are undone after it."""
    for registry in (INPUTS, BODIES, OUTPUTS, INITS):
        monkeypatch.setattr(registry, "_entries", dict(registry._entries))


def test_the_documented_body_input_and_output_each_take_one_class_and_one_registration(fresh_registries):
    examples = doc_examples()
    assert len(examples) == 3
    for code in examples:
        exec(compile(code, "docs/hypernetwork.md", "exec"), {})

    for option, name in (("body", "linear"), ("input", "onehot"), ("output", "low_rank")):
        hnet = HyperNetwork(SHAPES, 5, HyperNetConfig(**{option: name}, hidden_dim=8, n_hidden=1))
        trainer = HyperNetTrainer(hnet, OuterConfig(momentum=0.0, weight_decay=0.0))
        generated = trainer.generate([0, 3])
        assert {n: w.shape[1:] for n, w in generated.items()} == SHAPES, name
        trainer.step([0, 3], {n: w + 0.1 for n, w in generated.items()}, [4, 4])
        moved = trainer.generate([0, 3])
        assert not torch.allclose(moved["fc1.weight"], generated["fc1.weight"]), name  # the step reaches it
    low_rank, per_tensor = (
        HyperNetwork(SHAPES, 5, HyperNetConfig(output=out, hidden_dim=8)).num_parameters()["hnet_shared"]
        for out in ("low_rank", "per_tensor")
    )
    assert low_rank < per_tensor
    # The documented output gives no init_groups: hyperfan, which needs them, says so by name.
    with pytest.raises(ValueError, match="hyperfan_in needs init_groups, which LowRankOutput does not give"):
        HyperNetwork(SHAPES, 5, HyperNetConfig(output="low_rank", init="hyperfan_in", hidden_dim=8))


def test_a_name_is_registered_once_and_unknown_names_list_the_choices():
    registry = Registry("body")
    registry.register("mlp")(MLPBody)

    with pytest.raises(ValueError, match="registered twice"):
        registry.register("mlp")(AttentionBody)
    with pytest.raises(ValueError, match=r"hnet.body='gru' is unknown; choose one of mlp"):
        registry.get("gru")
    assert list(registry) == ["mlp"]
    assert list(OUTPUTS) == ["per_tensor", "chunked", "component"]  # flat was per_tensor under another name


@pytest.mark.parametrize(
    ("inp", "dim", "extra_dim", "private", "members"),
    [("embedding", 4, 0, True, 1), ("data", 4, 4, False, 1), ("noise", 4 + 3, 3, True, 2)],
)
def test_each_input_declares_its_condition_per_call_input_and_privacy(inp, dim, extra_dim, private, members):
    cfg = HyperNetConfig(input=inp, embedding_dim=4, noise_dim=3, noise_samples=2, hidden_dim=8)
    hnet = HyperNetwork(SHAPES, 6, cfg)
    conditioner = hnet.conditioner
    extra = conditioner.sample(2, torch.Generator().manual_seed(0))
    extra = torch.randn(2, extra_dim) if extra is None and extra_dim else extra

    condition = conditioner(torch.tensor([1, 5]), extra)

    assert (conditioner.dim, conditioner.extra_dim, conditioner.private, conditioner.members) == (
        dim,
        extra_dim,
        private,
        members,
    )
    assert condition.shape == (2, dim)
    assert conditioner.num_parameters() == (6 * 4 if private else 0)
    assert sum(p.numel() for p in hnet.embedding_parameters()) == conditioner.num_parameters()
    shared, own = {id(p) for p in hnet.shared_parameters()}, {id(p) for p in hnet.embedding_parameters()}
    assert shared.isdisjoint(own) and len(shared | own) == len(list(hnet.parameters()))


def test_a_missing_or_unexpected_per_call_input_is_refused():
    with pytest.raises(ValueError, match="descriptors"):
        HyperNetwork(SHAPES, 4, HyperNetConfig(input="data"))(torch.tensor([0]))
    with pytest.raises(ValueError, match="noise vector"):
        HyperNetwork(SHAPES, 4, HyperNetConfig(input="noise"))(torch.tensor([0]))
    with pytest.raises(ValueError, match="no per-call input"):
        HyperNetwork(SHAPES, 4, HyperNetConfig())(torch.tensor([0]), torch.zeros(1, 3))
    with pytest.raises(ValueError, match="no per-client embeddings"):
        trainer = HyperNetTrainer(HyperNetwork(SHAPES, 4, HyperNetConfig(input="data")), OuterConfig())
        trainer.fit_embeddings([0], {}, [1], torch.zeros(1, 2))


@pytest.mark.parametrize(("body", "output", "wrapped"), [
    ("mlp", "per_tensor", False), ("mlp", "chunked", True), ("mlp", "component", True),
    ("attention", "chunked", False), ("attention", "component", False),
])  # fmt: skip
def test_a_body_is_wrapped_only_when_the_output_needs_slots_told_apart_and_it_does_not(body, output, wrapped):
    cfg = HyperNetConfig(body=body, output=output, hidden_dim=8, attention_heads=2, chunk_size=64)
    hnet = HyperNetwork(SHAPES, 4, cfg)

    assert isinstance(hnet.body, SlotEmbedded) == wrapped
    if wrapped:  # the wrapped body is the plain one, built for one slot with the slot embedding appended
        assert isinstance(hnet.body.body, MLPBody) and hnet.body.body.slots == 1
        assert hnet.body.body.mlp[0].in_features == hnet.conditioner.dim + hnet.body.slot_embeddings.shape[1]


def test_slot_embedded_runs_the_body_once_per_slot_on_the_condition_and_the_slots_embedding():
    torch.manual_seed(0)
    cfg = HyperNetConfig(hidden_dim=8, n_hidden=1)
    wrapped = SlotEmbedded(MLPBody(cfg, 5 + 2, 1), slots=3, slot_dim=2)
    condition = torch.randn(4, 5)

    features = wrapped(condition)  # [4, 3, 8]

    for s in range(3):
        alone = wrapped.body(torch.cat([condition, wrapped.slot_embeddings[s].expand(4, 2)], dim=1))[:, 0]
        torch.testing.assert_close(features[:, s], alone)


def _imports(path: Path) -> set[str]:
    modules = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom) and node.module:
            modules |= {node.module, *(f"{node.module}.{a.name}" for a in node.names)}
        elif isinstance(node, ast.Import):
            modules |= {a.name for a in node.names}
    return modules


def test_the_hypernetwork_modules_import_one_way():
    """No import circle among fedhyper.hnet, fedhyper.hypernet and fedhyper.outer, TYPE_CHECKING imports included."""
    files = {f"fedhyper.hnet.{p.stem}": p for p in (ROOT / "fedhyper" / "hnet").glob("*.py") if p.stem != "__init__"}
    files |= {"fedhyper.hypernet": ROOT / "fedhyper/hypernet.py", "fedhyper.outer": ROOT / "fedhyper/outer.py"}
    edges = {m: _imports(p) & set(files) - {m} for m, p in files.items()}
    order: list[str] = []
    while len(order) < len(files):  # peel off modules whose imports are all placed: fails on a circle
        ready = [m for m in files if m not in order and edges[m] <= set(order)]
        assert ready, f"import circle among {sorted(set(files) - set(order))}"
        order += ready
    assert order[0] == "fedhyper.hnet.config"  # the registries' module imports no part
    for part in ("bodies", "conditioners", "outputs", "inits"):  # parts never import the composition
        assert "fedhyper.hypernet" not in _imports(files[f"fedhyper.hnet.{part}"]), part
