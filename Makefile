# The two commands a new user needs:
#   make run    install everything, start both services on the embedded model, open the REPL
#               (cerebrum up; Ctrl-D stops both)
#   make test   install everything, run the test suite
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.bootstrapped

.PHONY: run test bench install clean

$(STAMP): scripts/bootstrap.sh requirements-*.txt setup.cfg pyproject.toml
	scripts/bootstrap.sh $(VENV) dev
	touch $(STAMP)

install: $(STAMP)

run: $(STAMP)
	$(VENV)/bin/cerebrum up

test: $(STAMP)
	$(PY) -m pytest $(PYTEST_ARGS)

clean:
	rm -rf $(VENV) .pytest_cache
