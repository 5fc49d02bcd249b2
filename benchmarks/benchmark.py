"""benchmark.py: how reliably minidqn learns and how fast it runs; each mode writes a results file.

Reliability: N seeds in parallel (one process per core), each judged on the mean return of its FINAL weights
over 100 greedy episodes (no best checkpoint), with the Wilson 95% interval of the success rate:

    python benchmarks/benchmark.py --seeds 64 --first-seed 11000    # the demo configuration
    python benchmarks/benchmark.py --env-id Acrobot-v1               # any run_dqn flag passes through

Speed at the same work as SB3's DQN and the RLSS tutorial's PyTorch DQN (comparisons.SAME_WORK: CartPole-v1,
20k env steps, learning from step 1000, one gradient step of batch 64 every 2 env steps, 64x64 ReLU net, target
copied every 10 steps, lr 1e-3, no evaluation, one thread), each run a fresh process, the systems alternating,
with the floor measured alongside. SB3 and the tutorial run in a separate PyTorch environment (its install:
benchmarks/README.md); --tutorial-path names a local copy of the tutorial's package where it is not installed:

    python benchmarks/benchmark.py --speed --repeats 5 --torch-python .venv-torch/bin/python

The demo: wall time of `python minidqn.py`, next to the time of its own matrix products:

    python benchmarks/benchmark.py --demo --repeats 3
    python benchmarks/benchmark.py --demo --repeats 7 --baseline OLD/minidqn.py --n-hidden-units 64 --name demo-64units

With run flags, --demo times `python minidqn.py` with those flags, against the baseline's own demo.

Results go to benchmarks/results/<name>.md (the date, machine, commit, settings and per-run rows).
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
HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
sys.path.insert(0, ROOT)
sys.path.insert(0, HERE)

import numpy as np  # noqa: E402

import comparisons  # noqa: E402
import minidqn  # noqa: E402
import plots  # noqa: E402
import results  # noqa: E402
import update_speed  # noqa: E402
from comparisons import SAME_WORK  # noqa: E402


# ---------------------------------------------------------------------------------------------------------
# Reliability
# ---------------------------------------------------------------------------------------------------------


def reliability_report(logs: list, command: str, run_kwargs: dict) -> str:
    env_id = logs[0]["config"]["env_id"]
    threshold = plots.reward_threshold(env_id)
    finals = np.array([log["final_mean"] for log in logs])
    k, n = plots.solved_count(logs, threshold), len(logs)
    low, high = results.wilson_interval(k, n)
    worst = min(logs, key=lambda log: log["final_mean"])
    config = {key: value for key, value in logs[0]["config"].items() if key not in ("seed", "save_path", "log_path")}
    solved_rule = f"solved: mean >= {threshold:g}" if threshold is not None else "this env defines no threshold"
    solved_cells = (f"**{k} / {n}** ({100 * k / n:.0f}%) | {100 * low:.0f}% to {100 * high:.0f}%"
                    if threshold is not None else "n/a | n/a")
    time_limit = plots.time_limit(env_id)
    lines = [
        results.header(f"Reliability: {env_id}", command, f"{run_kwargs or 'the defaults'}; full config: {config}"),
        f"Each seed trains, then its final weights play {plots.N_FINAL_EPISODES} greedy episodes on an env seeded "
        f"with seed + {plots.FINAL_EVAL_SEED_OFFSET}; {solved_rule}. Early ends: training episodes that ended "
        f"before the {time_limit}-step time limit (on MountainCar, those that reached the flag).",
        "",
        "| seeds | solved | Wilson 95% interval | final mean +/- std over seeds | worst seed | s per run (median) |",
        "|---|---|---|---|---|---|",
        f"| {logs[0]['seed']}..{logs[-1]['seed']} | {solved_cells} | {finals.mean():.1f} +/- {finals.std():.1f} | "
        f"seed {worst['seed']}: {worst['final_mean']:.1f} | {np.median([log['train_seconds'] for log in logs]):.1f} |",
        "",
        "| seed | final mean | final std | solved | early ends / training episodes | train s |",
        "|---|---|---|---|---|---|",
    ]
    for log in logs:
        solved = "n/a" if threshold is None else "yes" if log["final_mean"] >= threshold else "no"
        early = int(np.sum(log["episode_lengths"] < time_limit)) if time_limit else "n/a"
        lines.append(f"| {log['seed']} | {log['final_mean']:.1f} | {log['final_std']:.1f} | {solved} | "
                     f"{early} / {len(log['episode_lengths'])} | {log['train_seconds']:.1f} |")
    return "\n".join(lines)


# ---------------------------------------------------------------------------------------------------------
# Speed at the same work
# ---------------------------------------------------------------------------------------------------------


def load_minidqn(path: str):
    """Import the minidqn.py at `path` as a module of its own: a baseline's file, not the one this script imported."""
    import importlib.util

    spec = importlib.util.spec_from_file_location("timed_minidqn", os.path.abspath(path))
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # its dataclasses look their module up by name
    spec.loader.exec_module(module)
    return module


