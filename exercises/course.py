"""The course: which pieces of minidqn.py a learner writes, and how a learner's copy is made and read back.

`make.py` and `check.py` share this table. Each exercise is one idea of the tutorial, one or more line ranges of
the reference `minidqn.py` (a function's body, or the lines from a start line to an end line inside it), a
hint, and the project's own tests that check it (node ids of `test_minidqn.py`).
"""

from __future__ import annotations

import ast
import os
import re
from dataclasses import dataclass, field

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
REFERENCE = os.path.join(ROOT, "minidqn.py")
TESTS = os.path.join(ROOT, "test_minidqn.py")
DEFAULT_DIR = os.path.join(HERE, "work")  # the learner's copy goes here by default (git ignores it)

BEGIN = "### YOUR CODE HERE"
END = "### END OF YOUR CODE"


@dataclass
class Piece:
    """Lines of the reference to blank: the body of `qualname` (after its docstring), or, inside it, the lines
    from the first that starts with `start` to the first after it that starts with `end` (both included)."""

    qualname: str
    start: str | None = None
    end: str | None = None


@dataclass
class Exercise:
    number: int
    title: str
    part: str  # the tutorial's part and cell it matches
    equation: str  # what it asks for, in one line
    pieces: list
    hint: list  # lines of hint, shown in the blank
    tests: list = field(default_factory=list)  # node ids in test_minidqn.py


