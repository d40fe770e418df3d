"""pgrad against Stable-Baselines3, side by side on this machine, in one script.

    make bench        quick set: the CartPole cases, seed 0 → benchmarks/results/quick/RESULTS.md
    make bench-full   every case, seeds 0, 1, 2 (and op_profile.py) → benchmarks/RESULTS.md

For each case both libraries train with the same hyperparameters (RL-Zoo's, written out below in
pgrad's field names, which are SB3's), the same env, budget and torch thread count, alternating
(pgrad, SB3, pgrad, SB3, …) over seeds, each run in a fresh subprocess. Recorded per run: training
wall time (no evaluation inside it), env steps per second, and the final deterministic 10-episode
evaluation on the same episode seeds for both. The *floor* is the same vector env stepped with
random actions plus one batched forward pass of the same-size actor and critic per step: what no
trainer can beat here. Writes benchmarks/results/<case>.json and regenerates benchmarks/RESULTS.md.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
import time
from pathlib import Path

HERE = Path(__file__).parent
RESULTS = HERE / "results"
EVAL_SEED_OFFSET = 1_000_000  # pgrad.evaluation's: both libraries face the same episodes

# RL-Zoo's PPO CartPole-v1 entry (hyperparams/ppo.yml), in pgrad/SB3 field names
PPO_CARTPOLE = {
    "n_envs": 8,
    "n_steps": 32,
    "batch_size": 256,
    "gae_lambda": 0.8,
    "gamma": 0.98,
    "n_epochs": 20,
    "ent_coef": 0.0,
    "learning_rate": 1e-3,
    "lr_schedule": "linear",
    "clip_range": 0.2,
    "clip_range_schedule": "linear",
}

# RL-Zoo hyperparameters (rl-baselines3-zoo hyperparams/<algo>.yml), in pgrad/SB3 field names. A case
# with "sbx" runs SBX's class of that name beside SB3 too (where the SBX venv is: make bench builds it),
# with the same values; SBX has no A2C, TRPO, recurrent PPO or CNN policies, and its `use_sde` repeats one
# Gaussian sample where SB3's gSDE makes the noise a function of the state, so those cases have none.
CASES: dict[str, dict] = {
    "ppo-cartpole": {
        "algo": "ppo",
        "sb3": "PPO",
        "sbx": "PPO",
        "env": "CartPole-v1",
        "steps": 100_000,
        "quick": True,
        "hp": PPO_CARTPOLE,
    },
    "a2c-cartpole": {
        "algo": "a2c",
        "sb3": "A2C",
        "env": "CartPole-v1",
        "steps": 100_000,
        "quick": True,
        "hp": {
            "n_envs": 8,
            "ent_coef": 0.0,
            "n_steps": 5,
            "learning_rate": 7e-4,
            "gamma": 0.99,
            "vf_coef": 0.5,
            "max_grad_norm": 0.5,
        },
    },
    "trpo-cartpole": {
        "algo": "trpo",
        "sb3": "TRPO",
        "env": "CartPole-v1",
        "steps": 100_000,
        "quick": True,
        "hp": {
            "n_envs": 2,
            "n_steps": 512,
            "batch_size": 512,
            "cg_damping": 1e-3,
            "gae_lambda": 0.98,
            "gamma": 0.99,
            "learning_rate": 1e-3,
            "n_critic_updates": 20,
        },
    },
    # The Zoo's Pendulum PPO, gSDE included (noise resampled every 4 steps)
    "ppo-pendulum": {
        "algo": "ppo",
        "sb3": "PPO",
        "env": "Pendulum-v1",
        "steps": 100_000,
        "quick": False,
        "hp": {
            "n_envs": 4,
            "n_steps": 1024,
            "gae_lambda": 0.95,
            "gamma": 0.9,
            "n_epochs": 10,
            "ent_coef": 0.0,
            "learning_rate": 1e-3,
            "clip_range": 0.2,
            "batch_size": 64,
            "use_sde": True,
            "sde_sample_freq": 4,
        },
    },
    # The Zoo's MountainCarContinuous PPO with gSDE (batch_size: the Zoo's 256 exceeds the 8-sample
    # rollout, which SB3 takes as one minibatch of 8; pgrad asks for the 8 it means)
    "ppo-mountaincar-continuous": {
        "algo": "ppo",
        "sb3": "PPO",
        "env": "MountainCarContinuous-v0",
        "steps": 20_000,
        "quick": False,
        "hp": {
            "normalize_obs": True,
            "normalize_reward": True,
            "n_envs": 1,
            "n_steps": 8,
            "batch_size": 8,
            "gamma": 0.9999,
            "learning_rate": 7.77e-05,
            "ent_coef": 0.00429,
            "clip_range": 0.1,
            "n_epochs": 10,
            "gae_lambda": 0.9,
            "max_grad_norm": 5.0,
            "vf_coef": 0.19,
            "use_sde": True,
            "log_std_init": -3.29,
            "ortho_init": False,
        },
    },
    # The Zoo's MountainCarContinuous SAC, gSDE included (pgrad's preset is this entry)
    "sac-mountaincar-continuous": {
        "algo": "sac",
        "sb3": "SAC",
        "env": "MountainCarContinuous-v0",
        "steps": 50_000,
        "quick": False,
        "hp": {
            "n_envs": 1,
            "learning_rate": 3e-4,
            "buffer_size": 50_000,
            "batch_size": 512,
            "ent_coef": 0.1,
            "train_freq": 32,
            "gradient_steps": 32,
            "gamma": 0.9999,
            "tau": 0.01,
            "learning_starts": 0,
            "use_sde": True,
            "log_std_init": -3.67,
            "hidden_sizes": [64, 64],
        },
    },
    "sac-pendulum": {
        "algo": "sac",
        "sb3": "SAC",
        "sbx": "SAC",
        "env": "Pendulum-v1",
        "steps": 20_000,
        "quick": False,
        "hp": {"n_envs": 1, "learning_rate": 1e-3},
    },
    "td3-pendulum": {
        "algo": "td3",
        "sb3": "TD3",
        "sbx": "TD3",
        "env": "Pendulum-v1",
        "steps": 20_000,
        "quick": False,
        "hp": {},
    },
    # CrossQ (issue 20): the Zoo's crossq.yml Pendulum entry, sb3-contrib's CrossQ beside it
    "crossq-pendulum": {
        "algo": "crossq",
        "sb3": "CrossQ",
        "env": "Pendulum-v1",
        "steps": 20_000,
        "quick": False,
        "hp": {"n_envs": 1, "policy_delay": 2, "hidden_sizes": [256, 256], "critic_hidden_sizes": [256, 256]},
    },
    # CrossQ on a MuJoCo env (issue 20): sb3-contrib's defaults, but 256-256 critics (its wide ones cost
    # ~0.4 s an update on one core), 30k steps
    "crossq-hopper": {
        "algo": "crossq",
        "sb3": "CrossQ",
        "env": "Hopper-v5",
        "steps": 30_000,
        "quick": False,
        "hp": {"n_envs": 1, "hidden_sizes": [256, 256], "critic_hidden_sizes": [256, 256]},
    },
    # SAC on a MuJoCo env (issue 21): RL Zoo's MuJoCo entry (SB3's defaults after 10k random steps, pgrad's
    # Hopper-v5 preset) at 30k of its 1M steps, SB3 beside it
    "sac-hopper": {
        "algo": "sac",
        "sb3": "SAC",
        "sbx": "SAC",
        "env": "Hopper-v5",
        "steps": 30_000,
        "quick": False,
        "hp": {"n_envs": 1, "learning_starts": 10_000},
    },
    # n-step targets (issue 20): the Zoo's SAC Pendulum entry with n_steps=3, SB3's NStepReplayBuffer beside it
    "sac-pendulum-nstep3": {
        "algo": "sac",
        "sb3": "SAC",
        "sbx": "SAC",
        "env": "Pendulum-v1",
        "steps": 20_000,
        "quick": False,
        "hp": {"n_envs": 1, "learning_rate": 1e-3, "n_steps": 3},
    },
    # Recurrent PPO (issue 20): RL-Zoo's ppo_lstm.yml CartPoleNoVel-v1 entry (VecNormalize for SB3),
    # sb3-contrib's RecurrentPPO beside it; the env is pgrad's registration of the Zoo's masked CartPole
    "ppo-lstm-cartpolenovel": {
        "algo": "ppo",
        "sb3": "RecurrentPPO",
        "sb3_policy": "MlpLstmPolicy",
        "env": "CartPoleNoVel-v1",
        "steps": 100_000,
        "quick": False,
        "hp": {
            **PPO_CARTPOLE,  # ppo_lstm.yml repeats ppo.yml's CartPole values
            "normalize_obs": True,
            "normalize_reward": True,
            "rnn": "lstm",
            "rnn_hidden_size": 64,
            "ortho_init": False,
            "activation": "relu",
            "hidden_sizes": [64],
        },
    },
    # Beside SBX (JAX; `make bench-sbx`, its own venv). SimBa: the Zoo's SAC Pendulum entry with
    # SimBa networks of two 64-wide blocks for the actor and the critics, observations normalised;
    # SBX's SimbaPolicy with plain Adam (its default AdamW's 1e-4 decay is the one difference pgrad lacks).
    "sac-simba-pendulum": {
        "algo": "sac",
        "peer": "sbx",
        "sbx": "SAC",
        "sbx_policy": "SimbaPolicy",
        "env": "Pendulum-v1",
        "steps": 10_000,
        "quick": False,
        "hp": {
            "n_envs": 1,
            "learning_rate": 1e-3,
            "normalize_obs": True,
            "network": "simba",
            "hidden_sizes": [64, 64],
            "critic_hidden_sizes": [64, 64],
        },
        "peer_kwargs": {"learning_rate": 1e-3, "policy_kwargs": {"net_arch": [64, 64], "optimizer_class": "adam"}},
    },
    # DroQ as SBX writes it: SAC with dropout (0.01) + LayerNorm critics, 20 gradient steps per env
    # step and the actor every 20th (policy_delay); 64-64 networks to fit 2 cores (20 updates a step)
    "sac-droq-pendulum": {
        "algo": "sac",
        "peer": "sbx",
        "sbx": "SAC",
        "sbx_policy": "MlpPolicy",
        "env": "Pendulum-v1",
        "steps": 3_000,
        "quick": False,
        "hp": {
            "n_envs": 1,
            "learning_rate": 1e-3,
            "gradient_steps": 20,
            "policy_delay": 20,
            "critic_dropout": 0.01,
            "critic_layer_norm": True,
            "hidden_sizes": [64, 64],
        },
        "peer_kwargs": {
            "learning_rate": 1e-3,
            "gradient_steps": 20,
            "policy_delay": 20,
            "policy_kwargs": {"dropout_rate": 0.01, "layer_norm": True, "net_arch": [64, 64]},
        },
    },
    # Pixels: RL-Zoo's ppo.yml `atari` on Breakout, 25k agent steps (100k frames), speed and memory only
    # (a return after 100k frames says nothing). pgrad's preset is this one (ppo/atari); SB3 runs
    # make_atari_env (its AtariWrapper) + VecFrameStack(4) + CnnPolicy with the same values.
    "ppo-atari": {
        "algo": "ppo",
        "sb3": "PPO",
        "env": "BreakoutNoFrameskip-v4",
        "steps": 25_000,
        "quick": True,
        "pixels": True,
        "hp": {
            "preprocess": "atari",
            "frame_stack": 4,
            "n_envs": 8,
            "n_steps": 128,
            "n_epochs": 4,
            "batch_size": 256,
            "learning_rate": 2.5e-4,
            "lr_schedule": "linear",
            "clip_range": 0.1,
            "clip_range_schedule": "linear",
            "vf_coef": 0.5,
            "ent_coef": 0.01,
            "hidden_sizes": [],
        },
    },
    # RL-Zoo gives DDPG on Pendulum the same values as TD3 (filled in below).
    "ddpg-pendulum": {
        "algo": "ddpg",
        "sb3": "DDPG",
        "sbx": "DDPG",
        "env": "Pendulum-v1",
        "steps": 20_000,
        "quick": False,
        "hp": {},
    },
}

CASES["td3-pendulum"]["hp"] = CASES["ddpg-pendulum"]["hp"] = {
    "n_envs": 1,
    "gamma": 0.98,
    "buffer_size": 200_000,
    "learning_starts": 10_000,
    "noise": "normal",
    "noise_std": 0.1,
    "train_freq": 1,
    "gradient_steps": 1,
    "learning_rate": 1e-3,
    "hidden_sizes": [400, 300],
}

# bf16 autocast (mixed_precision="bf16", issue 19): the off-policy cases beside SBX (which runs float32),
# with their float32 twins beside SBX alone (no SB3: a quicker pair, run with them), and Atari's CNN beside
# SB3. Its products run on AMX or AVX512-BF16 where the CPU has them.
for _name in ("sac-pendulum", "td3-pendulum", "ddpg-pendulum", "ppo-atari"):
    CASES[f"{_name}-bf16"] = {**CASES[_name], "hp": {**CASES[_name]["hp"], "mixed_precision": "bf16"}}
    CASES[f"{_name}-bf16"].update(peer="sb3" if _name == "ppo-atari" else "sbx", quick=False)
    if _name != "ppo-atari":
        CASES[f"{_name}-fp32"] = {**CASES[_name], "peer": "sbx", "quick": False}


def sb3_kwargs(hp: dict, total_steps: int, action_dim: int = 1) -> dict:
    """pgrad field names → SB3 constructor arguments (schedules as SB3 callables; action noise of
    ``action_dim`` dimensions)."""
    dropped = (
        "n_envs",
        "lr_schedule",
        "clip_range_schedule",
        "log_std_init",
        "noise",
        "noise_std",
        "hidden_sizes",
        "preprocess",
        "frame_stack",
        "critic_hidden_sizes",
        "normalize_obs",
        "normalize_reward",
        "rnn",
        "rnn_hidden_size",
        "ortho_init",
        "activation",
        "vf_hidden_sizes",
        "total_steps",
        "mixed_precision",
    )  # fmt: skip  (normalisation: VecNormalize)
    kwargs = {k: v for k, v in hp.items() if k not in dropped}
    if "noise" in hp:  # SB3 adds it in the same [-1, 1] action scale as pgrad
        import numpy as np
        from stable_baselines3.common.noise import NormalActionNoise

        kwargs["action_noise"] = NormalActionNoise(np.zeros(action_dim), hp["noise_std"] * np.ones(action_dim))
    if "hidden_sizes" in hp and "preprocess" not in hp:  # CnnPolicy's default is already linear heads
        kwargs["policy_kwargs"] = {"net_arch": list(hp["hidden_sizes"])}
    if hp.get("lr_schedule") == "linear":
        lr = hp["learning_rate"]
        kwargs["learning_rate"] = lambda remaining: remaining * lr
    if hp.get("clip_range_schedule") == "linear":
        clip = hp["clip_range"]
        kwargs["clip_range"] = lambda remaining: remaining * clip
    if "log_std_init" in hp:
        kwargs["policy_kwargs"] = {"log_std_init": hp["log_std_init"]}
        if "ortho_init" in hp:
            kwargs["policy_kwargs"]["ortho_init"] = hp["ortho_init"]
        if "hidden_sizes" in hp:
            kwargs["policy_kwargs"]["net_arch"] = list(hp["hidden_sizes"])
    if "vf_hidden_sizes" in hp:  # separate π and V sizes (RL Zoo's net_arch=dict(pi=..., vf=...))
        kwargs["policy_kwargs"]["net_arch"] = {"pi": list(hp["hidden_sizes"]), "vf": list(hp["vf_hidden_sizes"])}
    if "activation" in hp and "rnn" not in hp:
        from torch import nn

        kwargs.setdefault("policy_kwargs", {})["activation_fn"] = {"relu": nn.ReLU, "tanh": nn.Tanh}[hp["activation"]]
    if "rnn" in hp:  # sb3-contrib's RecurrentActorCriticPolicy: an LSTM per π and V, then the MLPs
        from torch import nn

        sizes = list(hp["hidden_sizes"])
        kwargs["policy_kwargs"] = {"lstm_hidden_size": hp["rnn_hidden_size"], "enable_critic_lstm": True,
                                   "ortho_init": hp["ortho_init"], "net_arch": {"pi": sizes, "vf": sizes},
                                   "activation_fn": {"relu": nn.ReLU, "tanh": nn.Tanh}[hp["activation"]]}  # fmt: skip
    return kwargs


def sbx_kwargs(case: dict, total_steps: int) -> dict:
    """SBX's constructor arguments: a case's own (``peer_kwargs``), or SB3's for its hyperparameters
    (SBX takes SB3's names), with flax's activations, SB3's orthogonal initialisation for PPO (SBX's
    default is off) and DDPG's critic at the actor's rate (SB3's DDPG has one; SBX's defaults to 1e-3)."""
    import optax
    from flax import linen

    if "peer_kwargs" in case:
        kwargs = json.loads(json.dumps(case["peer_kwargs"]))  # a copy to fill in
        if kwargs.get("policy_kwargs", {}).get("optimizer_class") == "adam":
            kwargs["policy_kwargs"]["optimizer_class"] = optax.adam
        return kwargs
    kwargs = sb3_kwargs(case["hp"], total_steps)
    policy = kwargs.pop("policy_kwargs", {})
    if "activation_fn" in policy:
        policy["activation_fn"] = {"ReLU": linen.relu, "Tanh": linen.tanh}[policy["activation_fn"].__name__]
    if case["sbx"] == "PPO":
        policy.setdefault("ortho_init", True)
    if case["sbx"] == "DDPG":
        kwargs["qf_learning_rate"] = kwargs.get("learning_rate", 1e-3)
    return {**kwargs, **({"policy_kwargs": policy} if policy else {})}


def evaluate_sb3(model, env_id: str, seed: int, episodes: int = 10, normalizer=None) -> float:
    """Deterministic returns on pgrad's evaluation seeds; observations through the frozen
    VecNormalize statistics where training used them, a recurrent policy's state carried."""
    import gymnasium as gym

    env = gym.make(env_id)
    returns = []
    for episode in range(episodes):
        obs, _ = env.reset(seed=seed + EVAL_SEED_OFFSET + episode)
        done, total, state, start = False, 0.0, None, True
        while not done:
            seen = normalizer.normalize_obs(obs) if normalizer is not None else obs
            action, state = model.predict(seen, state=state, episode_start=start, deterministic=True)
            start = False
            obs, reward, terminated, truncated, _ = env.step(action)
            total += float(reward)
            done = terminated or truncated
        returns.append(total)
    return statistics.fmean(returns)


