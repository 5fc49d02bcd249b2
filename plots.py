"""plots.py: pictures of minidqn learning, over several seeds trained in parallel.

    python plots.py                          # the demo configuration, 8 seeds, figures in runs/plots/
    python plots.py --seeds 16 --out DIR     # more seeds, another folder
    python plots.py --n-timesteps 20000      # any run_dqn flag passes through
                                             # (the runs evaluate 25 times, unless --evaluation-interval is given)
    python plots.py --redraw --out DIR       # redraw from the logs in DIR, without training again
    python plots.py LOG.npz [LOG.npz ...]    # draw the logs of `python minidqn.py --log-path LOG.npz` runs

Figures (PNG, plus a GIF):
    learning_curve.png  greedy evaluation return over env steps: median, interquartile band, each seed faintly
    diagnostics.png     training returns, epsilon, TD loss (log scale) and mean Q over env steps
    q_values.png        (CartPole) the greedy action and max Q over pole angle and angular velocity
    agent.gif           the trained agent playing one greedy episode

Each seed writes `seed<N>_log.npz` (what run_dqn records, plus the final 100-episode greedy evaluation) and
`seed<N>_q.npz` (the final network) into the output folder. Any log can be drawn, finished or interrupted: the
learning curve needs periodic evaluations, q_values.png and agent.gif the saved network (--save), the counts of
seeds solved the final evaluation that only plots.py's own training adds; what a log lacks is skipped, and said.
"""

from __future__ import annotations

import argparse
import inspect
import json
import math
import multiprocessing
import os
import re
import signal
import sys
import time
import warnings

os.environ.setdefault("OMP_NUM_THREADS", "1")  # one thread per process: the seeds are the parallelism
os.environ.setdefault("SDL_VIDEODRIVER", "dummy")  # render frames off screen, no display needed

import matplotlib  # noqa: E402

matplotlib.use("Agg")  # files only, no screen needed
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
from matplotlib import animation  # noqa: E402

import minidqn  # noqa: E402

N_FINAL_EPISODES = 100  # greedy episodes of the final weights: what "solved" is judged on
FINAL_EVAL_SEED_OFFSET = 10_000  # the final evaluation env is seeded with seed + this, never a training seed
DEFAULT_SEEDS = 8
# plots.py's own runs evaluate this many times over the run, unless --evaluation-interval says otherwise: a curve
# needs more points than the demo's progress lines give, and evaluations change nothing in training
CURVE_POINTS = 25


# ---------------------------------------------------------------------------------------------------------
# Training several seeds in parallel
# ---------------------------------------------------------------------------------------------------------


def log_path(out_dir: str, seed: int) -> str:
    return os.path.join(out_dir, f"seed{seed}_log.npz")


def model_path(out_dir: str, seed: int) -> str:
    return os.path.join(out_dir, f"seed{seed}_q.npz")


def train_one(seed: int, run_kwargs: dict, out_dir: str) -> dict:
    """Train one seed, then evaluate its final weights greedily; the log gets the final returns added."""
    start = time.perf_counter()
    q_net = minidqn.run_dqn(seed=seed, log_path=log_path(out_dir, seed), save_path=model_path(out_dir, seed),
                            verbose=0, **run_kwargs)
    train_seconds = time.perf_counter() - start
    env = minidqn.make_env(run_kwargs.get("env_id", "CartPole-v1"))
    env.reset(seed=seed + FINAL_EVAL_SEED_OFFSET)
    final_returns = [minidqn.evaluate_policy(env, q_net, 1, verbose=0)[0] for _ in range(N_FINAL_EPISODES)]
    env.close()
    with np.load(log_path(out_dir, seed), allow_pickle=False) as data:
        log = dict(data)
    log.update(final_returns=np.array(final_returns), train_seconds=np.array(train_seconds), seed=np.array(seed))
    minidqn.atomic_savez(log_path(out_dir, seed), log)
    return load_log(log_path(out_dir, seed))