def time_same_work_once(path: str) -> float:
    """Train on the same-work configuration with the minidqn.py at `path`, in this process; return the wall time
    of run_dqn alone."""
    module = load_minidqn(path)
    start = time.perf_counter()
    module.run_dqn(seed=comparisons.SAME_WORK_SEED, verbose=0, **SAME_WORK)
    return time.perf_counter() - start


def last_time(out: str) -> float:
    """A timing script's time: the last "<number> s" it printed."""
    return float(re.findall(r"([0-9.]+) s", out)[-1])


class TimedRunError(RuntimeError):
    """A same-work run of a minidqn.py failed, or ran another file; the message is one line that says which and why."""


def round_order(names: list, r: int) -> list:
    """The order of round r: the systems alternate, so a slow moment of the shared machine hits each alike, and each
    goes first as often."""
    return list(names) if r % 2 == 0 else list(names)[::-1]


def run_timed(command: list, path: str) -> float:
    """Time the same work with the minidqn.py at `path`, in a fresh process, one thread; the process names the
    file it ran, which must be `path`."""
    done = subprocess.run(command + ["--minidqn-file", path], capture_output=True, text=True,
                          env={**os.environ, "OMP_NUM_THREADS": "1", "OPENBLAS_NUM_THREADS": "1"})
    if done.returncode != 0:  # a baseline too old for the same-work keywords, say: its own last line says why
        last = (done.stderr.strip().splitlines() or ["(no message)"])[-1]
        raise TimedRunError(f"the same work with {path} failed: {last}")
    out = done.stdout
    ran = re.findall(r"^timed (.*): ", out, flags=re.MULTILINE)
    if ran != [os.path.abspath(path)]:
        raise TimedRunError(f"asked to time {os.path.abspath(path)}, the process timed {ran}")
    return last_time(out)


def torch_side(torch_python: str, tutorial_path: str | None) -> tuple:
    """The PyTorch side's timings, each a function that runs one in a fresh process, once each is known to
    start (a missing package stops the command here, with its one-line reason, before anything is timed), and
    the versions it runs, for the results file."""
    env = {comparisons.TUTORIAL_PATH_VARIABLE: os.path.abspath(tutorial_path)} if tutorial_path else {}
    scripts = {"SB3 DQN": "sb3_same_work.py", "RLSS tutorial DQN (PyTorch)": "tutorial_same_work.py"}
    ready = comparisons.run_torch_script(torch_python, "sb3_same_work.py", "--check", env=env)
    comparisons.run_torch_script(torch_python, "tutorial_same_work.py", "--check", env=env)
    local = tutorial_path or os.environ.get(comparisons.TUTORIAL_PATH_VARIABLE)
    versions = (ready.strip().removeprefix("ready: ") + ", the tutorial's package " +
                ("from a local copy" if local else "installed"))
    return {name: (lambda script=script: last_time(comparisons.run_torch_script(torch_python, script, env=env)))
            for name, script in scripts.items()}, versions


