"""forms.py: what each faster form buys over the textbook line, on the demo and on the same-work benchmark.

minidqn.py writes its steps in textbook form, and keeps a faster form only where it buys at least 3% of the
demo's or the same-work benchmark's time, with the textbook line beside it. This script swaps one form at a time
(Adam computed in place through one scratch vector; Adam without zeroing the subnormal entries of its first
moment; the replay buffer's rows gathered by indexing, the textbook form of minidqn's ndarray.take; the MSE
through np.mean, the textbook form of minidqn's dot product; the five arrays as views into one array of
records, sampled in one gather; an in-place Polyak update; be4f16d's faster forms, which the textbook lines
replaced: Adam in place with its bias corrections folded into the step, each bias gradient as a product with a
ones vector, the batch's indices as floor(U * n), one at a time and the three together; the ReLU against the
scalar 0, the textbook form of minidqn's zeros array) and times every variant in fresh processes, in
alternating order, on the demo and on the same-work configuration. Most variants compute the same weights; the
table gives each run's digest, so those that round or draw differently show. Besides each run's time it
measures the time spent inside the functions a variant replaces: on a shared machine the whole run's time moves
by more than a form's gain, the time inside those functions much less. Subnormal floats cost time only on CPUs
that compute them in microcode, so it also counts them in Adam's first moment, with and without the zeroing,
which tells on any CPU how many there are. It writes benchmarks/results/forms.md:

    python benchmarks/forms.py --repeats 7
"""

from __future__ import annotations

import argparse
import hashlib
import json
import math
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
    m *= np.abs(m) >= np.finfo(m.dtype).tiny  # subnormal moments zeroed, as minidqn.py does


def unflushed_adam_step(self, grads: dict) -> None:
    """Algorithm 1 as minidqn.py writes it, without zeroing the subnormal entries of the first moment."""
    beta1, beta2 = self.betas
    self.n_steps += 1
    t = self.n_steps
    p, g, m, v = self.params.vector, grads.vector, self.m.vector, self.v.vector
    m[:] = beta1 * m + (1 - beta1) * g
    v[:] = beta2 * v + (1 - beta2) * g**2
    v_hat = v / (1 - beta2**t)
    p -= self.lr / (1 - beta1**t) * (m / (np.sqrt(v_hat) + self.eps))


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


def mean_mse_loss(td_error):
    """The MSE through np.mean(td_error**2), the textbook form that minidqn.py gives beside its dot product."""
    return np.mean(td_error**2), 2 * td_error / len(td_error)


def indexed_sample(self, batch_size: int):
    """The same indices as minidqn's sample, each array's rows gathered by indexing (array[batch_indices]), the
    textbook form that minidqn.py gives as the comment beside its ndarray.take: the same values."""
    import minidqn

    batch_indices = self.rng.integers(0, len(self), batch_size)
    return minidqn.ReplayBufferSamples(self.observations[batch_indices], self.next_observations[batch_indices],
                                       self.actions[batch_indices], self.rewards[batch_indices],
                                       self.terminateds[batch_indices])


def folded_in_place_adam_step(self, grads: dict) -> None:
    """Adam as be4f16d computed it: in place through two scratch vectors, the bias corrections folded into the step
    size and epsilon (Kingma & Ba, the end of Section 2). The same update, rounded differently."""
    beta1, beta2 = self.betas
    self.n_steps += 1
    t = self.n_steps
    p, g, m, v = self.params.vector, grads.vector, self.m.vector, self.v.vector
    if not hasattr(self, "_scratch2"):
        self._scratch2 = (np.empty_like(p), np.empty_like(p))
    t1, t2 = self._scratch2
    step_size = self.lr * math.sqrt(1 - beta2**t) / (1 - beta1**t)
    eps_hat = self.eps * math.sqrt(1 - beta2**t)
    np.subtract(g, m, out=t1)
    t1 *= 1 - beta1
    m += t1
    np.multiply(g, g, out=t1)
    t1 -= v
    t1 *= 1 - beta2
    v += t1
    np.sqrt(v, out=t1)
    t1 += eps_hat
    np.multiply(m, step_size, out=t2)
    t2 /= t1
    p -= t2
    m *= np.abs(m) >= np.finfo(m.dtype).tiny  # subnormal moments zeroed, as minidqn.py does


def ones_product_backward(self, grad_q_values, activations):
    """minidqn's backward with each bias gradient as a product with a ones vector (be4f16d's form), not a sum over
    the batch's rows: the same sums, added in another order."""
    x, h1, h2 = activations
    p, grads = self.params, self.grads
    g = grad_q_values
    ones = np.ones(len(g), dtype=g.dtype)
    np.matmul(h2.T, g, out=grads["W3"])
    np.dot(ones, g, out=grads["b3"])
    grad_h2 = (g @ p["W3"].T) * self.activation_grad(h2)
    np.matmul(h1.T, grad_h2, out=grads["W2"])
    np.dot(ones, grad_h2, out=grads["b2"])
    grad_h1 = (grad_h2 @ p["W2"].T) * self.activation_grad(h1)
    np.matmul(x.T, grad_h1, out=grads["W1"])
    np.dot(ones, grad_h1, out=grads["b1"])
    return grads


