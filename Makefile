# rankcore: two commands set everything up on a fresh machine.
#   make book   - create .venv if missing, install, execute the chapters, build _build/html
#   make test   - create/use the same .venv, run the whole test suite
# Installs use constraints.txt (the exact versions the book was built with); pyproject.toml
# only sets lower bounds. For a CPU-only torch, see the README.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
PROFILE ?= quick
STAMP  := $(VENV)/.installed
# The data root the library uses: $RANKCORE_DATA, else the checkout's data/.
DATA   := $(if $(RANKCORE_DATA),$(RANKCORE_DATA),data)

.PHONY: book run html test bench install clean data

# The CIFAR-10 chapters and tests need CIFAR-10. Where the development machines' shared
# copy sits beside the checkout (../shared), unpack it into the data root (idempotent) and
# link its model checkpoints into <data root>/models, where rankcore.models looks; elsewhere
# torchvision downloads CIFAR-10 when online.
SHARED := ../shared
data:
	@if [ -x $(SHARED)/data/prepare.sh ]; then $(SHARED)/data/prepare.sh "$(DATA)"; fi
	@if [ -d $(SHARED)/models ] && [ ! -L "$(DATA)/models" ]; then \
		mkdir -p "$(DATA)/models" && for f in $(abspath $(SHARED)/models)/*; do \
			[ -e "$(DATA)/models/$$(basename $$f)" ] || ln -s "$$f" "$(DATA)/models/"; done; fi

$(STAMP): pyproject.toml constraints.txt
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	$(BIN)/python -m pip install -q -c constraints.txt -e ".[book,dev]"
	touch $(STAMP)

install: $(STAMP)

book: $(STAMP) data
	$(BIN)/rankcore book run --profile $(PROFILE)
	$(BIN)/rankcore book build --profile $(PROFILE)

test: $(STAMP) data
	$(BIN)/python -m pytest

bench: $(STAMP)
	for b in bench/*_bench.py; do echo "== $$b"; $(BIN)/python $$b || exit 1; done

clean:
	rm -rf _build results
