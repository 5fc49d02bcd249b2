"""minidqn: the Deep Q-Network of the RLSS 2023 DQN tutorial, in one file of pure NumPy.

Read it top to bottom. Sections 1-5 are the DQN, in the tutorial's order; section 6 is plumbing.
    1. replay buffer      ReplayBufferSamples, ReplayBuffer, NStepReplayBuffer
    2. Q-network, Adam    QNetwork (forward and backward written by hand), Adam
    3. exploration        epsilon_greedy_action_selection, collect_one_step, linear_schedule
    4. DQN update         td_target, mse_loss, huber_loss, td_loss, dqn_update, dqn_update_no_target
    5. training loops     evaluate_policy, averaging_rate, run_dqn, run_dqn_no_target
    6. plumbing           argument checks, checkpoints, envs, PRESETS, the training log, GIFs, the command
                          line (`python minidqn.py --help`). You can stop reading before it.

There is no autograd: `backward` writes out every gradient, layer by layer, each under a comment with the forward
line it differentiates.

Sources
- DQN, experience replay and the target network: Mnih et al. 2015, "Human-level control through deep
  reinforcement learning", Nature 518.
- Adam: Kingma & Ba 2015, "Adam: A Method for Stochastic Optimization", ICLR (Algorithm 1).
- Huber loss: Huber 1964, "Robust Estimation of a Location Parameter", Ann. Math. Statist. 35.
- Double DQN: van Hasselt, Guez & Silver 2016, "Deep Reinforcement Learning with Double Q-learning", AAAI.
- Soft (Polyak) target updates: Lillicrap et al. 2016, "Continuous control with deep reinforcement learning", ICLR.
- n-step returns: Sutton 1988, "Learning to Predict by the Methods of Temporal Differences", Mach. Learn. 3;
  in DQN, Hessel et al. 2018, "Rainbow: Combining Improvements in Deep Reinforcement Learning", AAAI.
- Time limits bootstrap: Pardo et al. 2018, "Time Limits in Reinforcement Learning", ICML.
- Averaging the weights that play: Polyak & Juditsky 1992, "Acceleration of Stochastic Approximation by
  Averaging", SIAM J. Control Optim. 30; in deep RL, Nikishin et al. 2018, "Improving Stability in Deep
  Reinforcement Learning with Weight Averaging", UAI workshop. A window that grows with the run: Shamir & Zhang
  2013, "Stochastic Gradient Descent for Non-smooth Optimization: Convergence Results and Optimal Averaging
  Schemes", ICML (polynomial-decay averaging).
- Scaled inputs: LeCun et al. 1998, "Efficient BackProp", in Neural Networks: Tricks of the Trade (4.3).
- The API (names, signatures, check cells): Raffin, RLSS 2023 DQN tutorial,
  https://github.com/araffin/rlss23-dqn-tutorial
"""

from __future__ import annotations

import argparse
import contextlib
import functools
import inspect
import json
import math
import os
import re
import sys
import tempfile
import time
import typing
from dataclasses import dataclass
from typing import Optional

# One BLAS thread: these matrices are small, and handing them to several threads costs more than it saves.
# Set before NumPy loads; a setting already in the environment wins. Where NumPy was loaded first (a notebook, a
# script that imports it before minidqn), the variable comes too late, and threadpoolctl sets the same limit.
_BLAS_LOADED_UNPINNED = "numpy" in sys.modules and "OPENBLAS_NUM_THREADS" not in os.environ
os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")
os.environ.setdefault("OMP_NUM_THREADS", "1")

import gymnasium as gym  # noqa: E402
import numpy as np  # noqa: E402
from gymnasium import spaces  # noqa: E402

if _BLAS_LOADED_UNPINNED:
    try:
        from threadpoolctl import threadpool_limits
    except ImportError:
        import warnings

        warnings.warn("NumPy was imported before minidqn, so its matrix products may use every core: "
                      "pip install threadpoolctl (requirements.txt) lets minidqn keep them on one", stacklevel=2)
    else:
        threadpool_limits(limits=1, user_api="blas")  # for the whole process, as the variable would have been

# For callers that pass no `rng` (the tutorial's cells). `run_dqn` never uses it: it makes one
# np.random.Generator per run and hands it to everything that draws random numbers.
_DEFAULT_RNG = np.random.default_rng()


# ---------------------------------------------------------------------------------------------------------
# 1. Replay buffer
# ---------------------------------------------------------------------------------------------------------


@dataclass
class ReplayBufferSamples:
    """A mini-batch of transitions from the replay buffer."""

    observations: np.ndarray  # (batch_size, obs_dim), same as states in the theory
    next_observations: np.ndarray  # (batch_size, obs_dim)
    actions: np.ndarray  # (batch_size, 1)
    rewards: np.ndarray  # (batch_size,) float32
    terminateds: np.ndarray  # (batch_size,) bool


class ReplayBuffer:
    """
    A ring buffer of transitions: once full, each new transition overwrites the oldest one.

    :param buffer_size: Max number of transitions to store
    :param observation_space: Observation space of the env (a 1-D Box)
    :param action_space: Action space of the env (Discrete)
    :param rng: Generator used by `sample` (one per run, for reproducibility)
    """

    def __init__(
        self,
        buffer_size: int,
        observation_space: spaces.Box,
        action_space: spaces.Discrete,
        rng: Optional[np.random.Generator] = None,
    ) -> None:
        check_positive_int("buffer_size", buffer_size)
        check_spaces(observation_space, action_space, "ReplayBuffer")
        # Current position in the ring buffer: where the next transition goes
        self.current_idx = 0
        self.buffer_size = buffer_size
        # True once the ring has wrapped around: every slot holds a transition
        self.is_full = False
        self.observation_space = observation_space
        self.action_space = action_space
        self.rng = _DEFAULT_RNG if rng is None else rng
        # Preallocated, as in the tutorial: storing a transition copies it into a slot
        obs_shape = (buffer_size, *observation_space.shape)
        self.observations = np.zeros(obs_shape, dtype=observation_space.dtype)  # (buffer_size, obs_dim)
        self.next_observations = np.zeros(obs_shape, dtype=observation_space.dtype)  # (buffer_size, obs_dim)
        self.actions = np.zeros((buffer_size, 1), dtype=action_space.dtype)  # (buffer_size, 1)
        self.rewards = np.zeros((buffer_size,), dtype=np.float32)  # (buffer_size,)
        self.terminateds = np.zeros((buffer_size,), dtype=bool)  # (buffer_size,)

    def __len__(self) -> int:
        return self.buffer_size if self.is_full else self.current_idx

    def store_transition(
        self,
        obs: np.ndarray,
        next_obs: np.ndarray,
        action: int,
        reward: float,
        terminated: bool,
        truncated: bool = False,
    ) -> None:
        """
        Store one transition in the buffer.

        :param obs: Current observation
        :param next_obs: Next observation (before any reset)
        :param action: Action taken for the current observation
        :param reward: Reward received after taking the action
        :param terminated: Whether the episode reached a terminal state
            (not a truncation such as a time limit: a truncated state still has a value)
        :param truncated: Whether a time limit ended the episode here. Not stored: only `NStepReplayBuffer`
            needs to know that the episode ended
        """
        self.observations[self.current_idx] = obs
        self.next_observations[self.current_idx] = next_obs
        self.actions[self.current_idx] = action
        self.rewards[self.current_idx] = reward
        self.terminateds[self.current_idx] = terminated
        self.current_idx += 1
        if self.current_idx == self.buffer_size:  # wrap around: the ring is full from now on
            self.current_idx = 0
            self.is_full = True

    def sample(self, batch_size: int) -> ReplayBufferSamples:
        """
        Sample `batch_size` transitions uniformly, with replacement, from the filled part of the buffer.

        :param batch_size: How many transitions to sample.
        :return: Samples from the replay buffer
        """
        if len(self) == 0:
            raise ValueError("cannot sample from an empty replay buffer: store at least one transition first")
        batch_indices = self.rng.integers(0, len(self), batch_size)  # slots [0, len) hold transitions
        # Each array's rows at batch_indices, gathered with take: the same rows as the textbook indexing in the
        # comments, by a faster path through NumPy (benchmarks/results/forms.md)
        return ReplayBufferSamples(
            self.observations.take(batch_indices, axis=0),  # self.observations[batch_indices]
            self.next_observations.take(batch_indices, axis=0),  # self.next_observations[batch_indices]
            self.actions.take(batch_indices, axis=0),  # self.actions[batch_indices]
            self.rewards.take(batch_indices, axis=0),  # self.rewards[batch_indices]
            self.terminateds.take(batch_indices, axis=0),  # self.terminateds[batch_indices]
        )


class NStepReplayBuffer(ReplayBuffer):
    """
    A replay buffer of n-step transitions: each stored transition goes n env steps ahead, with the discounted
    sum of the n rewards, so the TD target r_t + ... + gamma^(n-1) r_(t+n-1) + gamma^n max_a Q(s_(t+n), a)
    carries a reward n states back per update instead of one (Sutton 1988; in DQN, Hessel et al. 2018).
    Train with gamma^n as the discount. The returns are uncorrected for the exploration policy (as Rainbow).

    :param n_steps: Env steps per stored transition (1: the plain replay buffer)
    :param gamma: The discount factor, to sum the n rewards
    (the other parameters: `ReplayBuffer`'s)
    """

    def __init__(
        self,
        buffer_size: int,
        observation_space: spaces.Box,
        action_space: spaces.Discrete,
        rng: Optional[np.random.Generator] = None,
        n_steps: int = 3,
        gamma: float = 0.99,
    ) -> None:
        super().__init__(buffer_size, observation_space, action_space, rng)
        check_positive_int("n_steps", n_steps)
        check_range("gamma", gamma, 0.0, 1.0)
        self.n_steps = n_steps
        self.gamma = gamma
        self.pending = []  # (obs, action, reward) of the episode's last steps, not yet n steps old

    def store_transition(
        self,
        obs: np.ndarray,
        next_obs: np.ndarray,
        action: int,
        reward: float,
        terminated: bool,
        truncated: bool = False,
    ) -> None:
        """Take one env step; store the transition that started n steps ago (at an episode's end: the rest)."""
        self.pending.append((np.array(obs), action, reward))  # a copy: the caller may reuse its array
        # At a terminal state every pending transition ends there (no bootstrap, so no discount is needed);
        # otherwise only the oldest one, once it is n steps old
        while self.pending and (terminated or len(self.pending) == self.n_steps):
            n_step_return = sum(self.gamma**k * r for k, (_, _, r) in enumerate(self.pending))
            first_obs, first_action, _ = self.pending.pop(0)
            super().store_transition(first_obs, next_obs, first_action, n_step_return, terminated)
        if truncated:  # a time limit: the rest can never be n steps long, and is dropped
            self.pending.clear()