def worker(job: dict) -> dict:
    """One training run in this (fresh) process; prints its result as JSON (with the process's peak
    resident memory: what the run allocated, the library and its buffers included)."""
    import resource

    import torch

    if hasattr(os, "sched_setaffinity") and job["threads"] == 1:  # one core for the whole run, as for every peer
        os.sched_setaffinity(0, {max(os.sched_getaffinity(0))})
    torch.set_num_threads(job["threads"])
    case, seed = dict(CASES[job["case"]]), job["seed"]
    case["steps"] = job.get("steps") or case["steps"]
    phases = None
    if job["lib"] == "pgrad":
        import csv

        import pgrad

        phases = time_the_phases()

        run_dir = Path("runs/bench") / f"{job['case']}-{seed}"
        agent = pgrad.train(
            case["algo"],
            env=case["env"],
            total_steps=case["steps"],
            seed=seed,
            preset="none",
            run_dir=str(run_dir),
            overwrite=True,
            progress_bar=False,
            torch_threads=job["threads"],
            device="cpu",
            eval_episodes=0 if case.get("pixels") else 10,
            save_final_checkpoint=False,  # the run's training is what is timed, not a checkpoint write
            **case["hp"],
        )
        last = list(csv.DictReader(open(run_dir / "timing.csv")))[-1]
        wall, steps = float(last["time_elapsed"]), int(last["global_step"])
        eval_mean = agent.evaluation.mean if agent.evaluation else float("nan")
        cfg = agent.config
        if "buffer_size" in cfg:  # the replay buffer's preallocated observations: s and s' (s once when compact)
            buffer_obs = agent.layout.nbytes * cfg["buffer_size"] * (1 if cfg["optimize_memory_usage"] else 2)
        else:  # the rollout buffer's observations: n_steps × n_envs stored observations (uint8 for images)
            buffer_obs = agent.layout.nbytes * cfg["n_steps"] * cfg["n_envs"]
    elif job["lib"] == "sb3":
        import sb3_contrib
        import stable_baselines3
        from stable_baselines3.common.env_util import make_vec_env

        cls = getattr(stable_baselines3, case["sb3"], None) or getattr(sb3_contrib, case["sb3"])
        if case.get("pixels"):
            import ale_py
            import gymnasium as gym
            from stable_baselines3.common.env_util import make_atari_env
            from stable_baselines3.common.vec_env import VecFrameStack

            gym.register_envs(ale_py)
            env = VecFrameStack(make_atari_env(case["env"], n_envs=case["hp"]["n_envs"], seed=seed), n_stack=4)
        else:
            import pgrad.pomdp  # noqa: F401  (registers CartPoleNoVel-v1, as RL Zoo's import_envs does)

            env = make_vec_env(case["env"], n_envs=case["hp"]["n_envs"], seed=seed)
        normalizer = None
        if case["hp"].get("normalize_obs"):  # RL Zoo's `normalize: true`
            from stable_baselines3.common.vec_env import VecNormalize

            env = normalizer = VecNormalize(env, norm_obs=True, norm_reward=case["hp"]["normalize_reward"],
                                            gamma=case["hp"]["gamma"])  # fmt: skip
        policy = case.get("sb3_policy", "CnnPolicy" if case.get("pixels") else "MlpPolicy")
        model = cls(policy, env, seed=seed, device=job.get("device", "cpu"), **sb3_kwargs(case["hp"], case["steps"]))
        start = time.perf_counter()
        model.learn(case["steps"])
        wall, steps = time.perf_counter() - start, model.num_timesteps
        if normalizer is not None:
            normalizer.training = False
        eval_mean = (
            float("nan") if case.get("pixels") else evaluate_sb3(model, case["env"], seed, normalizer=normalizer)
        )
        buffer = getattr(model, "rollout_buffer", None) or getattr(model, "replay_buffer", None)
        buffer_obs = buffer.observations.nbytes + getattr(buffer, "next_observations", buffer.observations[:0]).nbytes
    elif job["lib"] == "sbx":
        # XLA on one thread (and the process on one core, above), as every other run here
        os.environ["XLA_FLAGS"] = "--xla_cpu_multi_thread_eigen=false intra_op_parallelism_threads=1"
        import jax.monitoring
        import sbx
        from stable_baselines3.common.env_util import make_vec_env
        from stable_baselines3.common.vec_env import VecNormalize

        env = normalizer = make_vec_env(case["env"], n_envs=case["hp"]["n_envs"], seed=seed)
        if case["hp"].get("normalize_obs"):  # RL Zoo's `normalize`
            env = normalizer = VecNormalize(env, norm_obs=True, norm_reward=case["hp"].get("normalize_reward", False),
                                            gamma=case["hp"].get("gamma", 0.99))  # fmt: skip
        compiling = [0.0]  # seconds in XLA's compiler during training (tracing and lowering, nested, left out)

        def count_compilation(event: str, seconds: float, **_) -> None:
            if event == "/jax/core/compile/backend_compile_duration":
                compiling[0] += seconds

        jax.monitoring.register_event_duration_secs_listener(count_compilation)
        policy = case.get("sbx_policy", "MlpPolicy")
        model = getattr(sbx, case["sbx"])(policy, env, seed=seed, **sbx_kwargs(case, case["steps"]))
        compiling[0], start = 0.0, time.perf_counter()
        model.learn(case["steps"])  # (its JIT compilation included: it is part of training)
        wall, steps, compile_s = time.perf_counter() - start, model.num_timesteps, compiling[0]
        if isinstance(normalizer, VecNormalize):
            normalizer.training = False
        else:
            normalizer = None
        eval_mean = evaluate_sb3(model, case["env"], seed, normalizer=normalizer)
        buffer = getattr(model, "rollout_buffer", None) or model.replay_buffer
        buffer_obs = buffer.observations.nbytes + getattr(buffer, "next_observations", buffer.observations[:0]).nbytes
    else:
        wall, steps, eval_mean = floor(case, job["threads"], min(40_000, case["steps"]))
        buffer_obs = 0
    return {
        "lib": job["lib"],
        "seed": seed,
        "wall_s": wall,
        "steps": steps,
        "sps": steps / wall,
        "eval_mean": eval_mean,
        "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
        **({"buffer_obs_mb": buffer_obs / 2**20} if job["lib"] != "floor" else {}),
        **({"phase_s": phases} if phases else {}),
        **({"compile_s": compile_s} if job["lib"] == "sbx" else {}),
    }


