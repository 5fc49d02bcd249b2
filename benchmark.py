"""benchmark.py: how reliably minidqn learns, and how fast it runs.

Reliability: N seeds in parallel (one process per core), each judged on the mean return of its FINAL weights
over 100 greedy episodes (no best checkpoint):

    python benchmark.py --seeds 16 --first-seed 1000         # the demo configuration on seeds 1000..1015
    python benchmark.py --seeds 16 --env-id Acrobot-v1        # any run_dqn flag passes through

Speed at the same work as ../shared/anchors (CartPole-v1, 20k env steps, learning from step 1000, one
gradient step of batch 64 every 2 env steps, 64x64 ReLU net, target copied every 10 steps, lr 1e-3, no
evaluation, one thread), each run in a fresh process:

    python benchmark.py --speed --repeats 5
    python benchmark.py --speed --sb3-python /tmp/sb3/bin/python --sb3-script ../shared/anchors/sb3_same_work.py

With --sb3-python the two are run alternately, side by side, and the ratio of their medians is printed.
"""

from __future__ import annotations

import argparse
import os
import re
import subprocess
import sys
import tempfile
import time

os.environ.setdefault("OMP_NUM_THREADS", "1")

import numpy as np  # noqa: E402

import plots  # noqa: E402

SAME_WORK = dict(
    env_id="CartPole-v1", n_timesteps=20_000, learning_starts=1000, update_interval=2, batch_size=64,
    n_hidden_units=64, target_network_update_interval=10, learning_rate=1e-3, evaluation_interval=0,
    replay_buffer_size=100_000, gamma=0.99, exploration_fraction=0.1, exploration_final_eps=0.04,
    loss_fn="mse", max_grad_norm=None, double_dqn=False,
)


def reliability_table(logs: list) -> str:
    env_id = logs[0]["config"]["env_id"]
    threshold = plots.reward_threshold(env_id)
    finals = np.array([log["final_mean"] for log in logs])
    worst = min(logs, key=lambda log: log["final_mean"])
    first_reach = []
    for log in logs:
        reached = np.nonzero(log["eval_means"] >= threshold)[0] if threshold is not None else []
        first_reach.append(log["eval_steps"][reached[0]] if len(reached) else np.nan)
    n_reached = int(np.sum(~np.isnan(first_reach)))
    median_reach = f"{np.nanmedian(first_reach):.0f} ({n_reached}/{len(logs)} reached)" if n_reached else "never"
    rows = [
        ("env", env_id),
        ("env steps per run", f"{logs[0]['config']['n_timesteps']}"),
        ("seeds", f"{logs[0]['seed']}..{logs[-1]['seed']}"),
        (f"seeds solved (final {plots.N_FINAL_EPISODES}-episode greedy mean >= {threshold:g})",
         f"{plots.solved_count(logs, threshold)} / {len(logs)}"),
        ("final mean +/- std over seeds", f"{finals.mean():.1f} +/- {finals.std():.1f}"),
        ("worst seed", f"seed {worst['seed']}: {worst['final_mean']:.1f}"),
        (f"median env steps to first reach {threshold:g} in periodic evaluation", median_reach),
        ("seconds per run (median, training only)", f"{np.median([log['train_seconds'] for log in logs]):.1f}"),
    ]
    width = max(len(k) for k, _ in rows)
    return "\n".join(f"| {k:<{width}} | {v} |" for k, v in rows)


def time_same_work_once() -> float:
    """Train on the same-work configuration in this process; return the wall time of run_dqn alone."""
    import minidqn

    start = time.perf_counter()
    minidqn.run_dqn(seed=0, verbose=0, **SAME_WORK)
    return time.perf_counter() - start


def run_timed(command: list) -> float:
    out = subprocess.run(command, capture_output=True, text=True, check=True,
                         env={**os.environ, "OMP_NUM_THREADS": "1"}).stdout
    return float(re.findall(r"([0-9.]+) s", out)[-1])


def speed(repeats: int, sb3_python: str | None, sb3_script: str | None) -> None:
    minidqn_cmd = [sys.executable, __file__, "--time-same-work-once"]
    sb3_cmd = [sb3_python, sb3_script] if sb3_python else None
    ours, theirs = [], []
    for r in range(repeats):
        ours.append(run_timed(minidqn_cmd))
        line = f"run {r + 1}/{repeats}: minidqn {ours[-1]:.2f} s"
        if sb3_cmd:
            theirs.append(run_timed(sb3_cmd))
            line += f", SB3 {theirs[-1]:.2f} s"
        print(line, flush=True)
    n_updates = (SAME_WORK["n_timesteps"] - SAME_WORK["learning_starts"]) // SAME_WORK["update_interval"]
    t = float(np.median(ours))
    print(f"\nsame work, median of {repeats} fresh processes, OMP_NUM_THREADS=1, {os.cpu_count()} cores:")
    print(f"| minidqn | {t:.2f} s | {SAME_WORK['n_timesteps'] / t:,.0f} env steps/s | "
          f"{n_updates / t:,.0f} gradient steps/s |")
    if theirs:
        s = float(np.median(theirs))
        print(f"| SB3 DQN | {s:.2f} s | {SAME_WORK['n_timesteps'] / s:,.0f} env steps/s | "
              f"{n_updates / s:,.0f} gradient steps/s |")
        print(f"minidqn is {s / t:.1f}x faster than SB3 on the same work (ratio of medians)")


def main(argv=None) -> int:
    parser = plots.build_parser()
    parser.description = __doc__.split("\n\n")[0]
    parser.set_defaults(seeds=16, out=None)
    parser.add_argument("--speed", action="store_true", help="time the same-work configuration instead")
    parser.add_argument("--repeats", type=int, default=5, help="timed runs for --speed (default %(default)s)")
    parser.add_argument("--sb3-python", help="a python with stable-baselines3, to time SB3 side by side")
    parser.add_argument("--sb3-script", help="the SB3 timing script (../shared/anchors/sb3_same_work.py)")
    parser.add_argument("--time-same-work-once", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.time_same_work_once:
        print(f"minidqn same work: {time_same_work_once():.3f} s")
        return 0
    if args.speed:
        if bool(args.sb3_python) != bool(args.sb3_script):
            parser.error("--sb3-python and --sb3-script go together")
        speed(args.repeats, args.sb3_python, args.sb3_script)
        return 0
    if args.seeds < 1:
        parser.error(f"--seeds must be >= 1, got {args.seeds}")
    run_kwargs = plots.run_kwargs_from(args)
    out = args.out or tempfile.mkdtemp(prefix="minidqn-benchmark-")
    try:
        plots.check_out_dir(out)
    except ValueError as e:
        parser.error(str(e))
    seeds = list(range(args.first_seed, args.first_seed + args.seeds))
    print(f"{len(seeds)} seeds, {min(len(seeds), args.processes or os.cpu_count())} processes, "
          f"{os.cpu_count()} cores, logs in {out}: {run_kwargs or 'the demo configuration'}", flush=True)
    try:
        logs = plots.train_seeds(seeds, run_kwargs, out, args.processes)
    except ValueError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(f"Interrupted: the logs so far are in {out}", file=sys.stderr)
        return 130
    print()
    print(reliability_table(logs))
    return 0


if __name__ == "__main__":
    sys.exit(main())
