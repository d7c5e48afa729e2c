"""Shared helpers for the benchmarks: interleaved rounds, medians, ranges and ratios."""

from __future__ import annotations

import statistics
import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field


@dataclass
class Series:
    name: str
    wall: list[float] = field(default_factory=list)  # seconds per call, one value per round
    cpu: list[float] = field(default_factory=list)

    def median_wall(self) -> float:
        return statistics.median(self.wall)

    def median_cpu(self) -> float:
        return statistics.median(self.cpu)


async def interleaved(
    variants: Sequence[tuple[str, Callable[[], Awaitable[object]]]],
    *,
    calls: int,
    rounds: int,
    warmup: int = 50,
) -> list[Series]:
    """Run each variant `calls` times per round, rounds interleaved (A B C A B C ...), so
    that drift in the machine's load hits every variant alike. Returns per-call figures."""
    series = [Series(name) for name, _ in variants]
    for _name, fn in variants:
        for _ in range(warmup):
            await fn()
    for _ in range(rounds):
        for s, (_name, fn) in zip(series, variants, strict=True):
            wall0, cpu0 = time.perf_counter(), time.process_time()
            for _ in range(calls):
                await fn()
            s.wall.append((time.perf_counter() - wall0) / calls)
            s.cpu.append((time.process_time() - cpu0) / calls)
    return series


def table(title: str, series: Sequence[Series], *, baseline: str) -> str:
    """A Markdown table: median and range per call, and the ratio to `baseline`
    (baseline time / variant time: 1.0 = as fast, 0.5 = half as fast)."""
    base = next(s for s in series if s.name == baseline)
    lines = [
        f"### {title}",
        "",
        "| variant | wall µs/call (median, min-max) | CPU µs/call (median) | speed vs "
        f"{baseline} (wall) | (CPU) |",
        "|---|---|---|---|---|",
    ]
    for s in series:
        lines.append(
            f"| {s.name} | {s.median_wall() * 1e6:.1f} ({min(s.wall) * 1e6:.1f}-"
            f"{max(s.wall) * 1e6:.1f}) | {s.median_cpu() * 1e6:.1f} | "
            f"{base.median_wall() / s.median_wall():.2f} | "
            f"{base.median_cpu() / s.median_cpu():.2f} |"
        )
    return "\n".join(lines) + "\n"
