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

test: $(VENV)/.bootstrapped-dev lint
	$(PY) -m pytest $(PYTEST_ARGS)

# The gate: ruff (lint) and mypy (types) over every tracked Python file but
# those still listed in .lint-pending (they were written before the gate and
# leave it as they are cleaned: delete a line once `make lint` passes with it).
# `make test` runs it first, so CI enforces it; `make lint LINT_PATHS=.` shows
# everything that is left.
LINT_PENDING := $(shell grep -v '^#' .lint-pending 2>/dev/null)
LINT_PATHS ?= $(filter-out $(LINT_PENDING),$(shell git ls-files '*.py'))
lint: $(VENV)/.bootstrapped-dev
	@echo "lint: ruff and mypy over $(words $(LINT_PATHS)) files ($(words $(LINT_PENDING)) pending in .lint-pending)"
	@$(VENV)/bin/ruff check -q $(LINT_PATHS)
	@# silent: modules imported from outside LINT_PATHS are read for their types,
	@# their own findings are not reported.
	@$(VENV)/bin/mypy --follow-imports=silent $(LINT_PATHS)

clean:
	rm -rf $(VENV) .pytest_cache
