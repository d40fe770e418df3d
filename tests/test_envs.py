"""The vector env layer: real final observations, episode statistics, normalisation, action maps."""

from __future__ import annotations

import gymnasium as gym
import numpy as np
import pytest
from gymnasium import spaces

from pgrad.envs import ActionMap, Normalizer, RunningMeanStd, make_vec_env


def test_next_obs_is_the_real_final_observation_not_the_reset_one():
    env = make_vec_env("pgrad-test/Counter-v0", n_envs=2, seed=0)
    obs = env.reset()
    seen = []
    for _ in range(7):
        obs_next, rewards, terminated, truncated, next_obs = env.step(np.zeros(2, np.int64))
        seen.append((obs.copy(), next_obs.copy(), obs_next.copy(), terminated.copy()))
        obs = obs_next
    for before, after, acted_on, term in seen:
        # The real successor is the same episode, one step later — never a reset observation.
        np.testing.assert_array_equal(after[:, 0], before[:, 0])
        np.testing.assert_array_equal(after[:, 1], before[:, 1] + 1)
        # What the policy acts on next is a new episode's first observation where one ended.
        np.testing.assert_array_equal(acted_on[term, 1], 0)
        np.testing.assert_array_equal(acted_on[~term], after[~term])
    returns, lengths = env.pop_episodes()
    assert lengths == [3, 3, 3, 3] and returns == [6.0, 6.0, 6.0, 6.0]
    assert env.pop_episodes() == ([], [])


def test_truncation_flags_and_final_observation():
    env = make_vec_env("pgrad-test/CounterTimeLimit-v0", n_envs=1, seed=0)
    env.reset()
    for _ in range(3):
        _, _, terminated, truncated, _ = env.step(np.zeros(1, np.int64))
        assert not terminated[0] and not truncated[0]
    obs, _, terminated, truncated, next_obs = env.step(np.zeros(1, np.int64))
    assert truncated[0] and not terminated[0]
    assert next_obs[0].tolist() == [0.0, 4.0] and obs[0].tolist() == [1.0, 0.0]


def test_seeding_is_reproducible():
    a = make_vec_env("CartPole-v1", n_envs=3, seed=7)
    b = make_vec_env("CartPole-v1", n_envs=3, seed=7)
    np.testing.assert_array_equal(a.reset(), b.reset())
    np.testing.assert_array_equal(a.step(np.array([0, 1, 0]))[0], b.step(np.array([0, 1, 0]))[0])


def test_running_mean_std_matches_numpy():
    rng = np.random.default_rng(0)
    data = rng.normal(3.0, 2.0, size=(1000, 4))
    rms = RunningMeanStd((4,), epsilon=0.0)
    for chunk in np.array_split(data, 17):
        rms.update(chunk)
    np.testing.assert_allclose(rms.mean, data.mean(0))
    np.testing.assert_allclose(rms.var, data.var(0))


def test_one_row_updates_are_bitwise_those_of_numpys_mean_and_var():
    """A single env's row skips np.mean/np.var (their overhead was ~0.12 ms a MuJoCo step) for the
    values they return for one row: the statistics stay bitwise what they were."""

    class Reference(RunningMeanStd):  # the general path for every batch
        def update(self, batch):
            batch_mean, batch_var, n = batch.mean(axis=0), batch.var(axis=0), batch.shape[0]
            delta, total = batch_mean - self.mean, self.count + n
            self.mean = np.asarray(self.mean + delta * n / total)
            m2 = self.var * self.count + batch_var * n + delta**2 * self.count * n / total
            self.var, self.count = np.asarray(m2 / total), total

    rng = np.random.default_rng(0)
    for shape, dtype in (((11,), np.float32), ((), np.float64)):
        fast, reference = RunningMeanStd(shape), Reference(shape)
        for _ in range(300):
            row = (rng.standard_normal((1, *shape)) * 50 + 7).astype(dtype)
            fast.update(row)
            reference.update(row)
        assert fast.mean.tobytes() == reference.mean.tobytes() and fast.var.tobytes() == reference.var.tobytes()
        assert fast.count == reference.count