def same_work_floor() -> dict:
    """The same work's floor on this machine: its env steps, plus its updates' matrix products alone."""
    n_updates = (SAME_WORK["n_timesteps"] - SAME_WORK["learning_starts"]) // SAME_WORK["update_interval"]
    env_step_us = update_speed.env_step_us()
    matmul_us, flops = update_speed.matmul_floor_us(update_speed.update_matmuls(64, 4, 64, 2))
    gflops, _ = update_speed.matmul_peak_gflops()
    at_peak_s = n_updates * flops / (gflops * 1e9)
    env_s = SAME_WORK["n_timesteps"] * env_step_us * 1e-6
    return dict(n_updates=n_updates, env_step_us=env_step_us, update_matmul_us=matmul_us, flops=flops,
                gflops=gflops, floor_s=env_s + at_peak_s, floor_real_shapes_s=env_s + n_updates * matmul_us * 1e-6)


def speed(repeats: int, torch_python: str | None, command: str, baseline: str | None = None,
          tutorial_path: str | None = None) -> str:
    once = [sys.executable, __file__, "--time-same-work-once"]
    systems = {"minidqn": lambda: run_timed(once, os.path.join(ROOT, "minidqn.py"))}
    if baseline:
        systems[f"baseline: {baseline}"] = lambda: run_timed(once, baseline)
    versions = ""
    if torch_python:
        timings, versions = torch_side(torch_python, tutorial_path)
        systems.update(timings)
    times = {name: [] for name in systems}
    for r in range(repeats):
        for name in round_order(systems, r):
            times[name].append(systems[name]())
        print(f"run {r + 1}/{repeats}: " + ", ".join(f"{k} {v[-1]:.2f} s" for k, v in times.items()), flush=True)
    floor = same_work_floor()
    ours = float(np.median(times["minidqn"]))
    lines = [
        results.header("Speed at the same work", command, f"{SAME_WORK}; one thread; fresh process per run; "
                       f"{repeats} runs of each, alternating" + (f"; {versions}" if versions else "")),
        "| system | wall time (median) | runs (s) | its time / minidqn's |",
        "|---|---|---|---|",
    ]
    for name, ts in times.items():
        median = float(np.median(ts))
        ratio = "" if name == "minidqn" else f"**{median / ours:.2f}x**"
        lines.append(f"| {name} | {median:.2f} s | {', '.join(f'{t:.2f}' for t in ts)} | {ratio} |")
    if baseline:  # each round's two runs were side by side: their ratio, round by round, is the steadier figure
        pairs = np.array(times["minidqn"]) / np.array(times[f"baseline: {baseline}"])
        lines += ["", f"minidqn's time / the baseline's, run by run: median **{np.median(pairs):.3f}x**, from "
                  f"{pairs.min():.2f}x to {pairs.max():.2f}x. Each run loaded its file by path, and named it back "
                  "(`--minidqn-file`)."]
    lines += [
        "",
        f"Floor on this machine: {SAME_WORK['n_timesteps']:,} env steps at {floor['env_step_us']:.1f} us, plus "
        f"{floor['n_updates']:,} updates of {floor['flops'] / 1e6:.2f} MFLOP at the core's matrix-product peak of "
        f"{floor['gflops']:.0f} GFLOPS: **{floor['floor_s']:.2f} s**; minidqn takes **{ours / floor['floor_s']:.1f}x** "
        f"that. (With each product timed at its real, smaller shape, {floor['update_matmul_us']:.1f} us per update, "
        f"the floor is {floor['floor_real_shapes_s']:.2f} s and minidqn takes "
        f"{ours / floor['floor_real_shapes_s']:.1f}x it.)",
    ]
    return "\n".join(lines)


# ---------------------------------------------------------------------------------------------------------
# The demo
# ---------------------------------------------------------------------------------------------------------


def as_flags(run_kwargs: dict) -> list:
    """run_dqn keywords as minidqn.py's command-line flags: --name value, --flag / --no-flag, "none" for None."""
    flags = []
    for name, value in run_kwargs.items():
        flag = minidqn.flags_of(name)[0]
        if isinstance(value, bool):
            flags.append(flag if value else "--no-" + flag[2:])
        else:
            flags += [flag, "none" if value is None else str(value)]
    return flags


