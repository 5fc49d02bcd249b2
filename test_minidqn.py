"""Tests for minidqn and its exercises. Run with `python -m pytest`: 139 tests, 71 to 82 s on 2 cores with nothing else
running (docs/results.md#tests), deterministic: every seed is fixed."""

import collections
import importlib.util
import inspect
import os
import pickle
import re
import signal
import subprocess
import sys
import time

import gymnasium as gym
import numpy as np
import pytest
from gymnasium import spaces
from hypothesis import settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, initialize, invariant, precondition, rule

import minidqn
from minidqn import (
    Adam,
    QNetwork,
    ReplayBuffer,
    ReplayBufferSamples,
    collect_one_step,
    dqn_update,
    epsilon_greedy_action_selection,
    evaluate_policy,
    linear_schedule,
    run_dqn,
    td_loss,
)

HERE = os.path.dirname(os.path.abspath(__file__))


# ---------------------------------------------------------------------------------------------------------
# Small envs whose true Q-values are known by hand
# ---------------------------------------------------------------------------------------------------------


class ChainEnv(gym.Env):
    """Observation [t * spacing], reward 1 every step. With `terminal_at`, reaching t == terminal_at terminates;
    without it the env never terminates and only a TimeLimit wrapper truncates it."""

    def __init__(self, terminal_at=None, reward=1.0, spacing=0.1):
        self.observation_space = spaces.Box(-10.0, 10.0, (1,), dtype=np.float32)
        self.action_space = spaces.Discrete(2)
        self.terminal_at = terminal_at
        self.reward = reward
        self.spacing = spacing
        self.t = 0

    def _obs(self):
        return np.array([self.t * self.spacing], dtype=np.float32)

    def reset(self, *, seed=None, options=None):
        super().reset(seed=seed)
        self.t = 0
        return self._obs(), {}

    def step(self, action):
        self.t += 1
        terminated = self.terminal_at is not None and self.t >= self.terminal_at
        return self._obs(), self.reward, terminated, False, {}


gym.register("MinidqnTest/Overflow-v0", entry_point=lambda: ChainEnv(reward=1e30), max_episode_steps=5)
gym.register("MinidqnTest/Chain-v0", entry_point=lambda: ChainEnv(terminal_at=3), max_episode_steps=10)


def shifted_chain():
    """A chain whose actions are numbered from 1 (Discrete(2, start=1)), as some third-party envs do."""
    env = ChainEnv()
    env.action_space = spaces.Discrete(2, start=1)
    return env


gym.register("MinidqnTest/Shifted-v0", entry_point=shifted_chain, max_episode_steps=10)


@pytest.fixture
def cartpole():
    env = gym.make("CartPole-v1")
    env.reset(seed=0)
    yield env
    env.close()


def make_pair(env, seed=0, **kwargs):
    rng = np.random.default_rng(seed)
    q_net = QNetwork(env.observation_space, env.action_space, rng=rng, **kwargs)
    q_target_net = QNetwork(env.observation_space, env.action_space, rng=rng, **kwargs)
    q_target_net.load_state_dict(q_net.state_dict())
    return q_net, q_target_net


# ---------------------------------------------------------------------------------------------------------
# The tutorial's own check cells, as tests
# ---------------------------------------------------------------------------------------------------------


def store_random_steps(env, buffer, obs, n_steps):
    """The tutorial's fill loop: random actions, each transition stored, reset at the end of an episode."""
    for _ in range(n_steps):
        action = int(env.action_space.sample())
        next_obs, reward, terminated, truncated, _ = env.step(action)
        buffer.store_transition(obs, next_obs, action, float(reward), terminated)
        obs = next_obs
        if terminated or truncated:
            obs, _ = env.reset()
    return obs


def test_tutorial_replay_buffer_cells(cartpole):
    env = cartpole
    buffer = ReplayBuffer(1000, env.observation_space, env.action_space)
    obs, _ = env.reset()
    obs = store_random_steps(env, buffer, obs, 500)
    assert not buffer.is_full
    assert buffer.current_idx == 500
    samples = buffer.sample(batch_size=10)
    assert len(samples.observations) == 10
    assert samples.actions.shape == (10, 1)

    store_random_steps(env, buffer, obs, 1000)  # fill the buffer completely
    assert buffer.is_full
    assert buffer.current_idx == 500
    samples = buffer.sample(batch_size=1001)  # with replacement: more than the capacity
    assert len(samples.observations) == 1001
    assert samples.actions.shape == (1001, 1)
    assert buffer.rewards.dtype == np.float32 and buffer.terminateds.dtype == bool


def test_tutorial_q_network_cell(cartpole):
    q_net = QNetwork(cartpole.observation_space, cartpole.action_space)
    obs, _ = cartpole.reset()
    q_values = q_net(obs[np.newaxis, ...])
    assert q_values.shape == (1, 2)
    assert isinstance(int(q_values.argmax()), int)


def test_tutorial_collect_and_schedule_cells(cartpole):
    env = cartpole
    q_net = QNetwork(env.observation_space, env.action_space)
    buffer = ReplayBuffer(2000, env.observation_space, env.action_space)
    obs, _ = env.reset()
    for _ in range(1000):
        obs = collect_one_step(env, q_net, buffer, obs, exploration_rate=0.1)
    assert buffer.current_idx == 1000
    for _ in range(1000):
        obs = collect_one_step(env, q_net, buffer, obs, exploration_rate=0.1)
    assert buffer.current_idx == 0
    assert buffer.is_full

    exploration_initial_eps, exploration_final_eps, n_steps = 1.0, 0.01, 100
    for step in range(n_steps + 1):
        exploration_rate = linear_schedule(exploration_initial_eps, exploration_final_eps, step, n_steps)
        if step == 0:
            assert exploration_rate == exploration_initial_eps
        obs = collect_one_step(env, q_net, buffer, obs, exploration_rate=exploration_rate)
    assert np.allclose(exploration_rate, exploration_final_eps)


def test_tutorial_part2_update_smoke(cartpole):
    env = cartpole
    q_net = QNetwork(env.observation_space, env.action_space)
    q_target_net = QNetwork(env.observation_space, env.action_space)
    q_target_net.load_state_dict(q_net.state_dict())
    optimizer = Adam(q_net.parameters(), lr=0.001)
    replay_buffer = ReplayBuffer(2000, env.observation_space, env.action_space)
    obs, _ = env.reset()
    for _ in range(1000):
        obs = collect_one_step(env, q_net, replay_buffer, obs, exploration_rate=0.1)
    before = q_net.state_dict()
    for _ in range(10):
        loss = dqn_update(q_net, q_target_net, optimizer, replay_buffer, batch_size=32, gamma=0.99)
        assert np.isfinite(loss) and loss >= 0
    assert any(not np.array_equal(before[k], v) for k, v in q_net.parameters().items())


def test_linear_schedule_clips_and_goes_both_ways():
    # (initial, final, step, max_steps) -> the value; each failure names the call
    cases = [((1.0, 0.0, 5, 10), 0.5), ((1.0, 0.0, 50, 10), 0.0),  # constant after max_steps
             ((0.0, 2.0, 5, 10), 1.0), ((0.0, 2.0, 11, 10), 2.0)]  # increasing
    for args, expected in cases:
        got = linear_schedule(*args)
        assert got == pytest.approx(expected), f"linear_schedule{args} returned {got}, expected {expected}"


def test_collect_one_step_prints_the_tutorial_episode_line(capsys):
    env = gym.wrappers.RecordEpisodeStatistics(gym.make("MinidqnTest/Chain-v0"))
    q_net = QNetwork(env.observation_space, env.action_space, rng=np.random.default_rng(0))
    buffer = ReplayBuffer(10, env.observation_space, env.action_space)
    obs, _ = env.reset(seed=0)
    for _ in range(3):
        obs = collect_one_step(env, q_net, buffer, obs, verbose=1, rng=np.random.default_rng(0))
    assert capsys.readouterr().out == "Episode return=3.00 length=3\n"


class ResetSpy(gym.Wrapper):
    def __init__(self, env):
        super().__init__(env)
        self.seeds = []

    def reset(self, *, seed=None, options=None):
        self.seeds.append(seed)
        return self.env.reset(seed=seed, options=options)


def test_collect_one_step_resets_without_a_seed():
    env = ResetSpy(gym.make("MinidqnTest/Chain-v0"))
    q_net = QNetwork(env.observation_space, env.action_space, rng=np.random.default_rng(0))
    buffer = ReplayBuffer(20, env.observation_space, env.action_space)
    obs, _ = env.reset(seed=5)
    for _ in range(9):  # three episodes of three steps
        obs = collect_one_step(env, q_net, buffer, obs, rng=np.random.default_rng(0))
    assert env.seeds == [5, None, None, None], "the env must be seeded once, on its first reset"


# ---------------------------------------------------------------------------------------------------------
# The ring buffer against a deque model (Hypothesis stateful testing)
# ---------------------------------------------------------------------------------------------------------

N_ACTIONS = 3


def transition(uid):
    """Every field of transition `uid` is derived from it, so a sampled row shows whether it is whole."""
    obs = np.full(2, uid, dtype=np.float32)
    return obs, obs + 0.5, uid % N_ACTIONS, float(uid), uid % 3 == 0


class RingBufferMachine(RuleBasedStateMachine):
    @initialize(buffer_size=st.integers(1, 12), seed=st.integers(0, 2**16))
    def setup(self, buffer_size, seed):
        obs_space = spaces.Box(-np.inf, np.inf, (2,), dtype=np.float32)
        self.buffer = ReplayBuffer(buffer_size, obs_space, spaces.Discrete(N_ACTIONS), rng=np.random.default_rng(seed))
        self.model = collections.deque(maxlen=buffer_size)
        self.n_pushed = 0

    @rule(n=st.integers(1, 15))
    def push(self, n):
        for _ in range(n):
            self.n_pushed += 1
            uid = self.n_pushed  # ids start at 1: an unwritten (all-zero) slot can never pass as a transition
            self.buffer.store_transition(*transition(uid))
            self.model.append(uid)

    @precondition(lambda self: len(self.model) > 0)
    @rule(batch_size=st.integers(1, 40))
    def sample_whole_transitions(self, batch_size):
        s = self.buffer.sample(batch_size)
        assert s.observations.shape == (batch_size, 2) and s.actions.shape == (batch_size, 1)
        for i in range(batch_size):
            uid = int(s.observations[i, 0])
            assert uid in self.model, f"sampled id {uid} is not among the stored {list(self.model)}"
            obs, next_obs, action, reward, terminated = transition(uid)
            np.testing.assert_array_equal(s.observations[i], obs)
            np.testing.assert_array_equal(s.next_observations[i], next_obs)
            assert s.actions[i, 0] == action and s.rewards[i] == reward and s.terminateds[i] == terminated

    @precondition(lambda self: len(self.model) == 0)
    @rule()
    def sample_empty_is_refused(self):
        with pytest.raises(ValueError, match="empty"):
            self.buffer.sample(1)

    @invariant()
    def bookkeeping_matches_model(self):
        size = self.buffer.buffer_size
        assert len(self.buffer) == len(self.model)
        assert self.buffer.current_idx == self.n_pushed % size
        assert self.buffer.is_full == (self.n_pushed >= size)

    @invariant()
    def contents_are_chronological(self):
        b = self.buffer
        order = list(range(b.current_idx, b.buffer_size)) + list(range(b.current_idx)) if b.is_full else list(
            range(b.current_idx)
        )
        assert [int(b.observations[i, 0]) for i in order] == list(self.model)


RingBufferMachine.TestCase.settings = settings(max_examples=150, stateful_step_count=30, deadline=None)
TestRingBuffer = RingBufferMachine.TestCase


class NStepBufferMachine(RuleBasedStateMachine):
    """NStepReplayBuffer against a plain model that works from step indices, not from a queue: the transition
    that starts at step i of an episode is stored at step i + n - 1 with the discounted sum of n rewards, or,
    when the episode terminates first, at its last step with the rewards up to it and no bootstrap; a time
    limit drops the starts it cut short."""

    @initialize(buffer_size=st.integers(1, 12), n_steps=st.integers(1, 5), gamma=st.sampled_from([0.5, 0.9, 1.0]),
                seed=st.integers(0, 2**16))
    def setup(self, buffer_size, n_steps, gamma, seed):
        obs_space = spaces.Box(-np.inf, np.inf, (2,), dtype=np.float32)
        self.buffer = minidqn.NStepReplayBuffer(buffer_size, obs_space, spaces.Discrete(N_ACTIONS),
                                                rng=np.random.default_rng(seed), n_steps=n_steps, gamma=gamma)
        self.n, self.gamma = n_steps, gamma
        self.episode = []  # (uid, action, reward) of the current episode's steps so far
        self.expected = collections.deque(maxlen=buffer_size)  # (obs uid, action, return, next uid, terminal)
        self.uid = 0

    @rule(reward=st.integers(-3, 3), end=st.sampled_from(["", "", "", "terminated", "truncated"]))
    def step(self, reward, end):
        self.uid += 1
        uid, action, terminated, truncated = self.uid, self.uid % N_ACTIONS, end == "terminated", end == "truncated"
        obs, next_obs = np.array([uid, 0], dtype=np.float32), np.array([uid + 0.5, 0], dtype=np.float32)
        self.buffer.store_transition(obs, next_obs, action, float(reward), terminated, truncated)
        self.episode.append((uid, action, float(reward)))
        t = len(self.episode) - 1  # this step's index in the episode
        starts = range(max(0, t - self.n + 1), t + 1) if terminated else [t - self.n + 1] if t >= self.n - 1 else []
        for i in starts:  # each start i ends here, after the steps i..t
            ret = sum(self.gamma**k * r for k, (_, _, r) in enumerate(self.episode[i : t + 1]))
            self.expected.append((self.episode[i][0], self.episode[i][1], ret, uid + 0.5, terminated))
        if terminated or truncated:
            self.episode = []

    @precondition(lambda self: len(self.expected) > 0)
    @rule(batch_size=st.integers(1, 20))
    def sample_whole_transitions(self, batch_size):
        s = self.buffer.sample(batch_size)
        by_uid = {row[0]: row for row in self.expected}
        for i in range(batch_size):
            _, action, ret, next_uid, terminal = by_uid[int(s.observations[i, 0])]
            assert s.actions[i, 0] == action and s.next_observations[i, 0] == next_uid
            assert s.rewards[i] == pytest.approx(ret, rel=1e-6) and s.terminateds[i] == terminal

    @invariant()
    def every_stored_transition_matches_the_model(self):
        b = self.buffer
        assert len(b) == len(self.expected)
        order = list(range(b.current_idx, b.buffer_size)) + list(range(b.current_idx)) if b.is_full else list(
            range(b.current_idx)
        )
        for slot, (uid, action, ret, next_uid, terminal) in zip(order, self.expected):
            assert b.observations[slot, 0] == uid, f"slot {slot}: start {b.observations[slot, 0]}, model {uid}"
            assert b.actions[slot, 0] == action
            assert b.rewards[slot] == pytest.approx(ret, rel=1e-6), f"return of the start at {uid}"
            assert b.next_observations[slot, 0] == next_uid, f"bootstrap state of the start at {uid}"
            assert b.terminateds[slot] == terminal, f"terminal flag of the start at {uid}"


