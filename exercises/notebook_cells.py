"""The learner's notebook: minidqn.py's sections 1-5 cut into cells in the tutorial's order, the exercises'
blocks marked exactly as in the .py copy, a markdown cell before each exercise and a check cell after it.

`make.py --notebook` writes it. The code is `course.make_copy`'s text (blanked, or solved), cut at natural places:
a function, a class, or some methods of a class per cell. A class whose methods belong to exercises of
different parts goes on in a later cell as `class QNetwork(QNetwork):`, so that every line keeps its indentation
and a block moves between the notebook and the .py copy as it is. Section 6 (the plumbing) is imported from
`minidqn`. `in_notebook.py` is what the notebook's cells call: the checks, and the demo's pictures.
"""

from __future__ import annotations

import ast
import json
import re
from dataclasses import dataclass

import course

# What a cell of code holds: a top-level name of minidqn.py (a function, a class, a constant), or, for a class,
# some of its methods (each with the class-level statements that follow it, such as `__call__ = forward`)


@dataclass
class Unit:
    name: str
    methods: tuple | None = None


@dataclass
class Code:
    units: list
    note: str = ""  # a comment line above the code


@dataclass
class Markdown:
    text: str


@dataclass
class Exercise:
    """An exercise's markdown cell (EXERCISE_TEXT), the code cell with its block, and its check cell."""

    number: int
    units: list


@dataclass
class Special:
    """A cell written here, not cut from minidqn.py: "setup", "imports", "train", "curve", "agent"."""

    kind: str


