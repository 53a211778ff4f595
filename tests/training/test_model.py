"""Embeddings have the same bits however a matrix is cut into batches."""

from concurrent.futures import ThreadPoolExecutor

import numpy as np
import pytest
import torch

from training.model import LinearConfig, LinearProjection, ModelConfig, TripletMLP, embed


def near_saturated_mlp() -> TripletMLP:
    """The paper's network with weights scaled up: tanh outputs near ±1 but not at it,
    where the last bits of a float32 product decide the embedding's low bits."""
    torch.manual_seed(0)
    model = TripletMLP(ModelConfig())
    with torch.no_grad():
        for parameter in model.parameters():
            parameter.mul_(8.0)
    return model


def linear() -> LinearProjection:
    torch.manual_seed(1)
    return LinearProjection(LinearConfig(embedding_dim=64))


def in_batches(model, x: np.ndarray, size: int) -> np.ndarray:
    return np.concatenate([embed(model, x[i : i + size]) for i in range(0, len(x), size)])


@pytest.mark.parametrize("make", [near_saturated_mlp, linear], ids=["mlp", "linear"])
def test_embedding_in_batches_of_any_size_gives_identical_bits(make):
    model = make()
    x = np.random.default_rng(0).normal(size=(1200, 518)).astype(np.float32)
    whole = embed(model, x)
    for size in (1, 3, 7, 64, 500):
        np.testing.assert_array_equal(in_batches(model, x, size), whole, err_msg=f"size {size}")


def test_the_near_saturated_network_really_saturates():
    # Guards the test above: these embeddings are the kind whose float32 distances cancel.
    x = np.random.default_rng(0).normal(size=(200, 518)).astype(np.float32)
    out = embed(near_saturated_mlp(), x).astype(np.float64)
    squared_norms = (out**2).sum(axis=1)
    assert squared_norms.mean() > 350 and (np.abs(out) < 1.0).mean() > 0.5


def test_embeddings_follow_the_weights_after_an_in_place_update():
    # The float64 copy of the weights is cached per model: an optimiser step must refresh it.
    model = linear()
    x = np.random.default_rng(2).normal(size=(10, 518)).astype(np.float32)
    before = embed(model, x)
    with torch.no_grad():
        model.projection.weight.mul_(2.0)
    np.testing.assert_allclose(embed(model, x), 2.0 * before, rtol=1e-6)


def test_embeddings_equal_a_float64_numpy_forward_pass():
    model = near_saturated_mlp()
    x = np.random.default_rng(3).normal(size=(50, 518)).astype(np.float32)
    (w1, b1), (w2, b2) = (
        (layer.weight.detach().double().numpy(), layer.bias.detach().double().numpy())
        for layer in (model.net[0], model.net[2])
    )
    hidden = 1.0 / (1.0 + np.exp(-(x.astype(np.float64) @ w1.T + b1)))
    expected = np.tanh(hidden @ w2.T + b2)
    np.testing.assert_allclose(embed(model, x), expected.astype(np.float32), rtol=0, atol=1e-6)


def test_embedding_from_many_threads_at_once_gives_the_same_bits():
    # The service embeds posted songs on several threads with one shared model.
    model = near_saturated_mlp()
    x = np.random.default_rng(4).normal(size=(64, 518)).astype(np.float32)
    alone = embed(model, x)
    with ThreadPoolExecutor(max_workers=8) as pool:
        outs = list(pool.map(lambda i: embed(model, x[i : i + 1]), [i % 64 for i in range(2000)]))
    for i, out in enumerate(outs):
        np.testing.assert_array_equal(out[0], alone[i % 64])