# ---------------------------------------------------------------------------------------------------------
# 2. Q-network: a two-hidden-layer MLP, forward and backward by hand, and Adam
# ---------------------------------------------------------------------------------------------------------

@functools.lru_cache(maxsize=16)
def read_only_zeros(shape: tuple, dtype: np.dtype) -> np.ndarray:
    """An array of zeros, made once per shape and dtype (a network meets few: its batch, one observation)."""
    zeros = np.zeros(shape, dtype=dtype)
    zeros.flags.writeable = False  # shared by every call: nothing may write into it
    return zeros


def relu(z: np.ndarray) -> np.ndarray:
    # np.maximum(z, 0): the same values by a faster path. NumPy's loop over two arrays is vectorized, its loop over
    # an array and a scalar is not, and the ReLU runs on both hidden layers of every forward
    # (benchmarks/results/forms.md)
    z = np.asarray(z)  # a plain number or a list works too
    return np.maximum(z, read_only_zeros(z.shape, z.dtype))


def relu_grad(h: np.ndarray) -> np.ndarray:
    return h > 0  # d relu / dz, written from the output h = relu(z): 1 where it passed, 0 where it was cut


def tanh_grad(h: np.ndarray) -> np.ndarray:
    return 1 - h * h  # d tanh / dz = 1 - tanh(z)^2, also from the output


# name -> (activation, its derivative written from the activation's output, which backward has at hand)
ACTIVATIONS = {"relu": (relu, relu_grad), "tanh": (np.tanh, tanh_grad)}
UNBOUNDED = 1e30  # an observation bound this large (or infinite) means none: that dimension is not scaled
PARAMETER_NAMES = ("W1", "b1", "W2", "b2", "W3", "b3")


class FlatDict(dict):
    """
    A dict of named arrays that are views into one contiguous vector, `.vector`.

    Code that treats every array alike (Adam, the target-network updates) can then make one NumPy call on
    `.vector` instead of one per array, which matters when a call costs about as much as its arithmetic.

    :param shapes: name -> shape, in the order the arrays tile the vector
    :param dtype: The arrays' dtype; they start at zero
    """

    def __init__(self, shapes: dict, dtype) -> None:
        self.vector = np.zeros(sum(math.prod(shape) for shape in shapes.values()), dtype=dtype)
        offset = 0
        for name, shape in shapes.items():
            size = math.prod(shape)
            self[name] = self.vector[offset : offset + size].reshape(shape)
            offset += size


class QNetwork:
    """
    A Q-network: obs -> Linear -> act -> Linear -> act -> Linear -> one Q-value per action.

    Parameters live in a dict (`parameters()`), gradients in a dict with the same keys (`backward` fills
    `grads`, as PyTorch fills each parameter's `.grad`), and Adam keeps its moments in dicts with the same keys.

    :param observation_space: Observation space of the env (a 1-D Box)
    :param action_space: Action space of the env (Discrete); one output per action
    :param n_hidden_units: Number of units for each hidden layer
    :param activation_fn: "relu" (the tutorial's nn.ReLU) or "tanh"
    :param dtype: np.float32 for training, np.float64 for gradient checks
    :param rng: Generator for the initial weights
    :param scale_observations: First map each observation dimension that has finite bounds in
        `observation_space` onto [-1, 1] (a fixed input layer, not learned); unbounded dimensions pass as they are
    """

    def __init__(
        self,
        observation_space: spaces.Box,
        action_space: spaces.Discrete,
        n_hidden_units: int = 64,
        activation_fn: str = "relu",
        dtype: type = np.float32,
        rng: Optional[np.random.Generator] = None,
        scale_observations: bool = False,
    ) -> None:
        check_spaces(observation_space, action_space, "QNetwork")
        check_positive_int("n_hidden_units", n_hidden_units)
        check_choice("activation_fn", activation_fn, ACTIVATIONS)
        if np.dtype(dtype) not in (np.float32, np.float64):
            raise ValueError(f"dtype must be float32 or float64, got {dtype}")
        rng = _DEFAULT_RNG if rng is None else rng
        self.observation_space = observation_space
        self.obs_dim = int(observation_space.shape[0])
        self.n_actions = int(action_space.n)
        self.n_hidden_units = int(n_hidden_units)
        self.activation_name = activation_fn
        self.activation, self.activation_grad = ACTIVATIONS[activation_fn]
        self.dtype = np.dtype(dtype)
        sizes = [self.obs_dim, self.n_hidden_units, self.n_hidden_units, self.n_actions]
        shapes = {}
        for layer, (fan_in, fan_out) in enumerate(zip(sizes[:-1], sizes[1:]), start=1):
            shapes[f"W{layer}"], shapes[f"b{layer}"] = (fan_in, fan_out), (fan_out,)
        # The parameters, and the gradients, each tile one vector (FlatDict): Adam and the target updates
        # then touch the whole network in a few NumPy calls
        self.params = FlatDict(shapes, self.dtype)
        self.grads = FlatDict(shapes, self.dtype)  # written by `backward`
        for name, shape in shapes.items():
            # PyTorch's nn.Linear default init, U(-1/sqrt(fan_in), 1/sqrt(fan_in)), as the tutorial gets
            bound = 1.0 / math.sqrt(sizes[int(name[1]) - 1])
            self.params[name][...] = rng.uniform(-bound, bound, shape)
        # Inputs of similar scale train faster and more evenly (LeCun et al. 1998): CartPole's pole angle
        # and cart position, whose bounds differ tenfold, both end up spanning [-1, 1]
        self.scale_observations = bool(scale_observations)
        low, high = observation_space.low.astype(np.float64), observation_space.high.astype(np.float64)
        # Many envs write "unbounded" as float32's largest value: scaling by it would erase the input
        bounded = (np.abs(low) < UNBOUNDED) & (np.abs(high) < UNBOUNDED) & (high > low)
        low, high = np.where(bounded, low, -1.0), np.where(bounded, high, 1.0)  # unbounded: left as they are
        self.obs_center = ((high + low) / 2).astype(self.dtype)  # (obs_dim,)
        self.obs_half_width = ((high - low) / 2).astype(self.dtype)  # (obs_dim,)

    def parameters(self) -> FlatDict:
        """The live parameter arrays (not copies): an optimizer updates them in place."""
        return self.params

    @property
    def flat_params(self) -> np.ndarray:
        """Every parameter in one vector (the memory the named arrays of `parameters()` are views into)."""
        return self.params.vector

    def forward(self, observations: np.ndarray, return_activations: bool = False):
        """
        :param observations: A batch of observations (batch_size, obs_dim), or one observation (obs_dim,)
        :param return_activations: Also return what `backward` needs: the input and the hidden activations
        :return: The Q-values of every action (batch_size, n_actions), or (n_actions,) for one observation;
            with `return_activations`, the pair (q_values, activations)
        """
        x = np.asarray(observations, dtype=self.dtype)
        if x.ndim not in (1, 2) or x.shape[-1] != self.obs_dim:
            raise ValueError(f"QNetwork expects observations of shape (batch_size, {self.obs_dim}) or "
                             f"({self.obs_dim},), got {x.shape}")
        if self.scale_observations:
            x = (x - self.obs_center) / self.obs_half_width  # bounded dimensions onto [-1, 1]
        p = self.params
        h1 = self.activation(x @ p["W1"] + p["b1"])  # (batch_size, n_hidden_units)
        h2 = self.activation(h1 @ p["W2"] + p["b2"])  # (batch_size, n_hidden_units)
        q_values = h2 @ p["W3"] + p["b3"]  # (batch_size, n_actions)
        if return_activations:
            return q_values, (x, h1, h2)
        return q_values

    __call__ = forward

    def backward(self, grad_q_values: np.ndarray, activations: tuple) -> FlatDict:
        """
        Backpropagate dLoss/dQ through the forward pass that returned `activations`, layer by layer from the top.

        :param grad_q_values: dLoss/dQ-values (batch_size, n_actions)
        :param activations: (x, h1, h2), as `forward(..., return_activations=True)` returned them
        :return: dLoss/dparameter for every parameter, same keys and shapes as `parameters()`: the network's
            own `grads`, overwritten by the next `backward` (copy them to keep them)
        """
        x, h1, h2 = activations
        p, grads = self.params, self.grads
        g = grad_q_values  # (batch_size, n_actions)
        # Each gradient is written straight into its slot of the gradient vector (out=), never allocated
        # q = h2 W3 + b3
        np.matmul(h2.T, g, out=grads["W3"])  # dW3 = h2^T g  (n_hidden_units, n_actions)
        g.sum(axis=0, out=grads["b3"])  # db3 = sum of g over the batch: the bias is added to every row
        # h2 = act(h1 W2 + b2): back through W3, then through the activation
        grad_h2 = (g @ p["W3"].T) * self.activation_grad(h2)  # (batch_size, n_hidden_units)
        np.matmul(h1.T, grad_h2, out=grads["W2"])  # dW2 = h1^T dh2  (n_hidden_units, n_hidden_units)
        grad_h2.sum(axis=0, out=grads["b2"])  # db2 = sum of dh2 over the batch
        # h1 = act(x W1 + b1): the same rules, one layer down
        grad_h1 = (grad_h2 @ p["W2"].T) * self.activation_grad(h1)  # (batch_size, n_hidden_units)
        np.matmul(x.T, grad_h1, out=grads["W1"])  # dW1 = x^T dh1  (obs_dim, n_hidden_units)
        grad_h1.sum(axis=0, out=grads["b1"])  # db1; the input needs no gradient of its own
        return grads

    def polyak_update(self, other: "QNetwork", tau: float) -> None:
        """
        Move every weight toward `other`'s: p = p + tau * (p_other - p). tau 1 gives exactly a copy (which the
        formula can miss in the last bit of floating point, so it copies instead).

        The soft target update (Lillicrap et al. 2016), and the average of the weights that play
        (Polyak & Juditsky 1992): the same exponential moving average, at different rates.
        """
        if tau == 1.0:  # exactly a copy: in floating point, p + (p_other - p) can miss p_other in the last bit
            self.params.vector[:] = other.params.vector
        else:
            self.params.vector += tau * (other.params.vector - self.params.vector)

    def state_dict(self) -> dict:
        """Copies of the parameters (never views): the tutorial's target-network idiom."""
        return {k: v.copy() for k, v in self.params.items()}

    def load_state_dict(self, state: dict) -> None:
        """Copy values from `state` into this network's own arrays (no aliasing)."""
        check_state_dict(state, self.params)
        for k, v in self.params.items():
            v[...] = state[k]

    def save(self, path: str) -> None:
        """Save the weights and architecture to a .npz file, written whole or not at all (section 6)."""
        save_checkpoint(self, path)

    @classmethod
    def load(cls, path: str) -> "QNetwork":
        """Load a network saved by `save` (section 6). Never unpickles: a checkpoint is data, not code."""
        return load_checkpoint(cls, path)