# For each exercise, in this project's words: (minutes it should take, the idea, its equation in LaTeX)
EXERCISE_TEXT = {
    1: (10, "The replay buffer is a ring of `buffer_size` preallocated slots. `current_idx` is the slot the next "
            "transition goes to; at the end of the arrays it wraps around to 0, and from then on each new "
            "transition overwrites the oldest one. `is_full` records that the ring has wrapped, so that "
            "`len(buffer)` is then `buffer_size`.",
        r"\text{slot}_i \leftarrow (s, s', a, r, \text{terminated}), \qquad i \leftarrow (i + 1) \bmod N"),
    2: (5, "A mini-batch is `batch_size` slots drawn uniformly, with replacement, from the slots that hold a "
           "transition. Draw them with the buffer's own generator, `self.rng`: one generator per run is what "
           "makes a seed fix the whole run.",
        r"i_1, \dots, i_B \sim \mathcal{U}\{0, \dots, n - 1\}, \qquad n = \texttt{len(buffer)}"),
    3: (6, "The Q-network maps a batch of observations (one per row) to one Q-value per action, through two "
           "hidden layers. There is no autograd here: `backward` (exercise 9) needs what the forward pass "
           "computed, so with `return_activations=True` it also returns the input and both hidden layers.",
        r"h_1 = \sigma(x W_1 + b_1), \quad h_2 = \sigma(h_1 W_2 + b_2), \quad Q(x, \cdot) = h_2 W_3 + b_3"),
    4: (6, "Epsilon-greedy explores with probability epsilon and otherwise exploits what the network knows. When "
           "epsilon is 0 (a greedy evaluation) it draws no random number at all, so that evaluating an agent "
           "leaves its training run unchanged.",
        r"a = \begin{cases} \text{a uniformly random action} & \text{with probability } \varepsilon \\ "
        r"\arg\max_a Q(s, a) & \text{otherwise} \end{cases}"),
    5: (8, "One step of data collection: act epsilon-greedily, step the env, store the transition. The terminal "
           "flag is `terminated` alone: an episode cut by a time limit (`truncated`) did not reach a terminal "
           "state, and its last state still has a value (Pardo et al. 2018).",
        r"a_t \sim \pi_\varepsilon(s_t), \quad (s_{t+1}, r_t, \text{terminated}_t) = \text{env.step}(a_t), "
        r"\quad \text{store } (s_t, s_{t+1}, a_t, r_t, \text{terminated}_t)"),
    6: (5, "Epsilon starts high (explore) and decays linearly to its final value over the first part of the run, "
           "then stays there.",
        r"\varepsilon(t) = \varepsilon_0 + \min\left(\frac{t}{T}, 1\right) (\varepsilon_T - \varepsilon_0)"),
    7: (10, "The TD target is what Q(s, a) should be: the reward, plus the discounted value of the next state as "
            "the target network sees it. A terminal state has no next value. (Double DQN, an option: the online "
            "network picks the next action, the target network values it.)",
        r"y_i = r_i + \gamma \, (1 - \text{terminated}_i) \, \max_{a'} Q_{\theta^-}(s'_i, a')"),
    8: (5, "The loss is the mean squared TD error. Without autograd, the loss function also returns its "
           "gradient with respect to each Q(s_i, a_i): where backpropagation starts.",
        r"L = \frac{1}{B} \sum_{i=1}^{B} \delta_i^2, \quad \delta_i = Q(s_i, a_i) - y_i, \quad "
        r"\frac{\partial L}{\partial Q(s_i, a_i)} = \frac{2 \, \delta_i}{B}"),
    9: (25, "What `loss.backward()` does in PyTorch, written out: the chain rule through the forward pass, from "
            "the top layer down. `g` is dL/dQ (one row per observation); a bias gets the sum of its layer's "
            "gradient over the batch; the activation's derivative is written from its output. The check "
            "compares every entry of every gradient with finite differences.",
        r"\frac{\partial L}{\partial W_3} = h_2^\top g, \quad \frac{\partial L}{\partial b_3} = \textstyle\sum_i g_i, "
        r"\quad \delta_2 = (g W_3^\top) \odot \sigma'(h_2), \quad \frac{\partial L}{\partial W_2} = h_1^\top \delta_2, "
        r"\quad \delta_1 = (\delta_2 W_2^\top) \odot \sigma'(h_1), \quad \frac{\partial L}{\partial W_1} = x^\top "
        r"\delta_1"),
    10: (15, "What `optimizer.step()` does, written out: Adam (Kingma & Ba 2015, Algorithm 1). It keeps running "
             "means of the gradient and of its square, corrects their bias toward 0 at the start, and steps each "
             "weight by their ratio. A network's parameters, gradients and moments each tile one vector "
             "(`.vector`), so the whole network can take its step in one pass.",
         r"m_t = \beta_1 m_{t-1} + (1 - \beta_1) g_t, \quad v_t = \beta_2 v_{t-1} + (1 - \beta_2) g_t^2, \quad "
         r"\hat m_t = \frac{m_t}{1 - \beta_1^t}, \quad \hat v_t = \frac{v_t}{1 - \beta_2^t}, \quad "
         r"\theta_t = \theta_{t-1} - \alpha \frac{\hat m_t}{\sqrt{\hat v_t} + \epsilon}"),
    11: (10, "The target network is a copy of the online network that moves slowly, so that the TD target does "
             "not chase every gradient step. A copy, never an alias: if the two networks share their arrays, "
             "the target moves with every step. The hard update copies the weights; the soft update moves them a "
             "fraction tau of the way (Lillicrap et al. 2016), and the same rule averages the weights that play.",
         r"\text{hard: } \theta^- \leftarrow \theta, \qquad \text{soft: } \theta^- \leftarrow \theta^- + "
         r"\tau \, (\theta - \theta^-)"),
    12: (10, "One gradient step of DQN: a mini-batch from the replay buffer, the TD loss and its gradient "
             "(`td_loss`, above: target, forward, loss, backward), then Adam's step. A loss that is not finite "
             "stops the run before a NaN reaches the weights.",
         r"\theta \leftarrow \text{Adam}\left(\theta, \nabla_\theta \frac{1}{B} \sum_i \big(Q_\theta(s_i, a_i) - "
         r"y_i\big)^2\right), \quad (s_i, a_i, r_i, s'_i) \sim \text{replay buffer}"),
}