_stop = None  # set in each worker: a multiprocessing.Event that says "Ctrl-C was pressed, start nothing new"


def _init_worker(stop) -> None:
    global _stop
    _stop = stop
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # an idle worker ignores Ctrl-C; a training one reacts


def _train_one_star(args) -> dict | None:
    """Pool task: train one seed; after Ctrl-C return None once run_dqn has saved what it learned."""
    if _stop.is_set():
        return None
    signal.signal(signal.SIGINT, signal.default_int_handler)
    try:
        return train_one(*args)
    except KeyboardInterrupt:
        return None
    finally:
        signal.signal(signal.SIGINT, signal.SIG_IGN)


def train_seeds(seeds, run_kwargs: dict, out_dir: str, processes: int | None = None, verbose: int = 1) -> list:
    """Train every seed, one process per core, and return their logs in seed order.

    On Ctrl-C the seeds in training save their network and log (run_dqn does), the others never start, and
    KeyboardInterrupt is raised once every worker is done writing.
    """
    os.makedirs(out_dir, exist_ok=True)
    processes = min(len(seeds), processes or os.cpu_count() or 1)
    logs = []
    stop = multiprocessing.Event()
    pool = multiprocessing.Pool(processes, initializer=_init_worker, initargs=(stop,))
    try:
        for log in pool.imap_unordered(_train_one_star, [(s, run_kwargs, out_dir) for s in seeds]):
            if log is None:
                continue
            logs.append(log)
            if verbose:
                print(f"seed {log['seed']:>3}: final {N_FINAL_EPISODES}-episode greedy mean "
                      f"{log['final_mean']:7.1f} +/- {log['final_std']:5.1f}  "
                      f"({log['train_seconds']:.1f} s training)", flush=True)
    except KeyboardInterrupt:
        stop.set()
        pool.close()
        pool.join()  # let the interrupted seeds finish saving
        raise
    pool.close()
    pool.join()
    return sorted(logs, key=lambda log: log["seed"])


def load_log(path: str) -> dict:
    """Read one log back (run_dqn's `log_path`): the arrays it recorded, its config, and, when plots.py trained
    it to the end, the final evaluation (final_returns, final_mean, final_std)."""
    what = "a training log (minidqn.py --log-path, or plots.py's seed<N>_log.npz)"
    try:
        with np.load(path, allow_pickle=False) as data:
            log = {k: data[k] for k in data.files}
    except FileNotFoundError:
        raise ValueError(f"no such log: {path}") from None
    except Exception as e:  # not an .npz at all
        raise ValueError(f"{path} is not {what}: NumPy cannot read it as an .npz") from e
    if "config" not in log:
        kind = "a network saved with --save" if "minidqn_meta" in log else f"arrays {sorted(log)}"
        raise ValueError(f"{path} is not {what}: it holds {kind}")
    log["config"] = json.loads(str(log["config"]))
    log["path"] = path
    log["seed"] = int(log.get("seed", log["config"]["seed"]))
    if "final_returns" in log:
        log["train_seconds"] = float(log["train_seconds"])
        log["final_mean"] = float(np.mean(log["final_returns"]))
        log["final_std"] = float(np.std(log["final_returns"]))
    return log


def load_logs(out_dir: str) -> list:
    """Every seed log in a folder plots.py trained into, finished or interrupted, in seed order."""
    names = sorted((n for n in os.listdir(out_dir) if re.fullmatch(r"seed\d+_log\.npz", n)),
                   key=lambda n: int(n[len("seed"):-len("_log.npz")]))
    if not names:
        raise ValueError(f"no seed logs (seed<N>_log.npz) in {out_dir}: train first, without --redraw")
    return [load_log(os.path.join(out_dir, n)) for n in names]