class Adam:
    """
    Adam (Kingma & Ba 2015, Algorithm 1): the same update as torch.optim.Adam without weight decay.

    :param params: dict of live parameter arrays, updated in place (e.g. `q_net.parameters()`)
    :param lr: Learning rate (step size alpha)
    :param betas: Decay rates of the first- and second-moment estimates
    :param eps: Added to the denominator for numerical stability
    """

    def __init__(self, params: dict, lr: float = 1e-3, betas: tuple = (0.9, 0.999), eps: float = 1e-8) -> None:
        check_positive("lr", lr)
        for beta in betas:
            check_range("each beta", beta, 0.0, 1.0 - 1e-12)
        self.params = params
        self.lr = lr
        self.betas = betas
        self.eps = eps
        self.n_steps = 0  # t in Algorithm 1: steps taken, for the bias correction
        shapes = {k: v.shape for k, v in params.items()}
        dtype = next(iter(params.values())).dtype
        self.m = FlatDict(shapes, dtype)  # first-moment estimate, same keys as params
        self.v = FlatDict(shapes, dtype)  # second-moment estimate

    def step(self, grads: dict) -> None:
        """Apply one Adam update with `grads` (same keys as `params`)."""
        beta1, beta2 = self.betas
        self.n_steps += 1
        t = self.n_steps
        if isinstance(self.params, FlatDict) and isinstance(grads, FlatDict):
            # A QNetwork's parameters and gradients each tile one vector: the whole network in one pass
            tensors = [(self.params.vector, grads.vector, self.m.vector, self.v.vector)]
        else:
            tensors = [(p, grads[k], self.m[k], self.v[k]) for k, p in self.params.items()]
        for p, g, m, v in tensors:
            # Algorithm 1, one line per equation ([:] and -= write into the live arrays)
            m[:] = beta1 * m + (1 - beta1) * g  # biased first moment
            v[:] = beta2 * v + (1 - beta2) * g**2  # biased second moment
            v_hat = v / (1 - beta2**t)  # bias-corrected: the moments start at 0
            # p = p - lr * m_hat / (sqrt(v_hat) + eps), with m_hat = m / (1 - beta1**t) folded into the step size
            p -= self.lr / (1 - beta1**t) * (m / (np.sqrt(v_hat) + self.eps))
            # Not in Algorithm 1: where the gradient stays 0 (a dead ReLU unit), m decays below the smallest normal
            # float, np.finfo(dtype).tiny, and stays there (rounding stops the decay short of 0). Such subnormal
            # floats cost Intel CPUs slow microcode at every step, and NumPy cannot turn on flush-to-zero: zero
            # them, too small to move a weight anyway (a product with the mask: no branch per entry)
            m *= np.abs(m) >= np.finfo(m.dtype).tiny


# ---------------------------------------------------------------------------------------------------------
# 3. Exploration: epsilon-greedy data collection and the linear schedule
# ---------------------------------------------------------------------------------------------------------


def epsilon_greedy_action_selection(
    q_net: QNetwork,
    observation: np.ndarray,
    exploration_rate: float,
    action_space: spaces.Discrete,
    rng: Optional[np.random.Generator] = None,
) -> int:
    """
    With probability epsilon (`exploration_rate`) take a random action, otherwise the greedy one.

    :param q_net: Q-network for estimating the q value
    :param observation: A single observation (obs_dim,)
    :param exploration_rate: Probability of a random action, in [0, 1] (0 means greedy)
    :param action_space: Action space of the env (Discrete)
    :param rng: The run's generator
    :return: An action selected according to the epsilon-greedy policy.
    """
    rng = _DEFAULT_RNG if rng is None else rng
    # No draw at all when greedy: a greedy evaluation then leaves the run's random stream, and so training, as is
    if exploration_rate > 0 and rng.random() < exploration_rate:
        return int(rng.integers(action_space.n))  # random action
    q_values = q_net(observation)  # (n_actions,): one observation goes through as a vector
    return int(q_values.argmax())  # greedy action


def collect_one_step(
    env: gym.Env,
    q_net: QNetwork,
    replay_buffer: ReplayBuffer,
    obs: np.ndarray,
    exploration_rate: float = 0.1,
    verbose: int = 0,
    rng: Optional[np.random.Generator] = None,
) -> np.ndarray:
    """
    Take one epsilon-greedy step in the env and store the transition in the replay buffer.

    :param env: The environment object
    :param q_net: Q-network for estimating the q value
    :param replay_buffer: Replay buffer to store the new transition in
    :param obs: The current observation
    :param exploration_rate: Probability of a random action, in [0, 1]
    :param verbose: 1 to print each episode's return and length when it ends
        (needs the env wrapped in gymnasium.wrappers.RecordEpisodeStatistics, as `run_dqn` does)
    :param rng: The run's generator
    :return: The observation to act on next (the first one of a new episode after a reset)
    """
    action = epsilon_greedy_action_selection(q_net, obs, exploration_rate, env.action_space, rng)
    next_obs, reward, terminated, truncated, info = env.step(action)
    # `terminated` is the terminal flag: a time-limit truncation is not a terminal state, its value still counts
    # (Pardo et al. 2018; `truncated` only tells an n-step buffer that the episode ended). Store next_obs
    # before any reset: it is the state the transition reached.
    replay_buffer.store_transition(obs, next_obs, action, float(reward), terminated, truncated)
    if "episode" in info and verbose >= 1:
        print(f"Episode return={float(info['episode']['r']):.2f} length={int(info['episode']['l'])}")
    if terminated or truncated:
        next_obs, _ = env.reset()  # no seed: the env was seeded once, on its first reset
    return next_obs


def linear_schedule(initial_value: float, final_value: float, current_step: int, max_steps: int) -> float:
    """
    Linear schedule (for epsilon), constant at `final_value` after `max_steps`. Works both directions.

    :param initial_value: Value at step 0
    :param final_value: Value at `max_steps` and after
    :param current_step: Current step of the schedule
    :param max_steps: Number of steps to go from initial to final value (> 0)
    :return: The current value of the schedule.
    """
    if max_steps <= 0:
        raise ValueError(f"max_steps must be > 0, got {max_steps}")
    progress = min(max(current_step / max_steps, 0.0), 1.0)  # in [0, 1], clipped after max_steps
    return initial_value + progress * (final_value - initial_value)


# ---------------------------------------------------------------------------------------------------------
# 4. The DQN update: TD target from the target network, loss, gradient, Adam step
# ---------------------------------------------------------------------------------------------------------


def mse_loss(td_error: np.ndarray) -> tuple:
    """The tutorial's loss, mean(td_error^2), and its gradient with respect to each TD error."""
    # One dot product, (d . d) / n: np.mean's own overhead costs more than the arithmetic at a batch's size
    # (benchmarks/results/forms.md)
    loss = td_error @ td_error / len(td_error)  # np.mean(td_error**2)
    grad = 2 * td_error / len(td_error)  # d mean(d^2) / d d_i = 2 d_i / n
    return loss, grad


def huber_loss(td_error: np.ndarray) -> tuple:
    """Smooth L1 with delta 1 (SB3's, and Mnih et al. 2015's error clipping): quadratic near 0, then linear."""
    abs_error = np.abs(td_error)
    loss = np.mean(np.where(abs_error <= 1, 0.5 * td_error**2, abs_error - 0.5))
    grad = np.clip(td_error, -1, 1) / len(td_error)  # the gradient is capped at 1 per sample
    return loss, grad


LOSSES = {"mse": mse_loss, "huber": huber_loss}


def td_target(
    q_net: QNetwork,
    q_target_net: QNetwork,
    replay_data: ReplayBufferSamples,
    gamma: float,
    double_dqn: bool = False,
) -> np.ndarray:
    """
    The TD target r + gamma * (1 - terminated) * max_a' Q_target(s', a') of every transition in the batch.

    :param q_net: The Q-network being trained (used only by Double DQN, to pick a')
    :param q_target_net: The target network, which gives the bootstrap value (no gradient flows through it)
    :param replay_data: A mini-batch of transitions
    :param gamma: The discount factor, in [0, 1]
    :param double_dqn: Pick a' with `q_net`, evaluate it with `q_target_net` (van Hasselt 2016)
    :return: The TD targets (batch_size,)
    """
    next_q_values = q_target_net(replay_data.next_observations)  # (batch_size, n_actions)
    if double_dqn:
        next_actions = q_net(replay_data.next_observations).argmax(axis=1)  # (batch_size,) online net picks
        next_q_values = next_q_values[np.arange(len(next_actions)), next_actions]  # (batch_size,) target evaluates
    else:
        next_q_values = next_q_values.max(axis=1)  # (batch_size,) greedy policy
    terminated = replay_data.terminateds.astype(next_q_values.dtype)  # (batch_size,) 1.0 where terminal
    return replay_data.rewards + gamma * (1 - terminated) * next_q_values  # (batch_size,)