INTRO = """# Learn DQN by writing it: minidqn's exercises

This notebook is `minidqn.py`, the Deep Q-Network of the RLSS 2023 DQN tutorial in pure NumPy,
cut into cells in the tutorial's order, with twelve pieces for you to write. There is no autograd: you also
write the backward pass and Adam, and the checks compare every entry of every gradient you write with finite
differences.

**What it needs.** Run it from a clone of the repository (it imports `minidqn.py`, and its checks run the
project's tests, `test_minidqn.py`), in a Python where the README's install has run:
`pip install -r requirements.txt`. Jupyter, JupyterLab and VS Code all work; pick that Python as the kernel.

**How to work.** Each exercise is a markdown cell (the idea, its equation, the tutorial's cell it matches, how
long it should take), a code cell, and a check cell. In the code cell, replace the `raise NotImplementedError`
between `### YOUR CODE HERE` and `### END OF YOUR CODE` with your code (keep the two marker lines), run the
cell, then run the check below it. `check(N)` runs the project's own tests of exercise N on your code for that
exercise and minidqn.py's for everything else, and says `pass`, `not started`, or the test that failed and the
wrong value. Exercises can be done in any order; run every cell once first (Run All), so that every name is
defined. The last section trains CartPole with your code and shows it playing.

The same exercises exist as a `.py` file (`python exercises/make.py`, then `python exercises/check.py`): the
blocks are marked the same way, so code moves between the two. The solution of an exercise is the same
function in minidqn.py.

- Part I, the parts: 1. store a transition, 2. sample a mini-batch, 3. the forward pass, 4. epsilon-greedy,
  5. collect one transition, 6. the schedule.
- Part II, the update: 7. the TD target, 8. the loss and dL/dQ, 9. the backward pass, 10. Adam, 11. the target
  network, 12. the DQN update; then the training loop."""

SETUP_NOTE = """## Setup

The first cell finds the repository (from the folder the notebook runs in, or one above it) and imports the
checks; if the notebook is not inside a clone, or the README's install is missing, it says so in one line."""

SETUP = '''# Needs: this notebook inside a clone of minidqn, and the README's install: pip install -r requirements.txt
import os
import sys
from pathlib import Path

ROOT = next((str(p) for p in (Path.cwd(), *Path.cwd().parents) if (p / "exercises" / "in_notebook.py").is_file()),
            None)
if ROOT is None:
    from IPython.core.error import UsageError

    raise UsageError(f"this notebook runs from a clone of minidqn (it imports minidqn.py and its tests), "
                     f"but {Path.cwd()} is not in one: open exercises/minidqn.ipynb from the repository's folder")
sys.path[:0] = [ROOT, os.path.join(ROOT, "exercises")]  # minidqn's own folder before any other copy
from in_notebook import LEARNING_LOG, check, show_agent, show_learning_curve, train_here'''

IMPORTS_NOTE = """The imports of minidqn.py. Section 6 of minidqn.py (argument checks, checkpoints, envs, the training
log, GIFs: the plumbing) is imported from `minidqn` instead of being copied here. Importing `minidqn` also puts
NumPy's matrix products on one thread (small matrices: several threads cost more than they save), as it does
for `python minidqn.py`."""

TRAIN_NOTE = """# Train it: the CartPole demo, with your code

Once every check passes, this trains the demo, `run_dqn()` with its defaults (CartPole-v1), with the code of
the cells above, and prints a line at every periodic evaluation: the greedy return should reach 500, the most
CartPole allows. It takes about as long as `python minidqn.py`. Until every exercise is written it says which
are missing instead. Then, as at the end of the tutorial's Part II, you watch your agent: the greedy return over
training, and one greedy episode."""

PLUMBING_NOTE = """## Section 6: the plumbing

The rest of minidqn.py (argument checks, checkpoints, envs and presets, the training log, GIFs, the command
line) was imported from `minidqn` in the second cell; you can skip it, as minidqn.py says. Everything above is
the DQN."""

