"""Where one DQN update's time goes: each part in microseconds, next to the matrix-product floor.

    python benchmarks/update_speed.py                     # the same-work network (64 units), and 256 units
    python benchmarks/update_speed.py --demo --name update-speed-demo   # the demo's: run_dqn's defaults
    python benchmarks/update_speed.py --hidden 64 --batch 64
    python benchmarks/update_speed.py --subnormals --name subnormals   # Adam with subnormal moments

One thread (OMP_NUM_THREADS=1), medians of many repeats. The floor of an update is the time of its matrix
products alone, each timed on its own at its real shape: what the hand-written forward, backward and
Adam cannot go below in NumPy. The script also prints the core's matrix-product peak (GFLOPS) and the cost of
one env step, the two numbers the same-work floor is made of.

--subnormals times Adam's step instead, on the demo's network, with a share of the first moment's entries
subnormal (those whose gradient is 0, as a dead ReLU unit's is): Algorithm 1's lines as they are, which leave
them subnormal, against minidqn's Adam.step, which zeroes them. CPUs that compute subnormal floats in microcode
(Intel's, without flush-to-zero) pay for them; others do not, and the two columns then agree.
"""

from __future__ import annotations

import argparse
import inspect
import os
import sys
import timeit

os.environ.setdefault("OMP_NUM_THREADS", "1")
os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")
sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import gymnasium as gym  # noqa: E402
import numpy as np  # noqa: E402

import minidqn  # noqa: E402
import results  # noqa: E402


def median_us(fn, number: int = 200, repeat: int = 15) -> float:
    """Median over `repeat` rounds of the mean time of one call, in microseconds."""
    return float(np.median(timeit.repeat(fn, number=number, repeat=repeat))) / number * 1e6