def td_loss(
    q_net: QNetwork,
    q_target_net: QNetwork,
    replay_data: ReplayBufferSamples,
    gamma: float,
    loss_fn: str = "mse",
    double_dqn: bool = False,
) -> tuple:
    """
    The TD loss of a batch and its gradient with respect to `q_net`'s parameters.

    :param q_net: The Q-network to differentiate
    :param q_target_net: The target network, for the TD target (no gradient flows through it)
    :param replay_data: A mini-batch of transitions
    :param gamma: The discount factor, in [0, 1]
    :param loss_fn: "mse" (the tutorial's) or "huber" (as SB3 and Mnih et al. 2015)
    :param double_dqn: Pick the next action with `q_net`, evaluate it with `q_target_net` (van Hasselt 2016)
    :return: (loss, grads, Q(s, a) of the batch (batch_size,))
    """
    batch_size = replay_data.rewards.shape[0]
    rows = np.arange(batch_size)
    actions = replay_data.actions[:, 0]  # (batch_size,)
    target = td_target(q_net, q_target_net, replay_data, gamma, double_dqn)  # (batch_size,)

    # Q(s, a) for the actions that were taken
    q_values, activations = q_net.forward(replay_data.observations, return_activations=True)  # (batch, n_actions)
    current_q_values = q_values[rows, actions]  # (batch_size,)
    assert current_q_values.shape == (batch_size,), f"{current_q_values.shape} != {(batch_size,)}"
    assert current_q_values.shape == target.shape, f"{current_q_values.shape} != {target.shape}"

    td_error = current_q_values - target  # (batch_size,)
    loss, grad_current_q = LOSSES[loss_fn](td_error)  # the loss and dLoss/dQ(s, a)
    grad_q_values = np.zeros_like(q_values)  # (batch_size, n_actions): only the taken actions get gradient
    grad_q_values[rows, actions] = grad_current_q
    grads = q_net.backward(grad_q_values, activations)
    return float(loss), grads, current_q_values


def clip_grad_norm(grads: dict, max_norm: float) -> float:
    """Scale all gradients together so their global L2 norm is at most `max_norm`; return the norm before."""
    total_norm = math.sqrt(sum(float(np.sum(g * g)) for g in grads.values()))
    if total_norm > max_norm:
        for g in grads.values():
            g *= max_norm / total_norm
    return total_norm


def dqn_update(
    q_net: QNetwork,
    q_target_net: QNetwork,
    optimizer: Adam,
    replay_buffer: ReplayBuffer,
    batch_size: int,
    gamma: float,
    loss_fn: str = "mse",
    max_grad_norm: Optional[float] = None,
    double_dqn: bool = False,
    info: Optional[dict] = None,
) -> float:
    """
    One gradient step on the Q-network with a mini-batch from the replay buffer.

    :param q_net: The Q-network to update
    :param q_target_net: The target Q-network, to compute the TD target
    :param optimizer: The optimizer (Adam over `q_net.parameters()`)
    :param replay_buffer: The replay buffer containing the transitions
    :param batch_size: The minibatch size, how many transitions to sample
    :param gamma: The discount factor
    :param loss_fn: "mse" or "huber"
    :param max_grad_norm: Clip the global gradient norm to this value (None: no clipping)
    :param double_dqn: Use the Double DQN target
    :param info: If a dict is given, it receives "mean_q", the batch's mean Q(s, a), for logging
    :return: The loss before the step
    """
    replay_data = replay_buffer.sample(batch_size)
    loss, grads, current_q_values = td_loss(q_net, q_target_net, replay_data, gamma, loss_fn, double_dqn)
    if not math.isfinite(loss):  # stop before a NaN reaches the weights
        raise ValueError(f"the TD loss is {loss}; the update was not applied (try a lower learning rate)")
    if max_grad_norm is not None:
        clip_grad_norm(grads, max_grad_norm)
    optimizer.step(grads)
    if info is not None:
        info["mean_q"] = float(np.mean(current_q_values))
    return loss


def dqn_update_no_target(
    q_net: QNetwork,
    optimizer: Adam,
    replay_buffer: ReplayBuffer,
    batch_size: int,
    gamma: float,
) -> float:
    """
    Part II's first update: the same gradient step, without a target network. The TD target comes from
    `q_net` itself, so every step moves the target it chases.

    :param q_net: The Q-network to update (it also gives the TD target)
    :param optimizer: The optimizer (Adam over `q_net.parameters()`)
    :param replay_buffer: The replay buffer containing the transitions
    :param batch_size: The minibatch size, how many transitions to sample
    :param gamma: The discount factor
    :return: The loss before the step
    """
    return dqn_update(q_net, q_net, optimizer, replay_buffer, batch_size, gamma)


# ---------------------------------------------------------------------------------------------------------
# 5. Evaluation and the training loops
# ---------------------------------------------------------------------------------------------------------


def evaluate_policy(
    eval_env: gym.Env,
    q_net: QNetwork,
    n_eval_episodes: int,
    eval_exploration_rate: float = 0.0,
    rng: Optional[np.random.Generator] = None,
    verbose: int = 1,
    video_name: Optional[str] = None,
) -> tuple:
    """
    Run `n_eval_episodes` full episodes with an epsilon-greedy policy (greedy by default).

    :param eval_env: The environment to evaluate the policy on (not the training env)
    :param q_net: The Q-network to evaluate
    :param n_eval_episodes: The number of episodes
    :param eval_exploration_rate: The exploration rate to use during evaluation
    :param rng: The run's generator (used only when eval_exploration_rate > 0)
    :param verbose: 1 to print the tutorial's "Mean episode reward" line
    :param video_name: When set, record every episode into the animated GIF logs/videos/<video_name>.gif
        (needs eval_env made with render_mode="rgb_array", as in the tutorial)
    :return: (mean, std) of the episode returns
    """
    check_positive_int("n_eval_episodes", n_eval_episodes)
    if video_name is not None and eval_env.render_mode != "rgb_array":
        raise ValueError(f"video_name needs an eval_env made with render_mode='rgb_array', "
                         f"got render_mode={eval_env.render_mode!r}")
    frames = []
    episode_returns = []
    for _ in range(n_eval_episodes):
        obs, _ = eval_env.reset()
        total_reward, done = 0.0, False
        while not done:
            if video_name is not None:
                frames.append(eval_env.render())  # (height, width, 3) uint8; "human" mode draws itself in step
            action = epsilon_greedy_action_selection(q_net, obs, eval_exploration_rate, eval_env.action_space, rng)
            obs, reward, terminated, truncated, _ = eval_env.step(action)
            total_reward += float(reward)
            done = terminated or truncated
        episode_returns.append(total_reward)
    if video_name is not None:
        path = os.path.join("logs", "videos", f"{video_name}.gif")
        save_gif(frames, path, fps=eval_env.metadata.get("render_fps", 30))
        if verbose >= 1:
            print(f"Saving video to {path}")
    mean, std = float(np.mean(episode_returns)), float(np.std(episode_returns))
    if verbose >= 1:
        print(f"Mean episode reward: {mean:.2f} +/- {std:.2f}")
    return mean, std


def averaging_rate(rate: float, window: Optional[float], k: int) -> float:
    """
    The rate at which the average that plays moves toward the online weights after the k-th gradient step.

    :param rate: The constant rate (weight_averaging_rate), the smallest the rate gets
    :param window: Average about this fraction of the k steps so far (None: the constant rate alone)
    :param k: Gradient steps taken so far (>= 1)
    :return: min(1, max(rate, 1 / (window * k))): copies at first, then a window that grows with the run
    """
    if window is None:
        return rate
    return min(1.0, max(rate, 1 / (window * k)))  # 1 / (window k): polynomial-decay averaging (Shamir & Zhang 2013)


