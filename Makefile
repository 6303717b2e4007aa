# Two commands on a fresh machine (Python 3.10+):
#   make quickstart   install what training needs, then fine-tune on the offline sample
#   make test         install what the tests need, then run the whole suite
#   make lint         ruff check and ruff format --check (CI runs it before the tests)
# Each installs into the current Python environment (PYTHON=... picks another interpreter) and
# skips the install when the same requirements were already installed into that environment.

PYTHON ?= python3
# One stamp per environment and requirements file: a new virtual environment installs again, even
# one re-created at the same path (its directory's inode and creation time are in the key).
ENV_ID := $(shell $(PYTHON) -c "import hashlib, os, sys; s = os.stat(sys.prefix); print(hashlib.sha1(f'{sys.prefix}:{s.st_ino}:{s.st_ctime_ns}'.encode()).hexdigest()[:10])")
STAMPS := .make/$(ENV_ID)

.PHONY: quickstart test lint format install install-dev clean-stamps

quickstart: $(STAMPS)/requirements.txt
	@echo "== fine-tuning the packaged MiniLM on samples/quickstart (offline, a few minutes on a CPU)"
	$(PYTHON) train.py --config configs/quickstart.yaml --output.overwrite true

test: $(STAMPS)/requirements.txt $(STAMPS)/requirements-dev.txt
	@echo "== running the test suite"
	$(PYTHON) -m pytest -q

lint: $(STAMPS)/requirements.txt $(STAMPS)/requirements-dev.txt
	@echo "== ruff: lint and format check"
	$(PYTHON) -m ruff check .
	$(PYTHON) -m ruff format --check .

format: $(STAMPS)/requirements.txt $(STAMPS)/requirements-dev.txt
	$(PYTHON) -m ruff check --fix .
	$(PYTHON) -m ruff format .

install: $(STAMPS)/requirements.txt
install-dev: $(STAMPS)/requirements.txt $(STAMPS)/requirements-dev.txt

$(STAMPS)/%.txt: %.txt
	@echo "== installing $< into $$($(PYTHON) -c 'import sys; print(sys.prefix)')"
	$(PYTHON) -m pip install -r $<
	@mkdir -p $(STAMPS) && cp $< $@

clean-stamps:
	rm -rf .make