def demo(repeats: int, command: str, baseline: str | None, run_kwargs: dict | None = None) -> str:
    """Time `python minidqn.py` (with the run flags in run_kwargs, if any) and the baseline's own demo."""
    run_kwargs = run_kwargs or {}
    config = {**update_speed.run_dqn_defaults(), **run_kwargs}
    n_updates = (config["n_timesteps"] - config["learning_starts"]) // config["update_interval"] \
        * config["gradient_steps"]
    hidden, batch = config["n_hidden_units"], config["batch_size"]
    matmul_us, flops = update_speed.matmul_floor_us(update_speed.update_matmuls(batch, 4, hidden, 2))
    arithmetic_s = n_updates * matmul_us * 1e-6
    ours_name = " ".join(["python minidqn.py"] + as_flags(run_kwargs))
    systems = {ours_name: [sys.executable, os.path.join(ROOT, "minidqn.py")] + as_flags(run_kwargs)}
    if baseline:
        systems[f"baseline: {baseline}"] = [sys.executable, baseline]
    walls = {name: [] for name in systems}
    final_lines = {}
    for r in range(repeats):
        for name in round_order(systems, r):
            start = time.perf_counter()
            out = subprocess.run(systems[name], capture_output=True, text=True, check=True).stdout
            walls[name].append(time.perf_counter() - start)
            final_lines[name] = ([line for line in out.splitlines() if "Mean episode reward" in line]
                                 or ["(no progress line: --evaluation-interval 0)"])[-1]
        print(f"run {r + 1}/{repeats}: " + ", ".join(f"{k} {v[-1]:.2f} s" for k, v in walls.items()), flush=True)
    ours = float(np.median(walls[ours_name]))
    settings = f"run_dqn's defaults, with {run_kwargs}" if run_kwargs else "run_dqn's defaults"
    lines = [
        results.header("The demo", command, f"{settings}; {repeats} runs, wall time of the whole process"
                       + ("; the baseline runs its own defaults" if baseline and run_kwargs else "")),
        "| command | wall time (median) | runs (s) | last progress line |",
        "|---|---|---|---|",
    ]
    for name, ts in walls.items():
        last_line = final_lines[name].strip().replace("|", "/")  # its bars would split the table's cells
        lines.append(f"| `{name}` | {np.median(ts):.2f} s | {', '.join(f'{t:.2f}' for t in ts)} | `{last_line}` |")
    lines += [
        "",
        f"Its arithmetic: {n_updates:,} updates x {flops / 1e6:.1f} MFLOP of matrix products ({hidden} hidden units, "
        f"batch {batch}), each product timed alone at its shape: {matmul_us:.0f} us per update, "
        f"**{arithmetic_s:.1f} s**. "
        f"`{ours_name}` takes **{ours / arithmetic_s:.2f}x** its arithmetic.",
    ]
    if baseline:
        base = float(np.median(walls[f"baseline: {baseline}"]))
        lines.append(f"\n`{ours_name}` takes {ours / base:.2f}x the baseline's time (ratio of medians).")
    return "\n".join(lines)


# ---------------------------------------------------------------------------------------------------------
# Command line
# ---------------------------------------------------------------------------------------------------------