def run_dqn(
    # The defaults are the CartPole-v1 demo; other envs' tuned rows are in PRESETS (section 6), used as
    # run_dqn(**PRESETS["MountainCar-v0"]). Each comment gives the default's source or reason; what the
    # alternatives measured is in benchmarks/results/, not here, where it would go stale.
    env_id: str = "CartPole-v1",
    # Holds the whole run, so early failures are never forgotten (tutorial, RL Zoo: 100k)
    replay_buffer_size: int = 100_000,
    # None: a small soft update after every gradient step (tau, below; Lillicrap et al. 2016), steadier here
    # than the tutorial's hard copy every 10 env steps
    target_network_update_interval: Optional[int] = None,
    learning_starts: int = 1000,  # random-policy warm-up (tutorial, RL Zoo)
    exploration_initial_eps: float = 1.0,  # tutorial, RL Zoo
    exploration_final_eps: float = 0.04,  # tutorial, RL Zoo
    # Epsilon reaches its final value at 30% of the run, tuned with the width and batch below: in a run half RL
    # Zoo's length, the tutorial's 10% would leave few exploring steps after the warm-up (tune25-*.md)
    exploration_fraction: float = 0.3,
    # Half RL Zoo's CartPole budget: with the width, batch and epsilon here, as reliable on fresh seeds as the
    # earlier 50k-step defaults (benchmarks/results/reliability-CartPole-v1*.md)
    n_timesteps: int = 25_000,
    # One gradient step every 4 env steps (SB3's train_freq default; RL Zoo's Acrobot and LunarLander rows): half
    # as often as the tutorial's every 2, on a batch twice as large: as many samples per env step, in half the calls
    update_interval: int = 4,
    gradient_steps: int = 1,  # gradient steps in a row at each of those updates (tutorial: 1; SB3 calls it so too)
    # Fewer, larger-batch steps take larger ones: with the tutorial's 1e-3 at this rhythm (measured at 64 units,
    # batch 256, 50k steps), about half the tuning seeds had not learned by the end of the run (tune17-*.md)
    learning_rate: float = 5e-3,
    final_learning_rate: Optional[float] = None,  # constant: a decay did not help once the weights are averaged
    # Twice the tutorial's 64, at half its rhythm (update_interval): the tutorial's samples per env step. The
    # width below on a batch of 256 learned as well, in far more time (demo-25k-96units.md, demo-25k-h96-b128.md)
    batch_size: int = 128,
    gamma: float = 0.99,  # tutorial; higher values let Q diverge far past 1 / (1 - gamma)
    n_steps: int = 1,  # one-step TD targets (tutorial); uncorrected 3-step returns failed most CartPole seeds
    # 1.5 times the tutorial's 64, far less arithmetic per sample than RL Zoo's 256. In this many steps no
    # setting tried at 64 units reached the reliability goal on the tuning seeds; 96 units on a batch of 128 did,
    # at about the arithmetic of 64 on 256 (tune25-*.md, demo-25k*.md). A likely reason, not measured in a results
    # file: ReLU units that die during training leave a narrow network few live ones
    n_hidden_units: int = 96,
    # Bounded observation dimensions onto [-1, 1] (LeCun et al. 1998); Dopamine rescales CartPole the same way
    scale_observations: bool = True,
    n_eval_episodes: int = 10,  # tutorial
    evaluation_interval: int = 5000,  # a progress line every 20% of the demo
    eval_exploration_rate: float = 0.0,  # greedy evaluation (tutorial)
    seed: int = 1,  # the demo's seed; the success rate over many seeds is in benchmarks/results/
    loss_fn: str = "mse",  # tutorial's; Huber (SB3's) let Q diverge here with Adam and a fast target
    max_grad_norm: Optional[float] = None,  # off: clipping at 10 (SB3's) did not help
    double_dqn: bool = False,  # plain DQN, as the tutorial; Double DQN (van Hasselt 2016) did not help here
    tau: float = 0.2,  # per gradient step: 0.05 per env step at one gradient step every 4
    # The policy that plays is an average of the recent gradient steps' weights (Polyak & Juditsky 1992;
    # Nikishin et al. 2018): DQN's late swings between good and bad policies average out. The smallest rate: in a
    # run as short as the demo, the window's rate (below) stays above it
    weight_averaging_rate: Optional[float] = 5e-4,
    # ...over a window that grows with the run (its last 5%): a constant rate alone would keep the initial weights
    # in the average for thousands of steps, and the policy would lag far behind what the online network has
    # learned (polynomial-decay averaging, Shamir & Zhang 2013; reliability-CartPole-v1*.md, docs/ablation.png)
    weight_averaging_window: Optional[float] = 0.05,
    eval_render_mode: Optional[str] = None,  # tutorial: "human" to watch the evaluations
    save_path: Optional[str] = None,
    log_path: Optional[str] = None,
    verbose: int = 1,
) -> QNetwork:
    """
    Train DQN (with a target network) on a gymnasium env. `run_dqn()` is the CartPole-v1 demo.

    Every hyperparameter is here, in one place.

    :param env_id: Gymnasium env id (Box observations, Discrete actions). The other defaults stay the
        CartPole demo's: for an env's tuned settings, run_dqn(**PRESETS[env_id])
    :param replay_buffer_size: Max capacity of the replay buffer
    :param target_network_update_interval: Copy the Q-network into the target network every this many env steps
        (the tutorial's hard update; 1 means no target network). None: a soft update after every gradient step
    :param learning_starts: Env steps of pure collection before the first gradient step
    :param exploration_initial_eps: Epsilon at the start
    :param exploration_final_eps: Epsilon after the schedule ends
    :param exploration_fraction: Fraction of `n_timesteps` over which epsilon decays linearly
    :param n_timesteps: Env steps in total
    :param update_interval: Update the Q-network every this many env steps
    :param gradient_steps: Gradient steps in a row at each update, each on a fresh batch (SB3's gradient_steps)
    :param learning_rate: Adam's step size
    :param final_learning_rate: If set, the step size decays linearly to this value over the run (None: constant)
    :param batch_size: Transitions per gradient step
    :param gamma: The discount factor
    :param n_steps: n-step returns: each transition looks n env steps ahead (`NStepReplayBuffer`; 1: the tutorial's)
    :param n_hidden_units: Units in each of the two hidden layers
    :param scale_observations: The Q-network maps each bounded observation dimension onto [-1, 1] first
    :param n_eval_episodes: Greedy episodes per periodic evaluation
    :param evaluation_interval: Evaluate every this many env steps, and after the last one (0: never)
    :param eval_exploration_rate: Epsilon during evaluation
    :param seed: Seeds the run's one np.random.Generator and the envs' first reset
    :param loss_fn: "mse" (the tutorial's) or "huber"
    :param max_grad_norm: Global gradient-norm clipping threshold (None: off)
    :param double_dqn: Use the Double DQN target
    :param tau: The soft update's rate, used when target_network_update_interval is None:
        target = target + tau * (online - target) after every gradient step
    :param weight_averaging_rate: The policy that plays (periodic evaluations, the saved and returned network) is
        an exponential moving average of the online weights, avg = avg + rate * (online - avg) after every
        gradient step (Polyak & Juditsky 1992; Nikishin et al. 2018); with weight_averaging_window, the smallest
        rate. None: the online network plays, as in the tutorial
    :param weight_averaging_window: The average spans about this fraction of the gradient steps taken so far, and
        at most 1 / weight_averaging_rate steps: at the k-th step the rate is
        min(1, max(weight_averaging_rate, 1 / (weight_averaging_window * k))). None: the constant rate alone
    :param eval_render_mode: Render mode of the evaluation env: None, "human" (a window) or "rgb_array"
    :param save_path: Save the trained network here (.npz) at the end, or when interrupted
    :param log_path: Write the training log here (.npz) at the end, or when interrupted
    :param verbose: 0 silent, 1 a line per evaluation, 2 also a line per training episode
    :return: The trained Q-network
    """
    config = dict(locals())  # every keyword as given: checked once here, and written into the log
    check_run_dqn_arguments(config)

    # One generator drives every random draw of the run, so a seed fixes the whole run
    rng = np.random.default_rng(seed)
    env = gym.wrappers.RecordEpisodeStatistics(make_env(env_id))  # adds info["episode"] at episode ends
    eval_env = make_env(env_id, render_mode=eval_render_mode)
    eval_env.reset(seed=seed + 1)  # seeded once; evaluate_policy's resets then continue its own RNG
    # The evaluations' own generator (used only when eval_exploration_rate > 0): how often they run changes
    # nothing in training
    eval_rng = np.random.default_rng([seed, 1])
    check_memory(config, env.observation_space, env.action_space)  # before the buffer and networks exist

    q_net = QNetwork(env.observation_space, env.action_space, n_hidden_units, rng=rng,
                     scale_observations=scale_observations)
    q_target_net = QNetwork(env.observation_space, env.action_space, n_hidden_units, rng=rng,
                            scale_observations=scale_observations)
    q_target_net.load_state_dict(q_net.state_dict())  # a copy, never an alias
    optimizer = Adam(q_net.parameters(), lr=learning_rate)
    # The network that plays: the online one, or an average of its recent weights (weight_averaging_rate)
    policy_net = q_net
    if weight_averaging_rate is not None:
        # (made without the run's generator, so averaging changes nothing in training)
        policy_net = QNetwork(env.observation_space, env.action_space, n_hidden_units,
                              scale_observations=scale_observations)
        policy_net.load_state_dict(q_net.state_dict())
    if n_steps == 1:
        replay_buffer = ReplayBuffer(replay_buffer_size, env.observation_space, env.action_space, rng=rng)
    else:
        replay_buffer = NStepReplayBuffer(replay_buffer_size, env.observation_space, env.action_space, rng=rng,
                                          n_steps=n_steps, gamma=gamma)
    bootstrap_discount = gamma**n_steps  # the TD target bootstraps n env steps ahead
    exploration_steps = max(1, int(exploration_fraction * n_timesteps))
    first_update_after = max(learning_starts, n_steps - 1)  # an n-step transition exists after n env steps

    log = TrainingLog(keep_mean_q=log_path is not None, verbose=verbose)
    obs, _ = env.reset(seed=seed)  # the only seeded reset of the training env
    current_step = 0
    try:
        # A diverging loss stops the run below with one clear line, not NumPy's overflow warnings first
        with np.errstate(over="ignore", invalid="ignore"):
            for current_step in range(1, n_timesteps + 1):
                exploration_rate = linear_schedule(
                    exploration_initial_eps, exploration_final_eps, current_step, exploration_steps
                )
                obs = collect_one_step(env, q_net, replay_buffer, obs, exploration_rate, int(verbose >= 2), rng)
                log.episode_end(env, current_step, exploration_rate)

                if target_network_update_interval is not None and current_step % target_network_update_interval == 0:
                    q_target_net.load_state_dict(q_net.state_dict())  # hard update: copy the online weights

                if current_step % update_interval == 0 and current_step > first_update_after:
                    if final_learning_rate is not None:
                        optimizer.lr = linear_schedule(learning_rate, final_learning_rate, current_step, n_timesteps)
                    for _ in range(gradient_steps):
                        loss = dqn_update(q_net, q_target_net, optimizer, replay_buffer, batch_size, bootstrap_discount,
                                          loss_fn, max_grad_norm, double_dqn, log.update_info)
                        if target_network_update_interval is None:
                            q_target_net.polyak_update(q_net, tau)  # soft update: target += tau * (online - target)
                        if policy_net is not q_net:  # avg += rate * (online - avg), k = the steps taken so far
                            rate = averaging_rate(weight_averaging_rate, weight_averaging_window, optimizer.n_steps)
                            policy_net.polyak_update(q_net, rate)
                        log.update(current_step, loss)

                # Every evaluation_interval env steps, and after the last step, so that every run ends with one
                if evaluation_interval > 0 and (current_step % evaluation_interval == 0 or current_step == n_timesteps):
                    mean, std = evaluate_policy(eval_env, policy_net, n_eval_episodes, eval_exploration_rate,
                                                eval_rng, verbose=0)
                    log.evaluation(current_step, exploration_rate, mean, std)
    except KeyboardInterrupt:  # Ctrl-C keeps what was learned
        log.finish("Interrupted", current_step, policy_net, save_path, log_path, config)
        raise
    except ValueError as e:  # a loss that diverged: say when
        raise ValueError(f"step {current_step}: {e}") from e
    finally:
        env.close()
        eval_env.close()
    log.finish("Done", current_step, policy_net, save_path, log_path, config)
    return policy_net