def matmul_peak_gflops() -> tuple:
    """The best float32 GFLOPS over square products of a few sizes, and the size that reached it."""
    best = (0.0, 0)
    for n in (64, 128, 256, 512):
        a, b = np.ones((n, n), np.float32), np.ones((n, n), np.float32)
        out = np.empty((n, n), np.float32)
        t = median_us(lambda: np.matmul(a, b, out=out), number=max(1, 20000 // n), repeat=9)
        best = max(best, (2 * n**3 / t / 1e3, n))
    return best


def env_step_us(env_id: str = "CartPole-v1") -> float:
    """Median cost of one env.step through gym.make's wrappers, random actions, resetting at episode ends."""
    env = gym.make(env_id)
    env.reset(seed=0)
    env.action_space.seed(0)
    actions = [int(env.action_space.sample()) for _ in range(1000)]

    def run():
        for action in actions:
            _, _, terminated, truncated, _ = env.step(action)
            if terminated or truncated:
                env.reset()

    per_call = median_us(run, number=1, repeat=21) / len(actions)
    env.close()
    return per_call


def update_matmuls(batch: int, obs_dim: int, hidden: int, n_actions: int) -> list:
    """The (m, k, n) shapes of every matrix product in one update: target forward, online forward, backward."""
    forward = [(batch, obs_dim, hidden), (batch, hidden, hidden), (batch, hidden, n_actions)]
    backward = [(hidden, batch, n_actions), (batch, n_actions, hidden), (hidden, batch, hidden),
                (batch, hidden, hidden), (obs_dim, batch, hidden)]
    return forward + forward + backward


def matmul_floor_us(shapes: list) -> tuple:
    """Time each product alone (preallocated output, float32) and add them up; also return the FLOPs."""
    total, flops = 0.0, 0
    for m, k, n in shapes:
        a, b, out = np.ones((m, k), np.float32), np.ones((k, n), np.float32), np.empty((m, n), np.float32)
        total += median_us(lambda: np.matmul(a, b, out=out), number=500)
        flops += 2 * m * k * n
    return total, flops


def run_dqn_defaults() -> dict:
    """run_dqn's keyword defaults: the demo's configuration."""
    return {k: v.default for k, v in inspect.signature(minidqn.run_dqn).parameters.items()}


def profile_update(hidden: int, batch: int, tau: float) -> dict:
    """Time the parts of one update on CartPole with a buffer of random transitions."""
    env = gym.make("CartPole-v1")
    rng = np.random.default_rng(0)
    q_net = minidqn.QNetwork(env.observation_space, env.action_space, hidden, rng=rng)
    q_target_net = minidqn.QNetwork(env.observation_space, env.action_space, hidden, rng=rng)
    optimizer = minidqn.Adam(q_net.parameters(), lr=1e-3)
    buffer = minidqn.ReplayBuffer(10_000, env.observation_space, env.action_space, rng=rng)
    obs, _ = env.reset(seed=0)
    for _ in range(5000):
        obs = minidqn.collect_one_step(env, q_net, buffer, obs, 1.0, rng=rng)
    data = buffer.sample(batch)
    grads = minidqn.td_loss(q_net, q_target_net, data, 0.99)[1]
    single_obs = np.asarray(obs, np.float32)

    parts = {
        "sample a batch": lambda: buffer.sample(batch),
        "target forward (next obs)": lambda: q_target_net(data.next_observations),
        "online forward": lambda: q_net.forward(data.observations),
        "td_loss (both forwards, loss, backward)": lambda: minidqn.td_loss(q_net, q_target_net, data, 0.99),
        "Adam step": lambda: optimizer.step(grads),
        f"target update (tau {tau:g})": lambda: q_target_net.polyak_update(q_net, tau),
        "whole dqn_update": lambda: minidqn.dqn_update(q_net, q_target_net, optimizer, buffer, batch, 0.99),
        "greedy action, one observation": lambda: minidqn.epsilon_greedy_action_selection(
            q_net, single_obs, 0.0, env.action_space),
    }
    times = {name: median_us(fn) for name, fn in parts.items()}
    times["env.step (CartPole-v1, gym.make's wrappers)"] = env_step_us()
    env.close()
    return times


def report(hidden: int, batch: int, tau: float) -> str:
    times = profile_update(hidden, batch, tau)
    calls = profile_update(2, 2, tau)  # the same code on a tiny network: what its NumPy and Python calls cost
    floor, flops = matmul_floor_us(update_matmuls(batch, 4, hidden, 2))
    lines = [f"\n## {hidden} hidden units, batch {batch} (CartPole-v1: 4 inputs, 2 actions)\n",
             "| part | us (median) | the same at 2 units, batch 2: the calls alone |", "|---|---|---|"]
    lines += [f"| {name} | {t:.1f} | {calls[name]:.1f} |" for name, t in times.items()]
    lines.append(f"| floor: the update's matrix products alone ({flops / 1e6:.2f} MFLOP) | {floor:.1f} | |")
    whole, overhead = times["whole dqn_update"], calls["whole dqn_update"]
    lines.append(f"\ndqn_update takes **{whole / floor:.2f}x** its matrix products: {whole - floor:.1f} us per "
                 f"update are everything else, of which {overhead:.1f} us are the cost of its calls, whatever "
                 f"the size of the network.")
    return "\n".join(lines)


def subnormal_report(hidden: int) -> str:
    """Adam's step with 0%, 10% and 30% of the first moment subnormal, with and without minidqn's zeroing."""
    from forms import unflushed_adam_step  # Algorithm 1's lines alone: subnormal entries stay subnormal

    env = gym.make("CartPole-v1")
    lines = [f"\n## Adam's step on {hidden} hidden units\n",
             "| share of m subnormal (gradient 0 there) | Algorithm 1's lines alone, us (median) | "
             "minidqn's Adam.step, which zeroes them, us (median) | the first / the second |", "|---|---|---|---|"]
    for share in (0.0, 0.1, 0.3):
        times = []
        for step in (unflushed_adam_step, minidqn.Adam.step):
            rng = np.random.default_rng(0)
            q_net = minidqn.QNetwork(env.observation_space, env.action_space, hidden, rng=rng)
            optimizer = minidqn.Adam(q_net.parameters(), lr=1e-6)  # small steps: the weights hardly move
            g = q_net.grads.vector
            g[:] = rng.normal(0.0, 1e-2, g.size)
            dead = rng.random(g.size) < share
            g[dead] = 0.0
            optimizer.m.vector[:] = np.where(dead, np.float32(1e-40), 0.1 * g)  # 1e-40: a float32 subnormal
            optimizer.v.vector[:] = 1e-3 * g * g + 1e-8
            times.append(median_us(lambda: step(optimizer, q_net.grads), number=500))
        lines.append(f"| {share:.0%} | {times[0]:.1f} | {times[1]:.1f} | {times[0] / times[1]:.2f}x |")
    env.close()
    return "\n".join(lines)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--hidden", type=int, nargs="+", default=[64, 256], help="hidden units (default 64 256)")
    parser.add_argument("--batch", type=int, default=64, help="batch size (default %(default)s)")
    parser.add_argument("--demo", action="store_true",
                        help="time the demo's update instead: run_dqn's hidden units, batch size and tau")
    parser.add_argument("--subnormals", action="store_true",
                        help="time Adam's step with subnormal first moments instead, at the demo's width")
    parser.add_argument("--name", default="update-speed", help="results file name (default %(default)s)")
    args = parser.parse_args(argv)
    command = "python benchmarks/update_speed.py " + " ".join(argv if argv is not None else sys.argv[1:])
    if args.subnormals:
        text = results.header("Adam's step with subnormal first moments", command,
                              "one thread; medians of 15 rounds of 500 steps; lr 1e-6")
        text += subnormal_report(run_dqn_defaults()["n_hidden_units"]) + "\n"
        print(text)
        print(f"wrote {results.write(args.name, text)}")
        return 0
    if args.demo:
        defaults = run_dqn_defaults()
        configs = [(defaults["n_hidden_units"], defaults["batch_size"], defaults["tau"])]
        settings = "the demo's update: run_dqn's hidden units, batch size and soft target update"
    else:
        configs = [(hidden, args.batch, 1.0 if hidden == 64 else 0.1) for hidden in args.hidden]
        settings = "the target update is a copy (tau 1) at 64 units, a soft update (tau 0.1) otherwise"
    gflops, n = matmul_peak_gflops()
    text = results.header("Where one update's time goes", command, f"one thread; medians of 15 rounds; {settings}")
    text += f"\nMatrix-product peak of this core: **{gflops:.0f} GFLOPS** (float32, {n}x{n}x{n}).\n"
    for hidden, batch, tau in configs:
        text += report(hidden, batch, tau) + "\n"
    print(text)
    print(f"wrote {results.write(args.name, text)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
