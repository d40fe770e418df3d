"""Every standard space: observation layouts and encoders, every algorithm family on every kind of
observation and action space (a few updates, then save → load → act), and learning on images,
Dict observations and MultiDiscrete actions, with envs of this file's own making."""

from __future__ import annotations

import json
import subprocess
import sys

import gymnasium as gym
import numpy as np
import pytest
import torch
from gymnasium import spaces

import pgrad
from pgrad.algos import get_algo
from pgrad.algos.base import OffPolicyLoop, OnPolicyLoop
from pgrad.encoders import ImageEncoder, ObsEncoder, needs_encoder
from pgrad.envs import ActionMap, Normalizer, VecEnv
from pgrad.spaces import ObsLayout, action_storage, signature, space_from_json, space_to_json
from pgrad.train import resolve_config

IMAGE = spaces.Box(0, 255, (10, 10, 3), np.uint8)
DICT = spaces.Dict(
    {
        "camera": IMAGE,
        "imu": spaces.Box(-1.0, 1.0, (3,), np.float32),
        "mode": spaces.Discrete(4, start=1),
        "nested": spaces.Dict({"gears": spaces.MultiDiscrete([2, 3]), "speed": spaces.Box(-5.0, 5.0, (), np.float32)}),
    }
)
OBSERVATIONS = {
    "image-small": IMAGE,
    "image-nature": spaces.Box(0, 255, (4, 36, 36), np.uint8),
    "dict": DICT,
    "tuple": spaces.Tuple([spaces.Box(-1.0, 1.0, (2,), np.float32), spaces.Discrete(3)]),
    "discrete": spaces.Discrete(5),
    "multi-discrete": spaces.MultiDiscrete([3, 4]),
    "multi-binary": spaces.MultiBinary(4),
    "box-2d": spaces.Box(-1.0, 1.0, (2, 3), np.float32),
    "box-scalar": spaces.Box(-1.0, 1.0, (), np.float32),
    "dict-of-one-box": spaces.Dict({"state": spaces.Box(-1.0, 1.0, (3,), np.float32)}),
}
ACTIONS = {
    "discrete-start": spaces.Discrete(3, start=-1),
    "multi-discrete": spaces.MultiDiscrete([2, 3]),
    "multi-binary": spaces.MultiBinary(3),
    "box-2x2": spaces.Box(-2.0, 2.0, (2, 2), np.float32),
}


class SpaceEnv(gym.Env):
    """Random observations of any space; asserts every action it gets is inside its action space."""

    def __init__(self, observation_space: gym.Space, action_space: gym.Space, horizon: int = 12):
        self.observation_space, self.action_space, self.horizon = observation_space, action_space, horizon

    def reset(self, *, seed=None, options=None):
        super().reset(seed=seed)
        self.observation_space.seed(int(self.np_random.integers(2**31)))
        self.t = 0
        return self.observation_space.sample(), {}

    def step(self, action):
        assert self.action_space.contains(np.asarray(action, self.action_space.dtype).reshape(self.action_space.shape) if
                                          not isinstance(self.action_space, spaces.Discrete) else action), action  # fmt: skip
        self.t += 1
        return self.observation_space.sample(), 1.0, False, self.t >= self.horizon, {}


def sizes(algo: str) -> dict:
    if algo in ("ppo", "trpo", "npg"):
        return {"n_steps": 16, "batch_size": 16, "n_envs": 2}
    if algo == "a2c":
        return {"n_steps": 8, "n_envs": 2}
    if algo == "reinforce":
        return {"episodes_per_update": 2, "n_envs": 2}
    return {"learning_starts": 16, "batch_size": 8, "buffer_size": 100}


def round_trip(algo, observation_space, action_space, tmp_path, **fields):
    """Train a few updates, load the saved agent, act on one observation and on a batch."""
    run_dir = tmp_path / "run"
    agent = pgrad.train(algo, env=lambda: SpaceEnv(observation_space, action_space), total_steps=64, preset="none",
                        run_dir=str(run_dir), eval_episodes=1, tensorboard=False, **sizes(algo) | fields)  # fmt: skip
    loaded = pgrad.load(run_dir)
    obs = [observation_space.sample() for _ in range(3)]
    for policy in (agent, loaded):
        one = policy.act(obs[0])
        assert action_space.contains(one if isinstance(action_space, spaces.Discrete) else np.asarray(one))
    batch = _stack(observation_space, obs)
    one_by_one = np.stack([np.asarray(agent.act(o)) for o in obs])  # a batch's rounding differs by ulps
    np.testing.assert_allclose(loaded.act(batch), one_by_one, rtol=1e-5, atol=1e-6)
    return agent, loaded