EXERCISES = [
    Exercise(1, "store a transition in the ring buffer", "Part I, 1. Replay Buffer: store_transition",
             "slot current_idx gets the transition; current_idx = (current_idx + 1) mod buffer_size",
             [Piece("ReplayBuffer.store_transition")],
             ["Write obs, next_obs, action, reward and terminated into slot self.current_idx of the five arrays.",
              "Then move self.current_idx on by one; at the end of the arrays it goes back to 0 and",
              "self.is_full becomes True (the ring has wrapped: every slot holds a transition)."],
             ["test_minidqn.py::TestRingBuffer::runTest", "test_minidqn.py::test_tutorial_replay_buffer_cells"]),
    Exercise(2, "sample a mini-batch", "Part I, 1. Replay Buffer: sample",
             "batch_indices ~ Uniform{0, ..., len(buffer) - 1}, batch_size of them, with replacement",
             [Piece("ReplayBuffer.sample", "batch_indices =", "batch_indices =")],
             ["batch_indices = batch_size indices drawn uniformly, with replacement, from the filled slots",
              "[0, len(self)): use self.rng (its `integers` method), never np.random."],
             ["test_minidqn.py::TestRingBuffer::runTest", "test_minidqn.py::test_tutorial_replay_buffer_cells"]),
    Exercise(3, "the Q-network's forward pass", "Part I, 2. Q-Network: forward",
             "h1 = act(x W1 + b1), h2 = act(h1 W2 + b2), Q = h2 W3 + b3",
             [Piece("QNetwork.forward", "p = self.params")],
             ["p = self.params holds W1, b1, W2, b2, W3, b3; self.activation is the activation function.",
              "h1 = act(x W1 + b1), h2 = act(h1 W2 + b2), q_values = h2 W3 + b3 (the @ operator multiplies).",
              "Return q_values, or (q_values, (x, h1, h2)) when return_activations is True: backward needs them."],
             ["test_minidqn.py::test_forward_is_the_two_layer_mlp", "test_minidqn.py::test_tutorial_q_network_cell",
              "test_minidqn.py::test_one_observation_gives_the_batch_row_and_leaves_backward_alone"]),
    Exercise(4, "epsilon-greedy action selection", "Part I, 3. Epsilon-greedy: epsilon_greedy_action_selection",
             "a = random action with probability epsilon, else argmax_a Q(s, a)",
             [Piece("epsilon_greedy_action_selection", "# No draw at all when greedy")],
             ["With probability exploration_rate (rng.random() below it) return a random action,",
              "int(rng.integers(action_space.n)); otherwise the greedy one, int(q_net(observation).argmax()).",
              "Draw nothing when exploration_rate is 0, so a greedy evaluation leaves the run's random stream alone."],
             ["test_minidqn.py::test_epsilon_greedy_takes_random_actions_at_the_rate_epsilon",
              "test_minidqn.py::test_periodic_greedy_evaluation_does_not_change_training"]),
    Exercise(5, "collect one transition", "Part I, 3. Epsilon-greedy: collect_one_step",
             "a ~ epsilon-greedy(s); s', r, terminated = env.step(a); store (s, s', a, r, terminated)",
             [Piece("collect_one_step")],
             ["Pick an action with epsilon_greedy_action_selection, take env.step(action), and store",
              "(obs, next_obs, action, reward, terminated, truncated) in the replay buffer. The terminal flag is",
              "`terminated` alone: a time limit (truncated) still has a value. Store next_obs before any reset;",
              "at the end of an episode reset the env (without a seed). With verbose >= 1, print",
              "f\"Episode return={...:.2f} length={...}\" from info['episode'] when an episode ends.",
              "Return the observation to act on next."],
             ["test_minidqn.py::test_tutorial_collect_and_schedule_cells",
              "test_minidqn.py::test_collect_one_step_prints_the_tutorial_episode_line",
              "test_minidqn.py::test_collect_one_step_resets_without_a_seed",
              "test_minidqn.py::test_time_limit_truncation_bootstraps"]),
    Exercise(6, "the linear schedule", "Part I, Bonus: exploration schedule (linear_schedule)",
             "value = initial + min(step / max_steps, 1) * (final - initial)",
             [Piece("linear_schedule", "progress =")],
             ["progress = current_step / max_steps, clipped to [0, 1]; return the value that far from",
              "initial_value to final_value."],
             ["test_minidqn.py::test_linear_schedule_clips_and_goes_both_ways",
              "test_minidqn.py::test_tutorial_collect_and_schedule_cells"]),
    Exercise(7, "the TD target", "Part II, DQN update: the TD target (with the target network)",
             "y = r + gamma * (1 - terminated) * max_a' Q_target(s', a')",
             [Piece("td_target")],
             ["next_q_values = q_target_net(replay_data.next_observations), (batch_size, n_actions); take the max",
              "over actions (Double DQN: the action q_net picks, valued by q_target_net). A terminal transition",
              "has no next value. Return r + gamma * (1 - terminated) * next value, shape (batch_size,)."],
             ["test_minidqn.py::test_td_target_is_the_reward_plus_the_discounted_max_of_the_target_network",
              "test_minidqn.py::test_termination_cuts_the_bootstrap"]),
    Exercise(8, "the loss and its gradient with respect to Q", "Part II, DQN update: the MSE loss",
             "L = mean(d^2) with d = Q(s, a) - y; dL/dQ(s_i, a_i) = 2 d_i / batch_size",
             [Piece("mse_loss")],
             ["Return (loss, grad): the mean of td_error squared, and its derivative with respect to each",
              "td_error (each Q(s_i, a_i)): 2 * td_error / batch_size."],
             ["test_minidqn.py::test_mse_loss_and_its_gradient",
              "test_minidqn.py::test_td_loss_gradient_matches_finite_differences[False-mse]"]),
    Exercise(9, "the backward pass", "Part II, DQN update: loss.backward(), written out",
             "dW3 = h2^T g, db3 = sum_rows(g), dh2 = (g W3^T) * act'(h2), and so on down",
             [Piece("QNetwork.backward", "# Each gradient is written", "grad_h1.sum(axis=0")],
             ["g = dLoss/dQ (batch_size, n_actions). For q = h2 W3 + b3: dW3 = h2^T g, db3 = g summed over the batch.",
              "Back through W3 and the activation: grad_h2 = (g W3^T) * self.activation_grad(h2); then the same",
              "rules for W2, b2 (from h1) and W1, b1 (from x). Write each gradient into its array:",
              "grads['W3'][:] = ..., and so on (grads are the network's own arrays)."],
             ["test_minidqn.py::test_backward_matches_finite_differences[relu]",
              "test_minidqn.py::test_backward_matches_finite_differences[tanh]",
              "test_minidqn.py::test_backward_writes_into_the_networks_own_gradient_vector",
              "test_minidqn.py::test_one_observation_gives_the_batch_row_and_leaves_backward_alone"]),
    Exercise(10, "Adam's step", "Part II, DQN update: optimizer.step(), written out (Kingma & Ba, Algorithm 1)",
             "m = b1 m + (1 - b1) g; v = b2 v + (1 - b2) g^2; p -= lr m_hat / (sqrt(v_hat) + eps)",
             [Piece("Adam.step", "if isinstance(self.params, FlatDict)")],
             ["t = self.n_steps is already counted. For every key k: p = self.params[k], g = grads[k] and the",
              "moments m = self.m[k], v = self.v[k]: m = beta1 m + (1 - beta1) g, v = beta2 v + (1 - beta2) g^2,",
              "m_hat = m / (1 - beta1^t), v_hat = v / (1 - beta2^t), p -= lr * m_hat / (sqrt(v_hat) + eps).",
              "Update the arrays in place (m[:] = ..., p -= ...): the dicts hold the network's own arrays."],
             ["test_minidqn.py::test_adam_matches_hand_unrolled_algorithm_1",
              "test_minidqn.py::test_adam_whole_vector_path_matches_the_per_array_loop"]),
    Exercise(11, "the target network: copies, never aliases, and the soft update",
             "Part II, Bonus: DQN target network (q_target_net.load_state_dict(q_net.state_dict()))",
             "theta_target = theta (hard copy); theta_target = theta_target + tau (theta - theta_target) (soft)",
             [Piece("QNetwork.polyak_update"), Piece("QNetwork.state_dict"),
              Piece("QNetwork.load_state_dict", "for k, v in self.params.items():")],
             ["polyak_update: move every weight a fraction tau of the way toward other's. tau 1 must give an exact",
              "copy: in floating point p + (p_other - p) can miss p_other in the last bit, so copy when tau == 1.",
              "state_dict: a dict of copies of the parameters. load_state_dict: copy state's values into this",
              "network's own arrays (v[...] = ...), so the target never shares memory with the online network."],
             ["test_minidqn.py::test_target_network_is_a_copy_and_does_not_move",
              "test_minidqn.py::test_polyak_update_moves_toward_the_other_network",
              "test_minidqn.py::test_target_interval_n_copies_every_n_env_steps",
              "test_minidqn.py::test_default_soft_target_update_moves_by_tau_after_every_gradient_step"]),
    Exercise(12, "the DQN update", "Part II, DQN update: dqn_update (with the target network)",
             "sample a batch; loss, grads = td_loss(...); clip; optimizer.step(grads)",
             [Piece("dqn_update")],
             ["Sample batch_size transitions, compute loss, grads and Q(s, a) with td_loss, refuse a loss that",
              "is not finite (raise ValueError(f\"the TD loss is {loss}...\")), clip the gradients when",
              "max_grad_norm is set, take the optimizer's step, put the batch's mean Q into info[\"mean_q\"]",
              "when info is a dict, and return the loss."],
             ["test_minidqn.py::test_tutorial_part2_update_smoke",
              "test_minidqn.py::test_dqn_update_no_target_is_the_update_with_the_online_net_as_target",
              "test_minidqn.py::test_non_finite_loss_stops_with_the_step",
              "test_minidqn.py::test_target_network_is_a_copy_and_does_not_move"]),
]
BY_NUMBER = {e.number: e for e in EXERCISES}


