"""Time the RLSS 2023 tutorial's own PyTorch DQN (its run_dqn, hence its dqn_update and its loop, unchanged) on
the same work as minidqn (comparisons.SAME_WORK), in the PyTorch environment.

benchmark.py --speed runs this in a fresh process per run, alternating with minidqn and SB3:

    python benchmarks/benchmark.py --speed --torch-python .venv-torch/bin/python [--tutorial-path DIR]

The tutorial's package is the one installed as its notebook installs it (comparisons.TUTORIAL_INSTALL), or the
local copy that DQN_TUTORIAL_PATH names (benchmark.py's --tutorial-path sets it). Run alone, it prints the wall
time of the tutorial's run_dqn; `--check` only imports it and says "ready":

    DQN_TUTORIAL_PATH=DIR .venv-torch/bin/python benchmarks/tutorial_same_work.py

One thread (torch.set_num_threads(1), OMP_NUM_THREADS=1); the tutorial's evaluation falls after the end of the
run, so the time is training alone; its line per episode is swallowed.
"""

import contextlib
import io
import os
import sys
import time

os.environ.setdefault("OMP_NUM_THREADS", "1")
os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")

import comparisons  # noqa: E402  (this script's folder is on sys.path when it runs)


def main(argv: list) -> int:
    torch = comparisons.require("torch", "PyTorch")
    comparisons.require("gymnasium", "Gymnasium")
    run_dqn = comparisons.import_tutorial_run_dqn()
    if argv == ["--check"]:
        print(f"ready: torch {torch.__version__}, the tutorial's package from "
              f"{os.path.dirname(list(sys.modules['dqn_tutorial'].__path__)[0])}")
        return 0
    if argv:
        raise SystemExit(f"error: unexpected arguments {argv}; the only option is --check")
    torch.set_num_threads(1)
    kwargs = comparisons.tutorial_same_work()
    start = time.perf_counter()
    with contextlib.redirect_stdout(io.StringIO()):  # the tutorial prints a line per episode
        run_dqn(**kwargs)
    print(f"RLSS tutorial DQN, {kwargs['n_timesteps']} steps: {time.perf_counter() - start:.3f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
