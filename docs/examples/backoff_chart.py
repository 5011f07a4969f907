"""Print the wait before each retry for a few backoff curves: `python backoff_chart.py`."""

from __future__ import annotations

import dataclasses
import random

from taskemit import Backoff

CURVES = [
    Backoff.fixed(15),
    Backoff.linear(10, cap=45),
    Backoff.explicit([5, 30, 60]),
    Backoff.exponential(first=2, factor=2, cap=60),
    Backoff.exponential(first=2, factor=2, cap=60, jitter="full"),
    Backoff.exponential(first=2, factor=2, cap=60, jitter="equal"),
]


def main(retries: int = 6, seed: int = 1) -> None:
    rng = random.Random(seed)  # jitter draws from it: a seeded rng gives the same chart every time
    for curve in CURVES:
        print(curve.describe())
        ceiling = dataclasses.replace(curve, jitter="none")  # the curve without jitter
        for n in range(1, retries + 1):
            delay, most = curve.delay_for(n, rng), ceiling.delay_for(n)
            # one '#' per second of wait; '.' up to what the curve would wait without jitter
            bar = "#" * round(delay) + "." * (round(most) - round(delay))
            print(f"  retry {n}  {delay:5.1f} s  {bar}")


if __name__ == "__main__":
    main()
