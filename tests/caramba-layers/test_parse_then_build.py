"""What ``Runtime.parse`` accepts, ``build`` builds: a parsed config never fails later.

Field invariants (heads divide widths, GQA groups divide heads, RoPE dims even, top_k within
the experts, ...) are checked when a config decodes, so a config that parses builds and runs
forward, and its output has the shape its ``infer`` predicts. Hypothesis draws the fields
from small ranges where most combinations are wrong.
"""

from __future__ import annotations

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

import caramba
import caramba_layers.plugin as layers_plugin
from caramba import NodeConfig

RT = caramba.Runtime(autoload=False, plugins=[layers_plugin])
SETTINGS = settings(max_examples=80, deadline=None, derandomize=True)

small = st.integers(1, 12)
width = st.sampled_from([4, 6, 8, 12, 16])
maybe_width = st.one_of(st.none(), width)
heads = st.sampled_from([1, 2, 3, 4, 6])

attention = st.fixed_dictionaries({
    "type": st.just("AttentionLayer"), "d_model": width, "n_heads": heads,
    "mode": st.sampled_from(["standard", "gqa", "decoupled"]),
}, optional={
    "n_kv_heads": st.one_of(st.none(), heads), "attn_dim": maybe_width, "sem_dim": maybe_width,
    "geo_dim": maybe_width, "kv_groups": st.one_of(st.none(), heads), "rope_enabled": st.booleans(),
    "tie_qk": st.booleans(), "null_attn": st.booleans(), "decoupled_gate": st.booleans(),
    "decoupled_gate_dynamic": st.booleans(), "rope_semantic": st.booleans(), "learned_temp": st.booleans(),
    "q_chunk": st.one_of(st.none(), small), "local_window": st.one_of(st.none(), small),
})
moe = st.fixed_dictionaries({
    "type": st.just("MoELayer"), "d_model": small, "d_ff": small, "num_experts": st.integers(1, 4),
    "top_k": st.integers(1, 5),
})
ssm = st.fixed_dictionaries({
    "type": st.just("SSMLayer"), "d_model": small,
}, optional={"d_state": st.integers(1, 4), "d_conv": st.integers(1, 4), "expand": st.integers(1, 3),
             "dt_min": st.sampled_from([1e-3, 0.05, 0.2]), "dt_max": st.sampled_from([1e-3, 0.1])})


def parsed_or_none(fields: dict) -> NodeConfig | None:
    try:
        return RT.parse(NodeConfig, fields)
    except caramba.ManifestError:
        return None


@SETTINGS
@given(st.one_of(attention, moe, ssm))
def test_a_config_that_parses_builds_runs_and_matches_its_inferred_shape(fields):
    config = parsed_or_none(fields)
    if config is None:
        return
    problems: list[str] = []
    inferred = caramba.Scope(lambda path, msg, hint: problems.append(msg)).infer(
        config, caramba.Shape(2, 3, config.d_model))
    assert problems == []
    module = RT.build(config).eval()
    with torch.no_grad():
        y = module(torch.randn(2, 3, config.d_model), caramba.Context())
    assert tuple(y.shape) == tuple(inferred)


def test_the_strategies_reach_both_sides():
    """Guards the property above against vacuity: some draws parse, some are rejected."""
    accepted = rejected = 0

    @settings(max_examples=80, deadline=None, derandomize=True)
    @given(attention)
    def count(fields):
        nonlocal accepted, rejected
        if parsed_or_none(fields) is None:
            rejected += 1
        else:
            accepted += 1

    count()
    assert accepted >= 5 and rejected >= 5, (accepted, rejected)


@pytest.mark.parametrize(("fields", "field"), [
    ({"type": "MoELayer", "d_model": 8, "d_ff": 8, "num_experts": 2, "top_k": 3}, "top_k"),
    ({"type": "SSMLayer", "d_model": 8, "dt_min": 0.2, "dt_max": 0.1}, "dt_min"),
    ({"type": "Conv2dLayer", "in_channels": 3, "out_channels": 4, "kernel_size": 3, "groups": 2}, "groups"),
    ({"type": "RNNLayer", "input_size": 4, "hidden_size": 4, "dropout": 0.1}, "dropout"),
    ({"type": "GraphConvLayer", "in_features": 4, "out_features": 4, "heads": 2}, "heads"),
    ({"type": "AttentionLayer", "d_model": 8, "n_heads": 2,
      "rope_scaling": {"rope_type": "llama3", "low_freq_factor": 4.0, "high_freq_factor": 1.0}},
     "rope_scaling.high_freq_factor"),
])
def test_a_field_invariant_fails_the_parse_at_its_field(fields, field):
    with pytest.raises(caramba.ManifestError) as err:
        RT.parse(NodeConfig, fields)
    assert [p.path for p in err.value.problems] == [field]
