"""Train Stable-Baselines3's DQN with an RL Zoo row (comparisons.ZOO_ROWS) on given seeds, then play each seed's
final weights greedily, in the PyTorch environment. sb3_zoo.py runs it, one process per seed, and writes the
results file; run alone (`--check` only imports what it needs and says "ready"):

    .venv-torch/bin/python benchmarks/sb3_zoo_row.py MountainCar-v0 0 1 2 3 [--episodes 100]

Prints one line per seed: the mean greedy return over the episodes, the training episodes that ended by
termination (on MountainCar: reaching the flag), and the seconds spent training. Each evaluation episode starts
from its own reset seed, 10000 (seed + 1) + episode, never a training seed (the rule of every SB3 zoo figure
this project quotes). LunarLander-v3 needs `box2d` in the PyTorch environment.
"""

import argparse
import os
import sys
import time

os.environ.setdefault("OMP_NUM_THREADS", "1")
os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")

import comparisons  # noqa: E402  (this script's folder is on sys.path when it runs)


def evaluation_seed(seed: int, episode: int) -> int:
    return 10_000 * (seed + 1) + episode


def train_and_play(env_id: str, seed: int, episodes: int) -> str:
    torch, gym, np = (sys.modules[name] for name in ("torch", "gymnasium", "numpy"))
    from stable_baselines3 import DQN
    from stable_baselines3.common.callbacks import BaseCallback

    class CountTerminations(BaseCallback):
        """Training episodes that ended by termination, not by the time limit."""

        def __init__(self):
            super().__init__()
            self.terminations = 0

        def _on_step(self) -> bool:
            infos, dones = self.locals["infos"], self.locals["dones"]
            self.terminations += sum(bool(d) and not i.get("TimeLimit.truncated", False)
                                     for d, i in zip(dones, infos))
            return True

    torch.set_num_threads(1)
    row = dict(comparisons.ZOO_ROWS[env_id])
    n_timesteps, net = row.pop("n_timesteps"), row.pop("net")
    start = time.perf_counter()
    model = DQN("MlpPolicy", gym.make(env_id), policy_kwargs=dict(net_arch=net), seed=seed, device="cpu", **row)
    counter = CountTerminations()
    model.learn(total_timesteps=n_timesteps, callback=counter)
    seconds = time.perf_counter() - start
    env = gym.make(env_id)
    returns = []
    for episode in range(episodes):
        obs, _ = env.reset(seed=evaluation_seed(seed, episode))
        done, total = False, 0.0
        while not done:
            action, _ = model.predict(obs, deterministic=True)
            obs, reward, terminated, truncated, _ = env.step(int(action))
            total += float(reward)
            done = terminated or truncated
        returns.append(total)
    return (f"{env_id} seed {seed}: greedy mean {np.mean(returns):.1f} over {episodes} episodes; "
            f"{counter.terminations} training episodes terminated; {seconds:.0f} s")


def main(argv: list) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("env_id", nargs="?", help=f"one of {', '.join(comparisons.ZOO_ROWS)}")
    parser.add_argument("seeds", type=int, nargs="*", default=[0])
    parser.add_argument("--episodes", type=int, default=100, help="greedy episodes per seed (default %(default)s)")
    parser.add_argument("--check", action="store_true", help="import what is needed, train nothing")
    args = parser.parse_args(argv)
    if args.env_id is not None and args.env_id not in comparisons.ZOO_ROWS:
        parser.error(f"no zoo row for {args.env_id!r}; rows: {', '.join(comparisons.ZOO_ROWS)}")
    if args.episodes < 1:
        parser.error(f"--episodes must be >= 1, got {args.episodes}")
    torch = comparisons.require("torch", "PyTorch")
    comparisons.require("numpy", "NumPy")
    gym = comparisons.require("gymnasium", "Gymnasium")
    sb3 = comparisons.require("stable_baselines3", "Stable-Baselines3")
    if args.env_id is not None:
        try:
            gym.make(args.env_id).close()
        except Exception as e:  # LunarLander without Box2D: gymnasium says which extra to install
            raise SystemExit(f"error: {args.env_id} cannot be made in {sys.executable}: {e}") from None
    if args.check:
        print(f"ready: torch {torch.__version__}, stable-baselines3 {sb3.__version__}")
        return 0
    if args.env_id is None:
        parser.error("name the env id")
    for seed in args.seeds:
        print(train_and_play(args.env_id, seed, args.episodes), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
