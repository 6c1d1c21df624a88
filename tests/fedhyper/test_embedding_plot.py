import numpy as np
import torch

from fedhyper.embedding_plot import dominant_classes, plot_embeddings, principal_components


def test_principal_components_find_the_direction_of_largest_spread():
    gen = torch.Generator().manual_seed(0)
    along = torch.randn(200, 1, generator=gen) * 5
    direction = torch.tensor([[1.0, 2.0, 2.0]]) / 3
    vectors = along @ direction + 0.01 * torch.randn(200, 3, generator=gen)

    coords, share = principal_components(vectors)

    assert share[0] > 0.99
    corr = np.corrcoef(coords[:, 0], along[:, 0].numpy())[0, 1]
    assert abs(corr) > 0.999


def test_dominant_classes_are_the_two_most_frequent():
    counts = np.array([[0, 5, 9, 1], [7, 0, 0, 3]])

    first, second = dominant_classes(counts)

    assert first.tolist() == [2, 0] and second.tolist() == [1, 3]


def test_plot_is_written_with_and_without_colours(tmp_path):
    vectors = torch.randn(12, 5)
    counts = np.random.default_rng(0).integers(0, 20, (12, 10))

    plot_embeddings(vectors, tmp_path / "a.png", counts, novel=[0, 3])
    plot_embeddings(vectors[:, :1], tmp_path / "b.png")  # one dimension: padded to two

    assert (tmp_path / "a.png").read_bytes()[:4] == b"\x89PNG"
    assert (tmp_path / "b.png").stat().st_size > 1000