NStepBufferMachine.TestCase.settings = settings(max_examples=150, stateful_step_count=40, deadline=None)
TestNStepBuffer = NStepBufferMachine.TestCase


def test_relu_gives_np_maximum_with_0_and_never_writes_its_shared_zeros():
    # relu compares against a cached array of zeros (a faster path through NumPy): the values must be exactly
    # np.maximum(z, 0)'s, for every dtype and shape, and the zeros, shared by every call, must stay read-only
    rng = np.random.default_rng(3)
    for dtype in (np.float32, np.float64):
        for shape in ((7,), (5, 3), (5, 3), (2, 7)):
            z = rng.normal(size=shape).astype(dtype)
            z.flat[:3] = (-0.0, np.inf, -np.inf)
            h = minidqn.relu(z)
            assert h.dtype == dtype and h.shape == shape
            assert h.tobytes() == np.maximum(z, 0).tobytes(), "not np.maximum(z, 0), bit for bit (the sign of 0 too)"
            assert h.flags.writeable and not np.shares_memory(h, minidqn.read_only_zeros(shape, np.dtype(dtype)))
    zeros = minidqn.read_only_zeros((5, 3), np.dtype(np.float32))
    with pytest.raises(ValueError, match="read-only"):
        zeros[0, 0] = 1.0
    assert minidqn.relu(-1.5) == 0 and minidqn.relu(2.0) == 2.0  # a plain number, as a learner may try
    np.testing.assert_array_equal(minidqn.relu([-1.0, 3.0]), [0.0, 3.0])


def test_forward_is_the_two_layer_mlp():
    rng = np.random.default_rng(7)
    q_net = QNetwork(spaces.Box(-1, 1, (3,), dtype=np.float64), spaces.Discrete(2), n_hidden_units=4,
                     dtype=np.float64, rng=rng)
    p, x = q_net.parameters(), rng.normal(size=(5, 3))
    h1 = np.maximum(x @ p["W1"] + p["b1"], 0)
    h2 = np.maximum(h1 @ p["W2"] + p["b2"], 0)
    expected = h2 @ p["W3"] + p["b3"]
    got = q_net.forward(x)
    assert got.shape == (5, 2), f"Q-values of 5 observations have shape {got.shape}, need (5, 2)"
    wrong = np.argwhere(~np.isclose(got, expected, rtol=1e-12, atol=1e-12))
    assert not len(wrong), (f"Q[{wrong[0][0]}, {wrong[0][1]}]: yours {got[tuple(wrong[0])]:.6g}, "
                            f"relu(relu(x W1 + b1) W2 + b2) W3 + b3 gives {expected[tuple(wrong[0])]:.6g}")
    q_values, (_, a1, a2) = q_net.forward(x, return_activations=True)
    np.testing.assert_allclose(q_values, expected, rtol=1e-12)
    np.testing.assert_allclose(a1, h1, rtol=1e-12, err_msg="the first activation handed to backward")
    np.testing.assert_allclose(a2, h2, rtol=1e-12, err_msg="the second activation handed to backward")


def test_epsilon_greedy_takes_random_actions_at_the_rate_epsilon():
    rng = np.random.default_rng(8)
    q_net = QNetwork(spaces.Box(-1, 1, (2,), dtype=np.float32), spaces.Discrete(4), n_hidden_units=8, rng=rng)
    obs = np.array([0.3, -0.2], dtype=np.float32)
    greedy = int(q_net(obs).argmax())
    for eps, low, high in ((0.0, 1.0, 1.0), (0.2, 0.8, 0.9), (1.0, 0.15, 0.35)):
        actions = [epsilon_greedy_action_selection(q_net, obs, eps, spaces.Discrete(4), rng) for _ in range(2000)]
        share = np.mean(np.array(actions) == greedy)  # greedy with prob 1 - eps, plus eps / 4 by chance
        assert low <= share <= high, (f"epsilon {eps}: the greedy action came {share:.0%} of the time, "
                                      f"expected about {1 - eps + eps / 4:.0%}")
    assert set(actions) == {0, 1, 2, 3}, "epsilon 1 must reach every action"


def test_td_target_is_the_reward_plus_the_discounted_max_of_the_target_network():
    rng = np.random.default_rng(9)
    box = spaces.Box(-1, 1, (3,), dtype=np.float64)
    q_net, q_target_net = (QNetwork(box, spaces.Discrete(3), n_hidden_units=5, dtype=np.float64, rng=rng)
                           for _ in range(2))
    data = ReplayBufferSamples(rng.normal(size=(6, 3)), rng.normal(size=(6, 3)), rng.integers(0, 3, (6, 1)),
                               np.linspace(-1, 1, 6), np.array([False, True, False, False, True, False]))
    next_q = q_target_net(data.next_observations)
    for double_dqn, bootstrap in ((False, next_q.max(axis=1)),
                                  (True, next_q[np.arange(6), q_net(data.next_observations).argmax(axis=1)])):
        expected = data.rewards + 0.9 * np.where(data.terminateds, 0.0, bootstrap)
        got = minidqn.td_target(q_net, q_target_net, data, 0.9, double_dqn)
        assert got.shape == (6,), f"the TD target has shape {got.shape}, needs (batch_size,) = (6,)"
        for i in range(6):
            assert got[i] == pytest.approx(expected[i], rel=1e-12), (
                f"transition {i} ({'terminal' if data.terminateds[i] else 'not terminal'}, double_dqn="
                f"{double_dqn}): yours {got[i]:.6g}, r + gamma * (1 - terminated) * max_a' Q_target(s', a') "
                f"gives {expected[i]:.6g}")


def test_mse_loss_and_its_gradient():
    td_error = np.array([0.5, -2.0, 1.0, 0.0])
    loss, grad = minidqn.mse_loss(td_error)
    assert loss == pytest.approx(np.mean(td_error**2)), f"loss {loss:.6g}, mean(td_error^2) is 1.3125"
    expected = 2 * td_error / 4
    for i in range(4):
        assert grad[i] == pytest.approx(expected[i]), (f"dLoss/dQ[{i}]: yours {grad[i]:.6g}, "
                                                        f"2 * td_error / batch_size gives {expected[i]:.6g}")


# ---------------------------------------------------------------------------------------------------------
# Gradients: float64 central finite differences, every entry of every parameter
# ---------------------------------------------------------------------------------------------------------


def finite_difference_grads(params, loss_of_params, h=1e-5):
    """Central differences (f(p + h) - f(p - h)) / 2h for every entry of every array in `params`."""
    grads = {}
    for k, p in params.items():
        g = np.zeros_like(p)
        for idx in np.ndindex(p.shape):
            old = p[idx]
            p[idx] = old + h
            plus = loss_of_params()
            p[idx] = old - h
            minus = loss_of_params()
            p[idx] = old
            g[idx] = (plus - minus) / (2 * h)
        grads[k] = g
    return grads


def assert_grads_close(analytic, numeric, tol=1e-6):
    """Every entry of every gradient within tol (relative to the tensor's scale). The gradients are checked in the
    order backpropagation computes them, from the top (dW3, db3, dW2, ...), so the first wrong one is where the
    mistake starts; the message names its first wrong entry and which gradients are right, e.g.
    "dW2[3, 1]: yours 0.12, finite differences 0.08 (9 of 25 entries of dW2 are wrong); right: dW3, db3"."""
    assert analytic.keys() == numeric.keys()
    order = sorted(analytic, key=lambda k: (-int(k[1:]), k[0]))  # W3, b3, W2, b2, W1, b1
    right, first_wrong = [], None
    for k in order:
        assert analytic[k].shape == numeric[k].shape, f"d{k} has shape {analytic[k].shape}, needs {numeric[k].shape}"
        scale = max(1.0, np.max(np.abs(numeric[k])))
        wrong = np.argwhere(~(np.abs(analytic[k] - numeric[k]) / scale < tol))  # NaN counts as wrong
        if not len(wrong):
            right.append(f"d{k}")
        elif first_wrong is None:
            idx = tuple(int(i) for i in wrong[0])
            first_wrong = (f"d{k}[{', '.join(map(str, idx))}]: yours {analytic[k][idx]:.6g}, finite differences "
                           f"{numeric[k][idx]:.6g} ({len(wrong)} of {analytic[k].size} entries of d{k} are wrong)")
    if first_wrong is not None:
        raise AssertionError(f"{first_wrong}; right: {', '.join(right) or 'none'}")


@pytest.mark.parametrize("activation_fn", ["relu", "tanh"])
def test_backward_matches_finite_differences(activation_fn):
    rng = np.random.default_rng(1)
    obs_space = spaces.Box(-1, 1, (3,), dtype=np.float64)
    q_net = QNetwork(obs_space, spaces.Discrete(4), n_hidden_units=5, activation_fn=activation_fn,
                     dtype=np.float64, rng=rng)
    x = rng.normal(size=(7, 3))
    upstream = rng.normal(size=(7, 4))  # L = sum(upstream * Q(x)), so dL/dQ = upstream

    _, activations = q_net.forward(x, return_activations=True)
    analytic = {k: g.copy() for k, g in q_net.backward(upstream, activations).items()}
    assert {k: v.shape for k, v in analytic.items()} == {k: v.shape for k, v in q_net.parameters().items()}
    numeric = finite_difference_grads(q_net.parameters(), lambda: float(np.sum(upstream * q_net.forward(x))))
    assert_grads_close(analytic, numeric)


@pytest.mark.parametrize("loss_fn", ["mse", "huber"])
@pytest.mark.parametrize("double_dqn", [False, True])
def test_td_loss_gradient_matches_finite_differences(loss_fn, double_dqn):
    rng = np.random.default_rng(2)
    obs_space = spaces.Box(-1, 1, (3,), dtype=np.float64)
    q_net = QNetwork(obs_space, spaces.Discrete(2), n_hidden_units=6, dtype=np.float64, rng=rng)
    q_target_net = QNetwork(obs_space, spaces.Discrete(2), n_hidden_units=6, dtype=np.float64, rng=rng)
    batch = 12
    # rewards spread from -3 to 3, so TD errors fall on both sides of the Huber kink at |error| = 1
    data = ReplayBufferSamples(
        observations=rng.normal(size=(batch, 3)),
        next_observations=rng.normal(size=(batch, 3)),
        actions=rng.integers(0, 2, size=(batch, 1)),
        rewards=np.linspace(-3, 3, batch),
        terminateds=np.arange(batch) % 4 == 0,
    )
    _, _, current = td_loss(q_net, q_target_net, data, 0.9, loss_fn, double_dqn)  # Q(s, a), (batch,)
    next_q = q_target_net(data.next_observations)
    errors = current - (data.rewards + 0.9 * ~data.terminateds * next_q.max(axis=1))
    if not double_dqn:
        assert np.any(np.abs(errors) < 1) and np.any(np.abs(errors) > 1), "the batch must straddle the kink"

    loss, grads, _ = td_loss(q_net, q_target_net, data, 0.9, loss_fn, double_dqn)
    analytic = {k: g.copy() for k, g in grads.items()}  # the network's own buffers: the next backward overwrites them
    numeric = finite_difference_grads(
        q_net.parameters(), lambda: td_loss(q_net, q_target_net, data, 0.9, loss_fn, double_dqn)[0]
    )
    assert_grads_close(analytic, numeric)


def test_huber_loss_values_on_both_sides_of_the_kink():
    obs_space = spaces.Box(-1, 1, (1,), dtype=np.float64)
    q_net = QNetwork(obs_space, spaces.Discrete(1), n_hidden_units=2, dtype=np.float64)
    for k, v in q_net.parameters().items():
        v[...] = 0  # Q == 0 everywhere, so the TD error is minus the reward
    data = ReplayBufferSamples(np.zeros((2, 1)), np.zeros((2, 1)), np.zeros((2, 1), dtype=int),
                               np.array([0.5, 3.0]), np.array([True, True]))
    huber = td_loss(q_net, q_net, data, 0.99, "huber")[0]
    mse = td_loss(q_net, q_net, data, 0.99, "mse")[0]
    assert huber == pytest.approx((0.5 * 0.5**2 + (3.0 - 0.5)) / 2)
    assert mse == pytest.approx((0.5**2 + 3.0**2) / 2)


def test_gradient_clipping_caps_the_global_norm():
    grads = {"a": np.array([3.0, 0.0]), "b": np.array([[4.0]])}
    norm = minidqn.clip_grad_norm(grads, 1.0)
    assert norm == pytest.approx(5.0)
    assert np.sqrt(sum(np.sum(g**2) for g in grads.values())) == pytest.approx(1.0)
    np.testing.assert_allclose(grads["a"], [0.6, 0.0])


# ---------------------------------------------------------------------------------------------------------
# Adam against Kingma & Ba's Algorithm 1, unrolled by hand
# ---------------------------------------------------------------------------------------------------------


def test_adam_matches_hand_unrolled_algorithm_1():
    rng = np.random.default_rng(4)
    lr, beta1, beta2, eps = 0.01, 0.9, 0.999, 1e-8
    params = {"w": rng.normal(size=(3, 2)), "b": rng.normal(size=2)}
    expected = {k: v.copy() for k, v in params.items()}
    m = {k: np.zeros_like(v) for k, v in params.items()}
    v = {k: np.zeros_like(p) for k, p in params.items()}
    optimizer = Adam(params, lr=lr, betas=(beta1, beta2), eps=eps)
    for t in range(1, 6):
        grads = {k: rng.normal(size=p.shape) for k, p in params.items()}
        for k in params:
            m[k] = beta1 * m[k] + (1 - beta1) * grads[k]
            v[k] = beta2 * v[k] + (1 - beta2) * grads[k] ** 2
            m_hat = m[k] / (1 - beta1**t)
            v_hat = v[k] / (1 - beta2**t)
            expected[k] = expected[k] - lr * m_hat / (np.sqrt(v_hat) + eps)
        optimizer.step(grads)
        for k in params:
            wrong = np.argwhere(~np.isclose(params[k], expected[k], rtol=1e-12, atol=1e-14))
            if len(wrong):
                idx = tuple(int(i) for i in wrong[0])
                raise AssertionError(f"step {t}: {k}[{', '.join(map(str, idx))}] is {params[k][idx]:.10g}, "
                                     f"Kingma & Ba's Algorithm 1 gives {expected[k][idx]:.10g}")
    # the first step of Adam moves every entry by almost exactly lr, whatever the gradient's scale
    p = {"x": np.zeros(4)}
    Adam(p, lr=0.1).step({"x": np.array([1e-3, -5.0, 7.0, -1e3])})
    np.testing.assert_allclose(p["x"], [-0.1, 0.1, -0.1, 0.1], rtol=1e-4)