def _stack(space, obs: list):
    if isinstance(space, spaces.Dict):
        return {k: _stack(s, [o[k] for o in obs]) for k, s in space.spaces.items()}
    if isinstance(space, spaces.Tuple):
        return tuple(_stack(s, [o[i] for o in obs]) for i, s in enumerate(space.spaces))
    return np.stack(obs)


# ---- every algorithm family on every observation space, every on-policy one on every action space ----


OBS_ALGOS = [("ppo", ACTIONS["discrete-start"]), ("trpo", ACTIONS["box-2x2"]), ("reinforce", ACTIONS["discrete-start"]),
             ("sac", ACTIONS["box-2x2"]), ("td3", ACTIONS["box-2x2"]), ("sac-discrete", ACTIONS["discrete-start"])]  # fmt: skip


@pytest.mark.parametrize("obs_name", OBSERVATIONS)
@pytest.mark.parametrize("algo, action_space", OBS_ALGOS, ids=[a for a, _ in OBS_ALGOS])
def test_every_algorithm_family_trains_saves_and_acts_on_every_observation_space(
    algo, action_space, obs_name, tmp_path
):
    observation_space = OBSERVATIONS[obs_name]
    normalize = obs_name in ("dict", "tuple", "box-2d")  # numeric leaves only: images, indices never
    round_trip(algo, observation_space, action_space, tmp_path, normalize_obs=normalize)


@pytest.mark.parametrize("action_name", ACTIONS)
@pytest.mark.parametrize("algo", ["ppo", "a2c", "trpo", "npg", "reinforce"])
def test_every_on_policy_algorithm_takes_every_action_space(algo, action_name, tmp_path):
    round_trip(algo, DICT, ACTIONS[action_name], tmp_path)


def test_sac_v1_and_ddpg_take_images_with_an_encoder_per_network(tmp_path):
    agent, _ = round_trip("sac", DICT, ACTIONS["box-2x2"], tmp_path / "sac", variant="v1")
    algo_nets = [m for m in agent.policy.modules() if isinstance(m, ObsEncoder)]
    assert len(algo_nets) == 1  # the actor's own; the critics and V have theirs (not the agent's)
    round_trip("ddpg", IMAGE, ACTIONS["box-2x2"], tmp_path / "ddpg")


def test_off_policy_algorithms_refuse_multi_discrete_actions_naming_who_takes_them(tmp_path):
    with pytest.raises(ValueError, match="MultiDiscrete and MultiBinary ones ppo, a2c, trpo, npg or reinforce"):
        round_trip("sac", IMAGE, ACTIONS["multi-discrete"], tmp_path)


def test_the_registry_pgrad_list_and_the_readme_name_the_action_spaces_each_algorithm_takes():
    from pathlib import Path

    from pgrad.algos import ALGORITHMS

    kinds = {"Discrete": ACTIONS["discrete-start"], "MultiDiscrete": ACTIONS["multi-discrete"],
             "MultiBinary": ACTIONS["multi-binary"], "Box": ACTIONS["box-2x2"]}  # fmt: skip
    for name, entry in ALGORITHMS.items():
        cfg = resolve_config(name, "SpaceEnv", "none", {"n_envs": 2}, registered=False)[0]
        for kind, space in kinds.items():
            try:
                entry.algo_class(cfg, DICT, space, torch.device("cpu"))
                takes = True
            except ValueError:
                takes = False
            assert takes == (kind in entry.actions), (name, kind)
    readme = Path(__file__).parents[1].joinpath("README.md").read_text()
    table = readme.split("## Spaces, pixels and Atari")[1].split("\n\n")[2]
    listed = {}
    for row in table.splitlines()[2:]:
        algos, _, actions = (cell.strip() for cell in row.strip("| ").split(" | "))
        for algo in algos.replace("`", "").replace(" (all three losses)", "").replace(" (v1 and v2)", "").split(", "):
            listed[algo] = actions
    assert set(listed) == set(ALGORITHMS)
    for name, entry in ALGORITHMS.items():
        assert [a.split(" ")[0] for a in listed[name].split(", ")] == list(entry.actions), name