def scalar_relu(z):
    """The ReLU as np.maximum(z, 0), the textbook form that minidqn.py gives beside its zeros array."""
    return np.maximum(z, 0)


def scaled_uniform_sample(self, batch_size: int):
    """Indices as floor(U[0, 1) * n), be4f16d's form, not rng.integers(0, n, batch_size): uniform too, but another
    draw from the generator, so every run takes other samples."""
    import minidqn

    batch_indices = (self.rng.random(batch_size) * len(self)).astype(np.intp)
    return minidqn.ReplayBufferSamples(*(a.take(batch_indices, axis=0) for a in (
        self.observations, self.next_observations, self.actions, self.rewards, self.terminateds)))


VARIANTS = {
    "minidqn.py as it is": {},
    "in-place Adam step": {"Adam.step": in_place_adam_step},
    "Adam without zeroing subnormal moments": {"Adam.step": unflushed_adam_step},
    "rows gathered by indexing (the textbook form)": {"ReplayBuffer.sample": indexed_sample},
    "the MSE through np.mean (the textbook form)": {"mse_loss": mean_mse_loss},
    "the replay buffer as records, one gather": {"ReplayBuffer.__init__": records_init,
                                                  "ReplayBuffer.sample": records_sample},
    "in-place Polyak update": {"QNetwork.polyak_update": in_place_polyak_update},
    "Adam in place, bias corrections folded (be4f16d's)": {"Adam.step": folded_in_place_adam_step},
    "bias gradients as products with a ones vector (be4f16d's)": {"QNetwork.backward": ones_product_backward},
    "indices as floor(U * n) (be4f16d's)": {"ReplayBuffer.sample": scaled_uniform_sample},
    "be4f16d's three forms together": {"Adam.step": folded_in_place_adam_step,
                                       "QNetwork.backward": ones_product_backward,
                                       "ReplayBuffer.sample": scaled_uniform_sample},
    "the ReLU against the scalar 0 (the textbook form)": {"relu": scalar_relu},
}
# The functions whose time inside a real run is measured as well: a form's gain is the change of the time spent
# inside the functions it replaces, which the whole run's time shows only through the machine's noise
TIMED = ("Adam.step", "ReplayBuffer.sample", "QNetwork.polyak_update", "mse_loss", "QNetwork.backward", "relu")


def set_function(minidqn, name: str, function) -> None:
    """Put `function` where minidqn looks `name` up (a loss is also looked up in LOSSES, an activation in
    ACTIVATIONS)."""
    if "." in name:
        cls, method = name.split(".")
        setattr(getattr(minidqn, cls), method, function)
    else:
        old = getattr(minidqn, name)
        minidqn.LOSSES.update({k: function for k, f in minidqn.LOSSES.items() if f is old})
        minidqn.ACTIVATIONS.update({k: (function, grad) for k, (f, grad) in minidqn.ACTIVATIONS.items() if f is old})
        setattr(minidqn, name, function)


def get_function(minidqn, name: str):
    cls, _, method = name.rpartition(".")
    return getattr(getattr(minidqn, cls), method) if cls else getattr(minidqn, name)


def apply_variant(minidqn, variant: str) -> None:
    """Swap in the variant's functions (each keeps the one it replaces as __wrapped__: records_init calls it)."""
    for name, function in VARIANTS[variant].items():
        function.__wrapped__ = get_function(minidqn, name)
        set_function(minidqn, name, function)


def weights_digest(q_net) -> str:
    """A short digest of a network's weights: equal digests, the same numbers to the last bit."""
    return hashlib.sha256(q_net.flat_params.tobytes()).hexdigest()[:12]


def run_once(variant: str, work: str) -> tuple:
    """One timed run in this process: (the run's seconds, {function: seconds spent inside it}, a digest of the
    final weights that play)."""
    import benchmark
    import minidqn

    apply_variant(minidqn, variant)
    inside = dict.fromkeys(TIMED, 0.0)
    for name in TIMED:
        def timed(*args, _name=name, _function=get_function(minidqn, name)):
            start = time.perf_counter()
            try:
                return _function(*args)
            finally:
                inside[_name] += time.perf_counter() - start
        set_function(minidqn, name, timed)
    kwargs = benchmark.SAME_WORK if work == "same work" else {}
    start = time.perf_counter()
    q_net = minidqn.run_dqn(seed=0 if kwargs else 1, verbose=0, **kwargs)
    seconds = time.perf_counter() - start
    return seconds, inside, weights_digest(q_net)


