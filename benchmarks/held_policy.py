"""held_policy.py: an experiment on why SB3's collect/update rhythm matters on MountainCar-v0.

SB3's row collects 16 env steps, then takes 8 gradient steps in a row. That rhythm does two things at once:
the behaviour policy (epsilon-greedy on the Q-network) stays the same for 16 env steps, and the gradient
steps come in bursts. This script separates the two: the gradient steps stay wherever run_dqn puts them (for
example one every 2 env steps), but the actions come from a copy of the Q-network refreshed only every
`--hold` env steps:

    python benchmarks/held_policy.py --hold 16 --env-id MountainCar-v0 --update-interval 2 --gradient-steps 1 \\
        --seeds 8 --evaluation-interval 0 --name mc-spread-held16

Every other flag is benchmark.py's (reliability mode); the results file is benchmark.py's report.
"""

from __future__ import annotations

import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import benchmark  # noqa: E402  (puts the repository root on sys.path)
import minidqn  # noqa: E402


def hold_the_policy(hold: int) -> None:
    """Make run_dqn act with a copy of its Q-network that is refreshed every `hold` env steps."""
    collect = minidqn.collect_one_step
    held = {"online": None, "copy": None, "steps": 0}

    def collect_with_held_policy(env, q_net, replay_buffer, obs, exploration_rate=0.1, verbose=0, rng=None):
        if held["online"] is not q_net:  # a new run
            held.update(online=q_net, copy=minidqn.QNetwork(q_net.observation_space, env.action_space,
                                                            q_net.n_hidden_units,
                                                            scale_observations=q_net.scale_observations), steps=0)
        if held["steps"] % hold == 0:
            held["copy"].load_state_dict(q_net.state_dict())
        held["steps"] += 1
        return collect(env, held["copy"], replay_buffer, obs, exploration_rate, verbose, rng)

    minidqn.collect_one_step = collect_with_held_policy  # the workers fork from here and inherit it


def main(argv: list) -> int:
    if len(argv) < 2 or argv[0] != "--hold":
        print(__doc__)
        return 2
    hold_the_policy(int(argv[1]))
    return benchmark.main(argv[2:], command="python benchmarks/held_policy.py " + " ".join(argv))


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