# ---- layouts: storage in each leaf's dtype, packing, normalisation of numeric leaves only ----


def test_a_plain_vector_is_stored_as_before_and_needs_no_encoder():
    layout = ObsLayout(spaces.Box(-1.0, 1.0, (4,), np.float32))
    assert layout.trivial and layout.shape == (4,) and layout.dtype == "float32" and not needs_encoder(layout)
    scalar = ObsLayout(spaces.Box(-1.0, 1.0, (), np.float32))
    assert scalar.shape == (1,) and not needs_encoder(scalar)  # a scalar Box is a 1-vector


def test_images_are_detected_as_sb3_does_and_the_flag_overrides():
    last, first = (
        ObsLayout(spaces.Box(0, 255, (84, 84, 4), np.uint8)),
        ObsLayout(spaces.Box(0, 255, (4, 84, 84), np.uint8)),
    )
    assert last.leaves[0].kind == first.leaves[0].kind == "image"
    assert not last.leaves[0].channels_first and first.leaves[0].channels_first
    assert last.dtype == "uint8" and last.nbytes == 84 * 84 * 4  # one byte a pixel in every buffer
    assert ObsLayout(spaces.Box(0, 255, (84, 84, 4), np.uint8), "off").leaves[0].kind == "box"
    assert ObsLayout(spaces.Box(0, 1, (8, 8, 3), np.float32)).leaves[0].kind == "box"  # not uint8 0..255
    forced = ObsLayout(spaces.Box(0, 1, (8, 8, 3), np.float32), "channels-last").leaves[0]
    assert forced.kind == "image" and not forced.channels_first and forced.dtype == "float32"
    with pytest.raises(ValueError, match="images='sideways' is invalid"):
        ObsLayout(IMAGE, "sideways")


def test_a_dict_is_packed_aligned_and_unpacks_to_every_leaf_exactly():
    layout = ObsLayout(DICT)
    assert layout.packed and layout.dtype == "uint8" and layout.shape[0] % 8 == 0
    for leaf in layout.leaves:
        assert leaf.offset % np.dtype(leaf.dtype).itemsize == 0
    DICT.seed(0)
    obs = [DICT.sample() for _ in range(5)]
    stored = layout.store(_stack(DICT, obs), 5)
    assert stored.shape == (5, layout.shape[0])
    leaves = {
        leaf.name: x.numpy() for leaf, x in zip(layout.leaves, layout.unpack(torch.as_tensor(stored)), strict=True)
    }
    np.testing.assert_array_equal(leaves["camera"], np.stack([o["camera"] for o in obs]))
    np.testing.assert_array_equal(leaves["imu"], np.stack([o["imu"] for o in obs]))
    np.testing.assert_array_equal(leaves["mode"][:, 0], np.array([o["mode"] for o in obs]) - 1)  # index = x − start
    np.testing.assert_array_equal(leaves["nested.gears"], np.stack([o["nested"]["gears"] for o in obs]))
    np.testing.assert_array_equal(leaves["nested.speed"][:, 0], np.array([o["nested"]["speed"] for o in obs]))
    # time-major buffers ([T, N, row]) and minibatch rows unpack the same way
    torch.testing.assert_close(
        layout.unpack(torch.as_tensor(stored).view(5, 1, -1))[0][:, 0], layout.unpack(torch.as_tensor(stored))[0]
    )


def test_dict_normalisation_touches_the_box_leaves_only():
    layout = ObsLayout(DICT)
    DICT.seed(1)
    obs = layout.store(_stack(DICT, [DICT.sample() for _ in range(64)]), 64)
    norm = Normalizer(layout.numeric_shape, normalize_obs=True, layout=layout)
    assert norm.obs_shape == (4,)  # imu (3) and speed (1)
    norm.update_obs(obs)
    out = norm.obs(obs)
    before, after = layout.unpack(torch.as_tensor(obs)), layout.unpack(torch.as_tensor(out))
    for leaf, x, y in zip(layout.leaves, before, after, strict=True):
        if leaf.kind != "box":
            assert torch.equal(x, y), leaf.name  # images and indices untouched, byte for byte
    numeric = layout.get_numeric(obs)
    expected = np.clip((numeric - norm.obs_rms.mean) / np.sqrt(norm.obs_rms.var + 1e-8), -10, 10)
    np.testing.assert_allclose(layout.get_numeric(out), expected, rtol=1e-5, atol=1e-6)
    torch.testing.assert_close(norm.obs_tensor(torch.as_tensor(obs)), torch.as_tensor(out))  # replay samples: the same