def test_adam_keeps_no_subnormal_first_moment_and_the_same_weights():
    # A weight whose gradient stays exactly 0 (a dead ReLU unit's) has its first moment decay by beta1 at each
    # step, into float32's subnormal range after about 800 steps, where it stays (rounding stops the decay short
    # of 0). Adam zeroes such entries; the weights come out bit-identical to Algorithm 1 without that, since such
    # a moment is far too small to move a weight.
    lr, beta1, beta2, eps = 1e-2, 0.9, 0.999, 1e-8
    f32 = np.float32
    p = {"w": np.array([0.5, -0.25, 3.0], dtype=f32)}
    optimizer = Adam(p, lr=lr)
    w, m, v = p["w"].copy(), np.zeros(3, f32), np.zeros(3, f32)
    for t in range(1, 1201):
        g = np.array([1.0, -2.0, 0.5], dtype=f32) if t == 1 else np.array([0.0, 0.0, 0.5 * (-1) ** t], dtype=f32)
        optimizer.step({"w": g})
        m = f32(beta1) * m + f32(1 - beta1) * g  # Algorithm 1 in float32, nothing flushed
        v = f32(beta2) * v + f32(1 - beta2) * g**2
        w = w - f32(lr / (1 - beta1**t)) * (m / (np.sqrt(v / f32(1 - beta2**t)) + f32(eps)))
    tiny = np.finfo(f32).tiny
    assert np.all((m[:2] != 0) & (np.abs(m[:2]) < tiny)), "the reference should have decayed into subnormals"
    subnormal = (optimizer.m["w"] != 0) & (np.abs(optimizer.m["w"]) < tiny)
    assert not subnormal.any(), f"Adam's first moment keeps subnormal entries: {optimizer.m['w']}"
    assert optimizer.m["w"][2] == m[2], "an entry whose gradient is not 0 must be left as Algorithm 1 has it"
    np.testing.assert_array_equal(p["w"], w, err_msg="zeroing subnormal moments changed the weights")


def test_adam_whole_vector_path_matches_the_per_array_loop(cartpole, monkeypatch):
    # A QNetwork's parameters and gradients each tile one vector (FlatDict), so Adam updates them in one pass;
    # plain dicts take the per-array loop. Both must give the same numbers.
    q_net = QNetwork(cartpole.observation_space, cartpole.action_space, n_hidden_units=8, dtype=np.float64,
                     rng=np.random.default_rng(5))
    copies = q_net.state_dict()  # separate arrays: the per-array loop
    fast, slow = Adam(q_net.parameters(), lr=0.01), Adam(copies, lr=0.01)
    assert isinstance(q_net.grads, minidqn.FlatDict) and not isinstance(copies, minidqn.FlatDict)
    rng = np.random.default_rng(6)
    for _ in range(4):
        q_net.grads.vector[:] = rng.normal(size=q_net.grads.vector.shape)
        fast.step(q_net.grads)
        slow.step({k: g.copy() for k, g in q_net.grads.items()})
    for k in copies:
        np.testing.assert_allclose(q_net.parameters()[k], copies[k], rtol=1e-13, atol=1e-15)
        assert np.shares_memory(q_net.parameters()[k], q_net.flat_params)


def test_backward_writes_into_the_networks_own_gradient_vector(cartpole):
    q_net = QNetwork(cartpole.observation_space, cartpole.action_space, n_hidden_units=8)
    _, activations = q_net.forward(np.ones((3, 4), dtype=np.float32), return_activations=True)
    grads = q_net.backward(np.ones((3, 2), dtype=np.float32), activations)
    assert grads is q_net.grads
    for k, g in grads.items():
        assert np.shares_memory(g, q_net.grads.vector), (
            f"grads['{k}'] is a new array, not the network's own: write the gradient into the network's array "
            f"(grads['{k}'][:] = ..., or out=grads['{k}']) instead of rebinding it (grads['{k}'] = ...)")
        assert g.shape == q_net.parameters()[k].shape


def test_one_observation_gives_the_batch_row_and_leaves_backward_alone():
    rng = np.random.default_rng(3)
    q_net = QNetwork(spaces.Box(-1, 1, (3,), dtype=np.float64), spaces.Discrete(2), n_hidden_units=5,
                     dtype=np.float64, rng=rng)
    for batch in (4, 6, 4):  # the bias gradients follow the batch size
        x, upstream = rng.normal(size=(batch, 3)), rng.normal(size=(batch, 2))
        q_values, activations = q_net.forward(x, return_activations=True)
        expected = {k: g.copy() for k, g in q_net.backward(upstream, activations).items()}
        assert expected["b3"] == pytest.approx(upstream.sum(axis=0))  # the bias gradient sums the batch
        single = q_net(x[1])  # one observation, no batch dimension: a vector of Q-values
        assert single.shape == (2,) and np.allclose(single, q_values[1])
        q_net(x[:2])  # other forward passes in between change nothing: backward gets its activations explicitly
        got = q_net.backward(upstream, activations)
        for k in expected:
            assert np.array_equal(got[k], expected[k])


def test_polyak_update_moves_toward_the_other_network(cartpole):
    a, b = (QNetwork(cartpole.observation_space, cartpole.action_space, n_hidden_units=8, dtype=np.float64,
                     rng=np.random.default_rng(s)) for s in (1, 2))
    before = a.flat_params.copy()
    a.polyak_update(b, 0.25)
    np.testing.assert_allclose(a.flat_params, before + 0.25 * (b.flat_params - before), rtol=1e-14)
    a.polyak_update(b, 1.0)  # rate 1: a copy, never an alias
    assert np.array_equal(a.flat_params, b.flat_params), (
        "polyak_update(other, tau=1) must copy other's weights exactly: in floating point p + 1 * (p_other - p) "
        "can miss p_other in the last bit, so copy when tau == 1")
    assert not np.shares_memory(a.flat_params, b.flat_params)


# ---------------------------------------------------------------------------------------------------------
# Target network, termination and truncation
# ---------------------------------------------------------------------------------------------------------


def test_target_network_is_a_copy_and_does_not_move(cartpole):
    q_net, q_target_net = make_pair(cartpole)
    for k in q_net.parameters():
        assert not np.shares_memory(q_net.parameters()[k], q_target_net.parameters()[k]), \
            f"the target network's {k} is the online network's own array (an alias), not a copy"
    buffer = ReplayBuffer(500, cartpole.observation_space, cartpole.action_space, rng=np.random.default_rng(0))
    obs, _ = cartpole.reset()
    for _ in range(200):
        obs = collect_one_step(cartpole, q_net, buffer, obs, 1.0, rng=np.random.default_rng(0))
    target_before = q_target_net.state_dict()
    online_before = q_net.state_dict()
    dqn_update(q_net, q_target_net, Adam(q_net.parameters()), buffer, 32, 0.99)
    for k in target_before:
        assert np.array_equal(q_target_net.parameters()[k], target_before[k]), \
            f"the target network's {k} moved during an update of the online network"
        assert not np.array_equal(q_net.parameters()[k], online_before[k]), f"the update left the online {k} alone"


def train_on_chain(env, gamma, seed=0, n_updates=1500):
    rng = np.random.default_rng(seed)
    q_net = QNetwork(env.observation_space, env.action_space, n_hidden_units=32, rng=rng)
    q_target_net = QNetwork(env.observation_space, env.action_space, n_hidden_units=32, rng=rng)
    buffer = ReplayBuffer(300, env.observation_space, env.action_space, rng=rng)
    obs, _ = env.reset(seed=seed)
    for _ in range(300):
        obs = collect_one_step(env, q_net, buffer, obs, exploration_rate=1.0, rng=rng)
    optimizer = Adam(q_net.parameters(), lr=3e-3)
    for i in range(n_updates):
        if i % 20 == 0:
            q_target_net.load_state_dict(q_net.state_dict())
        optimizer.lr = linear_schedule(3e-3, 3e-4, i, n_updates)  # small last steps: converge, do not hover
        dqn_update(q_net, q_target_net, optimizer, buffer, 32, gamma)
    return q_net, buffer


def test_n_step_buffer_sums_n_rewards_and_ends_episodes_correctly():
    box, discrete = spaces.Box(-10, 10, (1,), dtype=np.float32), spaces.Discrete(2)
    buffer = minidqn.NStepReplayBuffer(100, box, discrete, n_steps=3, gamma=0.5)
    obs = np.zeros(1, dtype=np.float32)

    def step(i, reward, terminated=False, truncated=False):
        obs[0] = i  # the caller reuses its array: the buffer must have copied it
        buffer.store_transition(obs, np.array([i + 1.0]), i % 2, reward, terminated, truncated)

    # Episode 1: states 0..4, rewards 1, 2, 4, 8, 16, terminal after state 4
    for i, reward in enumerate([1, 2, 4, 8, 16]):
        step(i, reward, terminated=(i == 4))
    # Episode 2: states 10..13, cut by a time limit after state 13
    for i in range(10, 14):
        step(i, 1.0, truncated=(i == 13))
    n = len(buffer)
    stored = list(zip(buffer.observations[:n, 0], buffer.next_observations[:n, 0], buffer.actions[:n, 0],
                      buffer.rewards[:n], buffer.terminateds[:n]))
    assert stored == [
        (0, 3, 0, 1 + 0.5 * 2 + 0.25 * 4, False),  # 3 steps ahead: bootstraps from state 3 with gamma^3
        (1, 4, 1, 2 + 0.5 * 4 + 0.25 * 8, False),
        (2, 5, 0, 4 + 0.5 * 8 + 0.25 * 16, True),  # reaches the terminal state: no bootstrap
        (3, 5, 1, 8 + 0.5 * 16, True),  # the episode's end flushes what is left, shorter
        (4, 5, 0, 16, True),
        (10, 13, 0, 1 + 0.5 + 0.25, False),  # episode 2: 3 steps ahead
        (11, 14, 1, 1 + 0.5 + 0.25, False),
    ]  # 12 and 13 can never be 3 steps long: the time limit drops them
    assert buffer.pending == []


def test_one_step_targets_by_default_and_n_step_targets_on_request(monkeypatch):
    seen = []
    real_update = minidqn.dqn_update

    def spy(q_net, q_target_net, optimizer, replay_buffer, batch_size, gamma, *args, **kwargs):
        seen.append((type(replay_buffer).__name__, gamma))
        return real_update(q_net, q_target_net, optimizer, replay_buffer, batch_size, gamma, *args, **kwargs)

    monkeypatch.setattr(minidqn, "dqn_update", spy)
    run_dqn(**{**TUTORIAL, "n_timesteps": 110})
    run_dqn(**{**TUTORIAL, "n_timesteps": 110, "n_steps": 4, "gamma": 0.9})
    assert seen[0] == ("ReplayBuffer", 0.99) and seen[-1] == ("NStepReplayBuffer", pytest.approx(0.9**4))


def test_time_limit_truncation_bootstraps():
    # Never terminates, truncated after 3 steps: every state is worth 1 + g + g^2 + ... = 1 / (1 - g) = 2.
    # Treating the truncation as terminal would teach Q(t=2) = 1 instead.
    env = gym.wrappers.TimeLimit(ChainEnv(terminal_at=None), max_episode_steps=3)
    q_net, buffer = train_on_chain(env, gamma=0.5)
    assert not buffer.terminateds.any(), "a truncation was stored as a termination"
    # next_obs is stored before the reset: the truncating step reached t = 3, not the reset state t = 0
    last_steps = buffer.observations[:, 0] == np.float32(0.2)
    np.testing.assert_allclose(buffer.next_observations[last_steps, 0], 0.3, rtol=1e-6)
    q = q_net(np.array([[0.0], [0.1], [0.2]], dtype=np.float32)).max(axis=1)
    np.testing.assert_allclose(q, [2.0, 2.0, 2.0], atol=0.08)


def test_termination_cuts_the_bootstrap():
    # Terminates on reaching t = 3: Q(t) = sum of the remaining rewards, discounted: 1.75, 1.5, 1.
    # Observations 0, 1, 2 (not 0, 0.1, 0.2): spread out, the network can bend between them and fit all three
    env = ChainEnv(terminal_at=3, spacing=1.0)
    q_net, buffer = train_on_chain(env, gamma=0.5)
    assert buffer.terminateds[buffer.observations[:, 0] == 2].all()
    q = q_net(np.array([[0.0], [1.0], [2.0]], dtype=np.float32)).max(axis=1)
    np.testing.assert_allclose(q, [1.75, 1.5, 1.0], atol=0.08)


# ---------------------------------------------------------------------------------------------------------
# Bad input: clear ValueErrors
# ---------------------------------------------------------------------------------------------------------


def test_bad_input_gets_clear_errors(cartpole):
    box, discrete = cartpole.observation_space, cartpole.action_space
    with pytest.raises(ValueError, match="buffer_size must be an integer >= 1"):
        ReplayBuffer(0, box, discrete)
    with pytest.raises(ValueError, match="Discrete action space"):
        ReplayBuffer(10, box, spaces.Box(-1, 1, (1,)))
    with pytest.raises(ValueError, match="n_hidden_units must be an integer >= 1"):
        QNetwork(box, discrete, n_hidden_units=0)
    with pytest.raises(ValueError, match="Discrete action space"):
        QNetwork(box, spaces.Box(-1, 1, (2,)))
    with pytest.raises(ValueError, match="1-D Box observation space"):
        QNetwork(spaces.Box(0, 1, (4, 4)), discrete)
    with pytest.raises(ValueError, match="1-D Box observation space"):
        QNetwork(spaces.Discrete(3), discrete)
    with pytest.raises(ValueError, match="activation_fn must be one of"):
        QNetwork(box, discrete, activation_fn="sigmoid")
    buffer = ReplayBuffer(10, box, discrete)
    with pytest.raises(ValueError, match="empty replay buffer"):
        buffer.sample(4)
    q_net = QNetwork(box, discrete)
    for wrong in (np.zeros(5), np.zeros((2, 5)), np.zeros((1, 2, 4))):
        with pytest.raises(ValueError, match=r"observations of shape \(batch_size, 4\) or \(4,\)"):
            q_net(wrong)
    with pytest.raises(ValueError, match="lr must be > 0"):
        Adam(q_net.parameters(), lr=0.0)
    # Batch sizes, exploration rates and gamma enter through run_dqn, which checks them once (below), not
    # at every env step and every update
    with pytest.raises(ValueError, match="max_steps must be > 0"):
        linear_schedule(1.0, 0.0, 1, 0)
    with pytest.raises(ValueError, match="max_steps must be > 0"):
        linear_schedule(1.0, 0.0, 1, -5)


