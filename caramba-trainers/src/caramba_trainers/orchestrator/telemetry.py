"""Telemetry of the training stream: loss and gradient-norm spike detectors, loss slope, phase.

Pure Python on floats, so its whole state is JSON and a resumed run continues it exactly.
Only real training steps are observed (never a placeholder value), and a spike enters the
moving averages clipped to the threshold, so one bad step barely raises the bar for the next.
"""

from __future__ import annotations

import math
from collections import deque
from typing import Any

__all__ = ["SpikeDetector", "Telemetry"]


class SpikeDetector:
    """``x`` is a spike when it exceeds both ``mean + z * std`` and ``ratio * mean`` of the EMA
    statistics (once ``min_history`` values were seen), or is not finite.

    The ratio keeps the z-test honest early on, when the variance estimate is still small
    and the gradient norm grows as learning starts. A spike enters the averages clipped to
    the threshold, so a lasting change of level is learnt within a few dozen steps instead of
    being flagged forever.
    """

    def __init__(self, z: float, ratio: float, decay: float, min_history: int) -> None:
        self.z, self.ratio, self.decay, self.min_history = z, ratio, decay, min_history
        self.mean = 0.0
        self.var = 0.0
        self.count = 0

    def threshold(self) -> float:
        return max(self.mean + self.z * math.sqrt(self.var), self.ratio * self.mean)

    def observe(self, x: float) -> bool:
        if not math.isfinite(x):
            return True
        spike = self.count >= self.min_history and x > self.threshold()
        if spike:
            x = self.threshold()
        if self.count == 0:
            self.mean = x
        else:  # West's EMA of mean and variance
            d = x - self.mean
            self.mean += (1.0 - self.decay) * d
            self.var = self.decay * (self.var + (1.0 - self.decay) * d * d)
        self.count += 1
        return spike

    def state_dict(self) -> dict[str, Any]:
        return {"mean": self.mean, "var": self.var, "count": self.count}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.mean, self.var, self.count = float(state["mean"]), float(state["var"]), int(state["count"])


class Telemetry:
    """Observes ``(step, loss, grad_norm)`` per optimizer step; answers spikes, slope and phase.

    Phases, first match wins: ``unstable`` (``unstable_spikes`` spikes in the window),
    ``warmup`` (fewer than ``min_history`` steps seen), ``plateau`` (the fitted change over
    the window is under ``plateau_tol`` of the mean loss), ``converging`` (falling) or
    ``rising``.
    """

    def __init__(self, config: Any) -> None:
        self.config = config
        self.loss = SpikeDetector(config.loss_z, config.loss_ratio, config.ema_decay, config.min_history)
        self.grad = SpikeDetector(config.grad_z, config.grad_ratio, config.ema_decay, config.min_history)
        self.history: deque[tuple[int, float]] = deque(maxlen=config.window)
        self.spike_steps: deque[int] = deque()
        self.seen = 0

    def observe(self, step: int, loss: float, grad_norm: float | None) -> dict[str, bool]:
        """Record step ``step`` (1-based, after it ran); returns which detectors fired."""
        loss_spike = self.loss.observe(loss)
        grad_spike = grad_norm is not None and self.grad.observe(grad_norm)
        if loss_spike or grad_spike:
            self.spike_steps.append(step)
        while self.spike_steps and self.spike_steps[0] <= step - self.config.window:
            self.spike_steps.popleft()
        if math.isfinite(loss):
            self.history.append((step, loss))
        self.seen += 1
        return {"loss_spike": loss_spike, "grad_spike": grad_spike}

    @property
    def recent_spikes(self) -> int:
        return len(self.spike_steps)

    def slope(self) -> float:
        """Least-squares slope of the loss per step over the window (0 with fewer than 2 points)."""
        n = len(self.history)
        if n < 2:
            return 0.0
        xs = [s for s, _ in self.history]
        ys = [v for _, v in self.history]
        mx, my = sum(xs) / n, sum(ys) / n
        sxx = sum((x - mx) ** 2 for x in xs)
        return sum((x - mx) * (y - my) for x, y in zip(xs, ys, strict=True)) / sxx if sxx else 0.0

    def phase(self) -> str:
        cfg = self.config
        if self.recent_spikes >= cfg.unstable_spikes:
            return "unstable"
        if self.seen < cfg.min_history or len(self.history) < 2:
            return "warmup"
        mean = sum(v for _, v in self.history) / len(self.history)
        change = self.slope() * len(self.history)
        if abs(change) < cfg.plateau_tol * abs(mean):
            return "plateau"
        return "converging" if change < 0 else "rising"

    def summary(self) -> dict[str, Any]:
        return {"phase": self.phase(), "loss_slope": self.slope(), "recent_spikes": self.recent_spikes,
                "loss_ema": self.loss.mean, "grad_norm_ema": self.grad.mean}

    def state_dict(self) -> dict[str, Any]:
        return {"loss": self.loss.state_dict(), "grad": self.grad.state_dict(),
                "history": [list(h) for h in self.history], "spike_steps": list(self.spike_steps),
                "seen": self.seen}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.loss.load_state_dict(state["loss"])
        self.grad.load_state_dict(state["grad"])
        self.history = deque(((int(s), float(v)) for s, v in state["history"]), maxlen=self.config.window)
        self.spike_steps = deque(int(s) for s in state["spike_steps"])
        self.seen = int(state["seen"])
