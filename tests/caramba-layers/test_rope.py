"""RoPE frequencies and rotation against transformers' modeling_rope_utils and Llama's rotation."""

from __future__ import annotations

import pytest
import torch

import caramba
import caramba_layers.plugin as layers_plugin
from caramba_layers.modules.rope import RotaryEmbedding, inv_frequencies
from caramba_layers.specs.attention import RopeScaling

transformers = pytest.importorskip("transformers")
from transformers.modeling_rope_utils import ROPE_INIT_FUNCTIONS  # noqa: E402
from transformers.models.llama.modeling_llama import apply_rotary_pos_emb  # noqa: E402

RT = caramba.Runtime(autoload=False, plugins=[layers_plugin])

SCALINGS = {
    "linear": {"rope_type": "linear", "factor": 4.0},
    "dynamic": {"rope_type": "dynamic", "factor": 2.0},
    "llama3": {"rope_type": "llama3", "factor": 8.0, "low_freq_factor": 1.0, "high_freq_factor": 4.0,
               "original_max_position_embeddings": 64},
    "yarn": {"rope_type": "yarn", "factor": 4.0, "original_max_position_embeddings": 64},
    "yarn_mscale": {"rope_type": "yarn", "factor": 8.0, "original_max_position_embeddings": 32, "mscale": 0.707,
                    "mscale_all_dim": 1.0, "beta_fast": 16.0},
}


def hf_config(params, head_dim=32, max_pos=128):
    return transformers.LlamaConfig(hidden_size=head_dim * 2, num_attention_heads=2, head_dim=head_dim,
                                    max_position_embeddings=max_pos,
                                    rope_parameters={"rope_theta": 10000.0, **params})


@pytest.mark.parametrize("name", list(SCALINGS))
@pytest.mark.parametrize("seq_len", [None, 512])
def test_frequencies_match_transformers(name, seq_len):
    params = dict(SCALINGS[name])
    ours_params = dict(params)
    if params["rope_type"] == "dynamic":
        ours_params["max_position_embeddings"] = 128
    scaling = RT.parse(RopeScaling, ours_params)
    expected, expected_factor = ROPE_INIT_FUNCTIONS[params["rope_type"]](hf_config(params), "cpu", seq_len=seq_len)
    got, factor = inv_frequencies(32, 10000.0, scaling, seq_len)
    torch.testing.assert_close(got.float(), expected, rtol=1e-6, atol=0)
    assert factor == pytest.approx(expected_factor)


def test_unscaled_frequencies_are_base_powers():
    got, factor = inv_frequencies(8, 100.0)
    torch.testing.assert_close(got, torch.tensor([1.0, 100 ** -0.25, 100 ** -0.5, 100 ** -0.75], dtype=torch.float64))
    assert factor == 1.0


@pytest.mark.parametrize("name", [None, "llama3", "yarn"])
def test_rotation_matches_llama_apply_rotary_pos_emb(name):
    scaling = RT.parse(RopeScaling, SCALINGS[name]) if name else None
    rope = RotaryEmbedding(16, 10000.0, scaling)
    q = torch.randn(2, 5, 3, 16, dtype=torch.float64)  # (B, T, H, D)
    pos = torch.arange(7, 12)
    inv, factor = inv_frequencies(16, 10000.0, scaling)
    emb = torch.cat([pos[:, None] * inv] * 2, dim=-1)
    cos, sin = (emb.cos() * factor)[None], (emb.sin() * factor)[None]  # (1, T, D)
    # transformers rotates (B, H, T, D) tensors
    expected, _ = apply_rotary_pos_emb(q.transpose(1, 2), q.transpose(1, 2), cos, sin)
    torch.testing.assert_close(rope(q, pos), expected.transpose(1, 2))


def test_rotation_preserves_norms_and_relative_angles():
    rope = RotaryEmbedding(8)
    q, k = torch.randn(1, 1, 1, 8, dtype=torch.float64), torch.randn(1, 1, 1, 8, dtype=torch.float64)
    torch.testing.assert_close(rope(q, torch.tensor([5])).norm(), q.norm())
    dot = [(rope(q, torch.tensor([m])) * rope(k, torch.tensor([m - 3]))).sum() for m in (3, 10, 40)]
    torch.testing.assert_close(dot[0], dot[1])
    torch.testing.assert_close(dot[0], dot[2])


def test_per_row_positions_rotate_each_row():
    rope = RotaryEmbedding(8)
    x = torch.randn(2, 3, 1, 8, dtype=torch.float64)
    pos = torch.tensor([[0, 1, 2], [5, 6, 7]])
    both = rope(x, pos)
    torch.testing.assert_close(both[1:], rope(x[1:], torch.arange(5, 8)))
    torch.testing.assert_close(both[:1], rope(x[:1], torch.arange(3)))


def test_odd_dims_are_rejected():
    with pytest.raises(ValueError, match="even"):
        RotaryEmbedding(7)
