"""RL-Zoo hyperparameter files: real Zoo entries (kept here as data, as rl-baselines3-zoo's
hyperparams/*.yml hold them) translated field by field, runs from them, and one-line refusals."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

import pgrad
from pgrad.algos import get_algo
from pgrad.train import load_presets, resolve_config
from pgrad.zoo import ZooError, read_zoo

PPO_YML = """\
atari:
  env_wrapper:
    - stable_baselines3.common.atari_wrappers.AtariWrapper
  frame_stack: 4
  policy: 'CnnPolicy'
  n_envs: 8
  n_steps: 128
  n_epochs: 4
  batch_size: 256
  n_timesteps: !!float 1e7
  learning_rate: lin_2.5e-4
  clip_range: lin_0.1
  vf_coef: 0.5
  ent_coef: 0.01

# Tuned
Pendulum-v1:
  n_envs: 4
  n_timesteps: !!float 1e5
  policy: 'MlpPolicy'
  n_steps: 1024
  gae_lambda: 0.95
  gamma: 0.9
  n_epochs: 10
  ent_coef: 0.0
  learning_rate: !!float 1e-3
  clip_range: 0.2
  use_sde: True
  sde_sample_freq: 4

# Tuned
CartPole-v1:
  n_envs: 8
  n_timesteps: !!float 1e5
  policy: 'MlpPolicy'
  n_steps: 32
  batch_size: 256
  gae_lambda: 0.8
  gamma: 0.98
  n_epochs: 20
  ent_coef: 0.0
  learning_rate: lin_0.001
  clip_range: lin_0.2

LunarLander-v3:
  n_envs: 16
  n_timesteps: !!float 1e6
  policy: 'MlpPolicy'
  n_steps: 1024
  batch_size: 64
  gae_lambda: 0.98
  gamma: 0.999
  n_epochs: 4
  ent_coef: 0.01

HalfCheetah-v4:
  normalize: true
  n_envs: 1
  policy: 'MlpPolicy'
  n_timesteps: !!float 1e6
  batch_size: 64
  n_steps: 512
  gamma: 0.98
  learning_rate: 2.0633e-05
  ent_coef: 0.000401762
  clip_range: 0.1
  n_epochs: 20
  gae_lambda: 0.92
  max_grad_norm: 0.8
  vf_coef: 0.58096
  policy_kwargs: "dict(
                    log_std_init=-2,
                    ortho_init=False,
                    activation_fn=nn.ReLU,
                    net_arch=dict(pi=[256, 256], vf=[256, 256])
                  )"

CarRacing-v2:
  env_wrapper:
    - rl_zoo3.wrappers.FrameSkip:
        skip: 2
  frame_stack: 2
  normalize: "{'norm_obs': False, 'norm_reward': True}"
  n_envs: 8
  n_timesteps: !!float 4e6
  policy: 'CnnPolicy'
  policy_kwargs: "dict(log_std_init=-2,
                       ortho_init=False,
                       activation_fn=nn.GELU,
                       net_arch=dict(pi=[256], vf=[256]),
                       )"
"""

A2C_YML = """\
atari:
  env_wrapper:
    - stable_baselines3.common.atari_wrappers.AtariWrapper
  frame_stack: 4
  policy: 'CnnPolicy'
  n_envs: 16
  n_timesteps: !!float 1e7
  ent_coef: 0.01
  vf_coef: 0.25
  policy_kwargs: "dict(optimizer_class=RMSpropTFLike, optimizer_kwargs=dict(eps=1e-5))"

CartPole-v1:
  n_envs: 8
  n_timesteps: !!float 5e5
  policy: 'MlpPolicy'
  ent_coef: 0.0

# Almost tuned
Pendulum-v1:
  normalize: True
  n_envs: 8
  n_timesteps: !!float 1e6
  policy: 'MlpPolicy'
  ent_coef: 0.0
  max_grad_norm: 0.5
  n_steps: 8
  gae_lambda: 0.9
  vf_coef: 0.4
  gamma: 0.99
  use_rms_prop: True
  normalize_advantage: False
  learning_rate: lin_7e-4
  use_sde: True
  policy_kwargs: "dict(log_std_init=-2, ortho_init=False)"
