"""What minidqn is compared against, stated once: the same-work settings that minidqn, SB3's DQN and the RLSS
tutorial's PyTorch DQN all run, and RL Zoo's rows that SB3 runs for the presets' comparisons.

Both sides import this file: benchmark.py and sb3_zoo.py in minidqn's environment, and the scripts they start
in the PyTorch environment (sb3_same_work.py, tutorial_same_work.py, sb3_zoo_row.py). It needs nothing but the
standard library, so it imports in either environment, and the settings of the two sides cannot drift apart.
"""

from __future__ import annotations

import os
import sys

# The work timed side by side, in run_dqn's names (which are the tutorial's). The rhythm is the tutorial's tuned
# CartPole run, shortened to 20k steps, with what minidqn adds to the tutorial switched off: MSE, no clipping,
# no Double DQN, no weight average, raw observations, the target copied (not averaged), no evaluation.
SAME_WORK = dict(
    env_id="CartPole-v1", n_timesteps=20_000, learning_starts=1000, update_interval=2, batch_size=64,
    n_hidden_units=64, target_network_update_interval=10, learning_rate=1e-3, evaluation_interval=0,
    replay_buffer_size=100_000, gamma=0.99, exploration_fraction=0.1, exploration_final_eps=0.04,
    loss_fn="mse", max_grad_norm=None, double_dqn=False, weight_averaging_rate=None, scale_observations=False,
)
SAME_WORK_SEED = 0

# Settings of SAME_WORK that SB3 has no keyword for, each with what SB3 does instead. Its loss (Huber) and its
# clipping (global norm 10) are fixed by SB3's DQN; they cost a few element-wise operations per update, so the
# work stays the same while the algorithm differs in those two details, as it did in every earlier timing.
SB3_FIXED = dict(loss_fn="Huber, always", max_grad_norm="10, SB3's default", double_dqn="never",
                 weight_averaging_rate="no average", scale_observations="raw observations",
                 evaluation_interval="learn() does not evaluate")

# RL Zoo's tuned rows (rl-baselines3-zoo, hyperparams/dqn.yml), in SB3's names. SB3's defaults apply under them:
# Huber loss, gradient-norm clipping at 10, Adam with PyTorch's defaults. The LunarLander row is the zoo's
# LunarLander-v2 row, run on v3 (v2 is gone from gymnasium).
ZOO_ROWS = {
    "CartPole-v1": dict(n_timesteps=50_000, learning_rate=2.3e-3, batch_size=64, buffer_size=100_000,
                        learning_starts=1000, gamma=0.99, target_update_interval=10, train_freq=256,
                        gradient_steps=128, exploration_fraction=0.16, exploration_final_eps=0.04, net=[256, 256]),
    "Acrobot-v1": dict(n_timesteps=100_000, learning_rate=6.3e-4, batch_size=128, buffer_size=50_000,
                       learning_starts=0, gamma=0.99, target_update_interval=250, train_freq=4,
                       gradient_steps=-1, exploration_fraction=0.12, exploration_final_eps=0.1, net=[256, 256]),
    "MountainCar-v0": dict(n_timesteps=120_000, learning_rate=4e-3, batch_size=128, buffer_size=10_000,
                           learning_starts=1000, gamma=0.98, target_update_interval=600, train_freq=16,
                           gradient_steps=8, exploration_fraction=0.2, exploration_final_eps=0.07, net=[256, 256]),
    "LunarLander-v3": dict(n_timesteps=100_000, learning_rate=6.3e-4, batch_size=128, buffer_size=50_000,
                           learning_starts=0, gamma=0.99, target_update_interval=250, train_freq=4,
                           gradient_steps=-1, exploration_fraction=0.12, exploration_final_eps=0.1, net=[256, 256]),
}

# Where the tutorial's package comes from: installed as its notebook installs it, or a local copy named here
TUTORIAL_INSTALL = "pip install git+https://github.com/araffin/rlss23-dqn-tutorial/ --upgrade"
TUTORIAL_PATH_VARIABLE = "DQN_TUTORIAL_PATH"


def sb3_same_work() -> tuple:
    """SAME_WORK in SB3's names: (the DQN constructor's keywords, learn()'s total_timesteps)."""
    names = dict(replay_buffer_size="buffer_size", target_network_update_interval="target_update_interval",
                 update_interval="train_freq", learning_rate="learning_rate", batch_size="batch_size",
                 learning_starts="learning_starts", gamma="gamma", exploration_fraction="exploration_fraction",
                 exploration_final_eps="exploration_final_eps")
    _check_covered(names.keys() | SB3_FIXED.keys() | {"env_id", "n_timesteps", "n_hidden_units"}, "SB3")
    kwargs = {sb3: SAME_WORK[ours] for ours, sb3 in names.items()}
    kwargs.update(gradient_steps=1, policy_kwargs=dict(net_arch=[SAME_WORK["n_hidden_units"]] * 2),
                  seed=SAME_WORK_SEED, device="cpu")
    return kwargs, SAME_WORK["n_timesteps"]


