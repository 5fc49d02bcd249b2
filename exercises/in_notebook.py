"""What the learner's notebook (exercises/minidqn.ipynb, written by `make.py --notebook`) calls.

`check(N)` checks exercise N exactly as `check.py` checks the .py copy, with the code of the notebook: it takes
the block of exercise N from the cells this kernel has run (for each block, the latest run of the cell that holds
it), puts it into minidqn.py in place of the reference's, runs the tests of test_minidqn.py that the course names
for it, and prints what `check.py` prints. A cell must be run before its check sees it, as any name in a
notebook. `train_here()` says whether every exercise is written; `show_learning_curve` and `show_agent` draw the
trained agent inline.
"""

from __future__ import annotations

import importlib
import importlib.util
import io
import os
import sys
import tempfile

os.environ.setdefault("SDL_VIDEODRIVER", "dummy")  # render frames off screen, no display needed

# What the README's install brings (requirements.txt): said in one line when this kernel's Python lacks it
_NEEDED = {"numpy": "numpy", "gymnasium": "gymnasium", "pygame": "gymnasium[classic-control]",
           "matplotlib": "matplotlib", "PIL": "matplotlib", "pytest": "pytest", "hypothesis": "hypothesis",
           "threadpoolctl": "threadpoolctl"}
_missing = sorted({package for module, package in _NEEDED.items() if importlib.util.find_spec(module) is None})
if _missing:
    from IPython.core.error import UsageError

    raise UsageError(f"this kernel's Python ({sys.executable}) lacks {', '.join(_missing)}: run the README's "
                     f"install with it, `{sys.executable} -m pip install -r requirements.txt`, then restart the kernel")

import course  # noqa: E402

# The demo's training log: a temporary file, read by show_learning_curve, removed when the kernel stops
_LOG_DIR = tempfile.TemporaryDirectory(prefix="minidqn-notebook-")
LEARNING_LOG = os.path.join(_LOG_DIR.name, "learning_log.npz")

_last_verdicts = {}  # exercise number -> the verdict of its latest check


def _cells_run() -> list:
    """The source of every cell this kernel has run, oldest first (IPython keeps them)."""
    try:
        from IPython import get_ipython
    except ImportError:
        return []
    shell = get_ipython()
    return list(shell.history_manager.input_hist_raw) if shell is not None else []


def learner_copy(number: int, cells: list | None = None) -> str | None:
    """Exercise `number`'s blocks, as the latest run of the cells that hold them has them, between their markers
    (what course.hybrid reads); None while a cell that holds one has not been run."""
    exercise = course.BY_NUMBER[number]
    cells = _cells_run() if cells is None else cells
    count, lines = len(exercise.pieces), []
    for index in range(count):
        marker = f"{course.BEGIN} ({course.label(exercise, index, count)})"
        for text in reversed(cells):
            if any(line.strip() == marker for line in text.splitlines()):
                block = course.learner_blocks(text).get((number, index))
                if block is not None:
                    lines += [marker, *block, f"{course.END} (exercise {number})"]
                    break
        else:
            return None
    return "\n".join(lines) + "\n"


def _still_raises(number: int, copy: str) -> bool:
    return f'raise NotImplementedError("exercise {number}:' in copy


def _check_one(number: int) -> tuple:
    copy = learner_copy(number)
    if copy is None:
        return "not started", ["its code cell has not been run: run it, then this check"]
    checker = importlib.import_module("check")  # exercises/check.py: the same checks, the same messages
    with open(course.REFERENCE) as f:
        reference = f.read()
    return checker.check_exercise(copy, reference, number, copy_name=None)  # the blocks alone: no line numbers


def check(*numbers: int) -> None:
    """Check these exercises (all of them when none is given) and print, for each, what check.py prints: pass,
    not started, or the test that failed and its message. Never raises: a check ends in a verdict."""
    numbers = numbers or tuple(sorted(course.BY_NUMBER))
    for number in numbers:
        if number not in course.BY_NUMBER:
            print(f"check({number!r}): there is no exercise {number!r}; they are numbered 1 to {len(course.EXERCISES)}")
            continue
        try:
            verdict, details = _check_one(number)
        except Exception as e:  # the check's own machinery failed: say so in one line, not a stack trace
            verdict, details = "fail", [f"the check could not run: {type(e).__name__}: {e}"]
        _last_verdicts[number] = verdict
        print(importlib.import_module("check").report(number, verdict, details), flush=True)