def test_normalize_obs_on_an_image_only_env_is_refused(tmp_path):
    with pytest.raises(ValueError, match="normalize_obs=True is invalid .* no Box part that is not an image"):
        round_trip("ppo", IMAGE, ACTIONS["discrete-start"], tmp_path, normalize_obs=True)


@pytest.mark.parametrize("space", [DICT, *OBSERVATIONS.values(), *ACTIONS.values()], ids=str)
def test_every_space_round_trips_through_json(space):
    data = json.loads(json.dumps(space_to_json(space)))
    assert space_from_json(data) == space
    assert signature(space_from_json(data)) == signature(space)


@pytest.mark.parametrize(
    "data, fragment",
    [
        ({"type": "Graph"}, "is not a space pgrad saves"),
        ({"type": "Box", "shape": [2], "low": [0, 1, 2], "high": 1.0}, "bounds do not have its shape"),
        ({"type": "Box", "shape": [2], "low": 0.0, "high": 1.0, "dtype": "object"}, "dtype 'object' is invalid"),
        ({"type": "Discrete", "n": 0}, "n=0, start=0 is invalid"),
        ({"type": "MultiDiscrete", "nvec": [2, 0], "start": [0, 0]}, "nvec >= 1"),
        ({"type": "Dict", "spaces": [[1, {"type": "Discrete", "n": 2}]]}, "not [key, space] pairs"),
    ],
)
def test_a_tampered_space_is_refused_naming_what_is_wrong(data, fragment):
    with pytest.raises(ValueError, match=fragment.replace("[", r"\[").replace("]", r"\]")):
        space_from_json(data)


def test_agent_act_refuses_observations_that_do_not_fit_in_one_line(tmp_path):
    _, agent = round_trip("ppo", DICT, ACTIONS["multi-discrete"], tmp_path)
    obs = DICT.sample()
    for bad, fragment in [
        ({k: v for k, v in obs.items() if k != "imu"}, "has no entry 'imu'"),
        (obs | {"mode": 9}, "mode holds a value outside its space"),
        (obs | {"imu": np.array([np.nan, 0.0, 0.0], np.float32)}, "imu holds NaN or inf"),
        (obs | {"camera": np.zeros((9, 10, 3), np.uint8)}, "camera of shape (9, 10, 3) does not fit"),
        (obs | {"imu": "abc"}, "is not an array of numbers"),
    ]:
        with pytest.raises(ValueError, match=fragment.replace("(", r"\(").replace(")", r"\)")):
            agent.act(bad)


# ---- actions ----


def test_action_map_restores_start_shape_and_dtype():
    assert ActionMap(spaces.Discrete(3, start=-1))(np.array([0, 2])).tolist() == [-1, 1]
    multi = ActionMap(spaces.MultiDiscrete([[2, 3], [4, 5]], start=[[1, 1], [0, 0]]))
    out = multi(np.array([[1, 2, 3, 4]]))
    assert out.shape == (1, 2, 2) and out.tolist() == [[[2, 3], [3, 4]]]
    binary = ActionMap(spaces.MultiBinary(3))(np.array([[1.0, 0.0, 1.0]]))
    assert binary.dtype == np.int8 and binary.tolist() == [[1, 0, 1]]
    box = ActionMap(spaces.Box(-2.0, 2.0, (2, 2), np.float32), "rescale")(np.array([[1.0, -1.0, 0.0, 0.5]], np.float32))
    np.testing.assert_allclose(box, [[[2.0, -2.0], [0.0, 1.0]]])
    assert action_storage(spaces.MultiDiscrete([2, 3]))[1] == torch.int64
    assert action_storage(spaces.Box(-1, 1, (2, 2)))[0] == (4,)


# ---- encoders ----


def test_nature_cnn_is_the_dqn_one_and_scales_uint8_by_1_over_255():
    layout = ObsLayout(spaces.Box(0, 255, (4, 84, 84), np.uint8))
    encoder = ImageEncoder(layout.leaves[0])
    convs = [m for m in encoder.modules() if isinstance(m, torch.nn.Conv2d)]
    assert [(c.out_channels, c.kernel_size, c.stride) for c in convs] == [(32, (8, 8), (4, 4)), (64, (4, 4), (2, 2)),
                                                                          (64, (3, 3), (1, 1))]  # fmt: skip
    assert encoder.linear.in_features == 64 * 7 * 7 and encoder.out_dim == 512
    x = torch.randint(0, 256, (2, 4, 84, 84), dtype=torch.uint8)
    by_hand = torch.relu(encoder.linear(encoder.cnn(x.float() / 255.0)))
    torch.testing.assert_close(encoder(x), by_hand)