def network_path(log: dict) -> str | None:
    """Where the network of a log's run was saved, if it still is: plots.py's seed<N>_q.npz beside the log, or
    the run's save_path (as given, or beside the log)."""
    folder = os.path.dirname(log["path"])
    saved = log["config"].get("save_path")
    candidates = [model_path(folder, log["seed"])] if "final_returns" in log else []
    if saved:
        candidates += [saved, os.path.join(folder, os.path.basename(saved))]
    return next((path for path in candidates if os.path.isfile(path)), None)


def reward_threshold(env_id: str) -> float | None:
    """Gymnasium's threshold for "solved", or None (FlappyBird has none)."""
    return _spec(env_id).reward_threshold


def time_limit(env_id: str) -> int | None:
    """The env's episode time limit in steps (gym.make's TimeLimit), or None."""
    return _spec(env_id).max_episode_steps


def _spec(env_id: str):
    env = minidqn.make_env(env_id)  # registers envs from optional packages, applies ENV_KWARGS
    spec = env.spec
    env.close()
    return spec


# ---------------------------------------------------------------------------------------------------------
# Figures
# ---------------------------------------------------------------------------------------------------------

plt.rcParams.update({"font.size": 11, "axes.grid": True, "grid.alpha": 0.3, "figure.dpi": 100})


def binned(steps: np.ndarray, values: np.ndarray, edges: np.ndarray) -> np.ndarray:
    """Mean of `values` in each step bin (NaN where a bin is empty): puts every seed on one grid."""
    which = np.digitize(steps, edges) - 1
    sums = np.bincount(which, weights=values, minlength=len(edges))[: len(edges) - 1]
    counts = np.bincount(which, minlength=len(edges))[: len(edges) - 1]
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(counts > 0, sums / np.maximum(counts, 1), np.nan)