# Every keyword of run_dqn, out of its range: each is refused before training, with its name
BAD_ARGUMENTS = [
    ({"env_id": "Pendulum-v1"}, "DQN needs a Discrete one"),
    ({"env_id": "NoSuchEnv-v0"}, "unknown env id 'NoSuchEnv-v0'"),
    ({"env_id": "MinidqnTest/Shifted-v0"}, r"actions are 0..n-1, got Discrete\(2, start=1\)"),
    ({"env_id": 7}, "env_id must be a gymnasium env id"),
    ({"replay_buffer_size": 0}, "replay_buffer_size must be an integer >= 1"),
    ({"replay_buffer_size": 10**14}, r"replay_buffer_size=100000000000000 asks for .* TiB of memory, more than"),
    ({"target_network_update_interval": 0}, "target_network_update_interval must be an integer >= 1"),
    ({"learning_starts": -1}, "^learning_starts must be an integer >= 0, got -1$"),
    ({"exploration_initial_eps": 1.5}, r"exploration_initial_eps must be in \[0.0, 1.0\]"),
    ({"exploration_final_eps": 1.5}, r"exploration_final_eps must be in \[0.0, 1.0\]"),
    ({"exploration_fraction": -0.1}, r"exploration_fraction must be in \[0.0, 1.0\]"),
    ({"n_timesteps": 0}, "n_timesteps must be an integer >= 1"),
    ({"update_interval": 0}, "update_interval must be an integer >= 1"),
    ({"gradient_steps": 2.5}, "gradient_steps must be an integer >= 1"),
    ({"learning_rate": 0.0}, "learning_rate must be > 0"),
    ({"learning_rate": float("inf")}, "learning_rate must be > 0 and finite"),
    ({"final_learning_rate": -1e-3}, "final_learning_rate must be > 0"),
    ({"batch_size": 0}, "batch_size must be an integer >= 1"),
    ({"gamma": -0.5}, r"gamma must be in \[0.0, 1.0\]"),
    ({"gamma": 1.5}, r"gamma must be in \[0.0, 1.0\]"),
    ({"gamma": float("nan")}, r"gamma must be in \[0.0, 1.0\]"),
    ({"n_steps": 0}, "n_steps must be an integer >= 1"),
    ({"n_hidden_units": 0}, "n_hidden_units must be an integer >= 1"),
    ({"n_hidden_units": 10**8}, r"n_hidden_units=100000000 asks for .* TiB of memory, more than this machine has"),
    ({"scale_observations": "yes"}, "scale_observations must be True or False"),
    ({"n_eval_episodes": 0}, "n_eval_episodes must be an integer >= 1"),
    ({"evaluation_interval": -1}, "^evaluation_interval must be an integer >= 0, got -1$"),
    ({"eval_exploration_rate": -0.1}, r"eval_exploration_rate must be in \[0.0, 1.0\]"),
    ({"seed": -1}, "^seed must be an integer >= 0, got -1$"),
    ({"loss_fn": "l1"}, "loss_fn must be one of"),
    ({"max_grad_norm": -1.0}, "max_grad_norm must be > 0"),  # would flip every gradient
    ({"max_grad_norm": 0.0}, "max_grad_norm must be > 0"),  # would zero every gradient
    ({"double_dqn": "no"}, "double_dqn must be True or False"),
    ({"tau": 0.0}, r"tau must be in \(0, 1\], got 0.0"),  # the target would never move
    ({"weight_averaging_rate": 2.0}, r"weight_averaging_rate must be in \(0, 1\] or None"),
    ({"weight_averaging_rate": 0.0}, r"weight_averaging_rate must be in \(0, 1\] or None"),
    ({"weight_averaging_window": 0.0}, r"weight_averaging_window must be in \(0, 1\] or None"),
    ({"eval_render_mode": "window"}, "eval_render_mode must be one of"),
    ({"save_path": "/no/such/folder/q.npz"}, "save_path: cannot write /no/such/folder/q.npz: its folder "
                                             "/no/such/folder does not exist"),
    ({"save_path": ""}, "save_path must be a file path such as model.npz, got ''"),
    ({"save_path": "."}, r"save_path '.' is a folder: give a file path, such as '\./model.npz'"),
    ({"log_path": "/no/such/folder/log.npz"}, "log_path: cannot write /no/such/folder/log.npz"),
    ({"log_path": "same.npz", "save_path": "same.npz"}, "log_path and save_path are the same file"),
    ({"verbose": 7}, r"verbose must be one of \[0, 1, 2\], got 7"),
]


def test_every_keyword_of_run_dqn_has_a_checked_range():
    assert {name for kwargs, _ in BAD_ARGUMENTS for name in kwargs} == set(inspect.signature(run_dqn).parameters)


@pytest.mark.parametrize("kwargs, message", BAD_ARGUMENTS)
def test_run_dqn_rejects_bad_arguments(kwargs, message, monkeypatch):
    def no_step(self, action):
        raise AssertionError("a bad keyword must be refused before the first env step")

    monkeypatch.setattr(gym.wrappers.RecordEpisodeStatistics, "step", no_step)
    with pytest.raises(ValueError, match=message):
        run_dqn(**{"n_timesteps": 10, "verbose": 0, **kwargs})


def test_memory_is_checked_before_allocating(monkeypatch):
    monkeypatch.setattr(minidqn, "physical_memory", lambda: 2**30)  # a 1 GiB machine
    with pytest.raises(ValueError, match=r"replay_buffer_size=30000000 asks for 1.3 GiB of memory, more than this "
                                         r"machine has \(1.0 GiB\)"):
        run_dqn(replay_buffer_size=30_000_000, n_timesteps=10, verbose=0)  # CartPole: 45 bytes a transition
    run_dqn(replay_buffer_size=20_000_000, n_timesteps=10, verbose=0)  # 0.8 GiB: allowed (allocated lazily)


def test_a_failed_save_at_the_end_loses_nothing(tmp_path, monkeypatch, capsys):
    # a disk that refuses the two files asked for (but not another name beside them): the run still ends with
    # the network and the log on disk, and the error names both paths
    asked = {str(tmp_path / "q.npz"), str(tmp_path / "log.npz")}
    real_write = minidqn.atomic_savez

    def full_disk(path, arrays):
        if path in asked:
            raise OSError(27, "File too large")
        real_write(path, arrays)

    monkeypatch.setattr(minidqn, "atomic_savez", full_disk)
    tiny = dict(n_timesteps=600, learning_starts=100, n_hidden_units=16, evaluation_interval=0, seed=3)
    with pytest.raises(OSError, match=r"could not write the network to .*q\.npz \(File too large\); it is in "
                                      r".*q\.rescued-.*\.npz instead; could not write the log to .*log\.npz"):
        run_dqn(save_path=str(tmp_path / "q.npz"), log_path=str(tmp_path / "log.npz"), verbose=1, **tiny)
    assert "network saved to " + str(tmp_path / "q.rescued-") in capsys.readouterr().out
    (rescued,) = tmp_path.glob("q.rescued-*.npz")
    expected = run_dqn(verbose=0, **tiny)
    for k, v in QNetwork.load(str(rescued)).parameters().items():
        np.testing.assert_array_equal(v, expected.parameters()[k])
    assert len(list(tmp_path.glob("log.rescued-*.npz"))) == 1


def test_loading_a_file_that_is_not_a_checkpoint_gives_no_pickle_advice(tmp_path):
    path = tmp_path / "notes.npz"
    path.write_text("just some text")
    with pytest.raises(ValueError, match="is not a minidqn checkpoint") as error:
        QNetwork.load(str(path))
    assert "allow_pickle" not in str(error.value) and "trust" not in str(error.value)


def test_float32_max_bounds_count_as_unbounded():
    # many envs write "unbounded" as float32's largest value: scaling by it would make every input ~1e-38
    big = np.finfo(np.float32).max
    box = spaces.Box(np.array([-big, -1.0], np.float32), np.array([big, 3.0], np.float32), dtype=np.float32)
    q_net = QNetwork(box, spaces.Discrete(2), n_hidden_units=8, rng=np.random.default_rng(0), scale_observations=True)
    np.testing.assert_array_equal(q_net.obs_half_width, [1.0, 2.0])  # the first passes as it is
    np.testing.assert_array_equal(q_net.obs_center, [0.0, 1.0])
    assert not np.allclose(q_net(np.array([1.0, -3.0])), q_net(np.array([100.0, -3.0])))


def test_a_shifted_discrete_space_is_refused():
    box = spaces.Box(-1.0, 1.0, (2,), dtype=np.float32)
    for make in (QNetwork, lambda o, a: ReplayBuffer(10, o, a)):
        with pytest.raises(ValueError, match=r"whose actions are 0..n-1, got Discrete\(3, start=-1\)"):
            make(box, spaces.Discrete(3, start=-1))


def test_evaluations_draw_from_their_own_generator():
    # with an exploring evaluation, how often the evaluations run must not change training
    tiny = dict(n_timesteps=600, learning_starts=100, n_hidden_units=16, verbose=0)
    runs = [run_dqn(seed=2, eval_exploration_rate=0.5, n_eval_episodes=n, evaluation_interval=every, **tiny)
            for every, n in ((200, 2), (300, 3))]
    for k, v in runs[0].parameters().items():
        np.testing.assert_array_equal(v, runs[1].parameters()[k])


def test_n_step_returns_wait_for_the_first_transition():
    # n_steps=3 with no warm-up: the first n-step transition exists after 3 env steps, the first update then
    run_dqn(n_steps=3, learning_starts=0, update_interval=1, n_timesteps=30, batch_size=4, evaluation_interval=0,
            verbose=0)


def test_the_progress_line_before_learning_says_so(capsys):
    run_dqn(n_timesteps=400, learning_starts=300, evaluation_interval=200, n_eval_episodes=1, verbose=1)
    first, second = capsys.readouterr().out.splitlines()[:2]
    assert "no gradient step yet" in first and "nan" not in first
    assert "loss " in second and "no gradient step yet" not in second


@pytest.mark.filterwarnings("error")  # and no NumPy overflow warning before it
def test_non_finite_loss_stops_with_the_step():
    # rewards of 1e30 overflow float32 once squared: the first update (step 12) must refuse to go on
    with pytest.raises(ValueError, match=r"step 12: the TD loss is inf"):
        run_dqn(env_id="MinidqnTest/Overflow-v0", n_timesteps=100, learning_starts=10, verbose=0)
    with pytest.raises(ValueError, match=r"the TD loss is (inf|nan)"):  # a step size that blows up the weights
        run_dqn(learning_rate=1e9, **SMALL)


# ---------------------------------------------------------------------------------------------------------
# Checkpoints
# ---------------------------------------------------------------------------------------------------------


def test_checkpoint_round_trip(tmp_path, cartpole):
    q_net = QNetwork(cartpole.observation_space, cartpole.action_space, n_hidden_units=16, activation_fn="tanh",
                     rng=np.random.default_rng(0))
    path = tmp_path / "q.npz"
    q_net.save(str(path))
    loaded = QNetwork.load(str(path))
    x = np.random.default_rng(1).normal(size=(5, 4)).astype(np.float32)
    np.testing.assert_array_equal(loaded(x), q_net(x))
    assert loaded.n_hidden_units == 16 and loaded.activation_name == "tanh" and loaded.dtype == np.float32
    assert [p.name for p in tmp_path.iterdir()] == ["q.npz"], "no temporary file is left behind"
    other = tmp_path / "no_suffix"  # np.savez would add ".npz" to a bare path name; save must not
    q_net.save(str(other))
    assert other.exists()


def test_checkpoint_load_refuses_pickles_and_junk(tmp_path):
    evil = tmp_path / "evil.npz"
    with open(evil, "wb") as f:
        pickle.dump({"W1": np.zeros(3)}, f)
    with pytest.raises(ValueError, match="not a minidqn checkpoint"):
        QNetwork.load(str(evil))
    objects = tmp_path / "objects.npz"
    np.savez(objects, minidqn_meta=np.array([{"code": "x"}], dtype=object))  # stored as a pickle inside
    with pytest.raises(ValueError, match="not a minidqn checkpoint"):
        QNetwork.load(str(objects))
    junk = tmp_path / "junk.npz"
    junk.write_text("hello")
    with pytest.raises(ValueError, match="not a minidqn checkpoint"):
        QNetwork.load(str(junk))
    other = tmp_path / "other.npz"
    np.savez(other, weights=np.zeros(3))
    with pytest.raises(ValueError, match="not a minidqn checkpoint"):
        QNetwork.load(str(other))


def test_checkpoint_shapes_are_validated(tmp_path, cartpole):
    q_net = QNetwork(cartpole.observation_space, cartpole.action_space, rng=np.random.default_rng(0))
    path = tmp_path / "q.npz"
    q_net.save(str(path))
    with np.load(path) as data:
        arrays = dict(data)
    arrays["W2"] = np.zeros((64, 3), dtype=np.float32)
    np.savez(path, **arrays)
    with pytest.raises(ValueError, match=r"parameter W2 has shape \(64, 3\)"):
        QNetwork.load(str(path))


def test_a_failed_save_keeps_the_old_file(tmp_path, cartpole, monkeypatch):
    q_net = QNetwork(cartpole.observation_space, cartpole.action_space, rng=np.random.default_rng(0))
    path = tmp_path / "q.npz"
    q_net.save(str(path))
    good = path.read_bytes()

    def crash(file, **arrays):
        file.write(b"half a file")
        raise OSError("disk full")

    monkeypatch.setattr(np, "savez", crash)
    with pytest.raises(OSError, match="disk full"):
        q_net.save(str(path))
    assert path.read_bytes() == good
    assert [p.name for p in tmp_path.iterdir()] == ["q.npz"]


# ---------------------------------------------------------------------------------------------------------
# The training loop: determinism, learning, evaluation
# ---------------------------------------------------------------------------------------------------------

