# The two quick-start commands: `make demo` and `make test`. Each sets up what it needs.
PYTHON ?= python3.11
VENV   ?= .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.mfrs-installed

.PHONY: demo test setup system-deps bench clean-data

# Virtual environment + mfrs with every extra; redone when pyproject.toml changes.
$(STAMP): pyproject.toml scripts/setup-venv.sh
	PYTHON=$(PYTHON) VENV=$(VENV) bash scripts/setup-venv.sh
	touch $(STAMP)

setup: $(STAMP)

# Debian packages the tests need (SLURM + munge); as root, installs them; otherwise says what is missing.
system-deps:
	bash cluster/install-system-deps.sh

demo: setup
	$(BIN)/mfrs demo

test: setup system-deps
	VENV=$(VENV) bash scripts/run-tests.sh

bench: setup
	$(BIN)/python -m pip install -q -e '.[bench]'
	$(BIN)/python -m benchmarks

clean-data:
	rm -rf .mfrs-data