def tutorial_same_work() -> dict:
    """SAME_WORK as the keywords of the tutorial's run_dqn (dqn_tutorial.dqn.dqn.run_dqn)."""
    same_names = ["env_id", "replay_buffer_size", "target_network_update_interval", "learning_starts",
                  "exploration_final_eps", "exploration_fraction", "n_timesteps", "update_interval",
                  "learning_rate", "batch_size", "gamma", "n_hidden_units"]
    # The tutorial has only MSE, no clipping, no Double DQN, no average and raw observations: SAME_WORK's choices
    as_the_tutorial = dict(loss_fn="mse", max_grad_norm=None, double_dqn=False, weight_averaging_rate=None,
                           scale_observations=False)
    _check_covered(set(same_names) | as_the_tutorial.keys() | {"evaluation_interval"}, "the tutorial")
    for key, value in as_the_tutorial.items():
        if SAME_WORK[key] != value:
            raise ValueError(f"SAME_WORK[{key!r}] = {SAME_WORK[key]!r}: the tutorial's run_dqn can only run {value!r}")
    kwargs = {key: SAME_WORK[key] for key in same_names}
    # The tutorial evaluates when current_step % evaluation_interval == 0, so 0 cannot mean "never" there (it
    # would divide by zero): an interval past the end of the run does
    never = SAME_WORK["n_timesteps"] + 1 if SAME_WORK["evaluation_interval"] == 0 else SAME_WORK["evaluation_interval"]
    kwargs.update(exploration_initial_eps=1.0, evaluation_interval=never, n_eval_episodes=1, seed=SAME_WORK_SEED)
    return kwargs


def _check_covered(translated: set, whose: str) -> None:
    """A setting added to SAME_WORK that a translation does not know would silently not be run: refuse it."""
    missing = set(SAME_WORK) - set(translated)
    if missing:
        raise ValueError(f"SAME_WORK has {sorted(missing)}, which the translation to {whose} does not carry")


def require(module: str, what: str):
    """Import a module the PyTorch side needs, or stop with one line naming it and where the install is told."""
    try:
        return __import__(module)
    except ModuleNotFoundError:
        raise SystemExit(f"error: {what} ({module}) is not installed in {sys.executable}: the PyTorch environment "
                         "needs it (see benchmarks/README.md for the install line)") from None


def import_tutorial_run_dqn():
    """The tutorial's run_dqn, from the folder DQN_TUTORIAL_PATH names if it is set, else from the installed
    package. Raises SystemExit with one line that says what is missing and how to get it."""
    path = os.environ.get(TUTORIAL_PATH_VARIABLE)
    if path:
        if not os.path.isdir(os.path.join(path, "dqn_tutorial")):
            raise SystemExit(f"error: {TUTORIAL_PATH_VARIABLE}={path} (--tutorial-path): no dqn_tutorial/ folder "
                             "there; name the folder that holds the tutorial's dqn_tutorial/ package")
        sys.path.insert(0, os.path.abspath(path))
    try:
        from dqn_tutorial.dqn.dqn import run_dqn
    except ModuleNotFoundError as e:
        if e.name is None or not e.name.startswith("dqn_tutorial"):
            raise SystemExit(f"error: {e.name} is not installed in {sys.executable}, and the tutorial's package "
                             "needs it (see benchmarks/README.md for the install line)") from None
        raise SystemExit(f"error: the RLSS 2023 tutorial's package (dqn_tutorial) is not installed in "
                         f"{sys.executable}: install it as its notebook does, `{TUTORIAL_INSTALL}`, or, where "
                         f"that cannot be reached, name a local copy with --tutorial-path DIR or "
                         f"{TUTORIAL_PATH_VARIABLE}=DIR (DIR holds dqn_tutorial/)") from None
    return run_dqn


# ---------------------------------------------------------------------------------------------------------
# Starting the PyTorch side from minidqn's environment
# ---------------------------------------------------------------------------------------------------------


class TorchSideError(Exception):
    """A script of the PyTorch side could not start or failed; the message is one line that says why."""


def run_torch_script(torch_python: str, script: str, *args: str, env: dict | None = None) -> str:
    """Run benchmarks/<script> with the PyTorch environment's Python, one thread; return its standard output."""
    import subprocess

    if not os.path.isfile(torch_python) or not os.access(torch_python, os.X_OK):
        raise TorchSideError(f"--torch-python {torch_python}: no such Python; make the PyTorch environment as "
                             "benchmarks/README.md says and name its bin/python")
    path = os.path.join(os.path.dirname(os.path.abspath(__file__)), script)
    full_env = {**os.environ, "OMP_NUM_THREADS": "1", "OPENBLAS_NUM_THREADS": "1", **(env or {})}
    done = subprocess.run([torch_python, path, *args], capture_output=True, text=True, env=full_env)
    if done.returncode != 0:
        lines = [line for line in done.stderr.splitlines() if line.strip()]
        # the scripts end with one "error: ..." line; anything else (a crash) is told by its last line
        reason = next((line for line in reversed(lines) if line.startswith("error:")), lines[-1] if lines else "")
        raise TorchSideError(f"{script} under {torch_python} failed (exit {done.returncode}): "
                             f"{reason.removeprefix('error: ') or 'no message'}")
    return done.stdout
