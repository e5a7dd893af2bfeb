# Two entry points: `make demo` and `make test`. Both create .venv on a fresh machine; `make install`
# does only that (and, as root, the Debian dataset and chromium).
PY      ?= python3
VENV    := .venv
BIN     := $(VENV)/bin
STAMP   := $(VENV)/.installed
DEMO    ?= runs/demo

.PHONY: install demo test test-fast data browser clean

$(STAMP): pyproject.toml
	$(PY) -m venv $(VENV)
	# torch is pinned and installed first so nothing resolves a CUDA build.
	$(BIN)/pip install -q torch==2.13.0
	$(BIN)/pip install -q -e '.[test,hf]'
	touch $(STAMP)

# Debian's Fashion-MNIST (IDX files) is the embedded ResiliNet dataset; best effort when not root.
data:
	@if ! dpkg -s dataset-fashion-mnist >/dev/null 2>&1; then \
	  if [ "$$(id -u)" = 0 ]; then (apt-get update -qq && apt-get install -y -qq dataset-fashion-mnist) || echo "note: could not install dataset-fashion-mnist; ResiliNet falls back to scikit-learn digits"; \
	  else echo "note: not root; install dataset-fashion-mnist for the default ResiliNet data"; fi; fi

# Debian's chromium loads the explorer page and the ResiliNet service's live page in the tests (skipped without it); best effort when not root.
browser:
	@if ! command -v chromium >/dev/null 2>&1; then \
	  if [ "$$(id -u)" = 0 ]; then (apt-get update -qq && apt-get install -y -qq chromium) || echo "note: could not install chromium; the browser tests are skipped"; \
	  else echo "note: not root; install chromium to run the browser tests"; fi; fi

install: $(STAMP) data browser

demo: $(STAMP) data
	$(BIN)/binding reproduce --preset cpu --out $(DEMO)/binding
	$(BIN)/resilinet reproduce --preset cpu --out $(DEMO)/resilinet
	$(BIN)/python -m lab.demo_report $(DEMO)

test: $(STAMP) data browser
	$(BIN)/pytest -q

test-fast: $(STAMP)
	$(BIN)/pytest -q -m "not slow"

clean:
	rm -rf $(VENV) runs .pytest_cache