def add_arguments(parser, verb: str) -> None:
    """The two arguments make.py and check.py share: the copy's folder and the exercises to `verb`."""
    parser.add_argument("dir", nargs="?", default=DEFAULT_DIR, help="the folder of the learner's minidqn.py "
                        "(default: exercises/work)")
    parser.add_argument("--exercise", type=int, nargs="+", choices=sorted(BY_NUMBER), metavar="N",
                        help=f"{verb} only these exercises (default: all)")


def _find_function(tree: ast.Module, qualname: str) -> ast.FunctionDef:
    node = tree
    for name in qualname.split("."):
        matches = [n for n in ast.iter_child_nodes(node) if isinstance(n, (ast.FunctionDef, ast.ClassDef))
                   and n.name == name]
        if not matches:
            raise ValueError(f"minidqn.py has no {qualname}: the course table needs updating")
        node = matches[0]
    return node


def piece_lines(source: str, piece: Piece, tree: ast.Module | None = None) -> tuple:
    """The 0-based [first, last] line range of the reference that `piece` blanks."""
    function = _find_function(tree or ast.parse(source), piece.qualname)
    body = function.body
    if isinstance(body[0], ast.Expr) and isinstance(getattr(body[0], "value", None), ast.Constant) \
            and isinstance(body[0].value.value, str):
        body = body[1:]  # keep the docstring
    first, last = body[0].lineno - 1, function.end_lineno - 1
    lines = source.splitlines()
    if piece.start is not None:
        starts = [i for i in range(first, last + 1) if lines[i].strip().startswith(piece.start)]
        if not starts:
            raise ValueError(f"{piece.qualname} has no line starting with {piece.start!r}: update the course table")
        first = starts[0]
        if piece.end is not None:
            ends = [i for i in range(first, last + 1) if lines[i].strip().startswith(piece.end)]
            if not ends:
                raise ValueError(f"{piece.qualname} has no line starting with {piece.end!r}: update the course table")
            last = ends[0]
    while first > 0 and lines[first - 1].strip().startswith("#") and piece.start is None:
        first -= 1  # a comment just above the body's first statement belongs to it
    return first, last