SMALL = dict(n_timesteps=2000, learning_starts=200, evaluation_interval=0, verbose=0)


def test_same_seed_same_weights_different_seed_different_weights():
    a, b, c = run_dqn(seed=1, **SMALL), run_dqn(seed=1, **SMALL), run_dqn(seed=2, **SMALL)
    for k in a.parameters():
        np.testing.assert_array_equal(a.parameters()[k], b.parameters()[k])
    assert any(not np.array_equal(a.parameters()[k], c.parameters()[k]) for k in a.parameters())


def test_a_short_run_beats_a_random_policy_by_a_wide_margin():
    q_net = run_dqn(n_timesteps=12_000, evaluation_interval=0, verbose=0, seed=0)
    env = gym.make("CartPole-v1")
    env.reset(seed=123)
    mean, _ = evaluate_policy(env, q_net, 20, verbose=0)
    random_mean, _ = evaluate_policy(env, q_net, 20, eval_exploration_rate=1.0, rng=np.random.default_rng(0),
                                     verbose=0)
    assert random_mean < 40  # a random policy keeps the pole up for about 22 steps
    assert mean > 150, f"greedy mean return {mean} after 12k steps"


def test_evaluate_policy_prints_the_tutorial_line(capsys, cartpole):
    q_net = QNetwork(cartpole.observation_space, cartpole.action_space, rng=np.random.default_rng(0))
    mean, std = evaluate_policy(cartpole, q_net, 3)
    assert capsys.readouterr().out == f"Mean episode reward: {mean:.2f} +/- {std:.2f}\n"


def test_run_dqn_prints_progress(capsys):
    run_dqn(n_timesteps=400, learning_starts=100, evaluation_interval=200, n_eval_episodes=2, seed=0)
    out = capsys.readouterr().out
    assert out.count("Mean episode reward:") == 2 and "step     400" in out and "Done after 400 steps" in out


# ---------------------------------------------------------------------------------------------------------
# The command line
# ---------------------------------------------------------------------------------------------------------


def run_cli(*args, **kwargs):
    return subprocess.run([sys.executable, os.path.join(HERE, "minidqn.py"), *args], capture_output=True,
                          text=True, timeout=120, **kwargs)


def test_cli_trains_saves_and_reports(tmp_path):
    path = tmp_path / "cartpole.npz"
    result = run_cli("--n-timesteps", "1500", "--learning-starts", "500", "--evaluation-interval", "500",
                     "--n-eval-episodes", "2", "--seed", "3", "--save", str(path))
    assert result.returncode == 0, result.stderr
    assert result.stdout.count("Mean episode reward:") == 3
    assert QNetwork.load(str(path)).n_actions == 2


def test_cli_help_and_unknown_flags():
    result = run_cli("--help")
    assert result.returncode == 0
    for flag in ("--n-timesteps", "--env-id", "--seed", "--target-network-update-interval", "--save"):
        assert flag in result.stdout
    result = run_cli("--n-timestepz", "10")
    assert result.returncode == 2 and "--n-timestepz" in result.stderr
    result = run_cli("--gamma", "3")
    assert result.returncode == 2 and "gamma must be in [0.0, 1.0]" in result.stderr
    assert "Traceback" not in result.stderr


def test_cli_errors_name_the_flag_as_typed_before_training(tmp_path):
    cases = [
        (["--seed", "-1"], "error: --seed must be an integer >= 0, got -1"),
        (["--evaluation-interval", "-1"], "error: --evaluation-interval must be an integer >= 0, got -1"),
        (["--max-grad-norm", "-1"], "error: --max-grad-norm must be > 0 and finite, got -1.0"),
        (["--tau", "0"], "error: --tau must be in (0, 1], got 0.0"),
        (["--verbose", "7"], "error: --verbose must be one of [0, 1, 2], got 7"),
        (["--save", ""], "error: --save must be a file path such as model.npz, got ''"),
        (["--save-path", str(tmp_path)], f"error: --save-path {str(tmp_path)!r} is a folder"),
        (["--log-path", str(tmp_path / "no" / "log.npz")], "error: --log-path: cannot write"),
        (["--replay-buffer-size", "100000000000"], "error: --replay-buffer-size=100000000000 asks for"),
    ]
    for args, message in cases:
        result = run_cli(*args)
        assert result.returncode == 2 and result.stderr.startswith(message), (args, result.stderr)
        assert "Traceback" not in result.stderr and "Mean episode reward" not in result.stdout, args
        assert len(result.stderr.strip().splitlines()) == 1, args


def test_ctrl_c_saves_what_was_learned(tmp_path):
    path = tmp_path / "interrupted.npz"
    proc = subprocess.Popen(
        [sys.executable, "-u", os.path.join(HERE, "minidqn.py"), "--n-timesteps", "10000000",
         "--evaluation-interval", "1000", "--n-eval-episodes", "1", "--save", str(path)],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )
    try:
        first_line = proc.stdout.readline()  # wait until training is under way
        assert "Mean episode reward" in first_line
        proc.send_signal(signal.SIGINT)
        out, err = proc.communicate(timeout=60)
    finally:
        proc.kill()
    assert proc.returncode == 130
    assert "Traceback" not in err and "Interrupted" in out
    assert QNetwork.load(str(path)).n_actions == 2


# ---------------------------------------------------------------------------------------------------------
# The training log and plots.py
# ---------------------------------------------------------------------------------------------------------


def test_log_round_trips_into_plots_and_does_not_change_training(tmp_path):
    import plots

    path = tmp_path / "log.npz"
    logged = run_dqn(seed=4, log_path=str(path), evaluation_interval=600, n_eval_episodes=2, **{
        k: v for k, v in SMALL.items() if k != "evaluation_interval"})
    unlogged = run_dqn(seed=4, evaluation_interval=600, n_eval_episodes=2, **{
        k: v for k, v in SMALL.items() if k != "evaluation_interval"})
    for k in logged.parameters():  # logging draws no random numbers and changes nothing
        np.testing.assert_array_equal(logged.parameters()[k], unlogged.parameters()[k])
    log = plots.load_log(str(path))
    assert log["config"]["n_timesteps"] == 2000 and log["config"]["seed"] == 4
    np.testing.assert_array_equal(log["eval_steps"], [600, 1200, 1800, 2000])  # and after the last step
    every = log["config"]["update_interval"]
    np.testing.assert_array_equal(log["update_steps"], np.arange(200 + every, 2001, every))  # after learning_starts
    assert len(log["losses"]) == len(log["mean_qs"]) == len(log["update_steps"])
    assert np.all(log["losses"] >= 0) and np.all(np.isfinite(log["mean_qs"]))
    assert len(log["episode_returns"]) == len(log["episode_lengths"]) == len(log["episode_epsilons"]) > 10
    np.testing.assert_array_equal(log["episode_returns"], log["episode_lengths"])  # CartPole: 1 per step
    assert np.cumsum(log["episode_lengths"])[-1] == log["episode_steps"][-1]  # ends line up with env steps
    decay_steps = int(log["config"]["exploration_fraction"] * 2000)  # epsilon decays over this part of the run
    expected_eps = [linear_schedule(1.0, 0.04, step, decay_steps) for step in log["episode_steps"]]
    np.testing.assert_allclose(log["episode_epsilons"], expected_eps)


def test_plots_end_to_end_on_two_seeds(tmp_path):
    import plots
    from PIL import Image

    out = tmp_path / "figures"
    assert plots.main(["--seeds", "2", "--n-timesteps", "2500", "--learning-starts", "500", "--n-hidden-units", "32",
                       "--evaluation-interval", "500", "--n-eval-episodes", "2", "--out", str(out)]) == 0
    expected = {"learning_curve.png": (800, 480), "diagnostics.png": (1100, 700), "q_values.png": (1100, 450)}
    for name, size in expected.items():
        with Image.open(out / name) as image:
            assert image.format == "PNG" and image.size == size, name
    with Image.open(out / "agent.gif") as gif:
        assert gif.format == "GIF" and gif.n_frames >= 3 and gif.size[0] <= 400
    for seed in (0, 1):
        log = plots.load_log(str(out / f"seed{seed}_log.npz"))
        assert len(log["final_returns"]) == plots.N_FINAL_EPISODES and log["config"]["n_timesteps"] == 2500
    # redraw from the saved logs, without training again
    for name in expected:
        (out / name).unlink()
    assert plots.main(["--redraw", "--no-gif", "--out", str(out)]) == 0
    assert all((out / name).stat().st_size > 10_000 for name in expected)


def test_plots_own_runs_evaluate_often_enough_for_a_curve_unless_told():
    import plots

    demo_steps = inspect.signature(run_dqn).parameters["n_timesteps"].default

    def curve(*argv):
        return plots.curve_kwargs(plots.build_parser().parse_args(list(argv)))

    assert curve()["evaluation_interval"] == demo_steps // plots.CURVE_POINTS
    assert curve("--n-timesteps", "10000")["evaluation_interval"] == 400
    # a preset row's interval (for progress lines) gives way; an interval typed on the command line wins
    assert curve("--env-id", "Acrobot-v1", "--n-timesteps", "4000")["evaluation_interval"] == 160
    assert curve("--env-id", "Acrobot-v1", "--evaluation-interval", "0")["evaluation_interval"] == 0
    help_text = " ".join(plots.build_parser().format_help().split())
    assert "(default here: n_timesteps // 25, 25 evaluations a run)" in help_text


def test_plots_bad_arguments(tmp_path, capsys):
    import plots

    assert plots.main(["--seeds", "0", "--out", str(tmp_path)]) == 2
    assert "--seeds must be >= 1" in capsys.readouterr().err
    assert plots.main(["--env-id", "NoSuchEnv-v0", "--out", str(tmp_path)]) == 2
    assert "unknown env id 'NoSuchEnv-v0'" in capsys.readouterr().err
    blocker = tmp_path / "a_file"
    blocker.write_text("")
    assert plots.main(["--out", str(blocker / "figures")]) == 2
    assert "cannot create the output folder" in capsys.readouterr().err
    assert plots.main(["--redraw", "--out", str(tmp_path / "empty")]) == 2
    assert "no seed logs" in capsys.readouterr().err


def test_plots_ctrl_c_keeps_what_each_seed_learned(tmp_path):
    import plots

    out = tmp_path / "interrupted"
    proc = subprocess.Popen(
        [sys.executable, os.path.join(HERE, "plots.py"), "--seeds", "3", "--processes", "2", "--n-timesteps",
         "10000000", "--out", str(out)],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, start_new_session=True,
    )
    try:
        time.sleep(6)  # start-up takes about 2 s; then two workers train seeds 0 and 1, seed 2 waits
        os.killpg(proc.pid, signal.SIGINT)  # what Ctrl-C in a terminal does: the whole process group
        _, err = proc.communicate(timeout=60)
    finally:
        proc.kill()
    assert proc.returncode == 130 and "Traceback" not in err and "Interrupted" in err
    for seed in (0, 1):  # the two seeds in training saved their network and log; seed 2 never started
        assert QNetwork.load(str(out / f"seed{seed}_q.npz")).n_actions == 2
        assert plots.load_log(str(out / f"seed{seed}_log.npz"))["config"]["seed"] == seed
    assert not (out / "seed2_q.npz").exists()
    assert not list(out.glob(".tmp-*")), "an interrupted save left a temporary file"
    # the interrupted seeds still draw, with no final evaluation to count
    assert plots.main(["--redraw", "--no-gif", "--out", str(out)]) == 0
    assert (out / "diagnostics.png").stat().st_size > 10_000 and (out / "q_values.png").exists()


def test_plots_draws_the_logs_minidqn_writes(tmp_path, capsys):
    import plots

    run = dict(n_timesteps=1500, learning_starts=500, n_eval_episodes=2, n_hidden_units=16, verbose=0)
    for seed in (1, 2):  # what `python minidqn.py --log-path ... --save ...` writes
        run_dqn(seed=seed, evaluation_interval=500, log_path=str(tmp_path / f"run{seed}.npz"),
                save_path=str(tmp_path / f"q{seed}.npz"), **run)
    out = tmp_path / "figures"
    assert plots.main([str(tmp_path / "run1.npz"), str(tmp_path / "run2.npz"), "--out", str(out)]) == 0
    printed = capsys.readouterr().out
    for name in ("learning_curve.png", "diagnostics.png", "q_values.png", "agent.gif"):
        assert f"wrote {out / name}" in printed and (out / name).stat().st_size > 1000, name
    assert "skipped" not in printed
    # a log without evaluations, and no saved network: the diagnostics, and a line for each picture skipped
    run_dqn(seed=3, evaluation_interval=0, log_path=str(tmp_path / "short.npz"), **run)
    assert plots.main([str(tmp_path / "short.npz"), "--out", str(tmp_path / "short")]) == 0
    printed = capsys.readouterr().out
    short = tmp_path / "short"
    assert (short / "diagnostics.png").exists() and not (short / "learning_curve.png").exists()
    assert ("skipped learning_curve.png: it needs periodic evaluations, and the logged runs had "
            "evaluation_interval=0 (none)") in printed
    assert "skipped agent.gif: it needs the trained network, and no log's run saved one (train with --save)" in printed
    # another env's log: q_values.png is CartPole's picture, and says so
    run_dqn(env_id="MountainCar-v0", seed=4, evaluation_interval=500, log_path=str(tmp_path / "car.npz"), **run)
    assert plots.main([str(tmp_path / "car.npz"), "--no-gif", "--out", str(tmp_path / "car")]) == 0
    assert ("skipped q_values.png: it draws CartPole's pole angle and angular velocity, and the logs are "
            "MountainCar-v0's") in capsys.readouterr().out
    # what is not a log
    (tmp_path / "notes.npz").write_text("text")
    assert plots.main([str(tmp_path / "notes.npz"), "--out", str(out)]) == 2
    assert "is not a training log" in capsys.readouterr().err
    assert plots.main([str(tmp_path / "missing.npz"), "--out", str(out)]) == 2
    assert "no such log" in capsys.readouterr().err


# ---------------------------------------------------------------------------------------------------------
# Presets per env
# ---------------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("env_id", list(minidqn.PRESETS))
def test_every_preset_builds_and_runs(env_id, tmp_path):
    # requirements.txt brings Box2D and flappy-bird-gymnasium: no preset skips
    log = tmp_path / "log.npz"
    run_dqn(**{**minidqn.PRESETS[env_id], "n_timesteps": 300, "learning_starts": 100, "evaluation_interval": 0,
               "verbose": 0, "log_path": str(log)})
    import plots

    config = plots.load_log(str(log))["config"]
    for key, value in minidqn.PRESETS[env_id].items():
        if key not in ("n_timesteps", "learning_starts", "evaluation_interval"):
            assert config[key] == value, f"{env_id}: {key} is {config[key]}, the preset says {value}"
    assert config["n_timesteps"] == 300  # the caller's keywords win