# The notebook, in the tutorial's order: Part I builds the parts, Part II the update and the training loop
LAYOUT = [
    Markdown(INTRO),
    Markdown(SETUP_NOTE),
    Special("setup"),
    Markdown(IMPORTS_NOTE),
    Special("imports"),
    Markdown("# Part I: the DQN's parts\n\n## 1. The replay buffer\n\nA mini-batch of transitions, as "
             "`ReplayBuffer.sample` returns it (the tutorial's `ReplayBufferSamples`):"),
    Code([Unit("ReplayBufferSamples")]),
    Exercise(1, [Unit("ReplayBuffer", ("__init__", "__len__", "store_transition"))]),
    Markdown("A class whose methods belong to different exercises goes on in a later cell: `class "
             "ReplayBuffer(ReplayBuffer):` adds the methods of its cell to the class above (in minidqn.py they are "
             "one class), and every line keeps its indentation, so a block moves between this notebook and the .py "
             "copy as it is. Run a class's cells in order: running its first cell again starts the class afresh, "
             "so run the cells that add to it again too."),
    Exercise(2, [Unit("ReplayBuffer", ("sample",))]),
    Markdown("An extension, no exercise (run the cell): the n-step replay buffer, which `run_dqn(n_steps=3)` "
             "uses."),
    Code([Unit("NStepReplayBuffer")]),
    Markdown("## 2. The Q-network\n\nThe activations (no exercise: run the cell), and `FlatDict`, which lets the "
             "network's arrays tile one vector:"),
    Code([Unit("read_only_zeros"), Unit("relu"), Unit("relu_grad"), Unit("tanh_grad"), Unit("ACTIVATIONS"),
          Unit("UNBOUNDED"), Unit("PARAMETER_NAMES")]),
    Code([Unit("FlatDict")]),
    Exercise(3, [Unit("QNetwork", ("__init__", "parameters", "flat_params", "forward"))]),
    Markdown("## 3. Epsilon-greedy data collection"),
    Exercise(4, [Unit("epsilon_greedy_action_selection")]),
    Exercise(5, [Unit("collect_one_step")]),
    Exercise(6, [Unit("linear_schedule")]),
    Markdown("# Part II: the DQN update and the training loop\n\n## The TD target and the loss"),
    Exercise(7, [Unit("td_target")]),
    Exercise(8, [Unit("mse_loss")]),
    Markdown("The Huber loss, an option of `run_dqn` (no exercise: run the cell):"),
    Code([Unit("huber_loss"), Unit("LOSSES")]),
    Markdown("## The gradient, written out"),
    Exercise(9, [Unit("QNetwork", ("backward",))]),
    Markdown("`td_loss` puts the pieces together (no exercise: run the cell): the TD target, the forward pass, "
             "the loss and dL/dQ of the actions taken, and the backward pass."),
    Code([Unit("td_loss")]),
    Markdown("## The optimizer"),
    Exercise(10, [Unit("Adam")]),
    Markdown("## The target network"),
    Exercise(11, [Unit("QNetwork", ("polyak_update", "state_dict", "load_state_dict", "save", "load"))]),
    Markdown("## The DQN update\n\nGradient clipping, an option (no exercise: run the cell):"),
    Code([Unit("clip_grad_norm")]),
    Exercise(12, [Unit("dqn_update")]),
    Markdown("Part II's first update, without a target network (no exercise: run the cell):"),
    Code([Unit("dqn_update_no_target")]),
    Markdown("## The training loop\n\nNo exercise: read them, run them. `evaluate_policy` plays greedy "
             "episodes; `averaging_rate` is how fast the average that plays follows the online weights; `run_dqn` "
             "is the whole algorithm, every hyperparameter in its signature with its source; "
             "`run_dqn_no_target` is Part II's first loop, with the tutorial's settings."),
    Code([Unit("evaluate_policy")]),
    Code([Unit("averaging_rate")]),
    Code([Unit("run_dqn")]),
    Code([Unit("run_dqn_no_target")]),
    Markdown(TRAIN_NOTE),
    Special("train"),
    Markdown("The greedy return over training (each point: a periodic evaluation, the mean and standard deviation "
             "of its greedy episodes):"),
    Special("curve"),
    Markdown("Your agent, playing one greedy episode:"),
    Special("agent"),
    Markdown(PLUMBING_NOTE),
]

SPECIAL_CODE = {
    "train": ("# The demo, run_dqn() with its defaults; its log (a temporary file) is what the picture below draws.\n"
              "# train_here() is False, and says why, until every exercise above is written.\n"
              "q_net = run_dqn(log_path=LEARNING_LOG) if train_here() else None"),
    "curve": "show_learning_curve(LEARNING_LOG)",
    "agent": "show_agent(q_net)",
}


def _is_banner(line: str) -> bool:
    return bool(re.match(r"#\s*([-=]{5,}|\d+\. )", line.strip()))


def _with_comments(lines: list, first: int) -> int:
    """The first line of a statement with the comment lines just above it (none across a blank or a banner)."""
    while first > 0 and lines[first - 1].strip().startswith("#") and not _is_banner(lines[first - 1]):
        first -= 1
    return first