"""

SAC_YML = """\
MountainCarContinuous-v0:
  n_timesteps: !!float 50000
  policy: 'MlpPolicy'
  learning_rate: !!float 3e-4
  buffer_size: 50000
  batch_size: 512
  ent_coef: 0.1
  train_freq: 32
  gradient_steps: 32
  gamma: 0.9999
  tau: 0.01
  learning_starts: 0
  use_sde: True
  policy_kwargs: "dict(log_std_init=-3.67, net_arch=[64, 64])"

# made up: a key of SB3's SAC pgrad has no counterpart for
BipedalWalker-v3:
  policy: 'MlpPolicy'
  use_sde: True
  use_sde_at_warmup: True

Pendulum-v1:
  # callback:
  #   - rl_zoo3.callbacks.ParallelTrainCallback
  n_timesteps: 20000
  policy: 'MlpPolicy'
  learning_rate: !!float 1e-3

LunarLanderContinuous-v3:
  n_timesteps: !!float 5e5
  policy: 'MlpPolicy'
  batch_size: 256
  learning_rate: lin_7.3e-4
  buffer_size: 1000000
  ent_coef: 'auto'
  gamma: 0.99
  tau: 0.01
  train_freq: 1
  gradient_steps: 1
  learning_starts: 10000
  policy_kwargs: "dict(net_arch=[400, 300])"
"""

TD3_YML = """\
Pendulum-v1:
  n_timesteps: 20000
  policy: 'MlpPolicy'
  gamma: 0.98
  buffer_size: 200000
  learning_starts: 10000
  noise_type: 'normal'
  noise_std: 0.1
  gradient_steps: -1
  train_freq: [1, "episode"]
  learning_rate: !!float 1e-3
  policy_kwargs: "dict(net_arch=[400, 300])"
"""

TRPO_YML = """\
# Tuned
CartPole-v1:
  n_envs: 2
  n_timesteps: !!float 1e5
  policy: 'MlpPolicy'
  n_steps: 512
  batch_size: 512
  cg_damping: !!float 1e-3
  gae_lambda: 0.98
  gamma: 0.99
  learning_rate: !!float 1e-3
  n_critic_updates: 20

HalfCheetahBulletEnv-v0: &pybullet-defaults
  normalize: true
  n_envs: 2
  n_timesteps: !!float 2e6
  policy: 'MlpPolicy'
  batch_size: 128
  n_steps: 1024
  sub_sampling_factor: 1
