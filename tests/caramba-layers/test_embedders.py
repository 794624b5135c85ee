"""Token and patch embedders against direct computations."""

from __future__ import annotations

import pytest
import torch

import caramba
import caramba_layers.plugin as layers_plugin
from caramba.graph import EmbedderConfig, Shape

RT = caramba.Runtime(autoload=False, plugins=[layers_plugin])


def build(fields):
    torch.manual_seed(0)
    config = RT.parse(EmbedderConfig, fields)
    return config, RT.build(config, "embedder").double()


def test_token_embedder_looks_rows_up():
    config, m = build({"type": "token", "vocab_size": 10, "d_model": 4})
    ids = torch.tensor([[1, 9, 1]])
    torch.testing.assert_close(m(ids), m.embedding.weight[ids])
    assert config.num_params() == sum(p.numel() for p in m.parameters())


@pytest.mark.parametrize("pool", ["cls", "mean", "none"])
def test_patch_embedder_matches_patches_times_weights(pool):
    config, m = build({"type": "patch", "img_size": 8, "patch_size": 4, "in_channels": 2, "d_model": 5, "pool": pool})
    with torch.no_grad():
        if m.cls_token is not None:
            m.cls_token.normal_()
    img = torch.randn(3, 2, 8, 8, dtype=torch.float64)
    # patches in row-major order, each flattened as (C, p, p) like the conv weight
    patches = img.unfold(2, 4, 4).unfold(3, 4, 4).permute(0, 2, 3, 1, 4, 5).reshape(3, 4, 2 * 16)
    tokens = patches @ m.proj.weight.reshape(5, -1).T + m.proj.bias
    if pool == "cls":
        tokens = torch.cat((m.cls_token.expand(3, 1, 5), tokens), dim=1)
    expected = tokens + m.pos_embedding
    got = m(img)
    torch.testing.assert_close(got, expected)
    assert tuple(got.shape) == tuple(config.infer(Shape(3, 2, 8, 8), None))
    assert config.num_params() == sum(p.numel() for p in m.parameters())
    pooled = m.pool(got)
    expected_pooled = {"cls": got[:, 0], "mean": got.mean(1), "none": got}[pool]
    torch.testing.assert_close(pooled, expected_pooled)
    assert tuple(pooled.shape) == tuple(config.pooled(Shape(*got.shape)))


def test_patch_shape_errors_name_the_field():
    config = RT.parse(EmbedderConfig, {"type": "patch", "img_size": 8, "patch_size": 4, "in_channels": 3,
                                       "d_model": 4})
    with pytest.raises(caramba.ShapeError) as err:
        config.infer(Shape("B", 1, 8, 8), None)
    assert err.value.field == "in_channels"
    bad = RT.parse(EmbedderConfig, {"type": "patch", "img_size": 10, "patch_size": 4, "d_model": 4})
    with pytest.raises(caramba.ShapeError) as err:
        bad.infer(Shape("B", 3, 10, 10), None)
    assert err.value.field == "patch_size"


def test_the_docs_image_size_name_is_an_unknown_field():
    with pytest.raises(caramba.ManifestError, match="did you mean 'img_size'"):
        RT.parse(EmbedderConfig, {"type": "patch", "image_size": 32, "d_model": 4})