def main(argv=None, command: str | None = None) -> int:
    """:param command: The command line to record in the results file (default: this script's own)"""
    parser = plots.build_parser(log_files=False)
    parser.description = __doc__.split("\n\n")[0]
    parser.set_defaults(seeds=16, out=None)
    parser.add_argument("--name", help="results file name, without .md (default: from the mode and env)")
    parser.add_argument("--speed", action="store_true", help="time the same-work configuration")
    parser.add_argument("--demo", action="store_true", help="time `python minidqn.py` against its arithmetic")
    parser.add_argument("--baseline", help="another minidqn.py to time alongside (e.g. an old commit's)")
    parser.add_argument("--repeats", type=int, default=5,
                        help="timed runs for --speed and --demo (default %(default)s)")
    parser.add_argument("--torch-python", help="the Python of a separate environment with PyTorch, "
                        "stable-baselines3 and the tutorial's package, to time SB3 and the tutorial side by side "
                        "(its install: benchmarks/README.md)")
    parser.add_argument("--tutorial-path", help="a local copy of the tutorial's package (the folder holding "
                        "dqn_tutorial/), where --torch-python's environment cannot install it; the same as setting "
                        f"{comparisons.TUTORIAL_PATH_VARIABLE}")
    parser.add_argument("--time-same-work-once", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--minidqn-file", help=argparse.SUPPRESS)  # the minidqn.py --time-same-work-once runs
    args = parser.parse_args(argv)
    command = command or "python benchmarks/benchmark.py " + " ".join(argv if argv is not None else sys.argv[1:])
    if args.time_same_work_once:
        path = os.path.abspath(args.minidqn_file or os.path.join(ROOT, "minidqn.py"))
        seconds = time_same_work_once(path)
        print(f"timed {path}: same work in {seconds:.3f} s")
        return 0
    if args.speed or args.demo:
        if args.repeats < 1:
            parser.error(f"--repeats must be >= 1, got {args.repeats}")
        if args.baseline and not os.path.isfile(args.baseline):
            parser.error(f"--baseline {args.baseline}: not a file (give another copy's minidqn.py)")
        if args.tutorial_path and not args.torch_python:
            parser.error("--tutorial-path is for the tutorial's timing, which needs --torch-python")
        if args.speed and not args.torch_python and not args.name:  # speed.md holds the SB3 and tutorial timings
            parser.error("--speed without --torch-python times minidqn alone, and would overwrite speed.md (the "
                         "comparison with SB3 and the tutorial): name the PyTorch environment's Python with "
                         "--torch-python (benchmarks/README.md), or give --name NAME for a minidqn-only file")
        run_kwargs = plots.typed_run_kwargs(args)
        if args.speed and run_kwargs:  # the same work is fixed (comparisons.SAME_WORK): a run flag would be ignored
            parser.error(f"--speed times the same-work settings of comparisons.SAME_WORK; run flags such as "
                         f"{minidqn.flags_of(next(iter(run_kwargs)))[0]} apply to --demo and to reliability runs")
        try:
            plots.check_run_kwargs(run_kwargs)
        except ValueError as e:
            parser.error(str(e))
        try:
            text = speed(args.repeats, args.torch_python, command, args.baseline, args.tutorial_path) \
                if args.speed else demo(args.repeats, command, args.baseline, run_kwargs)
        except (comparisons.TorchSideError, TimedRunError) as e:
            print(f"error: {e}", file=sys.stderr)
            return 2
        print("\n" + text)
        print(f"\nwrote {results.write(args.name or ('speed' if args.speed else 'demo'), text)}")
        return 0
    if args.seeds < 1:
        parser.error(f"--seeds must be >= 1, got {args.seeds}")
    try:
        run_kwargs = plots.run_kwargs_from(args)
    except ValueError as e:
        parser.error(str(e))
    out = args.out or tempfile.mkdtemp(prefix="minidqn-benchmark-")
    try:
        plots.check_out_dir(out)
    except ValueError as e:
        parser.error(str(e))
    seeds = list(range(args.first_seed, args.first_seed + args.seeds))
    print(f"{len(seeds)} seeds, {min(len(seeds), args.processes or os.cpu_count())} processes, "
          f"{os.cpu_count()} cores, logs in {out}: {run_kwargs or 'the demo configuration'}", flush=True)
    try:
        # --redraw: the report again from the logs a run left in --out, without training
        logs = plots.load_logs(out) if args.redraw else plots.train_seeds(seeds, run_kwargs, out, args.processes)
    except ValueError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(f"Interrupted: the logs so far are in {out}", file=sys.stderr)
        return 130
    text = reliability_report(logs, command, run_kwargs)
    print("\n" + text)
    env_id = logs[0]["config"]["env_id"]
    print(f"\nwrote {results.write(args.name or f'reliability-{env_id}', text)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