def test_preset_overrides_through_the_api_and_the_cli(tmp_path):
    import plots

    api_log, cli_log = tmp_path / "api.npz", tmp_path / "cli.npz"
    run_dqn(**{**minidqn.PRESETS["MountainCar-v0"], "n_timesteps": 200, "batch_size": 32, "evaluation_interval": 0,
               "verbose": 0, "log_path": str(api_log)})
    result = run_cli("--env-id", "MountainCar-v0", "--n-timesteps", "200", "--batch-size", "32",
                     "--evaluation-interval", "0", "--log-path", str(cli_log))
    assert result.returncode == 0, result.stderr
    for path in (api_log, cli_log):
        config = plots.load_log(str(path))["config"]
        assert config["batch_size"] == 32 and config["n_timesteps"] == 200  # overridden
        assert config["learning_rate"] == minidqn.PRESETS["MountainCar-v0"]["learning_rate"]  # from the preset
        assert config["target_network_update_interval"] == 600


def test_run_dqn_signature_is_what_runs_and_env_without_preset_gets_a_note(tmp_path):
    import plots

    # run_dqn(env_id=X) runs the signature's defaults: no preset is applied behind the caller's back
    log = tmp_path / "mountaincar.npz"
    run_dqn(env_id="MountainCar-v0", n_timesteps=50, learning_starts=10, evaluation_interval=0, verbose=0,
            log_path=str(log))
    config = plots.load_log(str(log))["config"]
    defaults = {k: p.default for k, p in inspect.signature(run_dqn).parameters.items()}
    for key in ("learning_rate", "n_hidden_units", "target_network_update_interval", "weight_averaging_rate"):
        assert config[key] == defaults[key] != minidqn.PRESETS["MountainCar-v0"][key]
    # the command line says when an env has no row
    result = run_cli("--env-id", "CartPole-v0", "--n-timesteps", "50", "--learning-starts", "10",
                     "--evaluation-interval", "0")
    assert result.returncode == 0, result.stderr
    assert "no preset for CartPole-v0" in result.stdout


def test_cli_help_prints_every_description_whole_with_the_env_defaults():
    docs = minidqn.param_docs(run_dqn.__doc__)
    assert "avg = avg + rate * (online - avg) after every gradient step" in docs["weight_averaging_rate"]
    assert docs["tau"].endswith("after every gradient step")
    assert set(docs) == set(inspect.signature(run_dqn).parameters)
    helps = {action.dest: action.help for action in minidqn.build_parser()._actions}
    for name, text in docs.items():
        if name != "env_id":  # its help says what the command line runs: the env's preset
            assert helps[name].startswith(text.replace("%", "%%")), name
    assert "runs X's row of PRESETS" in helps["env_id"] and "The other defaults stay" not in helps["env_id"]
    assert helps["learning_rate"].endswith("(default: 0.005)")
    mountain_car = {action.dest: action.help for action in minidqn.build_parser("MountainCar-v0")._actions}
    assert mountain_car["learning_rate"].endswith("(default: 0.004)")
    assert mountain_car["seed"].endswith("(default: 1)")  # not in the row: run_dqn's default
    result = run_cli("--env-id", "MountainCar-v0", "--help")
    assert result.returncode == 0 and "MountainCar-v0's preset" in result.stdout


def test_a_missing_box2d_gives_the_install_command():
    code = ("import sys; sys.modules['Box2D'] = None\n"  # what an environment without Box2D looks like
            "import minidqn; minidqn.sys.exit(minidqn.main(['--env-id', 'LunarLander-v3', '--n-timesteps', '10']))")
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60, cwd=HERE)
    assert result.returncode == 2 and "Traceback" not in result.stderr
    assert 'pip install "gymnasium[box2d]"' in result.stderr and "LunarLander-v3" in result.stderr


# ---------------------------------------------------------------------------------------------------------
# Part II as the tutorial runs it: no target network, hard copies, watching and recording the agent
# ---------------------------------------------------------------------------------------------------------


def test_dqn_update_no_target_is_the_update_with_the_online_net_as_target(cartpole):
    q_a, _ = make_pair(cartpole, seed=4)
    q_b, q_b_target = make_pair(cartpole, seed=4)
    buffers = [ReplayBuffer(500, cartpole.observation_space, cartpole.action_space, rng=np.random.default_rng(9))
               for _ in range(2)]
    store_random_steps(cartpole, buffers[0], cartpole.reset(seed=0)[0], 300)
    for field in ("observations", "next_observations", "actions", "rewards", "terminateds"):  # same data
        getattr(buffers[1], field)[:] = getattr(buffers[0], field)
    buffers[1].current_idx = buffers[0].current_idx
    opt_a, opt_b = Adam(q_a.parameters()), Adam(q_b.parameters())
    for _ in range(5):
        minidqn.dqn_update_no_target(q_a, opt_a, buffers[0], 32, 0.99)
        q_b_target.load_state_dict(q_b.state_dict())  # a target that is always the online net
        dqn_update(q_b, q_b_target, opt_b, buffers[1], 32, 0.99)
    np.testing.assert_array_equal(q_a.flat_params, q_b.flat_params)


def spy_on_updates(monkeypatch):
    """Record (online, target) flat weights at every dqn_update that run_dqn makes."""
    seen = []
    real_update = minidqn.dqn_update

    def spy(q_net, q_target_net, *args, **kwargs):
        seen.append((q_net.flat_params.copy(), q_target_net.flat_params.copy()))
        return real_update(q_net, q_target_net, *args, **kwargs)

    monkeypatch.setattr(minidqn, "dqn_update", spy)
    return seen


TUTORIAL = dict(n_timesteps=600, learning_starts=100, update_interval=2, n_hidden_units=16, evaluation_interval=0,
                weight_averaging_rate=None, verbose=0, seed=0)


def test_target_interval_1_trains_without_a_target_network(monkeypatch):
    seen = spy_on_updates(monkeypatch)
    run_dqn(target_network_update_interval=1, **TUTORIAL)
    assert len(seen) == 250
    for online, target in seen:
        np.testing.assert_array_equal(online, target)  # the TD target comes from the network being trained


def test_target_interval_n_copies_every_n_env_steps(monkeypatch):
    seen = spy_on_updates(monkeypatch)
    run_dqn(target_network_update_interval=10, **TUTORIAL)
    # updates at steps 102, 104, ...; the copy at step 110 takes the weights as they are before the update at 110
    targets = [target for _, target in seen]
    for i, (online, target) in enumerate(seen):
        step = 102 + 2 * i
        if step % 10 == 0:
            np.testing.assert_array_equal(target, online)  # just copied
        elif i > 0:
            np.testing.assert_array_equal(target, targets[i - 1])  # unchanged between copies
    assert not np.array_equal(targets[0], targets[-1])


def test_gradient_steps_come_in_a_row_every_update_interval_env_steps(monkeypatch):
    events = []  # ("c" for an env step or "u" for a gradient step, the online weights at that moment)
    real_update, real_collect = minidqn.dqn_update, minidqn.collect_one_step

    def update(q_net, *args, **kwargs):
        events.append(("u", q_net.flat_params.copy()))
        return real_update(q_net, *args, **kwargs)

    def collect(env, q_net, *args, **kwargs):
        events.append(("c", q_net.flat_params.copy()))
        return real_collect(env, q_net, *args, **kwargs)

    monkeypatch.setattr(minidqn, "dqn_update", update)
    monkeypatch.setattr(minidqn, "collect_one_step", collect)
    run_dqn(**{**TUTORIAL, "update_interval": 16, "gradient_steps": 8, "n_timesteps": 400})
    # SB3's rhythm: after learning_starts (100), at every 16th env step (112, 128, ..., 400), 8 gradient steps
    assert "".join(kind for kind, _ in events) == "c" * 112 + "u" * 8 + ("c" * 16 + "u" * 8) * 18
    for (kind_1, weights_1), (kind_2, weights_2) in zip(events[:-1], events[1:]):
        if kind_1 == kind_2 == "c":
            np.testing.assert_array_equal(weights_1, weights_2)  # the behaviour policy is held between bursts
        if kind_1 == kind_2 == "u":
            assert not np.array_equal(weights_1, weights_2)  # each gradient step starts where the last ended


def test_default_soft_target_update_moves_by_tau_after_every_gradient_step(monkeypatch):
    seen = spy_on_updates(monkeypatch)
    run_dqn(tau=0.1, **TUTORIAL)
    for (_, target_1), (online_2, target_2) in zip(seen[:-1], seen[1:]):  # online_2: weights after update 1
        np.testing.assert_allclose(target_2, target_1 + 0.1 * (online_2 - target_1), rtol=1e-5, atol=1e-6)


def test_run_dqn_no_target_has_the_tutorial_signature():
    q_net = minidqn.run_dqn_no_target(n_timesteps=500, evaluation_interval=250, n_eval_episodes=2, seed=1)
    assert isinstance(q_net, QNetwork) and q_net.n_hidden_units == 64


def test_weight_averaging_plays_the_average_and_leaves_training_alone(monkeypatch):
    seen = spy_on_updates(monkeypatch)
    averaged = run_dqn(**{**TUTORIAL, "weight_averaging_rate": 0.01, "weight_averaging_window": None})
    online_final = run_dqn(**TUTORIAL)  # the same run, the online weights playing
    # recompute the average by hand from the online weights after every update
    onlines = [online for online, _ in seen[1:250]] + [online_final.flat_params]  # after updates 1..250
    average = seen[0][0].copy()
    for online in onlines:
        average += 0.01 * (online - average)
    np.testing.assert_allclose(averaged.flat_params, average, rtol=1e-5, atol=1e-6)
    assert not np.allclose(averaged.flat_params, online_final.flat_params)
    # a rate of 1 copies the online weights after every update: the same network as no averaging
    np.testing.assert_array_equal(run_dqn(**{**TUTORIAL, "weight_averaging_rate": 1.0}).flat_params,
                                  online_final.flat_params)


def test_weight_averaging_window_grows_with_the_run(monkeypatch):
    seen = spy_on_updates(monkeypatch)
    averaged = run_dqn(**{**TUTORIAL, "weight_averaging_rate": 0.05, "weight_averaging_window": 0.1})
    online_final = run_dqn(**TUTORIAL)
    onlines = [online for online, _ in seen[1:250]] + [online_final.flat_params]  # after updates 1..250
    average = seen[0][0].copy()
    rates = [min(1.0, max(0.05, 1 / (0.1 * k))) for k in range(1, 251)]
    # copies for ten steps, then 1 / (0.1 k), until the rate 0.05 binds after step 200
    assert rates[:10] == [1.0] * 10 and rates[20] == pytest.approx(1 / 2.1) and rates[-1] == 0.05
    for online, rate in zip(onlines, rates):
        average += rate * (online - average)
    np.testing.assert_allclose(averaged.flat_params, average, rtol=1e-5, atol=1e-6)
    # the first ten steps copy the online weights: nothing of the initial weights is left in the average
    constant = run_dqn(**{**TUTORIAL, "weight_averaging_rate": 0.05, "weight_averaging_window": None})
    assert not np.allclose(averaged.flat_params, constant.flat_params)


def test_evaluate_policy_records_a_gif(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    env = gym.make("CartPole-v1", render_mode="rgb_array")
    env.reset(seed=0)
    q_net = QNetwork(env.observation_space, env.action_space, rng=np.random.default_rng(0))
    mean, _ = evaluate_policy(env, q_net, 2, video_name="DQN_CartPole-v1", verbose=0)
    from PIL import Image

    with Image.open(tmp_path / "logs" / "videos" / "DQN_CartPole-v1.gif") as gif:
        assert 1 < gif.n_frames <= int(2 * mean)  # a frame per step (Pillow merges identical neighbours)
    with pytest.raises(ValueError, match="render_mode='rgb_array'"):
        evaluate_policy(gym.make("CartPole-v1"), q_net, 1, video_name="no_frames")


def test_eval_render_mode_human_opens_a_window():
    # A real pygame window, on SDL's dummy video driver so no screen is needed
    code = ("import minidqn; minidqn.run_dqn(n_timesteps=200, learning_starts=100, evaluation_interval=100, "
            "n_eval_episodes=1, n_hidden_units=16, eval_render_mode='human', verbose=0)")
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120, cwd=HERE,
                            env={**os.environ, "SDL_VIDEODRIVER": "dummy", "SDL_AUDIODRIVER": "dummy"})
    assert result.returncode == 0, result.stderr


def test_a_missing_optional_env_package_gives_the_install_command():
    code = ("import sys; sys.modules['flappy_bird_gymnasium'] = None\n"  # what a machine without it looks like
            "import minidqn; minidqn.make_env('FlappyBird-v0')")
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60, cwd=HERE)
    assert result.returncode != 0 and "pip install flappy-bird-gymnasium" in result.stderr


def test_scale_observations_maps_bounded_dimensions_onto_minus_one_one(tmp_path):
    space = spaces.Box(np.array([-4.8, -np.inf, 0.0], np.float32), np.array([4.8, np.inf, 10.0], np.float32))
    scaled = QNetwork(space, spaces.Discrete(2), n_hidden_units=8, rng=np.random.default_rng(0),
                      scale_observations=True)
    plain = QNetwork(space, spaces.Discrete(2), n_hidden_units=8, rng=np.random.default_rng(0))
    obs = np.array([[4.8, 7.0, 0.0], [-2.4, -3.0, 10.0]], np.float32)
    by_hand = np.array([[1.0, 7.0, -1.0], [-0.5, -3.0, 1.0]], np.float32)  # the unbounded middle one unchanged
    np.testing.assert_allclose(scaled(obs), plain(by_hand), rtol=1e-6)
    scaled.save(str(tmp_path / "q.npz"))  # the scaling travels with the checkpoint
    np.testing.assert_allclose(QNetwork.load(str(tmp_path / "q.npz"))(obs), scaled(obs), rtol=1e-6)


def test_periodic_greedy_evaluation_does_not_change_training():
    # Greedy evaluation draws no random numbers and touches only the eval env: switching it off (as the
    # reliability benchmark does, to save time) trains the very same network
    kwargs = {"n_timesteps": 1500, "learning_starts": 200, "n_hidden_units": 16, "verbose": 0, "seed": 3}
    with_evaluation = run_dqn(evaluation_interval=300, n_eval_episodes=2, **kwargs)
    without = run_dqn(evaluation_interval=0, **kwargs)
    np.testing.assert_array_equal(with_evaluation.flat_params, without.flat_params)


