# The two commands a new user needs:
#   make run    install everything, start both services on the embedded model, open the REPL
#               (cerebrum up; Ctrl-D stops both). Options for it: make run ARGS="--port 17000"
#   make test   install everything, run the test suite (options: PYTEST_ARGS="-k cli")
VENV ?= .venv
PY := $(VENV)/bin/python
SOURCES := scripts/bootstrap.sh requirements-*.txt setup.cfg pyproject.toml

.PHONY: run test install clean

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

clean:
	rm -rf $(VENV) .pytest_cache