def run_dqn_no_target(
    env_id: str = "CartPole-v1",
    replay_buffer_size: int = 50_000,
    exploration_initial_eps: float = 1.0,
    exploration_final_eps: float = 0.01,
    n_timesteps: int = 20_000,
    update_interval: int = 2,
    learning_rate: float = 3e-4,
    batch_size: int = 64,
    gamma: float = 0.99,
    n_eval_episodes: int = 10,
    evaluation_interval: int = 1000,
    eval_exploration_rate: float = 0.0,
    seed: int = 2023,
    eval_render_mode: Optional[str] = None,
) -> QNetwork:
    """
    Part II's first loop: DQN without a target network, with the tutorial's signature and defaults.

    It is `run_dqn` with the target copied at every env step (so the TD target comes from the network being
    trained, exactly as `dqn_update_no_target` does), no warm-up, epsilon decaying over the whole run, and the
    tutorial's plain network: 64 hidden units, raw observations, the online weights playing. The parameters
    are `run_dqn`'s.
    """
    return run_dqn(
        env_id=env_id, replay_buffer_size=replay_buffer_size, target_network_update_interval=1, learning_starts=0,
        exploration_initial_eps=exploration_initial_eps, exploration_final_eps=exploration_final_eps,
        exploration_fraction=1.0, n_timesteps=n_timesteps, update_interval=update_interval,
        learning_rate=learning_rate, batch_size=batch_size, gamma=gamma, n_hidden_units=64,
        n_eval_episodes=n_eval_episodes, evaluation_interval=evaluation_interval,
        eval_exploration_rate=eval_exploration_rate, seed=seed, weight_averaging_rate=None, scale_observations=False,
        eval_render_mode=eval_render_mode,
    )


# =========================================================================================================
# 6. Plumbing: argument checks, checkpoints, envs, presets, the training log, GIFs, the command line.
#    The DQN is complete above; you can stop reading here.
# =========================================================================================================


class ArgumentError(ValueError):
    """A keyword outside its range. The message names the keyword; the command line names the flag instead.

    :param name: The keyword, as `run_dqn` (or a constructor) spells it
    :param text: What is wrong, with "{name}" where the name goes
    """

    def __init__(self, name: str, text: str) -> None:
        self.name, self.text = name, text
        super().__init__(text.replace("{name}", name))

    def naming(self, other: str) -> str:
        """The same message, naming `other` (a flag such as --n-timesteps) instead of the keyword."""
        return self.text.replace("{name}", other)


def is_number(value) -> bool:
    return isinstance(value, (int, float, np.integer, np.floating)) and not isinstance(value, (bool, np.bool_))


def check_range(name: str, value: float, low: float, high: float) -> None:
    if not is_number(value) or not low <= value <= high:  # NaN fails the comparison too
        raise ArgumentError(name, f"{{name}} must be in [{low}, {high}], got {value!r}")


def check_positive(name: str, value: float) -> None:
    if not is_number(value) or not 0 < value < math.inf:
        raise ArgumentError(name, f"{{name}} must be > 0 and finite, got {value!r}")


def check_positive_int(name: str, value: int, minimum: int = 1) -> None:
    if not is_number(value) or not isinstance(value, (int, np.integer)) or value < minimum:
        raise ArgumentError(name, f"{{name}} must be an integer >= {minimum}, got {value!r}")


def check_choice(name: str, value, choices) -> None:
    if value not in choices:
        raise ArgumentError(name, f"{{name}} must be one of {sorted(choices, key=repr)}, got {value!r}")


def check_bool(name: str, value) -> None:
    if not isinstance(value, (bool, np.bool_)):
        raise ArgumentError(name, f"{{name}} must be True or False, got {value!r}")


def check_spaces(observation_space: spaces.Space, action_space: spaces.Space, what: str) -> None:
    if not isinstance(action_space, spaces.Discrete):
        raise ValueError(f"{what} needs a Discrete action space (DQN picks one of n actions), got {action_space}")
    if action_space.start != 0:  # the network's output k is action k: a shifted space would get wrong actions
        raise ValueError(f"{what} needs a Discrete action space whose actions are 0..n-1, got {action_space}: "
                         f"wrap the env (gymnasium.ActionWrapper) to shift its actions by {int(action_space.start)}")
    if not isinstance(observation_space, spaces.Box) or len(observation_space.shape) != 1:
        raise ValueError(f"{what} needs a 1-D Box observation space, got {observation_space}")


def check_state_dict(state: dict, params: dict) -> None:
    if set(state) != set(params):
        raise ValueError(f"state_dict keys {sorted(state)} do not match {sorted(params)}")
    for k, v in params.items():
        if np.shape(state[k]) != v.shape:
            raise ValueError(f"parameter {k} has shape {np.shape(state[k])}, this network needs {v.shape}")


def check_output_path(name: str, path) -> None:
    """A file that run_dqn writes at the end (save_path, log_path): checked by writing a probe there now,
    so that a path that cannot work fails before training, not after it."""
    if not isinstance(path, (str, os.PathLike)) or not os.fspath(path).strip():
        raise ArgumentError(name, f"{{name}} must be a file path such as model.npz, got {path!r}")
    if os.path.isdir(path):
        raise ArgumentError(name, f"{{name}} {os.fspath(path)!r} is a folder: give a file path, such as "
                                  f"{os.path.join(os.fspath(path), 'model.npz')!r}")
    folder = os.path.dirname(os.path.abspath(path))
    try:
        with tempfile.TemporaryFile(dir=folder):  # permissions alone do not say it (root ignores them)
            pass
    except OSError as e:
        why = f"is not writable ({e.strerror})" if os.path.isdir(folder) else "does not exist"
        raise ArgumentError(name, f"{{name}}: cannot write {os.fspath(path)}: its folder {folder} {why}") from e


def physical_memory() -> Optional[int]:
    """This machine's memory in bytes, where the OS says (None elsewhere: no check then)."""
    try:
        return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    except (AttributeError, ValueError, OSError):
        return None


def format_bytes(n: float) -> str:
    for unit in ("bytes", "KiB", "MiB", "GiB", "TiB"):
        if n < 1024 or unit == "TiB":
            return f"{n:.0f} {unit}" if unit == "bytes" else f"{n:.1f} {unit}"
        n /= 1024


def check_memory(config: dict, observation_space: spaces.Box, action_space: spaces.Discrete) -> None:
    """Refuse, before allocating anything, a replay buffer or networks larger than this machine's memory."""
    total = physical_memory()
    obs_bytes = observation_space.shape[0] * observation_space.dtype.itemsize
    transition = 2 * obs_bytes + action_space.dtype.itemsize + 4 + 1  # obs, next obs, action, reward, terminated
    d, h, n = observation_space.shape[0], config["n_hidden_units"], int(action_space.n)
    n_params = d * h + h + h * h + h + h * n + n
    # the online, target and averaged networks with their gradients, and Adam's two moments: 8 float32 copies
    needs = {"replay_buffer_size": config["replay_buffer_size"] * transition, "n_hidden_units": 8 * 4 * n_params}
    if total is not None and sum(needs.values()) > total:
        name = max(needs, key=needs.get)
        raise ArgumentError(name, f"{{name}}={config[name]} asks for {format_bytes(needs[name])} of memory, more "
                                  f"than this machine has ({format_bytes(total)})")


def check_run_dqn_arguments(config: dict) -> None:
    """run_dqn's keywords, checked once before training, so a mistake fails at once with its name."""
    if not isinstance(config["env_id"], str):
        raise ArgumentError("env_id", f"{{name}} must be a gymnasium env id such as 'CartPole-v1', "
                                      f"got {config['env_id']!r}")
    for name in ("replay_buffer_size", "n_timesteps", "update_interval", "gradient_steps", "batch_size", "n_steps",
                 "n_hidden_units", "n_eval_episodes"):
        check_positive_int(name, config[name])
    for name in ("learning_starts", "evaluation_interval", "seed"):
        check_positive_int(name, config[name], minimum=0)
    for name in ("exploration_initial_eps", "exploration_final_eps", "exploration_fraction", "gamma",
                 "eval_exploration_rate"):
        check_range(name, config[name], 0.0, 1.0)
    check_positive("learning_rate", config["learning_rate"])
    for name in ("scale_observations", "double_dqn"):
        check_bool(name, config[name])
    check_choice("loss_fn", config["loss_fn"], LOSSES)
    check_choice("eval_render_mode", config["eval_render_mode"], (None, "human", "rgb_array"))
    check_choice("verbose", config["verbose"], (0, 1, 2))
    # (0, 1]: tau 0 would never move the target; 0 averaging would keep the initial weights playing
    for name in ("tau", "weight_averaging_rate", "weight_averaging_window"):
        if config[name] is not None and (not is_number(config[name]) or not 0 < config[name] <= 1):
            raise ArgumentError(name, f"{{name}} must be in (0, 1]{' or None' * (name != 'tau')}, "
                                      f"got {config[name]!r}")
    # None turns these off; a value must be one that works
    if config["target_network_update_interval"] is not None:
        check_positive_int("target_network_update_interval", config["target_network_update_interval"])
    if config["final_learning_rate"] is not None:
        check_positive("final_learning_rate", config["final_learning_rate"])
    if config["max_grad_norm"] is not None:  # 0 would zero every gradient, a negative norm flip them
        check_positive("max_grad_norm", config["max_grad_norm"])
    save_path, log_path = config["save_path"], config["log_path"]
    for name, path in (("save_path", save_path), ("log_path", log_path)):  # fail now, not after training
        if path is not None:
            check_output_path(name, path)
    if save_path is not None and log_path is not None and os.path.abspath(save_path) == os.path.abspath(log_path):
        raise ArgumentError("log_path", f"{{name}} and save_path are the same file, {save_path!r}: the log "
                                        "would overwrite the network")


