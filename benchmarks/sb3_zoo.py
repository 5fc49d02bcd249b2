"""sb3_zoo.py: Stable-Baselines3 with an RL Zoo row, on given seeds, judged as minidqn's presets are judged.

Runs benchmarks/sb3_zoo_row.py (SB3 trains with the zoo's row, comparisons.ZOO_ROWS, then its final weights play
100 greedy episodes) with the Python of the separate PyTorch environment (its install: benchmarks/README.md),
and writes benchmarks/results/sb3-zoo-<env>.md:

    python benchmarks/sb3_zoo.py --torch-python .venv-torch/bin/python --env-id MountainCar-v0 --seeds 0 1 2 3

Each seed runs in its own process; --processes runs that many at once (one thread each). A run takes minutes
per seed: one seed (--seeds 0) is the short check that everything is in place.
"""

from __future__ import annotations

import argparse
import os
import re
import sys
from concurrent.futures import ThreadPoolExecutor

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.dirname(HERE))
sys.path.insert(0, HERE)

import numpy as np  # noqa: E402

import comparisons  # noqa: E402
import plots  # noqa: E402
import results  # noqa: E402

SCRIPT = "sb3_zoo_row.py"
LINE = re.compile(r"seed (-?\d+): greedy mean (-?[0-9.]+) over (\d+) episodes; (\d+) training episodes "
                  r"terminated; (\d+) s")


def run_seed(torch_python: str, env_id: str, seed: int) -> dict:
    out = comparisons.run_torch_script(torch_python, SCRIPT, env_id, str(seed),
                                       "--episodes", str(plots.N_FINAL_EPISODES))
    match = LINE.search(out)
    if match is None:
        raise comparisons.TorchSideError(f"unexpected output from {SCRIPT}: {out.strip()!r}")
    row = dict(seed=int(match[1]), final_mean=float(match[2]), terminated=int(match[4]), seconds=float(match[5]))
    print(f"seed {row['seed']}: greedy mean {row['final_mean']:.1f}, {row['terminated']} training episodes "
          f"terminated, {row['seconds']:.0f} s", flush=True)
    return row


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--torch-python", required=True, help="the Python of the separate environment with "
                        "PyTorch and stable-baselines3 (its install: benchmarks/README.md)")
    parser.add_argument("--env-id", default="MountainCar-v0", choices=list(comparisons.ZOO_ROWS))
    parser.add_argument("--seeds", type=int, nargs="+", default=list(range(8)))
    parser.add_argument("--processes", type=int, default=1)
    parser.add_argument("--name", help="results file name, without .md (default: sb3-zoo-ENV_ID)")
    args = parser.parse_args(argv)
    if args.processes < 1:
        parser.error(f"--processes must be >= 1, got {args.processes}")
    command = "python benchmarks/sb3_zoo.py " + " ".join(argv if argv is not None else sys.argv[1:])
    try:
        comparisons.run_torch_script(args.torch_python, SCRIPT, args.env_id, "--check")
        with ThreadPoolExecutor(args.processes) as pool:
            rows = sorted(pool.map(lambda s: run_seed(args.torch_python, args.env_id, s), args.seeds),
                          key=lambda row: row["seed"])
    except comparisons.TorchSideError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    threshold = plots.reward_threshold(args.env_id)
    finals = np.array([row["final_mean"] for row in rows])
    k, n = int(np.sum(finals >= threshold)), len(rows)
    low, high = results.wilson_interval(k, n)
    reached = sum(row["terminated"] > 0 for row in rows)
    text = "\n".join([
        results.header(f"SB3 with RL Zoo's row: {args.env_id}", command,
                       f"the zoo's row {comparisons.ZOO_ROWS[args.env_id]} with SB3's defaults under it "
                       "(benchmarks/comparisons.py, run by benchmarks/sb3_zoo_row.py); one thread per run"),
        f"Each seed trains, then its final weights play {plots.N_FINAL_EPISODES} greedy episodes; solved: mean >= "
        f"{threshold:g}.",
        "",
        "| seeds | solved | Wilson 95% interval | final mean +/- std over seeds | seeds with early ends | s per run |",
        "|---|---|---|---|---|---|",
        f"| {', '.join(str(row['seed']) for row in rows)} | **{k} / {n}** | {100 * low:.0f}% to {100 * high:.0f}% | "
        f"{finals.mean():.1f} +/- {finals.std():.1f} | {reached} / {n} | "
        f"{np.median([row['seconds'] for row in rows]):.0f} |",
        "",
        "| seed | final mean | solved | training episodes terminated | train s |",
        "|---|---|---|---|---|",
        *(f"| {row['seed']} | {row['final_mean']:.1f} | {'yes' if row['final_mean'] >= threshold else 'no'} | "
          f"{row['terminated']} | {row['seconds']:.0f} |" for row in rows),
    ])
    print("\n" + text)
    print(f"\nwrote {results.write(args.name or f'sb3-zoo-{args.env_id}', text)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