def test_cli_reads_none_for_the_settings_that_can_be_off():
    args = minidqn.build_parser().parse_args(["--weight-averaging-rate", "none", "--max-grad-norm", "10",
                                               "--target-network-update-interval", "10"])
    assert args.weight_averaging_rate is None and args.max_grad_norm == 10.0
    assert args.target_network_update_interval == 10
    args = minidqn.build_parser().parse_args(["--target-network-update-interval", "None"])
    assert args.target_network_update_interval is None


# ---------------------------------------------------------------------------------------------------------
# The course (exercises/): the learner's copy is made from minidqn.py and checked by the tests above
# ---------------------------------------------------------------------------------------------------------

sys.path.insert(0, os.path.join(HERE, "exercises"))
import course  # noqa: E402

with open(course.REFERENCE) as _f:
    REFERENCE_SOURCE = _f.read()

# A typical mistake for some exercises: (exercise, the reference's text, the mistake, what the check must say)
MISTAKES = [
    (1, "            self.current_idx = 0\n            self.is_full = True",
     "            self.is_full = True", "out of bounds"),  # a ring index that does not wrap
    (4, "rng.random() < exploration_rate", "rng.random() > exploration_rate",
     "the greedy action came"),  # epsilon compared the wrong way round
    (5, "float(reward), terminated, truncated)", "float(reward), terminated or truncated, truncated)",
     "a truncation was stored as a termination"),
    (9, 'grad_h2 = (g @ p["W3"].T)', 'grad_h2 = -(g @ p["W3"].T)', "finite differences"),  # a sign flipped
    (10, "v_hat = v / (1 - beta2**t)", "v_hat = v", "step 1: "),  # no bias correction...
    (10, "p -= self.lr / (1 - beta1**t) * (", "p -= self.lr * (", "Kingma & Ba's Algorithm 1 gives"),  # ...of either
    (11, "return {k: v.copy() for k, v in self.params.items()}", "return dict(self.params)", "an alias"),
    (11, "            v[...] = state[k]", "            self.params[k] = state[k]", "an alias"),  # aliased target
]


def run_script(script, *args):
    return subprocess.run([sys.executable, os.path.join(HERE, "exercises", script), *args], capture_output=True,
                          text=True, timeout=300)


def check_verdicts(stdout):
    """exercise number -> (verdict, its detail lines) from check.py's output."""
    verdicts, current = {}, None
    for line in stdout.splitlines():
        if line.startswith("exercise "):
            current = int(line.split()[1])
            verdicts[current] = (line.split()[-1] if not line.endswith("not started") else "not started", [])
        elif line.startswith("      ") and current is not None:
            verdicts[current][1].append(line.strip())
    return verdicts


def test_the_learners_copy_is_made_from_the_reference_deterministically(tmp_path):
    with open(os.path.join(HERE, "minidqn.py"), "rb") as f:
        reference = f.read()
    for folder in ("a", "b"):
        result = run_script("make.py", str(tmp_path / folder))
        assert result.returncode == 0, result.stderr
    copy = (tmp_path / "a" / "minidqn.py").read_text()
    assert copy == (tmp_path / "b" / "minidqn.py").read_text(), "two copies of the same minidqn.py differ"
    with open(os.path.join(HERE, "minidqn.py"), "rb") as f:
        assert f.read() == reference, "make.py changed the reference"
    assert run_script("make.py", str(tmp_path / "a")).returncode == 2  # a learner's work is never overwritten
    for line in reference.decode().splitlines()[1:]:  # every signature and docstring line stays (the first: a header)
        if line.strip().startswith(("def ", '"""')):
            assert line in copy, f"the copy lost {line.strip()!r}"
    for exercise in course.EXERCISES:
        assert '"' not in exercise.title
        assert f'raise NotImplementedError("exercise {exercise.number}: {exercise.title}")' in copy
    # pasting every solution back gives the reference, exercise by exercise: what check.py runs is exactly it
    solved = course.make_copy(reference.decode(), solved=True)
    for exercise in course.EXERCISES:
        assert course.hybrid(reference.decode(), solved, exercise.number) == reference.decode()
    assert set(course.BY_NUMBER) == set(range(1, len(course.EXERCISES) + 1))


def test_check_says_not_started_for_the_blank_copy_and_passes_the_solutions(tmp_path):
    result = run_script("check.py", "6")  # an exercise's number where the folder goes: say what was meant
    assert result.returncode == 2 and "python exercises/check.py --exercise 6" in result.stderr, result.stderr
    run_script("make.py", str(tmp_path / "blank"))
    result = run_script("check.py", str(tmp_path / "blank"))
    assert result.returncode == 1 and "Traceback" not in result.stderr
    verdicts = check_verdicts(result.stdout)
    assert verdicts == {e.number: ("not started", []) for e in course.EXERCISES}, result.stdout
    solved = tmp_path / "solved"
    solved.mkdir()
    (solved / "minidqn.py").write_text(course.make_copy(REFERENCE_SOURCE, solved=True))
    result = run_script("check.py", str(solved), "--exercise", "3", "9", "11")
    assert result.returncode == 0, result.stdout
    assert {n: v for n, (v, _) in check_verdicts(result.stdout).items()} == {3: "pass", 9: "pass", 11: "pass"}
    # with every exercise written, the learner's copy trains (and its command line works)
    result = subprocess.run([sys.executable, str(solved / "minidqn.py"), "--n-timesteps", "300",
                             "--learning-starts", "100", "--evaluation-interval", "150", "--n-eval-episodes", "1"],
                            capture_output=True, text=True, timeout=120)
    assert result.returncode == 0 and result.stdout.count("Mean episode reward") == 2, result.stderr


def test_typical_mistakes_fail_their_exercise_with_a_message_that_names_the_wrong_value(tmp_path):
    copy = course.make_copy(REFERENCE_SOURCE, solved=True)
    for number, right, wrong, _ in MISTAKES:
        assert copy.count(right) == 1, f"exercise {number}: the mistake's text is not in minidqn.py"
        copy = copy.replace(right, wrong)
    (tmp_path / "minidqn.py").write_text(copy)
    numbers = sorted({number for number, *_ in MISTAKES})
    result = run_script("check.py", str(tmp_path), "--exercise", *map(str, numbers), "2", "3")
    assert result.returncode == 1 and "Traceback" not in result.stderr
    verdicts = check_verdicts(result.stdout)
    assert verdicts[2][0] == "pass" and verdicts[3][0] == "pass", "a mistake in one exercise failed another"
    for number, _, _, message in MISTAKES:
        verdict, details = verdicts[number]
        assert verdict == "fail", f"exercise {number}: {verdict}\n{result.stdout}"
        assert any(message in line for line in details), f"exercise {number}: {details}"


def test_exercise_messages_point_at_the_mistake(tmp_path):
    copy = course.make_copy(REFERENCE_SOURCE, solved=True)
    mistakes = [
        # forgetting act'(h2): dW3 and db3 are right, the first wrong gradient (dW2) is where the mistake starts
        ('grad_h2 = (g @ p["W3"].T) * self.activation_grad(h2)', 'grad_h2 = g @ p["W3"].T'),
        ('np.matmul(h2.T, g, out=grads["W3"])', 'grads["W3"] = h2.T @ g'),  # a new array, not the network's own
        # the docstring's formula at tau = 1
        ("            self.params.vector[:] = other.params.vector\n        else:\n", ""),
        ("        if tau == 1.0:  # exactly a copy", "        if True:  # exactly a copy"),
        ("progress = min(max(current_step / max_steps, 0.0), 1.0)", "progress = min(max(current_step / max_steps"),
    ]
    for right, wrong in mistakes:
        assert copy.count(right) == 1, right
        copy = copy.replace(right, wrong)
    (tmp_path / "minidqn.py").write_text(copy)
    result = run_script("check.py", str(tmp_path), "--exercise", "6", "9", "11")
    verdicts = check_verdicts(result.stdout)
    assert {n: v for n, (v, _) in verdicts.items()} == {6: "fail", 9: "fail", 11: "fail"}, result.stdout
    nine = " ".join(verdicts[9][1])
    assert "dW2[" in nine and "right: dW3, db3" in nine and "dW1[" not in nine, nine
    assert "grads['W3'] is a new array, not the network's own: write the gradient into the network's array" in nine
    eleven = " ".join(verdicts[11][1])
    assert "must copy other's weights exactly" in eleven and "can miss p_other in the last bit" in eleven, eleven
    (line,) = [i for i, text in enumerate(copy.splitlines(), 1) if "progress = min(max(current_step /" in text]
    assert len(verdicts[6][1]) == 1 and verdicts[6][1][0].startswith(
        f"SyntaxError at line {line} of your minidqn.py: '(' was never closed: progress = min(max("), verdicts[6][1]


# ---------------------------------------------------------------------------------------------------------
# The benchmarks' plumbing: the comparisons run from a clone, and say what is missing (no PyTorch needed here)
# ---------------------------------------------------------------------------------------------------------

BENCHMARKS = os.path.join(HERE, "benchmarks")
sys.path.insert(0, BENCHMARKS)
import comparisons  # noqa: E402


def test_no_file_of_the_project_names_a_path_outside_the_repository():
    # spelled in pieces, so that this file does not name them either
    outside = ["../" + "shared", "/work/" + "shared", "shared" + "/anchors", "/tmp/" + "sb3/"]
    # the project's files: tracked, or new and not ignored (a virtual environment inside the clone is ignored)
    listed = subprocess.run(["git", "ls-files", "-z", "--cached", "--others", "--exclude-standard"], cwd=HERE,
                            capture_output=True, text=True)
    if listed.returncode != 0:
        pytest.skip("not a git checkout")
    paths = sorted({path for path in listed.stdout.split("\0") if path and os.path.isfile(os.path.join(HERE, path))})
    assert "benchmarks/comparisons.py" in paths
    for path in paths:
        with open(os.path.join(HERE, path), "rb") as f:
            data = f.read()
        if b"\0" in data:  # pictures
            continue
        for line in data.decode("utf-8", errors="replace").splitlines():
            # results files record the commands that wrote them, as they were typed; nothing else may
            if path.startswith("benchmarks/results/") and line.startswith("- command: "):
                continue
            for fragment in outside:
                assert fragment not in line, f"{path} names {fragment!r}: {line.strip()}"


def test_the_same_work_is_stated_once_and_every_setting_reaches_each_system(monkeypatch):
    run_dqn_names = set(inspect.signature(run_dqn).parameters)
    assert set(comparisons.SAME_WORK) <= run_dqn_names  # minidqn runs it as it stands
    tutorial = comparisons.tutorial_same_work()
    assert set(tutorial) <= run_dqn_names  # minidqn keeps the tutorial's names
    for key, value in comparisons.SAME_WORK.items():
        if key in tutorial and key != "evaluation_interval":
            assert tutorial[key] == value, key
    assert tutorial["evaluation_interval"] > comparisons.SAME_WORK["n_timesteps"]  # never evaluates
    sb3, n_timesteps = comparisons.sb3_same_work()
    work = comparisons.SAME_WORK
    assert n_timesteps == work["n_timesteps"] and sb3["buffer_size"] == work["replay_buffer_size"]
    assert sb3["train_freq"] == work["update_interval"] and sb3["gradient_steps"] == 1
    assert sb3["target_update_interval"] == work["target_network_update_interval"]
    assert sb3["policy_kwargs"] == dict(net_arch=[work["n_hidden_units"]] * 2)
    # a setting added on one side only would silently not run on the other: both translations refuse it
    monkeypatch.setitem(comparisons.SAME_WORK, "n_steps", 3)
    for translate in (comparisons.sb3_same_work, comparisons.tutorial_same_work):
        with pytest.raises(ValueError, match="n_steps"):
            translate()


def run_benchmark_script(args, env=None):
    return subprocess.run([sys.executable, *args], capture_output=True, text=True, timeout=120, cwd=HERE,
                          env={**os.environ, **(env or {})})


def assert_one_line_error(result, *fragments):
    assert result.returncode != 0 and "Traceback" not in result.stderr, result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), result.stderr
    for fragment in fragments:
        assert fragment in lines[0], lines[0]


def test_the_tutorial_package_comes_from_the_install_or_the_local_copy_named_and_its_absence_is_said(tmp_path):
    load = ["-c", "import sys; sys.path.insert(0, 'benchmarks'); import comparisons; "
                  "print(comparisons.import_tutorial_run_dqn()())"]
    variable = comparisons.TUTORIAL_PATH_VARIABLE
    if importlib.util.find_spec("dqn_tutorial") is None:  # neither installed nor named: both ways are told
        assert_one_line_error(run_benchmark_script(load, {variable: ""}), "dqn_tutorial", "not installed",
                              comparisons.TUTORIAL_INSTALL, "--tutorial-path", variable)
    assert_one_line_error(run_benchmark_script(load, {variable: str(tmp_path)}), "no dqn_tutorial/ folder")
    # a local copy: the package is taken from the folder named
    package = tmp_path / "copy" / "dqn_tutorial" / "dqn"
    package.mkdir(parents=True)
    (package.parent / "__init__.py").write_text("")
    (package / "__init__.py").write_text("")
    (package / "dqn.py").write_text("def run_dqn():\n    return 'the local copy'\n")
    result = run_benchmark_script(load, {variable: str(tmp_path / "copy")})
    assert result.returncode == 0 and result.stdout.strip() == "the local copy", result.stderr
    # a copy whose own imports fail (PyTorch missing) names the missing module, not the package
    (package / "dqn.py").write_text("import a_module_that_is_not_there\n")
    assert_one_line_error(run_benchmark_script(load, {variable: str(tmp_path / "copy")}),
                          "a_module_that_is_not_there is not installed")


def test_the_demo_timing_passes_run_flags_to_minidqn_as_typed():
    # benchmark.py --demo with run flags times `python minidqn.py` with the same flags: each keyword must come
    # back from minidqn's own command line as it went in, booleans and None included
    sys.path.insert(0, BENCHMARKS)
    import benchmark

    kwargs = {"n_timesteps": 25000, "exploration_fraction": 0.2, "scale_observations": False, "double_dqn": True,
              "final_learning_rate": None, "loss_fn": "huber", "weight_averaging_window": None}
    flags = benchmark.as_flags(kwargs)
    parsed = vars(minidqn.build_parser().parse_args(flags))
    assert {k: parsed[k] for k in kwargs} == kwargs, flags
    args = benchmark.plots.build_parser(log_files=False).parse_args(["--n-timesteps", "25000"])
    assert benchmark.plots.typed_run_kwargs(args) == {"n_timesteps": 25000}  # only what was typed, not the defaults