def _through_comments(lines: list, first: int, last: int) -> int:
    """The last line of a statement with the comment lines just below it that are indented deeper than its first
    line: they belong to its body (a block's "### END OF YOUR CODE" line, after a body's last statement)."""
    indent = len(lines[first]) - len(lines[first].lstrip())
    while last + 1 < len(lines) and lines[last + 1].strip().startswith("#") \
            and len(lines[last + 1]) - len(lines[last + 1].lstrip()) > indent:
        last += 1
    return last


def _start(node: ast.AST) -> int:
    decorators = getattr(node, "decorator_list", [])
    return min([node.lineno] + [d.lineno for d in decorators]) - 1


def _name(node: ast.AST) -> str | None:
    if isinstance(node, (ast.FunctionDef, ast.ClassDef)):
        return node.name
    targets = node.targets if isinstance(node, ast.Assign) else [getattr(node, "target", None)]
    if len(targets) == 1 and isinstance(targets[0], ast.Name):
        return targets[0].id
    return None


class Source:
    """A copy of minidqn.py (course.make_copy's text) taken apart: the header, the DQN (sections 1-5) by name,
    and the plumbing (section 6)."""

    def __init__(self, text: str) -> None:
        self.lines = text.splitlines()
        tree = ast.parse(text)
        banners = {int(m.group(1)): i for i, line in enumerate(self.lines)
                   if (m := re.match(r"# (\d)\. ", line))}
        if 1 not in banners or 6 not in banners:
            raise ValueError("minidqn.py has no '# 1. ' or '# 6. ' section banner: update exercises/notebook_cells.py")
        self.header = [n for n in tree.body[1:] if n.lineno - 1 < banners[1]]  # after the docstring
        self.plumbing = [n for n in tree.body if n.lineno - 1 > banners[6]]
        self.top = {}  # name -> node, sections 1-5
        for node in tree.body:
            if banners[1] < node.lineno - 1 < banners[6]:
                name = _name(node)
                if name is None or name in self.top:
                    raise ValueError(f"minidqn.py line {node.lineno}: a statement the notebook cannot place")
                self.top[name] = node
        self.used = set()

    def text(self, first: int, last: int) -> str:
        return "\n".join(self.lines[first : last + 1])

    def statement(self, node: ast.AST) -> str:
        return self.text(_with_comments(self.lines, _start(node)),
                         _through_comments(self.lines, _start(node), node.end_lineno - 1))

    def methods(self, node: ast.ClassDef) -> dict:
        """method name -> (first line, last line): the method, the comments above it and the class-level
        statements after it, up to the next method."""
        body, out = node.body, {}
        starts = [i for i, n in enumerate(body) if isinstance(n, ast.FunctionDef)]
        for k, i in enumerate(starts):
            end = body[(starts[k + 1] if k + 1 < len(starts) else len(body)) - 1]
            out[body[i].name] = (_with_comments(self.lines, _start(body[i])),
                                 _through_comments(self.lines, _start(body[i]), end.end_lineno - 1))
        return out

    def unit(self, unit: Unit) -> str:
        if unit.name not in self.top:
            raise ValueError(f"minidqn.py has no {unit.name} in sections 1-5: update exercises/notebook_cells.py")
        node = self.top[unit.name]
        if unit.methods is None:
            self._use(unit.name)
            return self.statement(node)
        methods = self.methods(node)
        first_method = min(first for first, _ in methods.values())
        parts = []
        for name in unit.methods:
            if name not in methods:
                raise ValueError(f"minidqn.py's {unit.name} has no method {name}: update exercises/notebook_cells.py")
            self._use(f"{unit.name}.{name}")
            parts.append(self.text(*methods[name]))
        if min(methods, key=lambda m: methods[m][0]) in unit.methods:
            # the cell that starts the class: its own class line and docstring
            head = self.text(_with_comments(self.lines, _start(node)), first_method - 1).rstrip()
        else:  # a later cell: the same class, with more of its methods
            head = (f"class {unit.name}({unit.name}):  # more of the {unit.name} above (in minidqn.py, one "
                    f"class)")
        return head + "\n" + "\n\n".join(parts)

    def _use(self, key: str) -> None:
        if key in self.used:
            raise ValueError(f"{key} is in two cells of the notebook: update exercises/notebook_cells.py")
        self.used.add(key)

    def unused(self) -> list:
        names = []
        for name, node in self.top.items():
            if isinstance(node, ast.ClassDef) and any(k.startswith(f"{name}.") for k in self.used):
                names += [f"{name}.{m}" for m in self.methods(node) if f"{name}.{m}" not in self.used]
            elif name not in self.used and not any(k.startswith(f"{name}.") for k in self.used):
                names.append(name)
        return names

    def imports(self) -> str:
        """minidqn.py's imports and the module-level names that sections 1-5 use (not its BLAS settings, which
        importing minidqn applies), then section 6's names that sections 1-5 use, imported from minidqn."""
        used = {n.id for node in self.top.values() for n in ast.walk(node) if isinstance(n, ast.Name)}
        kept, previous = [], None
        for node in self.header:
            if not isinstance(node, (ast.Import, ast.ImportFrom)) and _name(node) not in used:
                continue
            first = _with_comments(self.lines, _start(node))
            if previous is not None and any(not line.strip() for line in self.lines[previous + 1 : first]):
                kept.append("")  # the blank lines that group them in minidqn.py
            kept.append(self.text(first, node.end_lineno - 1).replace("  # noqa: E402", ""))  # minidqn.py's order
            previous = node.end_lineno - 1
        defined = {_name(n) for n in self.plumbing} - {None}
        names = sorted(defined & used, key=str.lower)
        lines, line = [], "from minidqn import ("
        for name in names:  # wrapped at 120 characters, the project's line length
            if len(line) + len(name) + 2 > 118:
                lines.append(line.rstrip())
                line = "    "
            line += f"{name}, "
        lines.append(line.rstrip(", ") + ")")
        plumbing = "\n\n# Section 6 of minidqn.py, the plumbing: imported, not copied\n"
        return "\n".join(kept) + plumbing + "\n".join(lines)