def count_subnormals(variant: str, work: str) -> tuple:
    """One untimed run in this process: (the mean and the largest share of subnormal entries in Adam's first
    moment after a step, a digest of the final weights that play)."""
    import benchmark
    import minidqn

    apply_variant(minidqn, variant)
    step, shares = minidqn.Adam.step, []

    def counted(self, grads):
        step(self, grads)
        m = self.m.vector
        shares.append(np.count_nonzero((m != 0) & (np.abs(m) < np.finfo(m.dtype).tiny)) / m.size)
    minidqn.Adam.step = counted
    kwargs = benchmark.SAME_WORK if work == "same work" else {}
    q_net = minidqn.run_dqn(seed=0 if kwargs else 1, verbose=0, **kwargs)
    return float(np.mean(shares)), float(np.max(shares)), weights_digest(q_net)


def main(argv=None) -> int:
    import benchmark

    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--repeats", type=int, default=3, help="runs of each variant (default %(default)s)")
    parser.add_argument("--once", nargs=2, help=argparse.SUPPRESS)  # VARIANT WORK: one timed run, in this process
    parser.add_argument("--count", nargs=2, help=argparse.SUPPRESS)  # VARIANT WORK: count subnormals, this process
    args = parser.parse_args(argv)
    if args.once:
        print(json.dumps(run_once(*args.once)))
        return 0
    if args.count:
        print(json.dumps(count_subnormals(*args.count)))
        return 0
    lines = [results.header("minidqn's forms against the alternatives", "python benchmarks/forms.py "
                            f"--repeats {args.repeats}", f"{args.repeats} runs of each variant, fresh processes, "
                            "in alternating order; run_dqn alone is timed (not Python's start-up), and inside it "
                            "the time spent in the functions a variant replaces"),
             "| work | variant | time (median) | runs (s) | vs minidqn.py | inside the functions it replaces "
             "(median) | minidqn.py's time inside them (median) | the difference, in minidqn.py's time | "
             "final weights (sha256) |",
             "|---|---|---|---|---|---|---|---|---|"]
    ours_name = next(iter(VARIANTS))
    for work in ("the demo", "same work"):
        times = {variant: [] for variant in VARIANTS}
        inside = {variant: [] for variant in VARIANTS}
        digests = {variant: set() for variant in VARIANTS}
        for r in range(args.repeats):
            for variant in benchmark.round_order(VARIANTS, r):
                out = subprocess.run([sys.executable, __file__, "--once", variant, work], capture_output=True,
                                     text=True, check=True).stdout
                seconds, spent, digest = json.loads(out.splitlines()[-1])
                times[variant].append(seconds)
                inside[variant].append(spent)
                digests[variant].add(digest)
            print(f"{work}, run {r + 1}/{args.repeats}: " + ", ".join(f"{v[-1]:.2f}" for v in times.values()),
                  flush=True)
        ours = float(np.median(times[ours_name]))
        for variant, ts in times.items():
            names = [n for n in VARIANTS[variant] if n in TIMED]
            theirs_in = float(np.median([sum(s[n] for n in names) for s in inside[variant]]))
            ours_in = float(np.median([sum(s[n] for n in names) for s in inside[ours_name]]))
            cells = (f"{theirs_in:.3f} s ({', '.join(names)}) | {ours_in:.3f} s | {(theirs_in - ours_in) / ours:+.1%}"
                     if names else " | | ")
            lines.append(f"| {work} | {variant} | {np.median(ts):.2f} s | {', '.join(f'{t:.2f}' for t in ts)} | "
                         f"{np.median(ts) / ours:.2f}x | {cells} | {', '.join(sorted(digests[variant]))} |")
    # Subnormal floats cost time only on CPUs that compute them in microcode (Intel's, for one): how many there are
    # does not depend on the CPU, so it is counted too, with the final weights' digest (equal: the same numbers)
    lines += ["", "Subnormal entries in Adam's first moment after each step (counted in separate, untimed runs):", "",
              "| work | variant | subnormal share of Adam's m, mean over the run | largest | final weights (sha256) |",
              "|---|---|---|---|---|"]
    for work in ("the demo", "same work"):
        for variant in (ours_name, "Adam without zeroing subnormal moments"):
            out = subprocess.run([sys.executable, __file__, "--count", variant, work], capture_output=True,
                                 text=True, check=True).stdout
            mean, largest, digest = json.loads(out.splitlines()[-1])
            lines.append(f"| {work} | {variant} | {mean:.1%} | {largest:.1%} | {digest} |")
    text = "\n".join(lines)
    print("\n" + text)
    print(f"\nwrote {results.write('forms', text)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