# ---------------------------------------------------------------------------------------------------------
# Files: written whole or not at all; checkpoints
# ---------------------------------------------------------------------------------------------------------


@contextlib.contextmanager
def atomic_write(path: str):
    """Open a temporary file beside `path` for writing, and rename it to `path` only once it is complete:
    a crash or Ctrl-C never leaves half a file (checkpoints, logs, videos)."""
    directory = os.path.dirname(os.path.abspath(path))
    fd, tmp_path = tempfile.mkstemp(dir=directory, prefix=".tmp-", suffix=os.path.splitext(path)[1])
    try:
        with os.fdopen(fd, "wb") as f:
            yield f
            f.flush()
            os.fsync(f.fileno())
        umask = os.umask(0)
        os.umask(umask)
        os.chmod(tmp_path, 0o666 & ~umask)  # mkstemp makes the file private; give it a normal file's mode
        os.replace(tmp_path, path)  # atomic on POSIX and Windows
    except BaseException:
        if os.path.exists(tmp_path):
            os.remove(tmp_path)
        raise


def write_or_rescue(path: str, write) -> tuple:
    """Call write(path); if the OS refuses, write the same thing beside `path` under another name, or else in the
    temporary folder. Returns (the path written, or `path` if none; the error, or None)."""
    try:
        write(path)
        return path, None
    except OSError as e:
        error = e.strerror or str(e)
    stem, ext = os.path.splitext(os.path.basename(path))
    name = f"{stem or 'minidqn'}.rescued-{time.strftime('%Y%m%d-%H%M%S')}-{os.getpid()}{ext or '.npz'}"
    for folder in (os.path.dirname(os.path.abspath(path)), tempfile.gettempdir()):
        try:
            write(os.path.join(folder, name))
            return os.path.join(folder, name), error
        except OSError:
            continue
    return path, error


def atomic_savez(path: str, arrays: dict) -> None:
    """Write `arrays` to `path` as .npz, whole or not at all."""
    with atomic_write(path) as f:  # a file object, so np.savez does not append ".npz" to the name
        np.savez(f, **arrays)


def save_checkpoint(q_net: QNetwork, path: str) -> None:
    """`QNetwork.save`: the weights, the architecture and the observation bounds, in one .npz of plain arrays."""
    meta = {
        "obs_dim": q_net.obs_dim,
        "n_actions": q_net.n_actions,
        "n_hidden_units": q_net.n_hidden_units,
        "activation_fn": q_net.activation_name,
        "dtype": q_net.dtype.name,
        "scale_observations": q_net.scale_observations,
    }
    space = {"obs_low": q_net.observation_space.low, "obs_high": q_net.observation_space.high}
    atomic_savez(path, {"minidqn_meta": np.array(json.dumps(meta)), **space, **q_net.params})


def load_checkpoint(cls: type, path: str) -> QNetwork:
    """`QNetwork.load`: a network saved by `save_checkpoint`, with a clear error for anything else."""
    try:
        with np.load(path, allow_pickle=False) as data:
            arrays = {k: data[k] for k in data.files}
    except FileNotFoundError:
        raise
    except Exception as e:  # a pickle, a truncated zip, random bytes... (NumPy's message would suggest
        # allow_pickle=True, which runs whatever code the file holds: never for a checkpoint)
        raise ValueError(f"{path} is not a minidqn checkpoint: NumPy cannot read it as an .npz of plain arrays "
                         f"({type(e).__name__})") from e
    if "minidqn_meta" not in arrays or not set(PARAMETER_NAMES) <= set(arrays):
        raise ValueError(f"{path} is not a minidqn checkpoint: it holds {sorted(arrays)}")
    try:
        meta = json.loads(str(arrays.pop("minidqn_meta")))
        obs_dim = int(meta["obs_dim"])
        low = arrays.get("obs_low", np.full(obs_dim, -np.inf))  # older checkpoints: unbounded
        high = arrays.get("obs_high", np.full(obs_dim, np.inf))
        q_net = cls(
            spaces.Box(low.astype(np.float32), high.astype(np.float32), (obs_dim,), dtype=np.float32),
            spaces.Discrete(int(meta["n_actions"])),
            n_hidden_units=int(meta["n_hidden_units"]),
            activation_fn=meta["activation_fn"],
            dtype=np.dtype(meta["dtype"]),
            scale_observations=bool(meta.get("scale_observations", False)),
        )
    except (KeyError, TypeError, json.JSONDecodeError) as e:
        raise ValueError(f"{path} has a damaged minidqn_meta record: {e}") from e
    q_net.load_state_dict({k: arrays[k] for k in PARAMETER_NAMES})  # validates every shape
    return q_net


def save_gif(frames: list, path: str, fps: float = 30) -> None:
    """Write RGB frames (height, width, 3) as an animated GIF (Pillow, which matplotlib brings), whole or not at all."""
    from PIL import Image  # imported here: only recordings need it

    if not frames:
        raise ValueError("no frames to save")
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    images = [Image.fromarray(np.asarray(frame, dtype=np.uint8)) for frame in frames]
    with atomic_write(path) as f:
        images[0].save(f, format="GIF", save_all=True, append_images=images[1:], duration=1000 / fps, loop=0)


# ---------------------------------------------------------------------------------------------------------
# Envs and presets
# ---------------------------------------------------------------------------------------------------------

# Envs from optional packages: the module that registers the env id, and how to install it
OPTIONAL_ENVS = {"FlappyBird-v0": ("flappy_bird_gymnasium", "pip install flappy-bird-gymnasium")}
# gym.make arguments that every env of this id gets (training, evaluation, recordings): FlappyBird's 12
# features (bird, pipes) instead of its 180 LIDAR rays, which cost far more per step, and a time limit, so
# that a bird that never falls still ends its episode
ENV_KWARGS = {"FlappyBird-v0": dict(use_lidar=False, max_episode_steps=10_000)}


def make_env(env_id: str, **kwargs) -> gym.Env:
    """gym.make with clear errors: unknown ids, missing optional dependencies, spaces DQN cannot use."""
    kwargs = {k: v for k, v in {**ENV_KWARGS.get(env_id, {}), **kwargs}.items() if v is not None}  # None: gym's default
    if env_id in OPTIONAL_ENVS:
        module, install = OPTIONAL_ENVS[env_id]
        try:
            __import__(module)  # registers the env id with gymnasium
        except ImportError as e:
            raise ValueError(f"{env_id} needs an optional package: {install}") from e
    try:
        env = gym.make(env_id, **kwargs)
    except gym.error.DependencyNotInstalled as e:
        raise ValueError(f"{env_id} needs a package that is not installed ({e}); "
                         f"`pip install -r requirements.txt` brings it") from e
    except gym.error.Error as e:
        raise ValueError(f"unknown env id {env_id!r}: {e}") from e
    if not isinstance(env.action_space, spaces.Discrete):
        env.close()
        raise ValueError(f"{env_id} has action space {env.action_space}; DQN needs a Discrete one")
    if not isinstance(env.observation_space, spaces.Box):
        env.close()
        raise ValueError(f"{env_id} has observation space {env.observation_space}; minidqn needs a Box")
    if len(env.observation_space.shape) != 1:
        env = gym.wrappers.FlattenObservation(env)  # an image-like Box becomes one long vector
    try:
        check_spaces(env.observation_space, env.action_space, env_id)
    except ValueError:
        env.close()
        raise
    return env


# Tuned settings per env id: run_dqn(**PRESETS[env_id]), or `python minidqn.py --env-id ENV_ID`, where any other
# keyword or flag overrides the row. A keyword a row leaves out keeps run_dqn's default (the CartPole demo).
# What each row achieves, and what each departure from its source measured, is in benchmarks/results/.
# The rows that average weights were measured at a constant rate, so they set weight_averaging_window=None.
PRESETS = {
    "CartPole-v1": dict(env_id="CartPole-v1"),  # run_dqn's defaults
    # CartPole's 50k-step settings written out (64 units, batch 256, a gradient step every 4 env steps, step size
    # 5e-3, the soft target, the weights averaged at the constant rate it was measured with), for RL Zoo's budget
    # of 100k env steps, on raw observations:
    # Acrobot's velocity bounds are loose, and scaled by them most tuning seeds failed. Every tuning seed solved,
    # in less than half the time of RL Zoo's row (tune22-acrobot-*.md; reliability-Acrobot-v1-zoo-row.md)
    "Acrobot-v1": dict(env_id="Acrobot-v1", n_timesteps=100_000, learning_rate=5e-3, batch_size=256,
                       replay_buffer_size=100_000, learning_starts=1000, gamma=0.99,
                       target_network_update_interval=None, tau=0.2, update_interval=4, gradient_steps=1,
                       loss_fn="mse", max_grad_norm=None,
                       exploration_fraction=0.1, exploration_final_eps=0.04, n_hidden_units=64,
                       evaluation_interval=10_000, weight_averaging_rate=5e-4, weight_averaging_window=None,
                       scale_observations=False),
    # RL Zoo's row as SB3 runs it: Huber, gradient norm clipped at 10, and SB3's rhythm of 16 env steps with
    # the network held still, then 8 gradient steps in a row. The held behaviour policy is what reaches the
    # flag: with one gradient step every 2 env steps no tuning seed did (mc-rhythm-2-1.md, mc-spread-held16.md).
    # Two additions: 3-step returns carry the flag's reward back faster (mc-n3.md), and the averaged weights
    # play (mc-n3-avg.md)
    "MountainCar-v0": dict(env_id="MountainCar-v0", n_timesteps=120_000, learning_rate=4e-3, batch_size=128,
                           replay_buffer_size=10_000, learning_starts=1000, gamma=0.98,
                           target_network_update_interval=600, update_interval=16, gradient_steps=8,
                           loss_fn="huber", max_grad_norm=10.0, exploration_fraction=0.2,
                           exploration_final_eps=0.07, n_hidden_units=256, evaluation_interval=10_000,
                           n_steps=3, weight_averaging_rate=3e-4, weight_averaging_window=None,
                           scale_observations=False),
    # RL Zoo's row for LunarLander-v2, with one gradient step every 4 env steps where SB3 takes 4, MSE without
    # clipping where SB3 has Huber clipped at 10, 200k env steps where the zoo has 100k, and the averaged
    # weights playing: more seeds solved than the row as SB3 runs it, in less time (lunarlander-zoo-sb3.md,
    # reliability-LunarLander-v3-averaged.md)
    "LunarLander-v3": dict(env_id="LunarLander-v3", n_timesteps=200_000, learning_rate=6.3e-4, batch_size=128,
                           replay_buffer_size=50_000, learning_starts=0, gamma=0.99,
                           target_network_update_interval=250, update_interval=4, gradient_steps=1, loss_fn="mse",
                           max_grad_norm=None, exploration_fraction=0.12, exploration_final_eps=0.1,
                           n_hidden_units=256, evaluation_interval=20_000, weight_averaging_rate=3e-4,
                           weight_averaging_window=None, scale_observations=False),
    # The RLSS tutorial's own FlappyBird-v0 run (Part II notebook), on the 12-feature observation (ENV_KWARGS)
    "FlappyBird-v0": dict(env_id="FlappyBird-v0", n_timesteps=500_000, replay_buffer_size=100_000,
                          target_network_update_interval=250, learning_starts=10_000, exploration_initial_eps=1.0,
                          exploration_final_eps=0.03, exploration_fraction=0.1, update_interval=4,
                          learning_rate=1e-3, batch_size=128, gamma=0.98, n_eval_episodes=5,
                          evaluation_interval=50_000, n_hidden_units=256, weight_averaging_rate=None,
                          scale_observations=False),
}


