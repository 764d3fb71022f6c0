# equimanip: the two commands of the README, each doing all of its own set-up.
#
#   make demo    run a shipped policy on the simulated arm through ROS 2 topics, print the success
#                rate and write an animation
#   make checkpoints   train the shipped policies again (long: 10-35 minutes per task)
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
# The cell's parameter file for `make demo` (a name in config/); by default the one the task's
# shipped policy learnt with: block_pushing's saw the side camera.
PARAMS ?= $(if $(filter block_pushing,$(TASK)),side_camera,)

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
	$(BIN)/equimanip run --task $(TASK) --controller policy --episodes $(EPISODES) --record artifacts/demo.gif \
	  $(if $(PARAMS),--params $(PARAMS))

# The policies shipped in equimanip/checkpoints/ (what `--controller policy` runs without a
# --checkpoint), one per task, each trained here from scratch on a 2-core CPU with one torch thread;
# each checkpoint records its command and revision, and its measured success is in the README.
# One task: make checkpoints SHIPPED_TASKS=reach
#  - Equivariant SAC, C8, 20 expert episodes, the best periodic evaluation of a 5,000-step run
#    (seed 0; 20-30 min per task);
#  - block_pushing instead: equivariant BMIL (C8) from 20 expert episodes recorded with the side
#    camera from scenes 500000-500019 (run seed 0's demonstration seeds, as SAC's), the goal given
#    in the state, every input standardised as when it was trained (about 10 min). SAC does not
#    learn to push on this CPU (docs/equivariant_sac.md); imitation with the goal in the state
#    does (docs/imitation.md).
SHIPPED_TASKS ?= block_picking block_pushing drawer_opening reach reach_obstacles
SHIPPED_STEPS ?= 5000
checkpoints: $(STAMP)
	for task in $(SHIPPED_TASKS); do \
	  if [ $$task = block_pushing ]; then \
	    rm -rf runs/shipped_block_pushing_demos && \
	    $(BIN)/equimanip record --task block_pushing --episodes 20 --source expert --seed 500000 \
	      --params side_camera --out runs/shipped_block_pushing_demos && \
	    $(BIN)/equimanip train bmil --demos runs/shipped_block_pushing_demos --params side_camera \
	      --observation goal_in_state=true --group c8 --preset push --demo-repeat 1 --seed 0 \
	      --standardise-aperture --out runs/shipped_block_pushing && \
	    cp runs/shipped_block_pushing/policy.pt equimanip/checkpoints/block_pushing.pt || exit 1; \
	  else \
	    $(BIN)/equimanip train sac --task $$task --group c8 --demos 20 --steps $(SHIPPED_STEPS) --seed 0 \
	      --eval-every 500 --out runs/shipped_$$task && \
	    cp runs/shipped_$$task/best.pt equimanip/checkpoints/$$task.pt || exit 1; \
	  fi; \
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
