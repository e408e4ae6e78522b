# Observatory Exchange. `make demo` and `make test` work on a fresh clone with only python3 (3.11+).
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
UV_VERSION := 0.13.9
DATA_DIR := $(abspath $(or $(OBSX_DATA_DIR),var))
STAMP := $(VENV)/.installed-$(shell cksum requirements.lock pyproject.toml | cksum | cut -d' ' -f1)

.PHONY: install demo demo-gt test lint ui web run bench lock clean

$(STAMP): requirements.lock pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --disable-pip-version-check uv==$(UV_VERSION)
	$(BIN)/uv pip sync --quiet --compile-bytecode --python $(BIN)/python requirements.lock
	$(BIN)/uv pip install --quiet --python $(BIN)/python --no-deps -e .
	rm -f $(VENV)/.installed-* && touch $@

install: $(STAMP)

DEMO_YEAR := 2025
demo: install
	OBSX_DATA_DIR=$(DATA_DIR) $(BIN)/obsx seed --year $(DEMO_YEAR)
	OBSX_DATA_DIR=$(DATA_DIR) $(BIN)/obsx run --settle-seconds 0
	OBSX_DATA_DIR=$(DATA_DIR) $(BIN)/obsx reconcile list
	OBSX_DATA_DIR=$(DATA_DIR) $(BIN)/obsx report --period $(DEMO_YEAR)-12
	@echo
	@echo "Feedback for each observatory: $(DATA_DIR)/dropzone/<observatory>/feedback/"
	@echo "Its monthly pack: $(DATA_DIR)/dropzone/<observatory>/reportes/"
	@echo "The bulletin: $(DATA_DIR)/reports/$(DEMO_YEAR)-12/boletin_$(DEMO_YEAR)-12.html (and .pdf)"
	@echo "Open the Dagster UI with: make ui   (then http://127.0.0.1:3000)"

# The Guatemala deployment on real files: INE's code list as geography, the 2018 census, the PNC
# arrests of 2021 (SPSS), 2023 and Q1 2024 (Excel), and a national homicide count for January 2024
# that lists only the municipios with victims (generated: no real one is public). Its own data
# root: var/gt. (The other Guatemalan shapes are in the tests: sources counting the same
# homicides would add up until they are reconciled.)
GT_DATA := $(abspath $(or $(OBSX_DATA_DIR),var/gt))
GT := tests/fixtures/gt
demo-gt: install
	mkdir -p $(GT_DATA)/dropzone/gt_pnc/inbox $(GT_DATA)/dropzone/gt_inacif/inbox
	cp $(GT)/pnc/Detenidos2021.sav $(GT)/pnc/Detenidos2023.xlsx $(GT)/pnc/Detenidos1T2024.xlsx \
	   $(GT_DATA)/dropzone/gt_pnc/inbox/
	cp $(GT)/homicidios_nacional_2024_01.csv $(GT_DATA)/dropzone/gt_inacif/inbox/
	OBSX_DEPLOYMENT=gt OBSX_DATA_DIR=$(GT_DATA) $(BIN)/obsx run --settle-seconds 0
	@echo
	@echo "Feedback for each contributor: $(GT_DATA)/dropzone/<contributor>/feedback/"

lint: install
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

test: lint
	DAGSTER_HOME= $(BIN)/dagster definitions validate -w workspace.yaml
	$(BIN)/pytest

ui: install
	mkdir -p $(DATA_DIR)/dagster
	OBSX_DATA_DIR=$(DATA_DIR) DAGSTER_HOME=$(DATA_DIR)/dagster $(BIN)/dagster dev -w workspace.yaml

# The portal and the desk on http://127.0.0.1:8000 (after make demo): demo accounts are made the
# first time, their random passwords printed once.
web: install
	OBSX_DATA_DIR=$(DATA_DIR) $(BIN)/obsx users demo
	OBSX_DATA_DIR=$(DATA_DIR) $(BIN)/obsx web

run: install
	OBSX_DATA_DIR=$(DATA_DIR) $(BIN)/obsx run

# Re-resolve the lock file after changing dependencies in pyproject.toml.
lock: install
	$(BIN)/uv pip compile --quiet pyproject.toml --extra dev --python-version 3.11 -o requirements.lock

clean:
	rm -rf $(VENV) var .pytest_cache .ruff_cache

bench: install
	$(BIN)/python bench/bench_submission.py $(BENCH_URL)
	$(BIN)/python bench/bench_real_shapes.py $(BENCH_URL)
	$(BIN)/python bench/bench_web_check.py
	$(BIN)/python bench/bench_national.py $(BENCH_URL)
	$(BIN)/python bench/bench_national_refresh.py
