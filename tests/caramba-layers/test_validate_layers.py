"""``caramba validate`` on manifests with layer mistakes: every problem at file:line:col with its
field path, found without torch; and ``caramba show layer AttentionLayer``."""

from __future__ import annotations

import subprocess
import sys
import textwrap

import pytest

import caramba
import caramba_layers.plugin as layers_plugin
from caramba.testing import toy

RT = caramba.Runtime(autoload=False, plugins=[layers_plugin, toy])

MANIFEST = """\
version: 2
name: bad_layers
targets:
- type: experiment
  name: lm
  data: dataset.toy_regression
  objective: objective.toy_mse
  trainer: trainer.toy
  system:
    ref: system.language_model
    config:
      model:
        embedder: {{type: token, vocab_size: 50, d_model: 32}}
        topology:
          type: StackedTopology
          layers:
{layers}
          - type: LinearLayer
            d_in: 32
            d_out: 50
"""


def problems(tmp_path, layers: str) -> list[str]:
    path = tmp_path / "bad.yml"
    path.write_text(MANIFEST.format(layers=textwrap.indent(textwrap.dedent(layers), " " * 10)))
    with pytest.raises(caramba.ManifestError) as err:
        RT.load_manifest(str(path))
    return [str(p) for p in err.value.problems]


PREFIX = "targets[0].system.config.model.topology.layers"


def test_width_mismatch(tmp_path):
    found = problems(tmp_path, """\
        - type: LinearLayer
          d_in: 32
          d_out: 48
        - type: RMSNormLayer
          d_model: 32
        """)
    assert any(p.startswith(f"{tmp_path}/bad.yml:21:") and f"{PREFIX}[1].d_model" in p and "48" in p
               for p in found), found


def test_an_upstream_width_error_still_lets_independent_errors_below_it_be_reported(tmp_path):
    found = problems(tmp_path, """\
        - type: RMSNormLayer        # input is 32 wide: a width error
          d_model: 24
        - type: AttentionLayer      # a GQA error, whatever its input
          d_model: 32
          n_heads: 4
          n_kv_heads: 3
        - type: RMSNormLayer        # attention outputs its declared 32: a second, independent width error
          d_model: 40
        """)
    path = f"{tmp_path}/bad.yml"
    assert found == [
        f"{path}:18:22  {PREFIX}[0].d_model  input width is 32 but d_model is 24  "
        "(set d_model: 32, or change the layer before it to output 24)",
        f"{path}:22:25  {PREFIX}[1].n_kv_heads  n_kv_heads (3) does not divide n_heads (4)  "
        "(each key/value head serves n_heads / n_kv_heads query heads)",
        f"{path}:24:22  {PREFIX}[2].d_model  input width is 32 but d_model is 40  "
        "(set d_model: 32, or change the layer before it to output 40)",
    ]


def test_heads_that_do_not_divide_d_model_and_kv_heads_that_do_not_divide_heads(tmp_path):
    found = problems(tmp_path, """\
        - type: AttentionLayer
          d_model: 32
          n_heads: 5
        - type: AttentionLayer
          d_model: 32
          n_heads: 8
          n_kv_heads: 3
        """)
    assert any(f"{PREFIX}[0].d_model" in p and "n_heads (5)" in p for p in found), found
    assert any(f"{PREFIX}[1].n_kv_heads" in p and "bad.yml:23:" in p for p in found), found


def test_odd_rope_dims(tmp_path):
    found = problems(tmp_path, """\
        - type: AttentionLayer
          d_model: 32
          n_heads: 4
          mode: decoupled
          sem_dim: 8
          geo_dim: 12
        """)
    assert any(f"{PREFIX}[0].geo_dim" in p and "even" in p and "bad.yml:22:" in p for p in found), found


def test_wrong_branch_widths(tmp_path):
    found = problems(tmp_path, """\
        - type: BranchingTopology
          layers:
          - {type: LinearLayer, d_in: 32, d_out: 16}
          - {type: LinearLayer, d_in: 32, d_out: 8}
        - type: RMSNormLayer
          d_model: 32
        """)
    assert any(f"{PREFIX}[1].d_model" in p and "24" in p for p in found), found


def test_a_residual_body_that_changes_width(tmp_path):
    found = problems(tmp_path, """\
        - type: ResidualTopology
          layers:
          - {type: LinearLayer, d_in: 32, d_out: 16}
        """)
    assert any(f"{PREFIX}[0].layers" in p and "keep the input shape" in p for p in found), found


def test_validation_does_not_import_torch(tmp_path):
    path = tmp_path / "ok.yml"
    path.write_text(MANIFEST.format(layers=" " * 10 + "- {type: AttentionLayer, d_model: 32, n_heads: 4}"))
    code = ("import sys, caramba, caramba.testing.toy as toy, caramba_layers.plugin as p\n"
            f"caramba.Runtime(autoload=False, plugins=[p, toy]).load_manifest({str(path)!r})\n"
            "assert 'torch' not in sys.modules")
    done = subprocess.run([sys.executable, "-c", code], check=False, capture_output=True, text=True)
    assert done.returncode == 0, done.stderr


def test_show_lists_attention_fields_with_types_and_defaults():
    done = subprocess.run([sys.executable, "-m", "caramba", "show", "layer", "AttentionLayer"],
                          check=False, capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    lines = {line.split()[0]: line for line in done.stdout.splitlines()[2:] if line.strip()}
    assert "required" in lines["d_model"] and "int" in lines["d_model"]
    assert "default 'standard'" in lines["mode"] and "decoupled" in lines["mode"]
    assert "default 10000.0" in lines["rope_base"]
    for name in ("n_kv_heads", "sem_dim", "geo_dim", "kv_groups", "rope_scaling", "tie_qk", "null_attn",
                 "decoupled_gate", "decoupled_gate_dynamic", "learned_temp", "q_chunk", "local_window"):
        assert name in lines, name