def test_run_flags_out_of_range_stop_plots_and_benchmark_before_any_run(tmp_path, capsys):
    # run_dqn's own checks, made where the flags enter, so a worker process never meets them mid-training
    import plots

    sys.path.insert(0, BENCHMARKS)
    import benchmark

    assert plots.main(["--seeds", "1", "--tau", "0", "--out", str(tmp_path / "p")]) == 2
    assert "error: --tau must be in (0, 1], got 0.0" in capsys.readouterr().err
    assert not list((tmp_path / "p").iterdir()), "a seed trained before the flag was checked"
    for argv in (["--demo", "--repeats", "1", "--n-timesteps", "-5"],
                 ["--seeds", "1", "--out", str(tmp_path / "b"), "--learning-rate", "-1"],
                 ["--speed", "--repeats", "1", "--name", "never-written", "--batch-size", "32"],
                 ["--speed", "--repeats", "1", "--name", "never-written", "--baseline", str(tmp_path / "none.py")]):
        with pytest.raises(SystemExit) as stop:
            benchmark.main(argv)
        assert stop.value.code == 2
    err = capsys.readouterr().err
    assert "error: --n-timesteps must be an integer >= 1, got -5" in err, err
    assert "error: --learning-rate must be > 0" in err and "Traceback" not in err, err
    # the same work is fixed: a run flag given with --speed is refused, not silently ignored
    assert "error: --speed times the same-work settings" in err and "--batch-size apply to --demo" in err, err
    assert f"error: --baseline {tmp_path / 'none.py'}: not a file" in err, err


def test_the_same_work_timing_runs_the_file_it_is_given_not_the_one_already_imported(tmp_path):
    import json

    # benchmark.py imports this minidqn.py; a baseline's run must still run the baseline's file (it once ran this
    # one: every "baseline" timing then compared the code with itself)
    sys.path.insert(0, BENCHMARKS)
    import benchmark

    baseline = tmp_path / "minidqn.py"
    marker = tmp_path / "ran.json"
    baseline.write_text("import json\n"
                        "def run_dqn(**kwargs):\n"
                        f"    json.dump(sorted(kwargs), open({str(marker)!r}, 'w'))\n")
    once = [sys.executable, os.path.join(BENCHMARKS, "benchmark.py"), "--time-same-work-once"]
    assert benchmark.run_timed(once, str(baseline)) < 1.0
    with open(marker) as f:
        assert f.read() == json.dumps(sorted({**benchmark.SAME_WORK, "seed": 0, "verbose": 0}))
    # a process that times another file than the one asked for is caught
    elsewhere = [sys.executable, "-c", "print('timed /elsewhere/minidqn.py: same work in 1.000 s')"]
    with pytest.raises(RuntimeError, match="the process timed"):
        benchmark.run_timed(elsewhere, str(baseline))
    # a baseline that cannot run the same work (too old for one of its keywords) says so in one line
    baseline.write_text("def run_dqn(env_id, n_timesteps, seed, verbose):\n    pass\n")
    with pytest.raises(benchmark.TimedRunError, match="failed: TypeError: run_dqn.. got an unexpected keyword"):
        benchmark.run_timed(once, str(baseline))


@pytest.mark.skipif(importlib.util.find_spec("torch") is not None, reason="this environment has PyTorch")
def test_the_comparisons_stop_with_one_line_when_the_pytorch_side_is_missing(tmp_path):
    speed = ["benchmarks/benchmark.py", "--speed", "--repeats", "1", "--name", "never-written"]
    assert_one_line_error(run_benchmark_script(speed + ["--torch-python", str(tmp_path / "python")]),
                          "no such Python", "benchmarks/README.md")
    assert_one_line_error(run_benchmark_script(speed + ["--torch-python", sys.executable]),
                          "PyTorch (torch) is not installed")
    zoo = ["benchmarks/sb3_zoo.py", "--torch-python", sys.executable, "--seeds", "0", "--name", "never-written"]
    assert_one_line_error(run_benchmark_script(zoo), "PyTorch (torch) is not installed")
    assert not os.path.exists(os.path.join(BENCHMARKS, "results", "never-written.md"))
    # without the PyTorch side, --speed would replace the SB3 comparison in speed.md: refused, unless named
    with open(os.path.join(BENCHMARKS, "results", "speed.md"), "rb") as f:
        before = f.read()
    result = run_benchmark_script(["benchmarks/benchmark.py", "--speed", "--repeats", "1"])
    assert result.returncode == 2 and "would overwrite speed.md" in result.stderr, result.stderr
    with open(os.path.join(BENCHMARKS, "results", "speed.md"), "rb") as f:
        assert f.read() == before


# ---------------------------------------------------------------------------------------------------------
# The course as a notebook (exercises/minidqn.ipynb), executed in a real Jupyter kernel
# ---------------------------------------------------------------------------------------------------------

import notebook_cells  # noqa: E402

NOTEBOOK = os.path.join(HERE, "exercises", "minidqn.ipynb")
DEMO_CALL = "run_dqn(log_path=LEARNING_LOG)"  # the training cell a learner runs: the demo, run_dqn's defaults
SHORT_CALL = "run_dqn(n_timesteps=3000, evaluation_interval=1000, n_eval_episodes=2, log_path=LEARNING_LOG)"


def notebook_from(text):
    import nbformat

    nb = nbformat.reads(text, as_version=4)
    nbformat.validate(nb)
    return nb


def execute(nb, steps, cwd=os.path.join(HERE, "exercises")):
    """Run `steps` in one fresh Jupyter kernel, whose environment does not pin BLAS threads (as a kernel that Jupyter
    starts) and whose working folder is `cwd`. A step is a cell of `nb` (a cell that raises fails the test), a
    string (a cell of its own, run the same way), or (cell, True): a cell that must raise. Returns the cells run
    that are not in `nb`, and the BLAS threads of the kernel's NumPy at the end."""
    from nbclient import NotebookClient
    from nbclient.exceptions import CellExecutionError
    from nbformat.v4 import new_code_cell

    env = {k: v for k, v in os.environ.items() if k not in ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS")}
    client = NotebookClient(nb, timeout=300, kernel_name="python3", resources={"metadata": {"path": cwd}})
    extra = []
    probe = "from threadpoolctl import threadpool_info\n" \
            "print(max(i['num_threads'] for i in threadpool_info() if i['user_api'] == 'blas'))"
    with client.setup_kernel(env=env):
        for step in [*steps, probe]:
            cell, must_raise = step if isinstance(step, tuple) else (step, False)
            if isinstance(cell, str):
                cell = new_code_cell(cell)
                extra.append(cell)
            nb.cells.append(cell)  # nbclient writes each cell back at its index: run them all at the end
            try:
                client.execute_cell(cell, len(nb.cells) - 1)
                assert not must_raise, f"{cell.source!r} did not raise"
            except CellExecutionError:
                if not must_raise:
                    raise
            finally:
                nb.cells.pop()
    return extra[:-1], int(output_text(extra[-1]))


def output_text(cell):
    assert not [o for o in cell.outputs if o.output_type == "error"], f"{cell.source!r} raised"
    return "".join(o.text for o in cell.outputs if o.output_type == "stream")


def check_cells(nb):
    """exercise number -> its check cell"""
    return {int(cell.source[len("check("):-1]): cell for cell in nb.cells
            if cell.cell_type == "code" and re.fullmatch(r"check\(\d+\)", cell.source)}


def test_the_committed_notebook_is_what_make_writes_today(tmp_path):
    result = run_script("make.py", "--notebook", str(tmp_path))
    assert result.returncode == 0, result.stderr
    with open(NOTEBOOK) as f:
        committed = f.read()
    assert (tmp_path / "minidqn.ipynb").read_text() == committed, (
        "exercises/minidqn.ipynb differs from what `python exercises/make.py --notebook` writes from today's "
        "minidqn.py: write it again with `python exercises/make.py --notebook exercises --force`")
    nb = notebook_from(committed)
    assert all(not cell.get("outputs") for cell in nb.cells), "the committed notebook holds outputs"
    code = [cell.source for cell in nb.cells if cell.cell_type == "code"]
    # every exercise: its markdown (an equation in LaTeX), its code cell, its check cell, in that order
    for number, check_cell in check_cells(nb).items():
        at = nb.cells.index(check_cell)
        assert f"(exercise {number}:" in nb.cells[at - 1].source and "$$" in nb.cells[at - 2].source
    assert sorted(check_cells(nb)) == sorted(course.BY_NUMBER)
    # the blocks are the .py copy's, marker for marker; the solved notebook's are the reference's own lines
    assert course.learner_blocks("\n".join(code)) == course.learner_blocks(course.make_copy(REFERENCE_SOURCE))
    solved = [c.source for c in notebook_from(notebook_cells.make_notebook(REFERENCE_SOURCE, solved=True)).cells
              if c.cell_type == "code"]
    for exercise in course.EXERCISES:
        assert course.hybrid(REFERENCE_SOURCE, "\n".join(solved), exercise.number) == REFERENCE_SOURCE
    assert run_script("make.py", "--notebook", str(tmp_path)).returncode == 2  # a learner's work is never overwritten


def code_cells(nb):
    return [cell for cell in nb.cells if cell.cell_type == "code"]


def test_the_blank_notebook_runs_to_the_end_and_every_check_says_not_started(tmp_path):
    with open(NOTEBOOK) as f:
        nb = notebook_from(f.read())
    # Opened outside a clone, the first cell says so in one line (and stops Run All); then, from the repository,
    # every cell runs (any cell that raises fails the test)
    outside = f"import os\nos.chdir({str(tmp_path)!r})"
    back = f"os.chdir({os.path.join(HERE, 'exercises')!r})"
    (_, setup, _), blas_threads = execute(nb, [outside, (code_cells(nb)[0].source, True), back, *code_cells(nb)])
    lines = "".join(o.get("text", "") for o in setup.outputs).strip().splitlines()
    assert len(lines) == 1 and "runs from a clone of minidqn" in lines[0], setup.outputs
    for number, cell in check_cells(nb).items():
        assert output_text(cell).split("\n")[0].endswith("not started"), output_text(cell)
    training = [cell for cell in nb.cells if DEMO_CALL in cell.source]
    assert len(training) == 1 and output_text(training[0]).startswith("Not yet: exercises 1, 2, 3")
    # NumPy was loaded before minidqn in the kernel, yet its matrix products run on one thread
    assert blas_threads == 1


def test_the_solved_notebook_fails_a_mistake_alone_then_passes_every_check_trains_and_shows_the_agent(tmp_path):
    nb = notebook_from(notebook_cells.make_notebook(REFERENCE_SOURCE, solved=True))
    training = [cell for cell in nb.cells if DEMO_CALL in cell.source]
    assert len(training) == 1
    training[0].source = training[0].source.replace(DEMO_CALL, SHORT_CALL)  # the demo's cell, on a shorter budget
    at = nb.cells.index(training[0])
    demo = code_cells(nb)[code_cells(nb).index(training[0]):]  # training, the curve, the agent
    definitions = [cell for cell in code_cells(nb)[:code_cells(nb).index(training[0])] if cell.source[:6] != "check("]
    # Three mistakes: a sign flipped in the backward pass, a typo (a name that does not exist), a syntax error
    number, right, wrong, message = next(m for m in MISTAKES if m[0] == 9)
    mistakes = {9: (right, wrong), 6: ("current_step / max_steps", "current_step / max_step"),
                7: ("next_q_values.max(axis=1)", "next_q_values.max(axis=1")}  # quick tests: rechecked fast
    fixed, broken = {}, {}
    for n, (text, typo) in mistakes.items():
        cells = [cell for cell in definitions if f"(exercise {n}:" in cell.source and text in cell.source]
        assert len(cells) == 1, f"exercise {n}: the mistake's text is not in its cell"
        fixed[n], broken[n] = cells[0].source, cells[0]
        cells[0].source = cells[0].source.replace(text, typo)
    checks = check_cells(nb)
    steps = [(cell, cell is broken[7]) for cell in definitions]  # the syntax error's cell raises, as it should
    steps += [checks[n] for n in sorted(checks)]
    # then corrected: every definition run again in order (a class's later cells add to its first), their checks
    # again, and the demo
    corrected = {id(broken[n]): fixed[n] for n in mistakes}
    steps += [corrected.get(id(cell), cell.source) for cell in definitions]
    steps += [f"check({n})" for n in sorted(mistakes)]
    steps += demo
    extra, _ = execute(nb, steps)
    rechecks = [cell for cell in extra if cell.source.startswith("check(")]
    out = {n: output_text(cell).rstrip("\n").split("\n") for n, cell in checks.items()}
    for n in sorted(checks):
        assert out[n][0].endswith("fail" if n in mistakes else "pass"), (n, out[n])  # a mistake fails no other
    assert "NameError: name 'max_step' is not defined" in out[6][1], out[6]
    assert "SyntaxError in the block of exercise 7: " in "\n".join(out[7]), out[7]  # no line of a file not there
    # exercise 9: exactly what check.py says of the same mistake in the .py copy
    (tmp_path / "minidqn.py").write_text(course.make_copy(REFERENCE_SOURCE, solved=True).replace(right, wrong))
    result = run_script("check.py", str(tmp_path), "--exercise", "9")
    assert any(message in line for line in out[9]) and out[9] == result.stdout.rstrip("\n").split("\n")[:-1], \
        (out[9], result.stdout)
    for n, cell in zip(sorted(mistakes), rechecks):
        assert output_text(cell).rstrip().endswith("pass"), output_text(cell)
    assert "Done after 3000 steps" in output_text(training[0])
    shown = [o.get("data", {}) for cell in nb.cells[at:] for o in cell.get("outputs", [])]
    assert any("image/png" in data for data in shown), "no learning curve shown"
    assert any("image/gif" in data for data in shown), "no agent shown"


def test_numpy_imported_before_minidqn_still_gets_one_blas_thread():
    env = {k: v for k, v in os.environ.items() if k not in ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS")}
    probe = ("import numpy, minidqn\nfrom threadpoolctl import threadpool_info\n"
             "print(max(i['num_threads'] for i in threadpool_info() if i['user_api'] == 'blas'))")
    result = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, cwd=HERE, env=env)
    assert result.stdout.strip() == "1", result.stderr
    # a setting already in the environment still wins
    result = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, cwd=HERE,
                            env={**env, "OPENBLAS_NUM_THREADS": "2"})
    assert result.stdout.strip() == "2", result.stderr