def test_channels_last_images_are_permuted_and_small_ones_get_the_small_cnn():
    first = ImageEncoder(ObsLayout(spaces.Box(0, 255, (3, 10, 10), np.uint8)).leaves[0])
    last = ImageEncoder(ObsLayout(spaces.Box(0, 255, (10, 10, 3), np.uint8)).leaves[0])
    assert first.kind == last.kind == "small" and first.out_dim == 256
    last.load_state_dict(first.state_dict())
    x = torch.randint(0, 256, (2, 3, 10, 10), dtype=torch.uint8)
    torch.testing.assert_close(last(x.permute(0, 2, 3, 1)), first(x))
    tiny = ImageEncoder(ObsLayout(spaces.Box(0, 255, (3, 3, 2), np.uint8)).leaves[0])  # MiniGrid-sized
    assert tiny(torch.zeros(1, 3, 3, 2, dtype=torch.uint8)).shape == (1, 256)


def test_discrete_leaves_are_one_hot_and_the_dict_encoding_concatenates_them():
    encoder = ObsEncoder(ObsLayout(spaces.Dict({"d": spaces.Discrete(3, start=2), "m": spaces.MultiDiscrete([2, 3])})))
    layout = encoder.layout
    stored = torch.as_tensor(layout.store({"d": np.array([4]), "m": np.array([[1, 0]])}, 1))
    assert encoder(stored).tolist() == [[0, 0, 1, 0, 1, 1, 0, 0]]  # d = 4 → index 2; m = (1, 0)


def test_replay_and_rollout_buffers_store_images_as_uint8():
    env = VecEnv(pgrad.EnvSpec.from_user(lambda: SpaceEnv(IMAGE, ACTIONS["discrete-start"])), 2, 0)
    cpu = torch.device("cpu")
    for algo, fields in (("sac-discrete", {"buffer_size": 64}), ("ppo", {"n_steps": 8, "batch_size": 16})):
        cfg, _, _ = resolve_config(algo, "SpaceEnv", "none", fields | {"n_envs": 2}, registered=False)
        learner = get_algo(algo).algo_class(cfg, env.observation_space, env.action_space, cpu)
        if algo == "ppo":
            loop = OnPolicyLoop(learner, env, cfg.n_steps, 64, cpu)
            loop.collect()
            stored = loop.buf.obs
            assert stored.shape == (8, 2, 10, 10, 3)
        else:
            loop = OffPolicyLoop(learner, env, cfg, cpu)
            stored = loop.buffer.obs
            assert stored.shape == (64, 10, 10, 3)  # 300 bytes a frame, not 1,200
        assert stored.dtype == torch.uint8
    env.close()


# ---- the CLI, frame stacks and a saved run evaluated in a new process ----


def test_frame_stack_of_vectors_trains_and_a_new_process_evaluates_it(tmp_path):
    run_dir = tmp_path / "stack"
    cli = [sys.executable, "-m", "pgrad.cli"]
    train = subprocess.run([*cli, "train", "ppo", "--env", "CartPole-v1", "--frame-stack", "3", "--total-steps", "256",
                            "--n-steps", "64", "--batch-size", "64", "--run-dir", str(run_dir), "--preset", "none",
                            "--eval-episodes", "0", "--no-progress-bar"], capture_output=True, text=True)  # fmt: skip
    assert train.returncode == 0, train.stderr[-2000:]
    agent = pgrad.load(run_dir)
    assert agent.observation_space.shape == (3, 4)
    record = json.loads((run_dir / "agent.json").read_text())["env_spec"]
    assert record["wrappers"] == [{"path": "pgrad.wrappers:frame_stack", "kwargs": {"stack_size": 3}}]
    result = subprocess.run([*cli, "eval", str(run_dir), "--episodes", "2"], capture_output=True, text=True)
    assert result.returncode == 0, result.stderr[-2000:]


# ---- learning: images, Dict observations, MultiDiscrete actions ----