"""

FILES = {"ppo": PPO_YML, "a2c": A2C_YML, "sac": SAC_YML, "td3": TD3_YML, "trpo": TRPO_YML}


@pytest.fixture
def zoo(tmp_path):
    def path(algo: str):
        p = tmp_path / f"{algo}.yml"
        p.write_text(FILES[algo])
        return p

    return path


def entry(zoo, algo: str, env: str):
    return read_zoo(zoo(algo), algo, env, get_algo(algo).config_class)


@pytest.mark.parametrize(
    "algo, env, fields",
    [
        ("ppo", "CartPole-v1", dict(n_envs=8, total_steps=100_000, n_steps=32, batch_size=256, gae_lambda=0.8,
                                    gamma=0.98, n_epochs=20, ent_coef=0.0, learning_rate=0.001, lr_schedule="linear",
                                    clip_range=0.2, clip_range_schedule="linear")),
        ("ppo", "LunarLander-v3", dict(n_envs=16, total_steps=1_000_000, n_steps=1024, batch_size=64, gae_lambda=0.98,
                                       gamma=0.999, n_epochs=4, ent_coef=0.01)),
        ("ppo", "BreakoutNoFrameskip-v4", dict(preprocess="atari", frame_stack=4, n_envs=8, n_steps=128, n_epochs=4,
                                               batch_size=256, total_steps=10_000_000, learning_rate=2.5e-4,
                                               lr_schedule="linear", clip_range=0.1, clip_range_schedule="linear",
                                               vf_coef=0.5, ent_coef=0.01)),
        ("ppo", "HalfCheetah-v4", dict(normalize_obs=True, normalize_reward=True, n_envs=1, total_steps=1_000_000,
                                       batch_size=64, n_steps=512, gamma=0.98, learning_rate=2.0633e-05,
                                       ent_coef=0.000401762, clip_range=0.1, n_epochs=20, gae_lambda=0.92,
                                       max_grad_norm=0.8, vf_coef=0.58096, log_std_init=-2, ortho_init=False,
                                       activation="relu", hidden_sizes=(256, 256), vf_hidden_sizes=(256, 256))),
        ("a2c", "CartPole-v1", dict(n_envs=8, total_steps=500_000, ent_coef=0.0)),
        ("ppo", "Pendulum-v1", dict(n_envs=4, total_steps=100_000, n_steps=1024, gae_lambda=0.95, gamma=0.9, n_epochs=10,
                                    ent_coef=0.0, learning_rate=1e-3, clip_range=0.2, use_sde=True, sde_sample_freq=4)),
        ("a2c", "Pendulum-v1", dict(normalize_obs=True, normalize_reward=True, n_envs=8, total_steps=1_000_000,
                                    ent_coef=0.0, max_grad_norm=0.5, n_steps=8, gae_lambda=0.9, vf_coef=0.4, gamma=0.99,
                                    optimizer="rmsprop", normalize_advantage=False, learning_rate=7e-4,
                                    lr_schedule="linear", use_sde=True, log_std_init=-2, ortho_init=False)),
        ("sac", "Pendulum-v1", dict(total_steps=20_000, learning_rate=1e-3)),
        ("sac", "MountainCarContinuous-v0", dict(total_steps=50_000, learning_rate=3e-4, buffer_size=50_000,
                                                 batch_size=512, ent_coef=0.1, train_freq=32, gradient_steps=32,
                                                 gamma=0.9999, tau=0.01, learning_starts=0, use_sde=True,
                                                 log_std_init=-3.67, hidden_sizes=(64, 64))),
        ("sac", "LunarLanderContinuous-v3", dict(total_steps=500_000, batch_size=256, learning_rate=7.3e-4,
                                                 lr_schedule="linear", buffer_size=1_000_000, ent_coef=None, gamma=0.99,
                                                 tau=0.01, train_freq=1, gradient_steps=1, learning_starts=10_000,
                                                 hidden_sizes=(400, 300))),
        ("td3", "Pendulum-v1", dict(total_steps=20_000, gamma=0.98, buffer_size=200_000, learning_starts=10_000,
                                    noise="normal", noise_std=0.1, gradient_steps=-1, train_freq=1,
                                    train_freq_unit="episode", learning_rate=1e-3, hidden_sizes=(400, 300))),
        ("trpo", "CartPole-v1", dict(n_envs=2, total_steps=100_000, n_steps=512, batch_size=512, cg_damping=1e-3,
                                     gae_lambda=0.98, gamma=0.99, learning_rate=1e-3, n_critic_updates=20)),
    ],
)  # fmt: skip
def test_real_zoo_entries_translate_key_by_key(zoo, algo, env, fields):
    translated = entry(zoo, algo, env)
    assert translated.fields == fields
    cfg, sources, name = resolve_config(algo, env, zoo=translated)
    assert all(getattr(cfg, k) == v for k, v in fields.items())
    assert {k for k, v in sources.items() if v == "zoo"} == set(fields) and name.startswith("zoo:")


@pytest.mark.parametrize(
    "algo, env, message",
    [
        ("sac", "BipedalWalker-v3", "zoo key 'use_sde_at_warmup' is not supported by pgrad's sac"),
        ("a2c", "PongNoFrameskip-v4", "'RMSpropTFLike' is not supported"),
        ("ppo", "CarRacing-v2", "No module named 'rl_zoo3'"),
        ("ppo", "CartPole-v0", "has no entry for 'CartPole-v0'. Did you mean: CartPole-v1"),
    ],
)
def test_what_pgrad_cannot_translate_is_named(zoo, algo, env, message):
    with pytest.raises(ValueError, match=message.replace("(", r"\(").replace(".", r"\.")):
        entry(zoo, algo, env)


def test_policy_kwargs_are_read_without_running_code(tmp_path):
    marker = tmp_path / "ran"
    (tmp_path / "evil.yml").write_text(
        f"CartPole-v1:\n  policy_kwargs: \"__import__('pathlib').Path('{marker}').touch()\"\n"
    )
    with pytest.raises(ZooError, match="is not supported"):
        read_zoo(tmp_path / "evil.yml", "ppo", "CartPole-v1", get_algo("ppo").config_class)
    assert not marker.exists()
    (tmp_path / "gelu.yml").write_text('CartPole-v1:\n  policy_kwargs: "dict(activation_fn=nn.GELU)"\n')
    with pytest.raises(ZooError, match=r"'nn.GELU' is not supported"):
        read_zoo(tmp_path / "gelu.yml", "ppo", "CartPole-v1", get_algo("ppo").config_class)


def cli(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "pgrad.cli", *args], capture_output=True, text=True, timeout=300)


def test_cli_trains_from_a_zoo_entry_and_flags_override_it(zoo, tmp_path):
    run = tmp_path / "run"
    result = cli("train", "ppo", "--zoo-file", str(zoo("ppo")), "--env", "CartPole-v1", "--total-steps", "512",
                 "--run-dir", str(run), "--eval-episodes", "1")  # fmt: skip
    assert result.returncode == 0, result.stderr[-2000:]
    data = json.loads((run / "config.json").read_text())
    assert data["preset"] == f"zoo:{zoo('ppo')}#CartPole-v1"
    assert data["config"]["n_steps"] == 32 and data["sources"]["n_steps"] == "zoo"
    assert data["config"]["total_steps"] == 512 and data["sources"]["total_steps"] == "user"
    assert data["config"]["lr_schedule"] == "linear" and data["sources"]["lr_schedule"] == "zoo"


def test_cli_td3_pendulum_zoo_entry_trains_after_each_episode(zoo, tmp_path):
    """train_freq [1, episode] with gradient_steps -1: a round at each episode's end, with one gradient
    step per env step of the episode (200 for Pendulum)."""
    counts = []

    class Count(pgrad.Callback):
        def on_update(self, step, metrics):
            counts.append(step)

    pgrad.train("td3", env="Pendulum-v1", zoo_file=zoo("td3"), total_steps=600, learning_starts=200,
                run_dir=str(tmp_path / "r"), eval_episodes=0, callbacks=[Count()])  # fmt: skip
    assert counts == [200, 400, 600]
    result = cli("train", "td3", "--zoo-file", str(zoo("td3")), "--env", "Pendulum-v1", "--preset", "none")
    assert result.returncode == 2 and "give one of --zoo-file and --preset" in result.stderr


def test_gradient_steps_minus_one_takes_one_step_per_env_step(tmp_path):
    from pgrad.train import Trainer

    cfg, _, _ = resolve_config("td3", "Pendulum-v1", "none", dict(train_freq=1, train_freq_unit="episode",
                               gradient_steps=-1, learning_starts=0, total_steps=400, hidden_sizes=(16,),
                               run_dir=str(tmp_path / "r"), n_envs=2))  # fmt: skip
    (tmp_path / "r").mkdir()
    trainer = Trainer("td3", cfg, tmp_path / "r")
    algo, calls = trainer.loop.algo, []
    update = algo.update
    algo.update = lambda batch: calls.append(trainer.loop.global_step) or update(batch)
    trainer.run()
    assert calls == [400] * 400  # both envs' episodes end at vector step 200: 400 env steps, 400 gradient steps


def test_zoo_cli_errors_are_one_line(zoo, tmp_path):
    for algo, args, message in (
        ("ppo", ["--zoo-file", str(tmp_path / "none.yml")], "no such file"),
        (
            "sac",
            ["--zoo-file", str(zoo("sac")), "--env", "BipedalWalker-v3"],
            "zoo key 'use_sde_at_warmup' is not supported",
        ),
    ):
        result = cli("train", algo, *args, "--run-dir", str(tmp_path / "x"))
        assert result.returncode == 2 and message in result.stderr, result.stderr
        assert len(result.stderr.strip().splitlines()) == 1 and not (tmp_path / "x").exists()


def test_off_policy_linear_learning_rate_decays_every_optimiser(tmp_path):
    """SB3's lin_ schedule for SAC (Zoo's LunarLanderContinuous): each round sets actor, critic and
    temperature learning rates to lr · (1 − step / total)."""
    from pgrad.algos.base import optimizers_of
    from pgrad.train import Trainer

    cfg, _, _ = resolve_config("sac", "Pendulum-v1", "none", dict(lr_schedule="linear", learning_rate=1e-3,
                               learning_starts=100, total_steps=300, hidden_sizes=(16,), run_dir=str(tmp_path / "r")))  # fmt: skip
    (tmp_path / "r").mkdir()
    trainer = Trainer("sac", cfg, tmp_path / "r")
    algo, seen = trainer.loop.algo, []
    assert len(optimizers_of(algo)) == 3  # actor, critics, temperature
    update = algo.update
    algo.update = lambda batch: seen.append((trainer.loop.global_step, [o.param_groups[0]["lr"] for o in
                                             optimizers_of(algo)])) or update(batch)  # fmt: skip
    trainer.run()
    assert [step for step, _ in seen] == list(range(100, 301))
    for step, lrs in seen:
        assert lrs == pytest.approx([1e-3 * (1 - step / 300)] * 3)


PPO_LSTM_YML = """\
CartPoleNoVel-v1:
  normalize: true
  n_envs: 8
  n_timesteps: !!float 1e5
  policy: 'MlpLstmPolicy'
  n_steps: 32
  batch_size: 256
  gae_lambda: 0.8
  gamma: 0.98
  n_epochs: 20
  ent_coef: 0.0
  learning_rate: lin_0.001
  clip_range: lin_0.2
  policy_kwargs: "dict(
    ortho_init=False,
    activation_fn=nn.ReLU,
    lstm_hidden_size=64,
    enable_critic_lstm=True,
    net_arch=dict(pi=[64], vf=[64])
    )"
