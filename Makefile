# The two commands a new user needs:
#   make run    install everything, start both services on the embedded model, open the REPL
#               (cerebrum up; Ctrl-D stops both). Options for it: make run ARGS="--port 17000"
#   make test   install everything, run the test suite (options: PYTEST_ARGS="-k cli")
# and one for contributors:
#   make lint   ruff (lint) and mypy (types) over the files that are already clean
VENV ?= .venv
PY := $(VENV)/bin/python
SOURCES := scripts/bootstrap.sh requirements-*.txt setup.cfg pyproject.toml

.PHONY: run test lint install clean

# `run` needs the services and the CLI; `test` adds the test tools (and the
# system packages the deploy tests use: shellcheck, systemd-analyze, sshd).
$(VENV)/.bootstrapped-local: $(SOURCES)
	scripts/bootstrap.sh $(VENV) local
	touch $@

# dev installs everything local does, so it marks both done: `make run` after
# `make test` does not install again.
$(VENV)/.bootstrapped-dev: $(SOURCES)
	scripts/bootstrap.sh $(VENV) dev
	touch $@ $(VENV)/.bootstrapped-local

install: $(VENV)/.bootstrapped-dev

run: $(VENV)/.bootstrapped-local
	$(VENV)/bin/cerebrum up $(ARGS)

test: $(VENV)/.bootstrapped-dev
	$(PY) -m pytest $(PYTEST_ARGS)

# The files that are clean so far; the rest join as they are cleaned (then
# `make test` runs this too). `make lint LINT_PATHS=.` shows what is left.
LINT_PATHS ?= cerebrum/cli cerebrum/config.py cerebrum/backend/__main__.py \
	cerebrum/orchestrator/__main__.py cm4_app.py vps_app.py tests/cli tests/test_setup.py
lint: $(VENV)/.bootstrapped-dev
	$(VENV)/bin/ruff check $(LINT_PATHS)
	# silent: modules imported from outside LINT_PATHS are read for their types,
	# their own findings are not reported.
	$(VENV)/bin/mypy --follow-imports=silent $(LINT_PATHS)

clean:
	rm -rf $(VENV) .pytest_cache