def _cell(kind: str, text: str, index: int) -> dict:
    cell = {"cell_type": kind, "id": f"cell-{index:03d}", "metadata": {}, "source": text.splitlines(keepends=True)}
    if kind == "code":
        cell.update(execution_count=None, outputs=[])
    return cell


def exercise_markdown(number: int) -> str:
    exercise = course.BY_NUMBER[number]
    minutes, idea, equation = EXERCISE_TEXT[number]
    return (f"### Exercise {number} ({minutes} minutes): {exercise.title}\n\n{idea}\n\n$$\n{equation}\n$$\n\n"
            f"The tutorial's cell: {exercise.part}. Check it with the cell below the code: `check({number})`.")


def make_notebook(reference: str, solved: bool = False) -> str:
    """The notebook's JSON text (nbformat 4.5, no outputs): every exercise blanked, or, with solved=True, the
    reference's code in every block (the teacher's copy)."""
    source = Source(course.make_copy(reference, solved=solved))
    cells = []

    def add(kind: str, text: str) -> None:
        cells.append(_cell(kind, text, len(cells)))

    for item in LAYOUT:
        if isinstance(item, Markdown):
            add("markdown", item.text)
        elif isinstance(item, Code):
            add("code", "\n\n\n".join(source.unit(u) for u in item.units))
        elif isinstance(item, Exercise):
            add("markdown", exercise_markdown(item.number))
            code = "\n\n\n".join(source.unit(u) for u in item.units)
            if f"(exercise {item.number}:" not in code:
                raise ValueError(f"exercise {item.number}'s block is not in its cell: update LAYOUT in "
                                 f"exercises/notebook_cells.py")
            add("code", code)
            add("code", f"check({item.number})")
        elif item.kind == "setup":
            add("code", SETUP)
        elif item.kind == "imports":
            add("code", source.imports())
        else:
            add("code", SPECIAL_CODE[item.kind])
    missing = source.unused()
    if missing:
        raise ValueError(f"minidqn.py's {', '.join(missing)} in no cell of the notebook: add to LAYOUT in "
                         f"exercises/notebook_cells.py")
    notebook = {
        "cells": cells,
        "metadata": {
            "kernelspec": {"display_name": "Python 3", "language": "python", "name": "python3"},
            "language_info": {"name": "python"},
        },
        "nbformat": 4,
        "nbformat_minor": 5,
    }
    return json.dumps(notebook, indent=1, ensure_ascii=False) + "\n"