# ---------------------------------------------------------------------------------------------------------
# The training log
# ---------------------------------------------------------------------------------------------------------


class TrainingLog:
    """
    run_dqn's bookkeeping: the progress lines, and what `plots.py` draws (`log_path`).

    :param keep_mean_q: Also record the batch's mean Q(s, a) at every update (for the log only)
    :param verbose: 1 to print a line per evaluation
    """

    def __init__(self, keep_mean_q: bool, verbose: int) -> None:
        self.records = {k: [] for k in ("episode_steps", "episode_returns", "episode_lengths", "episode_epsilons",
                                        "update_steps", "losses", "mean_qs", "eval_steps", "eval_means", "eval_stds")}
        self.update_info = {} if keep_mean_q else None  # dqn_update fills it with the batch's mean Q
        self.verbose = verbose
        self.start_time = time.perf_counter()

    def episode_end(self, env: gym.wrappers.RecordEpisodeStatistics, step: int, exploration_rate: float) -> None:
        """Record the episode that just ended, if one did (the env counts them)."""
        r = self.records
        if env.episode_count > len(r["episode_returns"]):
            r["episode_steps"].append(step)
            r["episode_returns"].append(float(env.return_queue[-1]))
            r["episode_lengths"].append(int(env.length_queue[-1]))
            r["episode_epsilons"].append(exploration_rate)

    def update(self, step: int, loss: float) -> None:
        self.records["update_steps"].append(step)
        self.records["losses"].append(loss)
        if self.update_info is not None:
            self.records["mean_qs"].append(self.update_info["mean_q"])

    def evaluation(self, step: int, exploration_rate: float, mean: float, std: float) -> None:
        r = self.records
        r["eval_steps"].append(step)
        r["eval_means"].append(mean)
        r["eval_stds"].append(std)
        if self.verbose >= 1:
            loss = f"loss {np.mean(r['losses'][-100:]):8.4f}" if r["losses"] else "no gradient step yet"
            print(f"step {step:>7} | eps {exploration_rate:.3f} | {loss} | "
                  f"Mean episode reward: {mean:.2f} +/- {std:.2f} | {time.perf_counter() - self.start_time:.1f} s")

    def finish(self, reason: str, step: int, policy_net: QNetwork, save_path: Optional[str],
               log_path: Optional[str], config: dict) -> None:
        """At the end of training, or when interrupted: save the network and the log, and say where they went.

        A write that fails here (a full disk, say) still loses nothing: the file goes beside the path asked for,
        or into the temporary folder, and the OSError raised afterwards names both paths.
        """
        arrays = {k: np.asarray(v) for k, v in self.records.items()}
        config_record = np.array(json.dumps(config))
        writes = [("network", save_path, policy_net.save),
                  ("log", log_path, lambda path: atomic_savez(path, {**arrays, "config": config_record}))]
        written, failures = [], []
        for what, path, write in writes:
            if path is None:
                continue
            where, error = write_or_rescue(path, write)
            if error is None or where != path:
                written.append(f"{what} saved to {where}")
            if error:
                failures.append(f"could not write the {what} to {path} ({error}); " + (
                    f"it is in {where} instead" if where != path else "and nowhere else could take it"))
        if self.verbose >= 1:
            saved = "".join(f"; {w}" for w in written)
            print(f"{reason} after {step} steps in {time.perf_counter() - self.start_time:.1f} s{saved}")
        if failures:
            raise OSError("; ".join(failures))


# ---------------------------------------------------------------------------------------------------------
# The command line: every run_dqn keyword is a flag, spelled with dashes
# ---------------------------------------------------------------------------------------------------------


def param_docs(docstring: str) -> dict:
    """name -> the whole text of its ":param name:" entry (continuation lines joined)."""
    docs, name = {}, None
    for line in inspect.cleandoc(docstring).splitlines():
        match = re.match(r":param (\w+): (.*)", line)
        if match:
            name, text = match.groups()
            docs[name] = text
        elif name is not None and line.startswith((" ", "\t")) and line.strip():
            docs[name] += " " + line.strip()
        else:
            name = None
    return docs


def _or_none(kind: type):
    """An argparse type that reads "none" as None and anything else as `kind`."""

    def parse(text: str):
        return None if text.lower() == "none" else kind(text)

    parse.__name__ = kind.__name__  # argparse names the type in its error messages
    return parse


ENV_ID_HELP = ("Gymnasium env id (Box observations, Discrete actions). --env-id X runs X's row of PRESETS (its tuned "
               "settings), which any other flag overrides; an env without a row runs the CartPole-v1 demo's defaults")


def flags_of(name: str) -> list:
    """The command-line flags of run_dqn's keyword `name`: spelled with dashes, and --save for save_path."""
    return ["--" + name.replace("_", "-")] + (["--save"] if name == "save_path" else [])


def flag_as_typed(name: str, argv: list) -> str:
    """The flag of run_dqn's keyword `name` as the user typed it (--save or --save-path)."""
    typed = [f for f in flags_of(name) if any(a == f or a.startswith(f + "=") for a in argv)]
    return (typed or flags_of(name))[0]


def build_parser(env_id: str = "CartPole-v1") -> argparse.ArgumentParser:
    """The command line of run_dqn; the help shows the defaults that will run for `env_id` (its PRESETS row)."""
    row = PRESETS.get(env_id, {})
    if env_id == "CartPole-v1":
        which = "the CartPole-v1 demo"
    elif row:
        which = f"{env_id}'s preset"
    else:
        which = f"{env_id}, which has no preset: the CartPole-v1 demo's defaults, untuned"
    parser = argparse.ArgumentParser(
        description=f"Train DQN with minidqn. With no flags: the CartPole-v1 demo. With --env-id X: X's row of "
        f"PRESETS ({', '.join(PRESETS)}), which any other flag overrides. Defaults shown: {which}.",
        allow_abbrev=False,  # a mistyped flag is an error, not a silent match of a longer one
    )
    docs = param_docs(run_dqn.__doc__)
    types = typing.get_type_hints(run_dqn)
    # Flags left out stay out of the parsed namespace (argparse.SUPPRESS); main() fills them from the preset
    for name, param in inspect.signature(run_dqn).parameters.items():
        flags = flags_of(name)
        text = ENV_ID_HELP if name == "env_id" else docs[name]  # the docstring speaks of run_dqn's own defaults
        help_text = f"{text} (default: {row.get(name, param.default)})".replace("%", "%%")
        kind = types[name]
        if kind is bool:
            parser.add_argument(*flags, dest=name, default=argparse.SUPPRESS, help=help_text,
                                action=argparse.BooleanOptionalAction)
            continue
        optional = type(None) in typing.get_args(kind)  # Optional[X]: "none" on the command line gives None
        if optional:
            kind = next(k for k in typing.get_args(kind) if k is not type(None))
        parser.add_argument(*flags, dest=name, default=argparse.SUPPRESS, help=help_text,
                            type=_or_none(kind) if optional else kind, metavar=kind.__name__.upper())
    return parser


def main(argv: Optional[list] = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    pre = argparse.ArgumentParser(add_help=False, allow_abbrev=False)
    pre.add_argument("--env-id", default="CartPole-v1")
    env_id = pre.parse_known_args(argv)[0].env_id
    args = build_parser(env_id).parse_args(argv)  # an unknown flag exits with status 2 and names it
    if env_id not in PRESETS and env_id in gym.registry:  # (an unknown id gets its error from make_env)
        print(f"note: no preset for {env_id}: running on the CartPole-v1 demo's defaults, untuned")
    try:
        run_dqn(**{**PRESETS.get(env_id, {}), **vars(args)})
    except ArgumentError as e:  # a keyword out of range: named as its flag
        print(f"error: {e.naming(flag_as_typed(e.name, argv))}", file=sys.stderr)
        return 2
    except (ValueError, OSError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    except MemoryError as e:  # what check_memory could not foresee
        print(f"error: out of memory: {e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:  # run_dqn has already saved what it learned (with --save)
        print("Interrupted by the user.", file=sys.stderr)
        return 130
    return 0


if __name__ == "__main__":
    sys.exit(main())