def pieces_in_order(source: str) -> list:
    """(first, last, exercise, index of the piece in its exercise, number of pieces), sorted by line."""
    found, tree = [], ast.parse(source)
    for exercise in EXERCISES:
        for index, piece in enumerate(exercise.pieces):
            first, last = piece_lines(source, piece, tree)
            found.append((first, last, exercise, index, len(exercise.pieces)))
    found.sort(key=lambda row: row[0])
    for a, b in zip(found, found[1:]):
        if b[0] <= a[1]:
            raise ValueError(f"exercises {a[2].number} and {b[2].number} overlap in minidqn.py")
    return found


def label(exercise: Exercise, index: int, count: int) -> str:
    part = f", part {index + 1} of {count}" if count > 1 else ""
    return f"exercise {exercise.number}: {exercise.title}{part}"


def blank(exercise: Exercise, index: int, count: int, indent: str) -> list:
    """The lines a learner finds in place of a piece."""
    hint = [f"{indent}# Hint: {line}" for line in exercise.hint] if index == 0 else []
    return ([f"{indent}{BEGIN} ({label(exercise, index, count)})"] + hint +
            [f'{indent}raise NotImplementedError("exercise {exercise.number}: {exercise.title}")',
             f"{indent}{END} (exercise {exercise.number})"])


def make_copy(source: str, numbers: list | None = None, solved: bool = False) -> str:
    """The learner's copy of `source`: the chosen exercises (default: all) blanked, everything else as it is.
    solved=True keeps the reference's own lines inside the markers instead: the copy of a learner who has
    pasted every solution back (the tests use it)."""
    lines = source.splitlines()
    out, position = [], 0
    for first, last, exercise, index, count in pieces_in_order(source):
        if numbers is not None and exercise.number not in numbers:
            continue
        indent = lines[first][: len(lines[first]) - len(lines[first].lstrip())]
        block = blank(exercise, index, count, indent)
        if solved:
            block = [block[0]] + lines[first : last + 1] + [block[-1]]
        out += lines[position:first] + block
        position = last + 1
    out += lines[position:]
    header = ('"""A learner\'s copy of minidqn.py, written by exercises/make.py: write the code of every block that\n'
              f'says {BEGIN}, then check it with `python exercises/check.py`.\n\n')
    text = "\n".join(out) + "\n"
    assert text.startswith('"""')
    return header + text[3:]


def learner_blocks(copy: str) -> dict:
    """(exercise number, piece index) -> the learner's lines between the markers of that piece."""
    blocks, current, lines = {}, None, []
    counters = {}
    for line in copy.splitlines():
        stripped = line.strip()
        if stripped.startswith(BEGIN + " (exercise "):
            number = int(stripped[len(BEGIN + " (exercise "):].split(":")[0])
            # the label says which piece it is ("..., part 2 of 3)"); a notebook's cell may hold only that one
            part = re.search(r", part (\d+) of \d+\)$", stripped)
            index = int(part.group(1)) - 1 if part else counters.get(number, 0)
            counters[number] = index + 1
            current, lines = (number, index), []
        elif stripped.startswith(END) and current is not None:
            blocks[current] = lines
            current = None
        elif current is not None:
            lines.append(line)
    return blocks


def hybrid(reference: str, copy: str, number: int) -> str:
    """The reference with exercise `number`'s pieces taken from the learner's copy: the module its check runs."""
    blocks = learner_blocks(copy)
    lines = reference.splitlines()
    out, position = [], 0
    for first, last, exercise, index, _ in pieces_in_order(reference):
        if exercise.number != number:
            continue
        if (number, index) not in blocks:
            raise ValueError(f"the copy has no block for exercise {number} (its {BEGIN} ... {END} markers are gone)")
        out += lines[position:first] + blocks[(number, index)]
        position = last + 1
    out += lines[position:]
    return "\n".join(out) + "\n"
