"""Time Stable-Baselines3's DQN on the same work as minidqn (comparisons.SAME_WORK), in the PyTorch environment.

benchmark.py --speed runs this in a fresh process per run, alternating with minidqn and the tutorial:

    python benchmarks/benchmark.py --speed --torch-python .venv-torch/bin/python

Run alone, it prints the wall time of learn() (`--check` only imports what it needs and says "ready"):

    .venv-torch/bin/python benchmarks/sb3_same_work.py

One thread (torch.set_num_threads(1), OMP_NUM_THREADS=1), the CPU build, seed comparisons.SAME_WORK_SEED.
SB3 keeps its Huber loss and its gradient clipping (comparisons.SB3_FIXED): the work is the same, not every
detail of the algorithm.
"""

import os
import sys
import time

os.environ.setdefault("OMP_NUM_THREADS", "1")
os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")

import comparisons  # noqa: E402  (this script's folder is on sys.path when it runs)


def main(argv: list) -> int:
    torch = comparisons.require("torch", "PyTorch")
    gym = comparisons.require("gymnasium", "Gymnasium")
    DQN = comparisons.require("stable_baselines3", "Stable-Baselines3").DQN
    if argv == ["--check"]:
        print(f"ready: torch {torch.__version__}, stable-baselines3 {sys.modules['stable_baselines3'].__version__}")
        return 0
    if argv:
        raise SystemExit(f"error: unexpected arguments {argv}; the only option is --check")
    torch.set_num_threads(1)
    kwargs, n_timesteps = comparisons.sb3_same_work()
    model = DQN("MlpPolicy", gym.make(comparisons.SAME_WORK["env_id"]), **kwargs)
    start = time.perf_counter()
    model.learn(total_timesteps=n_timesteps)
    print(f"SB3 DQN, {n_timesteps} steps: {time.perf_counter() - start:.3f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