def _not_defined_as_in_minidqn() -> list:
    """What the notebook's namespace lacks of minidqn.py's sections 1-5: a name never defined (its cell not run),
    or a class without some of its methods (its first cell run again after the cells that add them)."""
    try:
        from IPython import get_ipython

        namespace = get_ipython().user_ns
    except (ImportError, AttributeError):
        return []
    import minidqn
    import notebook_cells

    with open(course.REFERENCE) as f:
        names = notebook_cells.Source(f.read()).top
    problems = []
    for name in names:
        if name not in namespace:
            problems.append(f"{name} is not defined")
        elif isinstance(getattr(minidqn, name), type) and isinstance(namespace[name], type):
            missing = [m for m in vars(getattr(minidqn, name)) if not m.startswith("__")
                       and not hasattr(namespace[name], m)]
            if missing:
                problems.append(f"{name} has no {', '.join(missing)}")
    return problems


def train_here() -> bool:
    """True when every exercise is written (and none failed its latest check) and every cell above has run;
    otherwise say what is missing."""
    cells = _cells_run()
    not_written = [n for n in sorted(course.BY_NUMBER)
                   if (copy := learner_copy(n, cells)) is None or _still_raises(n, copy)]
    failed = sorted(n for n, verdict in _last_verdicts.items() if verdict == "fail" and n not in not_written)
    if not_written:
        print(f"Not yet: exercise{'s' * (len(not_written) > 1)} {', '.join(map(str, not_written))} still raise "
              f"NotImplementedError (or their cells have not been run). Write them, run their cells and checks, "
              f"then this cell.")
        return False
    if failed:
        print(f"Not yet: the latest check of exercise{'s' * (len(failed) > 1)} {', '.join(map(str, failed))} "
              f"failed. Fix it, run its cell and check({failed[0]}) again, then this cell.")
        return False
    problems = _not_defined_as_in_minidqn()
    if problems:
        print(f"Not yet: {'; '.join(problems)}. Run the cells above again, in order (running a class's first cell "
              f"again starts the class afresh, without the methods that its later cells add).")
        return False
    return True


def show_learning_curve(log_path: str) -> None:
    """Draw the greedy return over training from run_dqn's log (`log_path`), inline."""
    if not os.path.exists(log_path):
        print("No training yet: the cell above trains once every exercise is written.")
        return
    import json

    import gymnasium as gym
    import matplotlib.pyplot as plt
    import numpy as np

    with np.load(log_path, allow_pickle=False) as log:
        steps, means, stds = log["eval_steps"], log["eval_means"], log["eval_stds"]
        config = json.loads(str(log["config"]))
    if len(steps) == 0:
        print("The run made no evaluation to draw (evaluation_interval was 0, or longer than the run).")
        return
    fig, ax = plt.subplots(figsize=(7, 3.5))
    ax.errorbar(steps, means, yerr=stds, marker="o", capsize=3, label="your DQN")
    threshold = gym.spec(config["env_id"]).reward_threshold
    if threshold is not None:
        ax.axhline(threshold, color="tab:red", linestyle="--", label=f"reward_threshold = {threshold:g}")
    ax.set(xlabel="env steps", ylabel=f"greedy return (mean of {config['n_eval_episodes']} episodes)",
           title=f"{config['env_id']}, seed {config['seed']}")
    ax.legend(loc="lower right")
    fig.tight_layout()
    plt.show()


def show_agent(q_net, env_id: str = "CartPole-v1", seed: int = 0, every: int = 5, max_frames: int = 100) -> None:
    """Play one greedy episode with `q_net` and show it inline as an animated GIF (every `every`-th frame, at
    real speed, at most `max_frames` frames)."""
    if q_net is None:
        print("No agent yet: the training cell above trains one once every exercise is written.")
        return
    import minidqn
    from IPython.display import Image, display
    from PIL import Image as PILImage

    env = minidqn.make_env(env_id, render_mode="rgb_array")
    obs, _ = env.reset(seed=seed)
    frames, total, steps, done = [], 0.0, 0, False
    while not done:
        if steps % every == 0 and len(frames) < max_frames:
            frames.append(env.render())
        obs, reward, terminated, truncated, _ = env.step(int(q_net(obs).argmax()))  # greedy
        total, steps, done = total + float(reward), steps + 1, terminated or truncated
    frames.append(env.render())  # how it ended
    fps = env.metadata.get("render_fps", 50)
    env.close()
    images = [PILImage.fromarray(frame).resize((frame.shape[1] // 2, frame.shape[0] // 2)) for frame in frames]
    gif = io.BytesIO()
    images[0].save(gif, format="GIF", save_all=True, append_images=images[1:], duration=1000 * every / fps, loop=0)
    print(f"{env_id}, one greedy episode (seed {seed}): return {total:g} in {steps} steps")
    display(Image(data=gif.getvalue(), format="gif"))
