"""forms.py: what a fast form would buy over the textbook lines, on the demo and on the same-work benchmark.

minidqn.py writes every step in its textbook form: Adam's equations one per line, the tutorial's five arrays
for the replay buffer, the Polyak update as p += tau * (p_other - p). This script patches in a faster form of
each (Adam computed in place into one scratch vector; the five arrays as views into one array of records,
sampled in one gather; an in-place Polyak update; each array's rows gathered with ndarray.take; the MSE as one
dot product) and times every variant in fresh processes, in alternating order, on the demo and on the same-work
configuration. Each pair computes the same weights. A fast form goes into minidqn.py only where it buys at least
3% of either. It writes benchmarks/results/forms.md:

    python benchmarks/forms.py --repeats 3
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import time

os.environ.setdefault("OMP_NUM_THREADS", "1")
HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.dirname(HERE))
sys.path.insert(0, HERE)

import numpy as np  # noqa: E402

import results  # noqa: E402


def in_place_adam_step(self, grads: dict) -> None:
    """Algorithm 1 computed in place, into one scratch vector: no temporaries, the same numbers."""
    beta1, beta2 = self.betas
    self.n_steps += 1
    t = self.n_steps
    p, g, m, v = self.params.vector, grads.vector, self.m.vector, self.v.vector
    if not hasattr(self, "_scratch"):
        self._scratch = np.empty_like(p)
    tmp = self._scratch
    m *= beta1
    m += np.multiply(g, 1 - beta1, out=tmp)
    v *= beta2
    v += np.multiply(np.square(g, out=tmp), 1 - beta2, out=tmp)
    np.divide(v, 1 - beta2**t, out=tmp)
    np.sqrt(tmp, out=tmp)
    tmp += self.eps
    np.divide(m, tmp, out=tmp)
    tmp *= self.lr / (1 - beta1**t)
    p -= tmp


def in_place_polyak_update(self, other, tau: float) -> None:
    """p += tau * (p_other - p) through one scratch vector: no temporaries."""
    p, p_other = self.params.vector, other.params.vector
    if tau == 1.0:
        p[:] = p_other
        return
    if not hasattr(self, "_scratch"):
        self._scratch = np.empty_like(p)
    np.subtract(p_other, p, out=self._scratch)
    self._scratch *= tau
    p += self._scratch


def records_init(self, buffer_size, observation_space, action_space, rng=None) -> None:
    """The replay buffer's five arrays as views into one array of records (one record per transition)."""
    import minidqn

    minidqn.ReplayBuffer.__init__.__wrapped__(self, buffer_size, observation_space, action_space, rng)
    self.transitions = np.zeros(buffer_size, dtype=[
        ("observations", observation_space.dtype, observation_space.shape),
        ("next_observations", observation_space.dtype, observation_space.shape),
        ("actions", action_space.dtype, (1,)), ("rewards", np.float32), ("terminateds", bool)])
    for field in self.transitions.dtype.names:
        setattr(self, field, self.transitions[field])


def records_sample(self, batch_size: int):
    """The same indices as minidqn's sample, gathered as whole records."""
    import minidqn

    batch = self.transitions[self.rng.integers(0, len(self), batch_size)]
    return minidqn.ReplayBufferSamples(batch["observations"], batch["next_observations"], batch["actions"],
                                       batch["rewards"], batch["terminateds"])


def dot_mse_loss(td_error):
    """mean(td_error^2) as one dot product, (d . d) / n: the same gradient, the loss to float rounding."""
    return td_error @ td_error / len(td_error), 2 * td_error / len(td_error)


def take_sample(self, batch_size: int):
    """The same indices as minidqn's sample, each array's rows gathered with ndarray.take: the same values."""
    import minidqn

    batch_indices = self.rng.integers(0, len(self), batch_size)
    return minidqn.ReplayBufferSamples(*(array.take(batch_indices, axis=0) for array in (
        self.observations, self.next_observations, self.actions, self.rewards, self.terminateds)))


VARIANTS = {
    "minidqn.py as it is (every form textbook)": {},
    "in-place Adam step": {"Adam.step": in_place_adam_step},
    "rows gathered with take": {"ReplayBuffer.sample": take_sample},
    "the MSE as a dot product": {"mse_loss": dot_mse_loss},
    "all three": {"Adam.step": in_place_adam_step, "ReplayBuffer.sample": take_sample, "mse_loss": dot_mse_loss},
    "the replay buffer as records, one gather": {"ReplayBuffer.__init__": records_init,
                                                  "ReplayBuffer.sample": records_sample},
    "in-place Polyak update": {"QNetwork.polyak_update": in_place_polyak_update},
}


def run_once(variant: str, work: str) -> float:
    import benchmark
    import minidqn

    for name, function in VARIANTS[variant].items():
        if "." not in name:  # a module-level function: a loss is also looked up in LOSSES
            setattr(minidqn, name, function)
            minidqn.LOSSES.update({k: function for k, f in minidqn.LOSSES.items() if f.__name__ == name})
            continue
        cls, method = name.split(".")
        original = getattr(getattr(minidqn, cls), method)
        function.__wrapped__ = original  # records_init calls the original constructor first
        setattr(getattr(minidqn, cls), method, function)
    kwargs = benchmark.SAME_WORK if work == "same work" else {}
    start = time.perf_counter()
    minidqn.run_dqn(seed=0 if kwargs else 1, verbose=0, **kwargs)
    return time.perf_counter() - start


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--repeats", type=int, default=3, help="runs of each variant (default %(default)s)")
    parser.add_argument("--once", nargs=2, help=argparse.SUPPRESS)  # VARIANT WORK: one timed run, in this process
    args = parser.parse_args(argv)
    if args.once:
        print(f"{run_once(*args.once):.3f} s")
        return 0
    lines = [results.header("minidqn's textbook forms against faster forms", "python benchmarks/forms.py "
                            f"--repeats {args.repeats}", f"{args.repeats} runs of each variant, fresh processes, "
                            "alternating; run_dqn alone is timed (not Python's start-up)"),
             "| work | variant | time (median) | runs (s) | vs minidqn.py |", "|---|---|---|---|---|"]
    for work in ("the demo", "same work"):
        times = {variant: [] for variant in VARIANTS}
        for r in range(args.repeats):
            for variant in (list(VARIANTS) if r % 2 == 0 else list(VARIANTS)[::-1]):  # alternating order
                out = subprocess.run([sys.executable, __file__, "--once", variant, work], capture_output=True,
                                     text=True, check=True).stdout
                times[variant].append(float(out.split()[-2]))
            print(f"{work}, run {r + 1}/{args.repeats}: " + ", ".join(f"{v[-1]:.2f}" for v in times.values()),
                  flush=True)
        ours = float(np.median(times[next(iter(VARIANTS))]))
        for variant, ts in times.items():
            lines.append(f"| {work} | {variant} | {np.median(ts):.2f} s | {', '.join(f'{t:.2f}' for t in ts)} | "
                         f"{np.median(ts) / ours:.2f}x |")
    text = "\n".join(lines)
    print("\n" + text)
    print(f"\nwrote {results.write('forms', text)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
