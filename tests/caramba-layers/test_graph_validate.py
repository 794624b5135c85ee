"""`caramba validate` reports GraphTopology wiring mistakes at file:line:col, without importing torch."""

from __future__ import annotations

import subprocess
import sys
import textwrap

MANIFEST = textwrap.dedent("""\
    version: 2
    name: graph
    targets:
      - type: experiment
        name: nodes
        data: {ref: dataset.toy_regression}
        system:
          ref: system.generic
          config:
            input_shape: [N, 4]
            model:
              type: GraphTopology
              inputs: [x, adj]
              nodes:
                - id: conv1
                  op: {type: GraphConvLayer, in_features: 4, out_features: 8}
                  in: [x, adj, y]
                  out: h
                - id: conv2
                  op: {type: GraphConvLayer, in_features: 8, out_features: 2}
                  in: [h, adjacency]
                  out: y
        objective: {ref: objective.toy_mse}
        trainer: {ref: trainer.toy}
    """)

# The real `caramba validate` code path, with the plugin set pinned (toy pipeline + layers).
VALIDATE = textwrap.dedent("""\
    import sys
    import caramba.cli._commands as commands
    import caramba_layers.plugin
    from caramba.cli import main
    from caramba.plugins import Runtime
    from caramba.testing import toy

    commands.runtime_from_args = lambda args: Runtime(autoload=False, plugins=[toy, caramba_layers.plugin])
    code = main(["validate", sys.argv[1]])
    print("TORCH_IMPORTED", "torch" in sys.modules)
    sys.exit(code)
    """)


def validate(tmp_path, text: str) -> tuple[int, str]:
    path = tmp_path / "graph.yml"
    path.write_text(text)
    done = subprocess.run([sys.executable, "-c", VALIDATE, str(path)], capture_output=True, text=True, check=False)
    return done.returncode, done.stdout + done.stderr


def test_validate_reports_a_cycle_and_an_unknown_port_with_locations(tmp_path):
    code, out = validate(tmp_path, MANIFEST)
    assert code == 2, out
    assert "TORCH_IMPORTED False" in out
    where = str(tmp_path / "graph.yml")
    assert (f"{where}:17:19  targets[0].system.config.model.nodes[0].in  "
            "cycle in the graph: conv1 → conv2 → conv1") in out, out
    assert (f"{where}:21:23  targets[0].system.config.model.nodes[1].in[1]  "
            "node 'conv2' reads unknown port 'adjacency'  (expected one of: adj, h, x, y)") in out, out


def test_a_valid_graph_passes_validation(tmp_path):
    fixed = MANIFEST.replace("in: [x, adj, y]", "in: [x, adj]").replace("in: [h, adjacency]", "in: [h, adj]")
    code, out = validate(tmp_path, fixed)
    assert code == 0, out
    assert "valid" in out and "TORCH_IMPORTED False" in out
