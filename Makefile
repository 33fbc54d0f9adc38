# Two entry points for a fresh machine: `make train` and `make test` (see README.md).
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
FASHION_MNIST ?= /usr/share/datasets/fashion-mnist

.PHONY: setup data postgres slurm chromium train test test-all lint

# The virtual environment, rebuilt when the package metadata changes.
$(VENV)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --disable-pip-version-check -e '.[test]'
	touch $@

setup: $(VENV)/.installed

# Fashion-MNIST from Debian's package when we may install it; otherwise say how to get it.
data:
	@if [ ! -f $(FASHION_MNIST)/train-images-idx3-ubyte.gz ]; then \
	  if [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null; then \
	    apt-get install -y -q dataset-fashion-mnist >/dev/null || \
	    { apt-get update -q >/dev/null && apt-get install -y -q dataset-fashion-mnist >/dev/null; }; \
	  else \
	    echo "Fashion-MNIST is not in $(FASHION_MNIST): install the dataset-fashion-mnist package, or run"; \
	    echo "  $(BIN)/cnnlab data fetch fashion-mnist --dir data/fashion-mnist"; \
	    echo "and train with data.path=data/fashion-mnist"; exit 1; \
	  fi; \
	fi

# PostgreSQL server binaries for the studies' shared-storage test (it starts its own server on loopback).
postgres:
	@if ! ls /usr/lib/postgresql/*/bin/initdb >/dev/null 2>&1 && ! command -v initdb >/dev/null; then \
	  if [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null; then \
	    apt-get install -y -q postgresql >/dev/null || \
	    { apt-get update -q >/dev/null && apt-get install -y -q postgresql >/dev/null; }; \
	  else \
	    echo "PostgreSQL is not installed (the studies test needs initdb): apt-get install -y postgresql"; exit 1; \
	  fi; \
	fi

# Slurm's daemons and commands for the studies' --slurm test (it starts a one-node cluster on loopback, with munge).
slurm:
	@PATH="$$PATH:/usr/sbin"; \
	if ! { command -v sbatch && command -v slurmctld && command -v slurmd && command -v munged; } >/dev/null 2>&1; then \
	  if [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null; then \
	    DEBIAN_FRONTEND=noninteractive apt-get install -y -q slurmctld slurmd slurm-client munge >/dev/null || \
	    { apt-get update -q >/dev/null && DEBIAN_FRONTEND=noninteractive apt-get install -y -q slurmctld slurmd slurm-client munge >/dev/null; }; \
	  else \
	    echo "Slurm is not installed (the studies' Slurm test needs it): apt-get install -y slurmctld slurmd slurm-client munge"; exit 1; \
	  fi; \
	fi

# Debian's Chromium for the report tests (a real browser renders the reports headless, offline).
chromium:
	@if ! command -v chromium >/dev/null 2>&1; then \
	  if [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null; then \
	    DEBIAN_FRONTEND=noninteractive apt-get install -y -q chromium >/dev/null || \
	    { apt-get update -q >/dev/null && DEBIAN_FRONTEND=noninteractive apt-get install -y -q chromium >/dev/null; }; \
	  else \
	    echo "Chromium is not installed (the report tests render in it): apt-get install -y chromium"; exit 1; \
	  fi; \
	fi

train: setup data
	$(BIN)/cnnlab train configs/fashion_mnist_cnn.yaml data.path=$(FASHION_MNIST)

# One pytest-xdist worker per core (each with one torch thread: tests/conftest.py): on the 2-core
# CI machine the suite takes about half the serial time. PYTEST_WORKERS=0 runs it serially.
# `make test` leaves out the tests marked heavy (the costliest variants of paths lighter tests cover, to keep
# CI under its 20 minutes); `make test-all` runs every test.
PYTEST_WORKERS ?= auto
test: setup data postgres slurm chromium
	$(BIN)/python -m pytest -q -n $(PYTEST_WORKERS) -m "not heavy"

test-all: setup data postgres slurm chromium
	$(BIN)/python -m pytest -q -n $(PYTEST_WORKERS)

lint: setup
	$(BIN)/ruff check cnnlab tests bench
