"""``example_csv``: a metrics sink writing ``metrics.csv`` beside the run's ``metrics.jsonl``.

The pipeline creates one sink per run on rank 0 (``factory(None, session=session)``), calls
:meth:`log` with each step's scalars and :meth:`close` when the run ends. Rows are long
format (``step, phase, name, value``), so metrics that appear mid-run need no new column.
"""

from __future__ import annotations

import csv
from pathlib import Path
from caramba import RunSession, Sink

__all__ = ["ExampleCsvSink"]

HEADER = ("run_id", "step", "phase", "name", "value")


class ExampleCsvSink(Sink):
    def __init__(self, config: None = None, *, session: RunSession) -> None:
        self.run_id = session.run.id
        self.path = Path(session.run_dir) / "metrics.csv"
        self.path.parent.mkdir(parents=True, exist_ok=True)
        fresh = not self.path.exists() or self.path.stat().st_size == 0
        # Appending, not rewriting: a resumed run continues the same file, as metrics.jsonl does.
        self._file = self.path.open("a", newline="", encoding="utf-8")
        self._writer = csv.writer(self._file)
        if fresh:
            self._writer.writerow(HEADER)

    def log(self, step: int, metrics: dict[str, float], *, phase: str = "train") -> None:
        for name, value in metrics.items():
            self._writer.writerow((self.run_id, step, phase, name, repr(float(value))))
        self._file.flush()  # a killed run keeps every row it logged

    def close(self) -> None:
        self._file.close()