def band(ax, x, per_seed: np.ndarray, color: str, label: str) -> None:
    """Median line and interquartile band over seeds (rows of `per_seed`)."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # all-NaN columns (no data in a bin yet) stay NaN
        q25, q50, q75 = np.nanpercentile(per_seed, [25, 50, 75], axis=0)
    ax.fill_between(x, q25, q75, color=color, alpha=0.25, linewidth=0, label="interquartile range")
    ax.plot(x, q50, color=color, linewidth=2, label=label, marker="o" if len(x) < 3 else None)  # a lone point shows


def count_seeds(logs: list) -> str:
    return f"{len(logs)} seed{'s' * (len(logs) != 1)}"


def solved_count(logs: list, threshold: float | None) -> int:
    return sum(threshold is not None and log.get("final_mean", -math.inf) >= threshold for log in logs)


def final_note(logs: list, threshold: float | None) -> str:
    """How many seeds solved, counted on the final evaluation of the logs that have one."""
    judged = [log for log in logs if "final_mean" in log]
    if threshold is None or not judged:
        return ""
    of = "" if len(judged) == len(logs) else f" of the {len(judged)} trained to the end"
    return f", {solved_count(judged, threshold)}{of} solved (final {N_FINAL_EPISODES}-episode mean >= {threshold:g})"


def missing_evaluations(logs: list) -> str | None:
    """Why the logs hold no periodic evaluation (the learning curve needs them), or None when they do."""
    if any(len(log["eval_steps"]) for log in logs):
        return None
    config = logs[0]["config"]
    if config["evaluation_interval"] == 0:
        return "the logged runs had evaluation_interval=0 (none)"
    # a run evaluates after its last step too, so only an interrupted run (or an older version's log) gets here
    return (f"the logged runs ended before their first one (evaluation_interval="
            f"{config['evaluation_interval']}, n_timesteps={config['n_timesteps']})")


def eval_curves(logs: list) -> tuple:
    """The periodic evaluations of every seed on one grid: (env steps, (n_seeds, n_evals) greedy returns), NaN
    where a seed (interrupted, say) has no evaluation."""
    longest = max(logs, key=lambda log: len(log["eval_steps"]))["eval_steps"]
    if len(longest) == 0:
        raise ValueError(f"no learning curve: {missing_evaluations(logs)}")
    curves = np.full((len(logs), len(longest)), np.nan)
    for row, log in zip(curves, logs):
        row[: len(log["eval_means"])] = log["eval_means"]
    return longest, curves


def plot_learning_curve(logs: list, path: str) -> None:
    config = logs[0]["config"]
    threshold = reward_threshold(config["env_id"])
    fig, ax = plt.subplots(figsize=(8, 4.8))
    for log in logs:
        ax.plot(log["eval_steps"], log["eval_means"], color="tab:blue", alpha=0.2, linewidth=1)
    band(ax, *eval_curves(logs), "tab:blue", f"median of {count_seeds(logs)}")
    if threshold is not None:
        ax.axhline(threshold, color="tab:red", linestyle="--", label=f"reward_threshold = {threshold:g}")
    ax.plot([], [], color="tab:blue", alpha=0.3, label="each seed")
    title = f"{config['env_id']}: {count_seeds(logs)}{final_note(logs, threshold)}"
    ax.set(title=title, xlabel="env steps",
           ylabel=f"greedy return (mean of {config['n_eval_episodes']} episodes)")
    ax.legend(loc="lower right", fontsize=9)
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)


def plot_diagnostics(logs: list, path: str) -> None:
    config = logs[0]["config"]
    edges = np.linspace(0, config["n_timesteps"], 101)
    centers = (edges[:-1] + edges[1:]) / 2
    fig, axes = plt.subplots(2, 2, figsize=(11, 7), sharex=True)
    panels = [
        (axes[0, 0], "episode_steps", "episode_returns", "training episode return", "tab:blue"),
        (axes[0, 1], "episode_steps", "episode_epsilons", "epsilon (exploration rate)", "tab:green"),
        (axes[1, 0], "update_steps", "losses", f"TD loss ({config['loss_fn']}, log scale)", "tab:orange"),
        (axes[1, 1], "update_steps", "mean_qs", "mean Q(s, a) of the sampled batch", "tab:purple"),
    ]
    for ax, step_key, value_key, ylabel, color in panels:
        if step_key == "episode_steps":  # episodes end rarely once they last 500 steps: interpolate, no gaps
            per_seed = np.array([np.interp(centers, log[step_key], log[value_key], left=np.nan, right=np.nan)
                                 if len(log[step_key]) else np.full_like(centers, np.nan) for log in logs])
        else:  # an update every few steps: average each bin
            per_seed = np.array([binned(log[step_key], log[value_key], edges) for log in logs])
        for row in per_seed:
            ax.plot(centers, row, color=color, alpha=0.15, linewidth=1)
        band(ax, centers, per_seed, color, f"median of {count_seeds(logs)}")
        ax.set_ylabel(ylabel)
    axes[1, 0].set_yscale("log")
    if config["env_id"].startswith("CartPole"):  # reward 1 per step: Q can never exceed 1 / (1 - gamma)
        ceiling = 1 / (1 - config["gamma"])
        axes[1, 1].axhline(ceiling, color="tab:red", linestyle="--",
                           label=f"largest true Q with rewards of 1: 1 / (1 - gamma) = {ceiling:g}")
    for ax in axes[1]:
        ax.set_xlabel("env steps")
    axes[1, 1].legend(loc="best", fontsize=9)
    axes[0, 0].legend(loc="upper left", fontsize=9)
    fig.suptitle(f"{config['env_id']}: training diagnostics over {count_seeds(logs)} (100 bins of env steps)")
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)


# What each ingredient buys: the demo's settings, and one ingredient changed at a time (docs/results.md,
# "What each ingredient buys"), at the demo's own width unless --n-hidden-units says otherwise.
ABLATIONS = {
    "the demo's settings": {},
    "no target network (the tutorial's first loop)": dict(target_network_update_interval=1),
    "the tutorial's hard copy every 10 steps": dict(target_network_update_interval=10),
    "no replay to speak of (a buffer of one batch)": dict(
        replay_buffer_size=inspect.signature(minidqn.run_dqn).parameters["batch_size"].default),
    "Huber loss instead of MSE": dict(loss_fn="huber"),
    "Double DQN": dict(double_dqn=True),
    "the online weights play (no weight averaging)": dict(weight_averaging_rate=None),
    "raw observations (no input scaling)": dict(scale_observations=False),
}


def train_ablation(seeds, base_kwargs: dict, out_dir: str, processes: int | None = None) -> dict:
    """Train every variant of ABLATIONS on the same seeds, each into its own subfolder; return their logs."""
    logs = {}
    for i, (name, change) in enumerate(ABLATIONS.items()):
        print(f"{name}: {change or 'as the demo'}", flush=True)
        logs[name] = train_seeds(seeds, {**base_kwargs, **change}, os.path.join(out_dir, f"variant{i}"), processes,
                                 verbose=0)
    return logs


def load_ablation(out_dir: str) -> dict:
    return {name: load_logs(os.path.join(out_dir, f"variant{i}")) for i, name in enumerate(ABLATIONS)}


def plot_ablation(logs_by_variant: dict, path: str) -> None:
    """One panel per variant: its median and interquartile band, the demo's median in grey for reference."""
    names = list(logs_by_variant)
    reference = logs_by_variant[names[0]]
    config = reference[0]["config"]
    threshold = reward_threshold(config["env_id"])
    n_cols = 4
    n_rows = math.ceil(len(names) / n_cols)
    fig, axes = plt.subplots(n_rows, n_cols, figsize=(4 * n_cols, 3.4 * n_rows), sharex=True, sharey=True)
    axes = axes.ravel()
    ref_x, ref_y = eval_curves(reference)
    for ax, name in zip(axes, names):
        logs = logs_by_variant[name]
        if name != names[0]:
            ax.plot(ref_x, np.nanmedian(ref_y, axis=0), color="gray", linewidth=1.5, label="the demo's median")
        band(ax, *eval_curves(logs), "tab:blue", "median over the seeds")
        if threshold is not None:
            ax.axhline(threshold, color="tab:red", linestyle="--", linewidth=1, label=f"threshold {threshold:g}")
        solved = solved_count(logs, threshold)
        ax.set_title(f"{name}\nfinal weights: {solved} / {len(logs)} solved", fontsize=10)
    # One legend, below the panels where it covers no curve: every panel draws the same things
    fig.legend(*axes[1].get_legend_handles_labels(), loc="lower center", ncol=4, fontsize=9)
    for ax in axes[len(names):]:
        ax.axis("off")
    for ax in axes[-n_cols:]:
        ax.set_xlabel("env steps")
    for ax in axes[::n_cols]:
        ax.set_ylabel("greedy return")
    fig.suptitle(f"{config['env_id']}, {config['n_hidden_units']} hidden units: one ingredient changed at a time "
                 f"(solved: final {N_FINAL_EPISODES}-episode greedy mean >= {threshold:g})")
    fig.tight_layout(rect=(0, 0.05, 1, 1))  # room for the legend
    fig.savefig(path)
    plt.close(fig)


