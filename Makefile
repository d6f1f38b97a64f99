# Two entry points: `make demo` (the main job) and `make test`. Both install what they need by themselves.
VENV    := .venv
PY      := $(VENV)/bin/python
STAMP   := $(VENV)/.installed
SUDO    := $(shell [ "$$(id -u)" = 0 ] || echo sudo)
DEBS    := dataset-fashion-mnist chromium yosys iverilog
EDGE    := $(VENV)/bin/edgesparse
DEMO    := runs/demo
export OMP_WAIT_POLICY := PASSIVE

.PHONY: demo test debs venv clean

# The main job: the dense baseline first, then the 16x-sparse model by issue 13's best recipe (layer-wise N:M under
# the 16x budget on an array built for M = 32, started from the dense model and distilled from it, channels
# permuted, label smoothing), int8 export, packed model, bit-exact accelerator simulation, then the report
# (Markdown + self-contained HTML) and a short summary. Resumable.
demo: venv debs
	$(EDGE) train --config configs/demo.toml --pattern dense --allocate none --permute "" --out $(DEMO)/dense --resume
	$(EDGE) train --config configs/demo.toml --init $(DEMO)/dense --teacher $(DEMO)/dense --out $(DEMO)/sparse --resume
	$(EDGE) export $(DEMO)/sparse -o $(DEMO)/model.packed
	$(EDGE) inspect $(DEMO)/model.packed
	$(EDGE) report $(DEMO)/sparse $(DEMO)/model.packed --dense-run $(DEMO)/dense -o $(DEMO)/report \
	  --array 16x16 --pattern 1:32 --clock-mhz 200

test: venv debs
	$(PY) -m pytest -q

venv: $(STAMP)

$(STAMP): requirements.txt pyproject.toml
	python3 -m venv $(VENV)
	$(VENV)/bin/pip install -q --upgrade pip
	$(VENV)/bin/pip install -q -r requirements.txt   # torch==2.13.0 pinned: the CPU build
	$(VENV)/bin/pip install -q --no-deps -e .
	touch $@

debs:
	@missing=""; for p in $(DEBS); do dpkg -s $$p >/dev/null 2>&1 || missing="$$missing $$p"; done; \
	if [ -n "$$missing" ]; then \
	  echo "installing Debian packages:$$missing"; \
	  $(SUDO) apt-get update -q && DEBIAN_FRONTEND=noninteractive $(SUDO) apt-get install -y -q $$missing; \
	fi

clean:
	rm -rf $(VENV) runs .pytest_cache