MountainCarNoVel-v0:
  policy: 'MlpLstmPolicy'
  policy_kwargs: "dict(enable_critic_lstm=False, lstm_hidden_size=32)"
"""  # rl-baselines3-zoo hyperparams/ppo_lstm.yml (sb3-contrib's RecurrentPPO); the second entry made up


def test_a_recurrent_ppo_zoo_entry_is_pgrads_preset(tmp_path):
    path = tmp_path / "ppo_lstm.yml"
    path.write_text(PPO_LSTM_YML)
    translated = read_zoo(path, "ppo", "CartPoleNoVel-v1", get_algo("ppo").config_class)
    assert translated.fields.pop("total_steps") == 100_000
    assert translated.fields == load_presets()["ppo"]["CartPoleNoVel-v1"] | {"hidden_sizes": (64,),
                                                                              "vf_hidden_sizes": (64,)}  # fmt: skip
    cfg = resolve_config("ppo", "CartPoleNoVel-v1", zoo=translated)[0]
    assert (cfg.rnn, cfg.rnn_hidden_size, cfg.rnn_shared, cfg.hidden_sizes) == ("lstm", 64, False, (64,))
    with pytest.raises(ZooError, match="enable_critic_lstm=False without shared_lstm is not supported"):
        read_zoo(path, "ppo", "MountainCarNoVel-v0", get_algo("ppo").config_class)
    with pytest.raises(ZooError, match="sac has no 'rnn' field"):
        read_zoo(path, "sac", "CartPoleNoVel-v1", get_algo("sac").config_class)


# rl-baselines3-zoo hyperparams/{ppo,trpo,sac,td3}.yml, their MuJoCo entries (v4 env ids) as the Zoo has them
# (PPO's HalfCheetah-v4 is in PPO_YML above)
MUJOCO_YML = {
    "ppo": """\