def representative_seed(logs: list) -> tuple:
    """The seed whose score is the median (what a typical run learns, not the luckiest one), among the logs
    whose network was saved: (its log, the score's name, the score), or (None, "", nan) if none was."""
    logs = [log for log in logs if network_path(log) is not None]
    if not logs:
        return None, "", math.nan
    if all("final_mean" in log for log in logs):
        what, score = "median final score", lambda log: log["final_mean"]
    else:  # runs of minidqn.py, or interrupted: judged on their last periodic evaluation
        what, score = "median last evaluation", lambda log: (log["eval_means"][-1] if len(log["eval_means"])
                                                             else -math.inf)
    ordered = sorted(logs, key=score)
    chosen = ordered[(len(ordered) - 1) // 2]
    return chosen, what, score(chosen)


def plot_q_values(q_net: minidqn.QNetwork, path: str, title: str) -> None:
    """CartPole: greedy action and max Q over pole angle and angular velocity, cart at rest in the middle."""
    angles = np.linspace(-0.21, 0.21, 121)  # the episode ends beyond +/- 12 degrees = 0.21 rad
    velocities = np.linspace(-2.0, 2.0, 121)  # rad/s
    theta, omega = np.meshgrid(angles, velocities)
    obs = np.stack([np.zeros_like(theta), np.zeros_like(theta), theta, omega], axis=-1).reshape(-1, 4)
    q_values = q_net(obs.astype(np.float32))  # (121 * 121, 2)
    greedy = q_values.argmax(axis=1).reshape(theta.shape)
    max_q = q_values.max(axis=1).reshape(theta.shape)
    extent = [angles[0], angles[-1], velocities[0], velocities[-1]]
    fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(11, 4.5))
    cmap = matplotlib.colors.ListedColormap(["tab:orange", "tab:blue"])
    ax1.imshow(greedy, origin="lower", extent=extent, aspect="auto", cmap=cmap, vmin=0, vmax=1)
    ax1.legend(handles=[matplotlib.patches.Patch(color="tab:orange", label="0: push left"),
                        matplotlib.patches.Patch(color="tab:blue", label="1: push right")], loc="upper right")
    ax1.set_title("greedy action")
    image = ax2.imshow(max_q, origin="lower", extent=extent, aspect="auto", cmap="viridis")
    fig.colorbar(image, ax=ax2, label="max_a Q(s, a)")
    ax2.set_title("max Q")
    for ax in (ax1, ax2):
        ax.set(xlabel="pole angle (rad)", ylabel="pole angular velocity (rad/s)")
        ax.grid(False)
    fig.suptitle(title)
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)


