"""How long the exercises' notebook takes, and what one BLAS thread saves where NumPy is imported first.

    python benchmarks/notebook_runs.py                 # 3 rounds; writes benchmarks/results/notebook.md
    python benchmarks/notebook_runs.py --repeats 5 --name notebook-5

Each round, side by side in fresh processes:
- the notebooks, run top to bottom (Run All) in a fresh Jupyter kernel from exercises/, as a learner runs them:
  the blank one (every check says "not started") and the solved one (every check passes, then the full demo
  trains and the agent plays); the time of each, of its check cells and of its training cell;
- the demo, `python minidqn.py`, three ways: NumPy loaded by minidqn (after its one-thread variable), NumPy
  imported first (minidqn limits BLAS with threadpoolctl), and NumPy imported first without threadpoolctl (what
  a notebook got before): wall time and CPU time (user + system) of the whole process.
The environment of every process lacks OPENBLAS_NUM_THREADS and OMP_NUM_THREADS, as a shell's usually does.
"""

from __future__ import annotations

import argparse
import datetime
import os
import subprocess
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
sys.path[:0] = [HERE, os.path.join(ROOT, "exercises")]

import numpy as np  # noqa: E402

import notebook_cells  # noqa: E402
import results  # noqa: E402

ENV = {k: v for k, v in os.environ.items() if k not in ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS")}
DEMO = {  # name -> the Python code that runs the demo
    "NumPy after minidqn": "import sys, minidqn; sys.exit(minidqn.main([]))",
    "NumPy first": "import numpy, sys, minidqn; sys.exit(minidqn.main([]))",
    "NumPy first, no threadpoolctl": "import sys; sys.modules['threadpoolctl'] = None\n"
                                     "import numpy, minidqn; sys.exit(minidqn.main([]))",
}


def seconds(cell) -> float:
    """A cell's run time, from the timestamps nbclient records."""
    timing = cell.metadata.get("execution", {})
    start, end = timing.get("iopub.execute_input"), timing.get("shell.execute_reply")
    if not (start and end):
        return 0.0
    parse = lambda stamp: datetime.datetime.fromisoformat(stamp.replace("Z", "+00:00"))  # noqa: E731
    return (parse(end) - parse(start)).total_seconds()


def run_notebook(text: str) -> dict:
    import nbformat
    from nbclient import NotebookClient

    nb = nbformat.reads(text, as_version=4)
    client = NotebookClient(nb, timeout=600, kernel_name="python3",
                            resources={"metadata": {"path": os.path.join(ROOT, "exercises")}})
    start = time.perf_counter()
    client.execute(env=ENV)
    total = time.perf_counter() - start
    code = [cell for cell in nb.cells if cell.cell_type == "code"]
    checks = [cell for cell in code if cell.source.startswith("check(")]
    training = [cell for cell in code if "run_dqn(log_path=" in cell.source]
    firsts = [cell.outputs[0]["text"].split("\n")[0] for cell in checks]
    verdicts = ["not started" if line.endswith("not started") else line.split()[-1] for line in firsts]
    return {"total": total, "checks": sum(map(seconds, checks)), "training": sum(map(seconds, training)),
            "verdicts": ", ".join(f"{verdicts.count(v)} {v}" for v in sorted(set(verdicts)))}


def run_demo(code: str) -> dict:
    before = os.times()
    start = time.perf_counter()
    result = subprocess.run([sys.executable, "-c", code], cwd=ROOT, env=ENV, capture_output=True, text=True)
    wall = time.perf_counter() - start
    after = os.times()
    if result.returncode != 0:
        raise SystemExit(f"the demo failed: {result.stderr.strip().splitlines()[-1]}")
    cpu = (after.children_user - before.children_user) + (after.children_system - before.children_system)
    return {"wall": wall, "cpu": cpu, "last": result.stdout.strip().splitlines()[-2]}


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--repeats", type=int, default=3, help="rounds (each runs everything once)")
    parser.add_argument("--name", default="notebook", help="results file: benchmarks/results/NAME.md")
    args = parser.parse_args(argv)
    if args.repeats < 1:
        parser.error(f"--repeats must be >= 1, got {args.repeats}")
    with open(os.path.join(ROOT, "minidqn.py")) as f:
        reference = f.read()
    notebooks = {"blank": notebook_cells.make_notebook(reference), "solved": notebook_cells.make_notebook(
        reference, solved=True)}
    rows = {name: [] for name in [*notebooks, *DEMO]}
    for round_ in range(1, args.repeats + 1):
        for name, text in notebooks.items():
            load = os.getloadavg()[0]
            rows[name].append({**run_notebook(text), "load": load})
            print(f"round {round_}: {name} notebook {rows[name][-1]}", flush=True)
        for name, code in DEMO.items():
            load = os.getloadavg()[0]
            rows[name].append({**run_demo(code), "load": load})
            print(f"round {round_}: demo, {name}: {rows[name][-1]}", flush=True)

    median = lambda name, key: float(np.median([row[key] for row in rows[name]]))  # noqa: E731
    lines = [results.header(
        "The exercises' notebook: run times, and one BLAS thread where NumPy is imported first",
        f"python benchmarks/notebook_runs.py --repeats {args.repeats} --name {args.name}",
        f"{args.repeats} rounds; in each, every measurement once, in fresh processes (a fresh Jupyter kernel per "
        f"notebook, run from exercises/); OPENBLAS_NUM_THREADS and OMP_NUM_THREADS unset; the machine is shared "
        f"with other work: each run's 1-minute load average as it started is in its row"),
        "## The notebooks, run top to bottom (medians)",
        "",
        "| notebook | whole run | its 12 check cells | its training cell | checks said |",
        "|---|---|---|---|---|"]
    for name in notebooks:
        lines.append(f"| {name} | {median(name, 'total'):.1f} s | {median(name, 'checks'):.1f} s | "
                     f"{median(name, 'training'):.1f} s | {rows[name][0]['verdicts']} |")
    base = median("NumPy after minidqn", "cpu")
    lines += ["", "## The demo (`minidqn.main([])`) by how NumPy was loaded (medians)", "",
              "| NumPy loaded | wall | CPU (user + system) | CPU / NumPy after minidqn's |", "|---|---|---|---|"]
    for name in DEMO:
        lines.append(f"| {name} | {median(name, 'wall'):.2f} s | {median(name, 'cpu'):.2f} s | "
                     f"{median(name, 'cpu') / base:.2f}x |")
    lines += ["", "## Every run", "", "| round | what | load | wall | CPU or checks | training | note |",
              "|---|---|---|---|---|---|---|"]
    for name in rows:
        for round_, row in enumerate(rows[name], start=1):
            if name in notebooks:
                lines.append(f"| {round_} | {name} notebook | {row['load']:.1f} | {row['total']:.2f} s | "
                             f"checks {row['checks']:.2f} s | {row['training']:.2f} s | {row['verdicts']} |")
            else:
                lines.append(f"| {round_} | demo, {name} | {row['load']:.1f} | {row['wall']:.2f} s | "
                             f"CPU {row['cpu']:.2f} s | | {row['last']} |")
    path = results.write(args.name, "\n".join(lines))
    print(f"wrote {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
