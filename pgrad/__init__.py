"""pgrad: the policy-gradient family of reinforcement learning, faithful to the math and fast.

import pgrad
agent = pgrad.train("ppo", env="CartPole-v1", total_steps=100_000, seed=0)
agent.save("runs/ppo"); agent = pgrad.load("runs/ppo")
action = agent.act(obs, deterministic=True)
"""

from pgrad.agent import Agent, load
from pgrad.evaluation import evaluate
from pgrad.train import train

__version__ = "0.1.0"
__all__ = ["Agent", "evaluate", "load", "train", "__version__"]