def make_gif(q_net: minidqn.QNetwork, env_id: str, path: str, seed: int, every: int = 5, max_frames: int = 100,
             width_inches: float = 4.0) -> int:
    """Play one greedy episode, keep every `every`-th frame (at most `max_frames`), write an animated GIF."""
    env = minidqn.make_env(env_id, render_mode="rgb_array")
    obs, _ = env.reset(seed=seed)
    frames, total, step, done = [], 0.0, 0, False
    while not done:
        if step % every == 0 and len(frames) < max_frames:
            frames.append((env.render(), step, total))
        action = minidqn.epsilon_greedy_action_selection(q_net, obs, 0.0, env.action_space)
        obs, reward, terminated, truncated, _ = env.step(action)
        total += float(reward)
        step += 1
        done = terminated or truncated
    frames.append((env.render(), step, total))  # always show how it ended
    env.close()
    height, width = frames[0][0].shape[:2]
    fig = plt.figure(figsize=(width_inches, width_inches * height / width), dpi=75)
    ax = fig.add_axes([0, 0, 1, 1])
    ax.axis("off")
    image = ax.imshow(frames[0][0])
    label = ax.text(0.02, 0.95, "", transform=ax.transAxes, fontsize=10, va="top")

    def draw(i):
        frame, frame_step, frame_return = frames[i]
        image.set_data(frame)
        label.set_text(f"{env_id}  step {frame_step}  return {frame_return:g}")
        return image, label

    movie = animation.FuncAnimation(fig, draw, frames=len(frames), blit=True)
    movie.save(path, writer=animation.PillowWriter(fps=20))  # every 5th of 50 steps/s: twice real time
    plt.close(fig)
    return len(frames)