def test_normalizer_state_round_trip_and_frozen_at_eval():
    norm = Normalizer((2,), normalize_obs=True, normalize_reward=True)
    for _ in range(5):
        x = np.random.default_rng(0).normal(size=(8, 2)).astype(np.float32)
        norm.update_obs(x)
        norm.reward(np.ones(8, np.float32), np.zeros(8, bool))
    frozen = Normalizer((2,), normalize_obs=True, normalize_reward=True, training=False)
    frozen.load_state_dict(norm.state_dict())
    x = np.array([[0.5, -1.0]], np.float32)
    np.testing.assert_allclose(frozen.obs(x), norm.obs(x))
    before = frozen.state_dict()
    frozen.update_obs(x * 100)
    assert all(np.array_equal(before[k], frozen.state_dict()[k]) for k in before)


def test_action_map_clip_and_rescale():
    box = spaces.Box(np.array([-2.0, 0.0]), np.array([2.0, 1.0]))
    np.testing.assert_allclose(ActionMap(box, "clip")(np.array([[3.0, -1.0]])), [[2.0, 0.0]])
    np.testing.assert_allclose(ActionMap(box, "rescale")(np.array([[1.0, 0.0]])), [[2.0, 0.5]])
    assert ActionMap(spaces.Discrete(3))(np.array([2])).tolist() == [2]


def test_unknown_env_id_suggests_close_names():
    with pytest.raises(ValueError, match=r"unknown env id 'CartPole-v2'.*CartPole-v1"):
        make_vec_env("CartPole-v2")


def test_unsupported_observation_space_is_named():
    import gymnasium as gym

    class DictObs(gym.Env):
        observation_space = spaces.Dict({"x": spaces.Box(-1, 1, (1,)), "s": spaces.Sequence(spaces.Discrete(2))})
        action_space = spaces.Discrete(2)

    gym.register("pgrad-test/DictObs-v0", entry_point=DictObs)
    with pytest.raises(ValueError, match="observation space Sequence.* at s is not supported"):
        make_vec_env("pgrad-test/DictObs-v0")


class Trail(gym.Env):
    """A user's env that remembers its positions in a list that grows (empty after a reset): a list of
    arrays is state, saved and refilled in place whatever its length."""

    observation_space = gym.spaces.Box(-np.inf, np.inf, (2,), np.float32)
    action_space = gym.spaces.Box(-1.0, 1.0, (2,), np.float32)

    def reset(self, *, seed=None, options=None):
        super().reset(seed=seed)
        self.trail = []
        return self.np_random.normal(size=2).astype(np.float32), {}

    def step(self, action):
        self.trail.append(np.asarray(action, np.float32) + self.np_random.normal(size=2).astype(np.float32))
        obs = np.sum(self.trail, axis=0, dtype=np.float32)
        return obs, float(-np.abs(obs).sum()), False, len(self.trail) >= 50, {}


def test_a_growing_list_of_arrays_is_copied_whatever_its_length():
    import pickle

    from pgrad.envs import VecEnv

    envs = VecEnv(Trail, 2, seed=0)
    envs.reset()
    actions = np.random.default_rng(0).uniform(-1, 1, (120, 2, 2)).astype(np.float32)
    for a in actions[:30]:
        envs.step(a)
    saved = pickle.loads(pickle.dumps(envs.sim_state()))
    assert saved["env0.layer0.trail"].shape == (30, 2)  # a class as the env: no wrapper below SimState
    expected = [envs.step(a) for a in actions[30:]]
    copy = VecEnv(Trail, 2, seed=5)
    copy.reset()  # its trails are empty
    copy.load_sim_state(saved)
    assert isinstance(copy.envs.envs[0].unwrapped.trail, list)
    for e, c in zip(expected, (copy.step(a) for a in actions[30:]), strict=True):
        assert all(np.array_equal(x, y) for x, y in zip(e, c, strict=True))