Ant-v4: &mujoco-defaults
  normalize: true
  n_timesteps: !!float 1e6
  policy: 'MlpPolicy'

Hopper-v4:
  normalize: true
  n_envs: 1
  policy: 'MlpPolicy'
  n_timesteps: !!float 1e6
  batch_size: 32
  n_steps: 512
  gamma: 0.999
  learning_rate: 9.80828e-05
  ent_coef: 0.00229519
  clip_range: 0.2
  n_epochs: 5
  gae_lambda: 0.99
  max_grad_norm: 0.7
  vf_coef: 0.835671
  policy_kwargs: "dict(
                    log_std_init=-2,
                    ortho_init=False,
                    activation_fn=nn.ReLU,
                    net_arch=dict(pi=[256, 256], vf=[256, 256])
                  )"

Walker2d-v4:
  normalize: true
  n_envs: 1
  policy: 'MlpPolicy'
  n_timesteps: !!float 1e6
  batch_size: 32
  n_steps: 512
  gamma: 0.99
  learning_rate: 5.05041e-05
  ent_coef: 0.000585045
  clip_range: 0.1
  n_epochs: 20
  gae_lambda: 0.95
  max_grad_norm: 1
  vf_coef: 0.871923
""",
    "trpo": """\
HalfCheetahBulletEnv-v0: &pybullet-defaults
  normalize: true
  n_envs: 2
  n_timesteps: !!float 2e6
  policy: 'MlpPolicy'
  batch_size: 128
  n_steps: 1024
  gamma: 0.99
  gae_lambda: 0.95
  sub_sampling_factor: 1
  cg_max_steps: 25
  cg_damping: 0.1
  n_critic_updates: 20
  learning_rate: !!float 1e-3

