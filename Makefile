# equimanip: the two commands of the README, each doing all of its own set-up.
#
#   make demo    run the shipped Equivariant SAC policy on the simulated arm through ROS 2 topics,
#                print the success rate and write an animation
#   make checkpoints   train the shipped policies again (long: 25-35 minutes per task)
#   make test    run the whole test suite (what CI runs)
#   make bench   run the benchmarks (sim, perception, controller, policy, latency, mppi, recorder)
#
# Set-up is idempotent: system packages only when missing, a virtual environment in $(VENV),
# torch first (CPU build by default), then this package with its ROS 2 pip wheels.
# For a CUDA build of torch:  make demo TORCH_PIP_ARGS="--index-url <PyTorch's CUDA wheel index>"

PYTHON ?= python3
VENV ?= .venv
TORCH_SPEC ?= torch==2.13.0
TORCH_PIP_ARGS ?=
EPISODES ?= 10
TASK ?= block_picking

BIN := $(VENV)/bin
STAMP := $(VENV)/.equimanip-installed

.PHONY: demo test bench checkpoints setup system-deps clean

setup: $(STAMP)

system-deps:
	@bash scripts/install_system_deps.sh

$(STAMP): setup.py setup.cfg package.xml scripts/install_system_deps.sh
	@bash scripts/install_system_deps.sh
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip setuptools wheel
	$(BIN)/python -m pip install --quiet $(TORCH_PIP_ARGS) "$(TORCH_SPEC)"
	$(BIN)/python -m pip install --quiet -e ".[ros,test,bench]"
	@touch $(STAMP)

demo: $(STAMP)
	$(BIN)/equimanip run --task $(TASK) --controller policy --episodes $(EPISODES) --record artifacts/demo.gif

# The policies shipped in equimanip/checkpoints/ (what `--controller policy` runs without a
# --checkpoint), one per task: Equivariant SAC, C8, 20 expert episodes, the best periodic
# evaluation of a 5,000-step run (seed 0) trained here from scratch (20-30 min per task on a 2-core
# CPU, one torch thread); each checkpoint records this command and the revision. Their measured
# success is in the README. One task: make checkpoints SHIPPED_TASKS=reach
SHIPPED_TASKS ?= block_picking block_pushing drawer_opening reach reach_obstacles
SHIPPED_STEPS ?= 5000
checkpoints: $(STAMP)
	for task in $(SHIPPED_TASKS); do \
	  $(BIN)/equimanip train sac --task $$task --group c8 --demos 20 --steps $(SHIPPED_STEPS) --seed 0 \
	    --eval-every 500 --out runs/shipped_$$task && \
	  cp runs/shipped_$$task/best.pt equimanip/checkpoints/$$task.pt || exit 1; \
	done

test: $(STAMP)
	$(BIN)/ruff check equimanip sim test launch scripts
	$(BIN)/python -m pytest -q test

bench: $(STAMP)
	$(BIN)/equimanip bench sim
	$(BIN)/equimanip bench perception
	$(BIN)/equimanip bench controller
	$(BIN)/equimanip bench policy
	$(BIN)/equimanip bench latency
	$(BIN)/equimanip bench mppi
	$(BIN)/equimanip bench recorder

clean:
	rm -rf $(VENV) artifacts build *.egg-info .pytest_cache .hypothesis