class LitQuadrant(gym.Env):
    """A 10×10 image with one lit cell: act with the quadrant it lies in (Discrete(4)). With
    ``dict_obs``, a vector key ``flip`` of ±1 says whether the answer is the opposite quadrant, so
    only a policy that reads both keys beats 0.5 a step. 8 steps an episode, reward 1 when right:
    a random policy makes 2 an episode."""

    def __init__(self, dict_obs: bool = False):
        image = spaces.Box(0, 255, (10, 10, 1), np.uint8)
        self.dict_obs = dict_obs
        self.observation_space = (
            spaces.Dict({"image": image, "flip": spaces.Box(-1, 1, (1,), np.float32)}) if dict_obs else image
        )
        self.action_space = spaces.Discrete(4)

    def _observe(self):
        self.quadrant = int(self.np_random.integers(4))
        self.flip = bool(dict_obs_flip := self.dict_obs and self.np_random.integers(2))
        r, c = self.np_random.integers(5, size=2) + 5 * np.array([self.quadrant // 2, self.quadrant % 2])
        image = np.zeros((10, 10, 1), np.uint8)
        image[r, c] = 255
        if not self.dict_obs:
            return image
        return {"image": image, "flip": np.array([1.0 if dict_obs_flip else -1.0], np.float32)}

    def reset(self, *, seed=None, options=None):
        super().reset(seed=seed)
        self.t = 0
        return self._observe(), {}

    def step(self, action):
        answer = (self.quadrant + 2) % 4 if self.flip else self.quadrant
        reward = float(int(action) == answer)
        self.t += 1
        return self._observe(), reward, False, self.t >= 8, {}


class MatchTwo(gym.Env):
    """Observe a target pair (one-hot of 3 and of 4 values) and act MultiDiscrete([3, 4]): reward ½
    for each index matched, 8 steps an episode (random: 8 · (1/3 + 1/4)/2 ≈ 2.33, best 8)."""

    observation_space = spaces.Box(0.0, 1.0, (7,), np.float32)
    action_space = spaces.MultiDiscrete([3, 4])

    def _observe(self):
        self.target = np.array([self.np_random.integers(3), self.np_random.integers(4)])
        obs = np.zeros(7, np.float32)
        obs[self.target[0]] = obs[3 + self.target[1]] = 1.0
        return obs

    def reset(self, *, seed=None, options=None):
        super().reset(seed=seed)
        self.t = 0
        return self._observe(), {}

    def step(self, action):
        reward = 0.5 * float(np.sum(np.asarray(action) == self.target))
        self.t += 1
        return self._observe(), reward, False, self.t >= 8, {}


PPO_SMALL = dict(n_envs=8, n_steps=32, batch_size=64, n_epochs=4, learning_rate=1e-3, gamma=0.9, ent_coef=0.01,
                 preset="none", eval_episodes=20, tensorboard=False)  # fmt: skip


@pytest.mark.slow
def test_ppo_learns_from_pixels(tmp_path):
    agent = pgrad.train("ppo", env=LitQuadrant, total_steps=16_384, seed=0, run_dir=str(tmp_path / "r"), **PPO_SMALL)
    assert agent.evaluation.mean > 6.0, agent.evaluation.returns  # random: 2 of 8


@pytest.mark.slow
def test_ppo_learns_from_a_dict_of_image_and_vector(tmp_path):
    env = lambda: LitQuadrant(dict_obs=True)  # noqa: E731
    agent = pgrad.train("ppo", env=env, total_steps=24_576, seed=0, run_dir=str(tmp_path / "r"), **PPO_SMALL)
    assert agent.evaluation.mean > 6.0, agent.evaluation.returns  # random: 2, the image alone: 4


@pytest.mark.slow
@pytest.mark.parametrize("algo", ["ppo", "trpo"])
def test_ppo_and_trpo_learn_multi_discrete_actions(algo, tmp_path):
    fields = PPO_SMALL if algo == "ppo" else dict(n_envs=8, n_steps=64, batch_size=512, gamma=0.9, preset="none",
                                                  eval_episodes=20, tensorboard=False)  # fmt: skip
    agent = pgrad.train(algo, env=MatchTwo, total_steps=16_384, seed=0, run_dir=str(tmp_path / "r"), **fields)
    assert agent.evaluation.mean > 7.0, agent.evaluation.returns  # random ≈ 2.33 of 8