def draw_all(logs: list, out_dir: str, gif: bool = True) -> tuple:
    """Write every figure these logs can give into out_dir: (the paths written, a line for each one skipped that
    says what it needs)."""
    config = logs[0]["config"]
    env_ids = sorted({log["config"]["env_id"] for log in logs})
    if len(env_ids) > 1:
        raise ValueError(f"the logs come from different envs ({', '.join(env_ids)}): draw each env's logs apart")
    paths, skipped = [], []
    no_evaluations = missing_evaluations(logs)
    if no_evaluations is None:
        paths.append(os.path.join(out_dir, "learning_curve.png"))
        plot_learning_curve(logs, paths[-1])
    else:
        skipped.append(f"learning_curve.png: it needs periodic evaluations, and {no_evaluations}")
    paths.append(os.path.join(out_dir, "diagnostics.png"))
    plot_diagnostics(logs, paths[-1])
    chosen, what, score = representative_seed(logs)
    wanted = (["q_values.png"] if config["env_id"].startswith("CartPole") else []) + (["agent.gif"] if gif else [])
    if "q_values.png" not in wanted:
        skipped.append(f"q_values.png: it draws CartPole's pole angle and angular velocity, and the logs are "
                       f"{config['env_id']}'s")
    if chosen is None:
        skipped += [f"{name}: it needs the trained network, and no log's run saved one (train with --save)"
                    for name in wanted]
        return paths, skipped
    q_net = minidqn.QNetwork.load(network_path(chosen))
    if "q_values.png" in wanted:
        paths.append(os.path.join(out_dir, "q_values.png"))
        judged = f"{what}, {score:.0f}" if math.isfinite(score) else "no evaluation to judge it by"
        plot_q_values(q_net, paths[-1], f"What the network of seed {chosen['seed']} ({judged}) "
                                        f"believes; cart at rest at x = 0")
    if "agent.gif" in wanted:
        paths.append(os.path.join(out_dir, "agent.gif"))
        make_gif(q_net, config["env_id"], paths[-1], seed=chosen["seed"] + FINAL_EVAL_SEED_OFFSET)
    return paths, skipped


# ---------------------------------------------------------------------------------------------------------
# Command line
# ---------------------------------------------------------------------------------------------------------


def build_parser(log_files: bool = True) -> argparse.ArgumentParser:
    """plots.py's command line (log_files=False: without the LOG.npz arguments, for benchmark.py, which trains)."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0], allow_abbrev=False)
    if log_files:
        parser.add_argument("logs", nargs="*", metavar="LOG.npz",
                            help="draw these logs (minidqn.py --log-path, finished or interrupted) instead of training")
    parser.add_argument("--seeds", type=int, default=DEFAULT_SEEDS, help="how many seeds (default %(default)s)")
    parser.add_argument("--first-seed", type=int, default=0, help="seeds are first-seed, first-seed + 1, ...")
    parser.add_argument("--out", default=os.path.join("runs", "plots"), help="output folder (default %(default)s)")
    parser.add_argument("--processes", type=int, default=None, help="parallel processes (default: one per core)")
    parser.add_argument("--redraw", action="store_true", help="redraw from the logs in --out, do not train")
    parser.add_argument("--no-gif", dest="gif", action="store_false", help="skip the animated GIF")
    parser.add_argument("--ablation", action="store_true",
                        help="train the demo and one-ingredient variants of it, draw ablation.png")
    run_flags = parser.add_argument_group("run_dqn flags (passed through)")
    for action in minidqn.build_parser()._actions:
        if action.dest not in ("help", "seed", "save_path", "log_path", "verbose"):
            if action.dest == "evaluation_interval" and log_files:  # plots.py's own runs: see curve_kwargs
                action.help = re.sub(r"\(default: .*\)$", f"(default here: n_timesteps // {CURVE_POINTS}, "
                                     f"{CURVE_POINTS} evaluations a run)", action.help)
            run_flags._add_action(action)
    return parser


def typed_run_kwargs(args: argparse.Namespace) -> dict:
    """The run_dqn keywords typed on the command line (argparse puts a run flag in the namespace only then)."""
    keywords = inspect.signature(minidqn.run_dqn).parameters
    return {k: v for k, v in vars(args).items() if k in keywords}


def check_run_kwargs(run_kwargs: dict) -> None:
    """run_dqn's own checks, here, before any training or timing starts: a ValueError naming the flag."""
    defaults = {k: p.default for k, p in inspect.signature(minidqn.run_dqn).parameters.items()}
    try:
        minidqn.check_run_dqn_arguments({**defaults, **run_kwargs})
    except minidqn.ArgumentError as e:
        raise ValueError(e.naming(minidqn.flags_of(e.name)[0])) from None