def time_the_phases() -> dict[str, float]:
    """Wrap pgrad's loops so that the run also reports the seconds spent collecting (env steps and
    acting) and updating; the rest of the wall time is logging and bookkeeping."""
    from pgrad.algos import base

    phases = {"collect": 0.0, "update": 0.0}

    def timed(name, fn):
        def wrapper(*args, **kwargs):
            start = time.perf_counter()
            try:
                return fn(*args, **kwargs)
            finally:
                phases[name] += time.perf_counter() - start

        return wrapper

    base.OnPolicyLoop.collect = timed("collect", base.OnPolicyLoop.collect)
    for loop in (base.OnPolicyLoop, base.OffPolicyLoop):
        run = loop.run

        def run_timing_updates(self, on_update, poll=base.no_poll, *, run=run):
            self.algo.update = timed("update", self.algo.update)
            return run(self, on_update, poll)

        loop.run = run_timing_updates
    return phases


def floor(case: dict, threads: int, steps: int = 40_000) -> tuple[float, int, float]:
    """Random actions through the same vector env + one batched actor and critic forward per step."""
    import gymnasium as gym
    import numpy as np
    import torch
    from gymnasium.vector import AutoresetMode

    from pgrad.networks import ActorCritic

    n = case["hp"]["n_envs"]
    if case.get("pixels"):  # the preprocessed, stacked frames and the preset's CNN actor-critic
        from pgrad.envspec import EnvSpec
        from pgrad.networks import actor_critic_for
        from pgrad.train import resolve_config
        from pgrad.wrappers import preprocessed

        spec = preprocessed(EnvSpec.from_user(case["env"]), "atari", case["hp"]["frame_stack"])
        envs = gym.vector.SyncVectorEnv([spec.make] * n, autoreset_mode=AutoresetMode.SAME_STEP)
        cfg = resolve_config(case["algo"], case["env"], "none", case["hp"])[0]
        net = actor_critic_for(cfg, envs.single_observation_space, envs.single_action_space)
    else:
        envs = gym.make_vec(case["env"], num_envs=n, vectorization_mode="sync",
                            vector_kwargs={"autoreset_mode": AutoresetMode.SAME_STEP})  # fmt: skip
        space = envs.single_action_space
        discrete = hasattr(space, "n")
        net = ActorCritic(envs.single_observation_space.shape[0], space.n if discrete else space.shape[0], discrete)
    net = net.for_acting()  # the cheapest forward pgrad has (one fused pass for 64-64 networks)
    envs.action_space.seed(0)
    obs, _ = envs.reset(seed=0)
    start = time.perf_counter()
    for _ in range(steps // n):
        with torch.inference_mode():
            x = torch.as_tensor(obs)  # images stay uint8; vectors as pgrad stores them, float32 (MuJoCo's are float64)
            net(x if x.dtype == torch.uint8 else x.float())
        obs, *_ = envs.step(envs.action_space.sample())
    wall = time.perf_counter() - start
    return wall, (steps // n) * n, float(np.nan)


# SBX (JAX) runs in its own venv (`make bench-sbx` builds it): its jax/flax stack stays out of pgrad's.
SBX_PYTHON = os.environ.get("PGRAD_SBX_PYTHON", str(HERE.parent / ".venv-sbx" / "bin" / "python"))


def run_job(job: dict) -> dict:
    python = SBX_PYTHON if job["lib"] == "sbx" else sys.executable
    out = subprocess.run([python, __file__, "--worker", json.dumps(job)], capture_output=True, text=True, check=False)
    if out.returncode != 0:
        raise RuntimeError(f"{job} failed:\n{out.stderr[-3000:]}")
    return json.loads(out.stdout.strip().splitlines()[-1])


def machine() -> str:
    import torch

    cpu = next((line.split(":", 1)[1].strip() for line in open("/proc/cpuinfo") if line.startswith("model name")), "?")
    flags = set(next((line.split(":", 1)[1].split() for line in open("/proc/cpuinfo") if line.startswith("flags")), []))
    extensions = [name for flag, name in (("avx2", "AVX2"), ("fma", "FMA"), ("avx512f", "AVX-512"),
                                          ("amx_tile", "AMX")) if flag in flags]  # fmt: skip
    missing = [name for flag, name in (("avx512f", "AVX-512"), ("amx_tile", "AMX")) if flag not in flags]
    return (f"{cpu}, {os.cpu_count()} cores ({', '.join(extensions) or 'no AVX2'}"
            + (f"; no {', no '.join(missing)}" if missing else "")
            + f"), Python {platform.python_version()}, torch {torch.__version__}")  # fmt: skip


def commit() -> str:
    """The pgrad commit measured (``+dirty`` with uncommitted changes)."""
    git = ["git", "-C", str(HERE)]
    head = subprocess.run([*git, "rev-parse", "--short", "HEAD"], capture_output=True, text=True).stdout.strip()
    dirty = subprocess.run([*git, "status", "--porcelain", "pgrad"], capture_output=True, text=True).stdout.strip()
    return (head or "unknown") + ("+dirty" if dirty else "")


def summarise(name: str, runs: list[dict], floor_sps: float, peer: str = "sb3") -> dict:
    """Means over the seeds; each library's keys are named after it (``sb3_sps``, ``sbx_sps``, …);
    ``ratio`` is pgrad's SPS over the case's peer's, ``ratio_sbx`` over SBX's where SBX ran beside SB3."""
    by = {
        lib: [r for r in runs if r["lib"] == lib] for lib in dict.fromkeys(["pgrad", peer] + [r["lib"] for r in runs])
    }
    sps = {lib: statistics.fmean(r["sps"] for r in rs) for lib, rs in by.items()}
    evals = {lib: [r["eval_mean"] for r in rs] for lib, rs in by.items()}
    timed = [r for r in by["pgrad"] if "phase_s" in r]
    phases = {}
    if timed:
        phases["pgrad_update_share"] = statistics.fmean(r["phase_s"]["update"] / r["wall_s"] for r in timed)
        if all(r["phase_s"]["collect"] > 0 for r in timed):  # on-policy: acting + env steps alone
            collect_sps = statistics.fmean(r["steps"] / r["phase_s"]["collect"] for r in timed)
            phases["pgrad_collect_fraction_of_floor"] = collect_sps / floor_sps
    return {
        **phases,
        **({"peer": peer} if peer != "sb3" else {}),
        "pgrad_sps": sps["pgrad"],
        f"{peer}_sps": sps[peer],
        "ratio": sps["pgrad"] / sps[peer],
        **{f"ratio_{lib}": sps["pgrad"] / sps[lib] for lib in by if lib not in ("pgrad", peer)},
        **{f"{lib}_sps": sps[lib] for lib in by if lib not in ("pgrad", peer)},
        **{
            f"{lib}_compile_s": statistics.fmean(r["compile_s"] for r in rs)
            for lib, rs in by.items()
            if "compile_s" in rs[0]
        },
        "floor_sps": floor_sps,
        "pgrad_fraction_of_floor": sps["pgrad"] / floor_sps,
        f"{peer}_fraction_of_floor": sps[peer] / floor_sps,
        **{f"{lib}_eval": evals[lib] for lib in by},
        **{f"{lib}_peak_rss_mb": max(r["peak_rss_mb"] for r in rs) for lib, rs in by.items() if "peak_rss_mb" in rs[0]},
        **{f"{lib}_buffer_obs_mb": rs[0]["buffer_obs_mb"] for lib, rs in by.items() if "buffer_obs_mb" in rs[0]},
    }


def write_markdown(out: Path = RESULTS) -> None:
    rows = []
    machines: list[str] = []
    for path in sorted(out.glob("*.json")):
        if path.name in ("learning.json", "distributed.json", "profile.json", "mujoco.json"):  # other scripts
            continue
        data = json.loads(path.read_text())
        s = data["summary"]
        peer = s.get("peer", "sb3")  # SB3 / sb3-contrib, or SBX (its own venv: make bench-sbx)
        if data["machine"] not in machines:
            machines.append(data["machine"])

        def fmt(values: list[float]) -> str:
            if any(v != v for v in values):  # NaN: a speed-only case
                return "–"
            if len(values) == 1:
                return f"{values[0]:.1f}"
            return f"{statistics.fmean(values):.1f} ± {statistics.stdev(values):.1f}"

        def mb(lib: str, s: dict = s) -> str:
            if lib + "_peak_rss_mb" not in s:
                return "–"
            peak = f"{s[lib + '_peak_rss_mb']:,.0f}"
            return f"{peak} ({s[lib + '_buffer_obs_mb']:,.0f})" if lib + "_buffer_obs_mb" in s else peak

        def pct(key: str, s: dict = s) -> str:
            return f"{s[key]:.0%}" if key in s else "–"

        label = data["case"] + (f" (vs {peer.upper()})" if peer != "sb3" else "")
        if "sbx_sps" in s:  # SBX beside SB3, or the case's peer
            sbx_ratio = s["ratio"] if peer == "sbx" else s["ratio_sbx"]
            jit = f" ({s['sbx_compile_s']:.0f})" if "sbx_compile_s" in s else ""  # (not recorded by older runs)
            sbx = f"{s['sbx_sps']:,.0f}{jit} | **{sbx_ratio:.2f}×** | {fmt(s['sbx_eval'])}"
        else:
            sbx = "– | – | –"
        rows.append(
            f"| {label} | {data['steps']:,} | {len(s['pgrad_eval'])} | {s['pgrad_sps']:,.0f} | {s[peer + '_sps']:,.0f} "
            f"| **{s['ratio']:.2f}×** | {sbx} | {s['floor_sps']:,.0f} | {s['pgrad_fraction_of_floor']:.0%} "
            f"| {s[peer + '_fraction_of_floor']:.0%} | {pct('pgrad_update_share')} | {pct('pgrad_collect_fraction_of_floor')} "
            f"| {fmt(s['pgrad_eval'])} | {fmt(s[peer + '_eval'])} | {mb('pgrad')} | {mb(peer)} "
            f"| {data['machine'].split(',')[0].replace('(R)', '')} |"  # the CPU; its extensions above the table
        )
    text = [
        "# pgrad vs Stable-Baselines3 and SBX (`make bench-full`; `make bench` runs a quick set into results/quick/)",
        "",
        f"Machines (each row names its CPU): {' / '.join(machines)}. One thread for every library; same hyperparameters (in `benchmarks/bench.py`),",
        "env, budget and episode seeds; runs alternate pgrad / the peer / SBX, each in a fresh process. The peer is",
        "SB3 or sb3-contrib, unless a row says (vs SBX, `make bench-sbx`). SBX (SB3's algorithms in JAX, 0.28 on",
        "JAX's CPU backend, XLA on one thread, the same pinning) runs beside SB3 wherever it has the case; its JIT",
        "compilation counts as training time, as a user pays it, and is also given alone (JIT s: XLA's compile). SPS = env steps",
        "per second of training (evaluation excluded). Floor = the same vector env with random actions plus",
        "one batched actor+critic forward per step (pgrad's fused acting network for 64-64 nets, its cheapest). Eval",
        "= deterministic 10-episode mean at the end (– for ppo-atari, speed and memory only: 100k frames teach",
        "nothing worth a score). Peak MB = the training process's peak resident memory (the library, its",
        "networks and buffers; the highest over seeds); in parentheses, the MB of observations its buffer holds.",
        "Each run is pinned to one core (newer rows; rows measured before pinning say so in their JSON's `pinned`).",
        "pgrad update = the share of pgrad's training time spent in updates; pgrad collect / floor = the",
        "speed of pgrad's collection phase alone (acting + env steps, on-policy cases) against the floor.",
        "",
        "| case | steps | seeds | pgrad SPS | peer SPS | ratio | SBX SPS (JIT s) | pgrad / SBX | SBX eval | floor SPS "
        "| pgrad / floor | peer / floor | pgrad update | pgrad collect / floor | pgrad eval | peer eval | pgrad peak MB "
        "| peer peak MB | CPU |",
        "| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |",
        *rows,
        "",
        *READING,
    ]
    profile = out / "profile.json"
    if profile.is_file():  # benchmarks/op_profile.py
        text += profile_section(json.loads(profile.read_text()))
    text += seeds_section(out.parent / "seeds" if out == RESULTS else out / "seeds")
    distributed = out / "distributed.json"
    if distributed.is_file():  # benchmarks/distributed.py
        d = json.loads(distributed.read_text())
        text += [
            "",
            "## Ray rollout workers (`benchmarks/distributed.py`)",
            "",
            f"PPO CartPole-v1, {d['steps']:,} steps, {d['n_envs']} envs, seed 0, {d['repeats']} repeats each; "
            f"machine: {d['machine']}. The runs are identical sample for sample; only the clock differs.",
            "",
            "| workers | SPS | vs in-process | eval |",
            "| --- | --- | --- | --- |",
            *(
                f"| {r['workers'] or 'in-process'} | {r['sps']:,.0f} | {r['ratio_to_in_process']:.2f}× "
                f"| {statistics.fmean(r['eval']):.1f} |"
                for r in d["rows"]
            ),
            "",
            "How it scales: a worker takes the env stepping and acting off the learner, and costs a weight",
            "broadcast and a rollout transfer per update. PPO on CartPole is update-bound (see the table above)",
            "and its rollouts are small (8 × 32 steps), so on a machine whose cores the learner and the workers",
            "must share, workers cost more than they save. They pay off where stepping the envs dominates",
            "(MuJoCo, Box2D, long rollouts) and the workers have cores of their own. A 16-core measurement",
            "needs the device tool's machine, which was not lent to the session that wrote this.",
        ]
    (out.parent / "RESULTS.md" if out == RESULTS else out / "RESULTS.md").write_text("\n".join(text) + "\n")


def seeds_section(folder: Path) -> list[str]:
    """Many seeds in one process (benchmarks/seeds.py's JSON), a row per way of training them."""
    records = [json.loads(p.read_text()) for p in sorted(folder.glob("*.json"))] if folder.is_dir() else []
    if not records:
        return []
    rows = []
    for r in records:
        for way, x in r["results"].items():
            returns = x["returns"]
            spread = statistics.stdev(returns) if len(returns) > 1 else 0.0
            rows.append(
                f"| {r['case']} | {len(r['seeds'])} × {r['steps_per_seed']:,} | {way} | {x['train_s']:.0f} | {x['sps']:,.0f} "
                f"| {x['peak_mb']:.0f} | {statistics.fmean(returns):.1f} ± {spread:.1f} | {r['machine']} |"
            )
    return [
        "",
        "## Many seeds in one process (`python benchmarks/seeds.py --peer sb3`, issue 19)",
        "",
        "The same seeds trained one after another (each `pgrad.train(seed=s)` in one process; SB3's each in",
        "bench's worker) and as one stacked run (`pgrad.train(seeds=...)`); each way in a fresh process pinned",
        "to one core, one thread. Training seconds exclude the evaluations (10 deterministic episodes per seed,",
        "on the same episode seeds both ways); SPS = all seeds' env steps / training seconds.",
        "",
        "| case | seeds × steps | way | training s | aggregate SPS | peak MB | eval: mean ± std over seeds | machine |",
        "| --- | --- | --- | --- | --- | --- | --- | --- |",
        *rows,
        "",
        *SEEDS_READING,
    ]


SEEDS_READING = """\
What a stacked update saves is the operator dispatch of the seeds' passes (~650 operator calls a
gradient step of PPO's 64-64 nets, the same for 1 seed or 16), not their arithmetic: the batched
matrix products and the tanh activations grow with the number of seeds. On the Intel Xeon (one
core, other core busy), one PPO CartPole gradient step (256 samples) costs ~2.6 ms for one seed and
~18 ms stacked for 16 (~42 ms one by one: 2.3×); of the 18 ms, the batched products take ~5 ms
(~100 GFLOP/s, this core's sgemm rate) and tanh forward and backward ~2.8 ms (1.2 ns an element, 6×
ReLU's: torch's CPU tanh is not vectorised in this build). Those two alone, ~7.8 ms, are three
single-seed steps, so however little else a stacked step spent, 16 seeds' update could not run more
than ~5× faster than one by one in fp32 on this CPU; collection (each seed acts and steps its own
envs) is not batched, and the end-to-end gain is the table's.

Off-policy (`--seeds` for SAC, TD3 and DDPG), on the AMD EPYC (Zen 3: AVX2, FMA; no AVX-512, no AMX),
one core, the other busy: 8 SAC seeds × 2,000 steps with 256-256 networks train stacked at 1.03×
the seeds one by one (357 vs 368 s) and 1.27× SB3's one by one (455 s), their returns one
distribution (−956.6 ± 134.1 stacked, −968.3 ± 174.5 one by one). At these widths a SAC update is
mostly its 16 products of 256×256 by 256 (62% of a single update in the profile above), which a
stacked update still computes for every seed: one batched product per layer, at the separate
products' rate (8 × 256³ as 8 mm: 9.7-11.1 ms, as one bmm: 10.3 ms on this core). What it saves is
each seed's ~1,200 operator calls, and its elementwise ops on 2 MB activations (8 × 256 × 256
floats, beyond this core's L2) give some of that back. The update alone (`update_seeds` against
each seed's own `update`, 8 seeds, a busy core): SAC 1.00-1.23× at 256-256 and 1.9× at 64-64 (4
seeds); TD3 1.02-1.05× at the Zoo's 400-300 and 2.6-3.3× at 64-64. So 8 SAC seeds at ≥ 4× one
seed's speed is out of reach in fp32 on this CPU at these widths; stacking pays for small networks
(and, untested, on a GPU). Peak memory: 687 MB stacked vs 428 one by one (eight replay buffers and
networks in one process).

TRPO (`--seeds` for TRPO and NPG), on the Intel Xeon (AVX-512, AMX), one core, the other busy: 16
seeds × 100k steps of CartPole train stacked at 0.94× the seeds one by one (165 vs 155 s) and 2.1×
sb3-contrib's TRPO one by one (348 s), their returns one distribution (481.9 ± 48.1 stacked, 479.5 ±
57.1 one by one). Stacking gives one process and lockstep runs here, not speed: a TRPO update is
arithmetic-bound already for one seed (11 Fisher-vector products on 1,024 states), and the vmapped
double backward of 16 seeds' products (63 ms on a shared core) costs more than 16 separate ones
(~53 ms). Where a small network's pass is bound by kernel launches (a GPU) it is what would pay.""".splitlines()


READING = """\
How to read it (what the profile below showed, and what was done about it):

- **Pixels, Atari.** PPO on Breakout with RL Zoo's `atari` preset (8 envs, 4×84×84 uint8 frames, the
  Nature CNN), on the Intel Xeon (AVX-512, AMX), the other core busy: in float32 the two are at
  near parity, 257 vs 247 SPS (1.04×) over three seeds, 77% of pgrad's time in the update, bound by the CNN's convolutions forward and backward on
  minibatches of 256 frames (the same oneDNN kernels in both libraries; an earlier AMD EPYC run, 147
  vs 147, is in results/history/). With `mixed_precision="bf16"` (the `ppo-atari-bf16` row, measured
  before subnormals were flushed) the convolutions run on AMX: a minibatch step 160 → 67 ms, and pgrad
  trains 1.83× as fast as SB3 in float32 (496 vs 271 SPS), its update's share of the time 57%. Both
  hold the rollout's frames as uint8 (28 MB).

- **On-policy, CartPole.** RL-Zoo's PPO config takes 20 gradient steps on 256 samples per 256 env
  steps (7,800 for 100k steps), so PPO is update-bound: the `pgrad update` column. One eager-PyTorch
  gradient step of the two 64-64 tanh MLPs costs ~1.15 ms here (~670 operator calls: the loss,
  autograd's and the optimizer's), as much as ~55 env steps with inference, so no trainer running
  this config comes near the floor. `aten::tanh` alone is a fifth of the update (~2.6 ns an element:
  not vectorised in this CPU build, where sigmoid runs 6× faster; 2σ(2x) − 1 is faster forward but
  no faster forward + backward, and as a custom autograd Function its ~30 µs of Python a call is
  not paid back at 256 rows). What was cut, each where the profile pointed: Adam and RMSprop steps
  that call their kernels directly (torch's `step` regroups the tensors every call: 83 → 33 µs for
  Adam), a 4-kernel global grad-norm clip (72 → 20 µs), acting through one fused actor-critic
  network (stacked first layer, block-diagonal after: 5 operator calls instead of 10; TRPO's act
  86 → 64 µs a step), one minibatch of the whole rollout used in place instead of gathered through
  a permutation, one TensorBoard event per progress row (0.78 → 0.11 ms a row; A2C also writes a
  row every 20 updates), rollout rows stored through numpy views (16 → 7.6 µs a step), Gumbel
  noise transformed a block at a time, MLP layers called without `Module.__call__`, no entropy
  graph when c_ent = 0. What is left of an A2C update (~0.95 ms for 40 samples) is mostly the
  operator calls of a forward, a backward and an optimizer step; RMSprop has no fused kernel, and
  on the CPU torch's foreach ops loop over the 12 tensors one dispatch each.
- **TRPO.** An update (1,024 states) is ~60 ms: 11 Fisher-vector products by double backward
  through the tanh nets (~1.5 ms each; the Gauss-Newton form Jᵀ M J v with a forward-mode J v gave
  the same product to 6e-8 but took 1.6 ms, so it was not adopted) and the critic fit (40 Adam
  steps on 512 states, ~29 ms).
- **Off-policy, Pendulum, beside SBX (the `-fp32` and `-bf16` rows).** On the Intel Xeon (AVX-512,
  AMX; one core, the other training), against SBX on the same seeds, SBX's JIT counted: float32 SAC
  0.77×, TD3 1.08×, DDPG 0.91×; with `mixed_precision="bf16"` SAC 0.90×, TD3 1.50×, DDPG 1.27×.
  Two levers moved them. (1) Subnormals: in a real SAC run the update slows as training goes (14.2
  → 15.0 ms on a shared core over 4,000 steps), because Adam's moments and the backward passes fill
  with float32 subnormals, each ~100 cycles on x86. XLA runs its CPU code with them flushed to zero;
  pgrad's updates now do too (`flush_denormals`, default on; acting, envs and evaluation keep IEEE):
  13.1 ms flat, −10% wall time. A micro-benchmark on fresh networks never sees it (an earlier
  "flushing denormals: no change" was such a measurement). (2) bf16 autocast: with AMX a 256³
  product runs ~4× faster than in float32, a SAC update on fresh networks 6.3 → 5.4 ms, TD3's
  400-300 one 6.35 → 4.35 ms; but each update adds ~130 casts, and bf16 elementwise ops run at half
  float32's speed (ReLU, its backward), so SAC, with the most work beside its products, gains least.
  Returns match float32's over seeds 0-2 (the eval columns; the same episode seeds). It stays off by
  default: it pays only where the CPU has AMX or AVX512-BF16 (elsewhere bf16 is emulated), it changes
  results bit for bit, and three seeds are not the five a default would need. What is left between
  pgrad's SAC and SBX's is eager PyTorch's per-operator cost (~1,200 operator calls an update, the
  autograd engine's `backward()` and three Adam steps among them; the temperature's step alone is
  3% of the update), which only one compiled graph of the whole update removes; `torch.compile` of
  the critic's step did not pay on the AMD EPYC (31 s to compile, then no gain beyond noise), nor
  did stacking the twin critics into batched products or glibc's allocator thresholds. Measured
  there (Zen 3: AVX2, FMA; no AVX-512, no AMX) in float32: the 256³ product at 62-78 GFLOP/s in torch
  (MKL), 60-72 in numpy and 55-63 in JAX, so the 16 products of a SAC update cost every library
  ~8.5 ms; SBX's whole update 10.2 ms, pgrad's 18-20 ms. The sac/td3/ddpg-pendulum rows beside SB3
  are an earlier Intel Xeon VM's (the same CPU name, ~2.5× slower: SBX's SAC at 71 SPS there, 184
  here). (torch.profiler's `record_shapes` inflates the elementwise ops of an update 5-50×; the
  profile table below is taken without it, on the AMD EPYC with the other core training.)
- **Returns.** Both libraries are evaluated on the same 10 episode seeds. A2C at 100k steps on
  CartPole is bimodal for both (most runs converge to ~500 or stall near 60-180): over seeds 0-8
  (the two a2c rows) pgrad has 5 of 9 runs ≥ 465 (mean 360), SB3 6 of 9 (mean 379). PPO on
  Pendulum runs RL Zoo's own entry, gSDE included, for both (100k steps): −183.9 ± 24.5 vs
  −187.2 ± 31.6 (an earlier case without gSDE, 150k steps, seeds 3-8, is kept in
  results/history/). PPO on MountainCarContinuous (the Zoo's gSDE entry, 20k steps) is bimodal
  for both: two of three seeds reach the flag (pgrad −0.4/91.2/89.8, SB3 76.4/93.5/−0.1).
""".splitlines()


def profile_section(report: dict) -> list[str]:
    """The op-level profile of one update per case (benchmarks/op_profile.py) as a table."""
    rows = []
    for c in report["cases"]:
        sh = c["shares"]
        top = ", ".join(f"{t['op'].removeprefix('aten::')} {t['share']:.0%}" for t in c["top"][:3])
        rows.append(
            f"| {c['case']} | {c['update_ms']:.2f} | {c['ops_per_update']:,.0f} | {sh['matmul']:.0%} "
            f"| {sh['activations']:.0%} | {sh['optimizer']:.0%} | {top} |"
        )
    return [
        "",
        "## Where the time of an update goes (`python benchmarks/op_profile.py`)",
        "",
        f"torch.profiler over the updates of each case (its hyperparameters, random data of the right shapes, one "
        f'thread); machine: {report["machine"]}. Shares are of the profiled CPU time; "ops" counts every '
        "operator call, autograd's included.",
        "",
        "| case | ms per update | ops per update | matmul | activations (fwd+bwd) | optimizer | top three ops |",
        "| --- | --- | --- | --- | --- | --- | --- |",
        *rows,
    ]


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--quick", action="store_true", help="the CartPole cases and ppo-atari, seed 0")
    parser.add_argument("--cases", default=None, help="comma-separated case names")
    parser.add_argument("--seeds", default=None, help="comma-separated seeds")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--steps", type=int, default=None, help="override every case's budget (harness smoke test)")
    parser.add_argument("--out", default=str(RESULTS), help="results folder")
    parser.add_argument("--peer", default="sb3", choices=("sb3", "sbx"), help="the cases beside this peer")
    parser.add_argument("--no-sbx", action="store_true", help="leave SBX out of the cases that run it beside SB3")
    parser.add_argument("--worker", default=None, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:
        print(json.dumps(worker(json.loads(args.worker))))
        return
    names = (
        args.cases.split(",")
        if args.cases
        else [n for n, c in CASES.items() if (c["quick"] or not args.quick) and c.get("peer", "sb3") == args.peer]
    )
    seeds = [int(s) for s in args.seeds.split(",")] if args.seeds else ([0] if args.quick else [0, 1, 2])
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    with_sbx = not args.no_sbx and Path(SBX_PYTHON).is_file()
    if not with_sbx and not args.no_sbx and any("sbx" in CASES[n] and "peer" not in CASES[n] for n in names):
        print(f"SBX left out: no {SBX_PYTHON} (make bench and make bench-full build it)", flush=True)
    for name in names:
        case = CASES[name]
        floor_run = run_job({"case": name, "lib": "floor", "seed": 0, "threads": args.threads, "steps": args.steps})
        runs = []
        peer = case.get("peer", "sb3")
        libs = ["pgrad", peer] + (["sbx"] if with_sbx and "sbx" in case and peer != "sbx" else [])
        for seed in seeds:
            for lib in libs:  # alternate: A B C A B C
                run = run_job({"case": name, "lib": lib, "seed": seed, "threads": args.threads, "steps": args.steps})
                print(f"{name} {lib} seed {seed}: {run['sps']:,.0f} SPS, eval {run['eval_mean']:.1f}", flush=True)
                runs.append(run)
        summary = summarise(name, runs, floor_run["sps"], peer)
        versus = f", pgrad/sbx = {summary['ratio_sbx']:.2f}×" if "ratio_sbx" in summary else ""
        print(
            f"{name}: pgrad/{peer} = {summary['ratio']:.2f}×{versus}, "
            f"pgrad at {summary['pgrad_fraction_of_floor']:.0%} of floor"
        )
        (out / f"{name}.json").write_text(
            json.dumps(
                {
                    "case": name,
                    "env": case["env"],
                    "algo": case["algo"],
                    "steps": args.steps or case["steps"],
                    "hyperparameters": case["hp"],
                    "threads": args.threads,
                    "machine": machine(),
                    "pinned": args.threads == 1,
                    "commit": commit(),
                    "floor": floor_run,
                    "runs": runs,
                    "summary": summary,
                },
                indent=2,
            )
        )
    write_markdown(out)


if __name__ == "__main__":
    main()
