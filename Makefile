# `make setup` once (as root: Debian packages, the test host account, the virtualenv),
# then `make check` and `make test`.
VENV ?= .venv
PY := $(VENV)/bin/python
DEBIAN_PACKAGES := docker.io docker-registry openssh-server busybox-static postgresql \
                   postgresql-client procps debootstrap nginx-light

.PHONY: setup system venv check test services services-down format demo

setup: system venv

system:
	@missing=$$(for p in $(DEBIAN_PACKAGES); do dpkg -s $$p >/dev/null 2>&1 || echo $$p; done); \
	if [ -n "$$missing" ]; then \
	  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends $$missing; \
	fi

venv: $(VENV)/.installed

$(VENV)/.installed: requirements.txt requirements-dev.txt
	test -x $(PY) || python3 -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -r requirements-dev.txt
	touch $@

check: venv
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .
	$(VENV)/bin/mypy
	$(VENV)/bin/lint-imports

services: venv
	$(PY) -m tests.hostkit up

services-down:
	$(PY) -m tests.hostkit down

demo: venv
	$(PY) -m bot demo

test: setup services
	$(PY) -m pytest

# Benchmarks print figures and assert nothing; they are not part of `make test` (docs/benchmarks.md).
.PHONY: bench
bench: setup
	$(PY) -m bench

format: venv
	$(VENV)/bin/ruff format .
	$(VENV)/bin/ruff check --fix .