Ant-v4: &mujoco-defaults
  <<: *pybullet-defaults
  n_timesteps: !!float 1e6

HalfCheetah-v4:
  <<: *mujoco-defaults
  target_kl: 0.04

Hopper-v4:
  <<: *mujoco-defaults

Walker2d-v4:
  <<: *mujoco-defaults
""",
    "sac": """\
HalfCheetah-v4: &mujoco-defaults
  n_timesteps: !!float 1e6
  policy: 'MlpPolicy'
  learning_starts: 10000

Ant-v4:
  <<: *mujoco-defaults

Hopper-v4:
  <<: *mujoco-defaults

Walker2d-v4:
  <<: *mujoco-defaults
""",
    "td3": """\
HalfCheetah-v4: &mujoco-defaults
  n_timesteps: !!float 1e6
  policy: 'MlpPolicy'
  learning_starts: 10000
  noise_type: 'normal'
  noise_std: 0.1
  train_freq: 1
  gradient_steps: 1
  learning_rate: !!float 1e-3
  batch_size: 256
  policy_kwargs: "dict(net_arch=[400, 300])"

Ant-v4:
  <<: *mujoco-defaults

Hopper-v4:
  <<: *mujoco-defaults

Walker2d-v4:
  <<: *mujoco-defaults
""",
}


@pytest.mark.parametrize("algo", sorted(MUJOCO_YML))
@pytest.mark.parametrize("env", ["HalfCheetah-v5", "Hopper-v5", "Walker2d-v5", "Ant-v5"])
def test_mujoco_presets_are_the_zoo_entries(tmp_path, algo, env):
    """`pgrad train ALGO --env Hopper-v5` trains with the Zoo's tuned hyperparameters for the env, field for field."""
    path = tmp_path / f"{algo}.yml"
    path.write_text(MUJOCO_YML[algo] + (PPO_YML if algo == "ppo" else ""))  # PPO_YML has its HalfCheetah-v4
    translated = read_zoo(path, algo, env.replace("-v5", "-v4"), get_algo(algo).config_class).fields
    preset = {k: tuple(v) if isinstance(v, list) else v for k, v in load_presets()[algo][env].items()}
    assert preset == translated
    cfg = resolve_config(algo, env)[0]
    assert all(getattr(cfg, k) == v for k, v in translated.items())


@pytest.mark.parametrize("algo, env", [("ppo", "LunarLander-v3"), ("sac", "LunarLanderContinuous-v3")])
def test_box2d_presets_are_the_zoo_entries(zoo, algo, env):
    """The Box2D rows of benchmarks/mujoco.md train with the Zoo's entries (SAC's `ent_coef: 'auto'`
    is its default, None, so the preset need not say it)."""
    translated = entry(zoo, algo, env).fields
    cfg = resolve_config(algo, env)[0]
    assert {k: getattr(cfg, k) for k in translated} == translated
    preset = {k: tuple(v) if isinstance(v, list) else v for k, v in load_presets()[algo][env].items()}
    assert preset == {k: v for k, v in translated.items() if not (algo == "sac" and k == "ent_coef")}


def test_a_trpo_zoo_entry_that_subsamples_is_refused(tmp_path):
    path = tmp_path / "trpo.yml"
    path.write_text(MUJOCO_YML["trpo"].replace("sub_sampling_factor: 1", "sub_sampling_factor: 4"))
    with pytest.raises(ZooError, match="'sub_sampling_factor: 4' is not supported: pgrad's trpo takes every sample"):
        read_zoo(path, "trpo", "Hopper-v4", get_algo("trpo").config_class)
