# Two entry points: `make demo` (the main job) and `make test`. Both install what they need by themselves.
VENV    := .venv
PY      := $(VENV)/bin/python
STAMP   := $(VENV)/.installed
SUDO    := $(shell [ "$$(id -u)" = 0 ] || echo sudo)
DEBS    := dataset-fashion-mnist
export OMP_WAIT_POLICY := PASSIVE

.PHONY: demo test debs venv clean

demo: venv debs
	$(VENV)/bin/edgesparse train --config configs/demo.toml --out runs/demo --resume
	$(VENV)/bin/edgesparse export runs/demo -o runs/demo/model.packed
	$(VENV)/bin/edgesparse inspect runs/demo/model.packed
	$(VENV)/bin/edgesparse simulate runs/demo/model.packed --mode fast --array 16x16 --clock-mhz 200
	$(VENV)/bin/edgesparse simulate runs/demo/model.packed --mode analytic --array 16x16 --pattern dense

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
