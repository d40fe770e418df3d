# The README's two commands, `make demo` and `make test`, need nothing but python3 on the machine.
VENV   := .venv
PY     := $(VENV)/bin/python
PGRAD  := $(VENV)/bin/pgrad
STAMP  := $(VENV)/.installed
export MPLBACKEND := Agg

SBX_VENV := .venv-sbx

.PHONY: demo test test-all lint learn learn-mujoco bench bench-full bench-sbx lab-probe clean

$(STAMP): pyproject.toml constraints.txt
	test -x $(PY) || python3 -m venv $(VENV)
	$(PY) -m pip install -q --disable-pip-version-check -c constraints.txt torch==2.13.0
	$(PY) -m pip install -q --disable-pip-version-check -c constraints.txt -e ".[dev,distributed,atari,export,track,tune]"
	touch $(STAMP)

# Train PPO on CartPole-v1 for 100k steps (the shipped preset), then evaluate the saved agent.
demo: $(STAMP)
	$(PGRAD) train ppo --env CartPole-v1 --total-steps 100000 --seed 0 --run-dir runs/demo-ppo-cartpole --overwrite
	$(PGRAD) eval runs/demo-ppo-cartpole --episodes 10

# What CI runs (within its 25 minutes on 2 cores): unit tests, math references, short seeded learning
# tests and the quick resume cases; the slowest twentieth are listed at the end.
test: $(STAMP)
	$(PY) -m pytest -n 2 --dist loadgroup -q -m "not slow" --durations=20

# Everything, with the longer learning runs and every resume case (marked slow): ~26 min on 2 cores.
# (`make test` and `test-all` print the slowest tests last: where to look when the budget tightens.)
test-all: $(STAMP)
	$(PY) -m pytest -n 2 --dist loadgroup -q --durations=30

lint: $(STAMP)
	$(VENV)/bin/ruff check pgrad tests benchmarks && $(VENV)/bin/ruff format --check pgrad tests benchmarks

# Full-budget learning runs (the issues' thresholds); writes benchmarks/learning.md.
learn: $(STAMP)
	$(PY) benchmarks/learn.py

# MuJoCo and Box2D beside the published tables (benchmarks/mujoco.md): hours of CPU per case (PPO
# at 1M steps: ~21 min a run on one core); pick with ARGS='--only "ppo Hopper" --seeds 0,1' (runs
# resume, results merge).
learn-mujoco: $(STAMP)
	$(PY) benchmarks/learn_mujoco.py --jobs 2 $(ARGS)

# The quick set writes benchmarks/results/quick/ (its own RESULTS.md), never over bench-full's results.
bench: $(STAMP) $(SBX_VENV)/.installed
	$(PY) benchmarks/bench.py --quick --out benchmarks/results/quick
	$(PY) benchmarks/distributed.py

# off-policy in float32 and bf16 beside SBX alone, into the main table
SBX_PRECISION_CASES = sac-pendulum-fp32,sac-pendulum-bf16,td3-pendulum-fp32,td3-pendulum-bf16,ddpg-pendulum-fp32,ddpg-pendulum-bf16

bench-full: $(STAMP) $(SBX_VENV)/.installed
	$(PY) benchmarks/op_profile.py
	$(PY) benchmarks/bench.py
	$(PY) benchmarks/bench.py --peer sbx --cases $(SBX_PRECISION_CASES)

# SBX (JAX) gets its own venv for its jax/flax stack: bench and bench-full run it beside SB3;
# bench-sbx runs the cases measured against SBX alone (benchmarks/results/sbx/).
$(SBX_VENV)/.installed: constraints.txt Makefile
	test -x $(SBX_VENV)/bin/python || python3 -m venv $(SBX_VENV)
	$(SBX_VENV)/bin/python -m pip install -q --disable-pip-version-check -c constraints.txt torch==2.13.0 sbx-rl "jax[cpu]" "gymnasium[mujoco]"
	touch $@

bench-sbx: $(STAMP) $(SBX_VENV)/.installed
	$(PY) benchmarks/bench.py --peer sbx --out benchmarks/results/sbx

# Gradient quality of PPO's estimates along training (issue 22): docs/gradient-quality.md's numbers and figures.
PROBE_DOCS := docs/gradient-quality
lab-probe: $(STAMP)
	$(PGRAD) lab probe ppo --env CartPole-v1 --at 0,10000,50000 --out runs/lab-probe-cartpole
	$(PGRAD) lab probe ppo --env Pendulum-v1 --at 0,40000,100000 --reference-steps 400000 --out runs/lab-probe-pendulum
	for env in cartpole pendulum; do mkdir -p $(PROBE_DOCS)/$$env && \
		cp runs/lab-probe-$$env/probe.json runs/lab-probe-$$env/*.png $(PROBE_DOCS)/$$env/; done

clean:
	rm -rf $(VENV) $(SBX_VENV) runs .pytest_cache
