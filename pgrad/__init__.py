"""pgrad: the policy-gradient family of reinforcement learning, faithful to the math and fast.

import pgrad
agent = pgrad.train("ppo", env="CartPole-v1", total_steps=100_000, seed=0)
agent.save("runs/ppo"); agent = pgrad.load("runs/ppo")
action = agent.act(obs, deterministic=True)
agent.learn(50_000)  # train on from the run's final checkpoint
"""

from pgrad import pomdp  # noqa: F401  (registers CartPoleNoVel-v1, PendulumNoVel-v1)
from pgrad.agent import Agent, load
from pgrad.callbacks import Callback, RunInfo
from pgrad.envspec import EnvSpec
from pgrad.evaluation import evaluate
from pgrad.train import resume, train


def sweep(*args, **kwargs):
    """Seeds × grid of one config as Ray tasks (``pgrad.distributed.sweep``; needs the distributed extra)."""
    from pgrad.distributed import sweep as run

    return run(*args, **kwargs)


__version__ = "0.1.0"
__all__ = ["Agent", "Callback", "EnvSpec", "RunInfo", "evaluate", "load", "resume", "sweep", "train", "__version__"]
