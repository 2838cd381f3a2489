# Two targets matter: `make demo` runs the example site, `make test` runs every check.
# Both create the virtual environment in .venv first (python3 >= 3.11 with venv).
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed-stamp
NEWSLETTER := $(BIN)/newsletter
GROUPS := cepiug uk dach fr

.PHONY: install demo test lint clean

$(STAMP): pyproject.toml
	$(PYTHON) -c 'import sys; sys.exit("newsletter needs Python >= 3.11, this is " + sys.version.split()[0]) if sys.version_info < (3, 11) else None'
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --disable-pip-version-check --upgrade pip
	$(BIN)/python -m pip install --quiet --disable-pip-version-check -e '.[dev]'
	touch $(STAMP)

install: $(STAMP)

# The example site, end to end: check it, create or migrate its database, load each
# group's subscribers, queue and approve the sample items, then two scheduler ticks at
# fixed moments (Monday 30 November and Tuesday 1 December 2026) collect the sample
# feeds, build each group's edition on its schedule and deliver the approved ones to
# the outbox/ folder.
# Run it again: nothing is imported, built or sent twice.
demo: install
	$(NEWSLETTER) check
	$(NEWSLETTER) migrate
	@for group in $(GROUPS); do \
		echo "== subscribers import $$group subscribers/$$group.csv"; \
		$(NEWSLETTER) subscribers import $$group subscribers/$$group.csv || exit 1; \
	done
	$(NEWSLETTER) items add $(foreach file,$(sort $(wildcard samples/items/*.md)),--file $(file))
	$(NEWSLETTER) items approve --all-proposed
	$(NEWSLETTER) run-due --at 2026-11-30T10:05:00+01:00
	$(NEWSLETTER) run-due --at 2026-12-01T09:05:00+01:00
	$(NEWSLETTER) editions list
	$(NEWSLETTER) status

lint: install
	$(BIN)/ruff check newsletter tests bench
	$(BIN)/ruff format --check newsletter tests bench
	$(BIN)/mypy
	$(BIN)/mypy tests bench

# One worker per core; each test file runs on one worker (its module fixtures, servers
# and browser stay together).
test: lint
	$(BIN)/pytest -n auto --dist loadfile

clean:
	rm -rf $(VENV) newsletter.db newsletter.db-wal newsletter.db-shm outbox .pytest_cache .mypy_cache .ruff_cache