def run_kwargs_from(args: argparse.Namespace) -> dict:
    """The run_dqn keywords: the env's row of minidqn.PRESETS, overridden by the flags given on the command line,
    checked."""
    given = typed_run_kwargs(args)
    run_kwargs = {**minidqn.PRESETS.get(given.get("env_id", "CartPole-v1"), {}), **given}
    check_run_kwargs(run_kwargs)
    return run_kwargs


def curve_kwargs(args: argparse.Namespace) -> dict:
    """
    The run_dqn keywords of plots.py's own runs (run_kwargs_from), evaluating CURVE_POINTS times over the run
    unless --evaluation-interval was typed: a preset row's interval is for progress lines, too few for a curve.
    """
    run_kwargs = run_kwargs_from(args)
    if "evaluation_interval" in vars(args):  # the run flags are in the namespace only when typed
        return run_kwargs
    n_timesteps = run_kwargs.get("n_timesteps", inspect.signature(minidqn.run_dqn).parameters["n_timesteps"].default)
    return {**run_kwargs, "evaluation_interval": max(1, n_timesteps // CURVE_POINTS)}


def check_out_dir(out_dir: str) -> None:
    try:
        os.makedirs(out_dir, exist_ok=True)
    except OSError as e:
        raise ValueError(f"cannot create the output folder {out_dir}: {e.strerror}") from e
    if not os.access(out_dir, os.W_OK):
        raise ValueError(f"cannot write to the output folder {out_dir}")


def main(argv=None) -> int:
    args = build_parser().parse_args(argv)
    try:
        check_out_dir(args.out)
        if args.logs and (args.redraw or args.ablation):
            raise ValueError("give log files to draw, or --redraw / --ablation, not both")
        if args.ablation:
            if args.redraw:
                logs_by_variant = load_ablation(args.out)
            else:
                run_kwargs = curve_kwargs(args)
                seeds = list(range(args.first_seed, args.first_seed + args.seeds))
                logs_by_variant = train_ablation(seeds, run_kwargs, args.out, args.processes)
            path = os.path.join(args.out, "ablation.png")
            plot_ablation(logs_by_variant, path)
            print(f"wrote {path}")
            return 0
        if args.logs:
            logs = [load_log(path) for path in args.logs]
        elif args.redraw:
            logs = load_logs(args.out)
        else:
            if args.seeds < 1:
                raise ValueError(f"--seeds must be >= 1, got {args.seeds}")
            run_kwargs = curve_kwargs(args)
            minidqn.make_env(run_kwargs.get("env_id", "CartPole-v1")).close()  # fail fast on a bad env id
            seeds = list(range(args.first_seed, args.first_seed + args.seeds))
            print(f"training {len(seeds)} seeds on {min(len(seeds), args.processes or os.cpu_count() or 1)} "
                  f"processes: {run_kwargs or 'the demo configuration'}", flush=True)
            logs = train_seeds(seeds, run_kwargs, args.out, args.processes)
        paths, skipped = draw_all(logs, args.out, gif=args.gif)
        for path in paths:
            print(f"wrote {path}")
        for line in skipped:
            print(f"skipped {line}")
    except ValueError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:  # each seed saved its network and log on the way out
        print(f"Interrupted: what each seed learned so far is in {args.out}", file=sys.stderr)
        return 130
    return 0


if __name__ == "__main__":
    sys.exit(main())
