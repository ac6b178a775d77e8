# rankcore: one command per goal on a fresh machine.
#   make install - create .venv if missing, install the library, the `rankcore` command and
#                  the sample photos (the `samples` and `plot` extras)
#   make book    - the same venv with the book's extras; execute the chapters, build _build/html
#   make test    - the same venv with the book's and the tests' extras; run the whole suite
# Installs use constraints.txt (the exact versions the book was built with); pyproject.toml
# only sets lower bounds. TORCH_INDEX=URL takes torch and torchvision from another index
# first, e.g. the CPU-only wheels: make install TORCH_INDEX=https://download.pytorch.org/whl/cpu
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
PROFILE ?= quick
STAMP  := $(VENV)/.installed
LIBRARY_STAMP := $(VENV)/.installed-library
TORCH_INDEX ?=
# torch==X torchvision==Y of constraints.txt, for the TORCH_INDEX install.
TORCH_PINS := $(shell grep -E '^(torch|torchvision)==' constraints.txt)
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

# A venv with pip up to date, and torch from TORCH_INDEX when one is given (few retries, so an
# unreachable index fails in seconds, not after pip's default 90 s of retries).
define VENV_AND_TORCH
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	$(if $(TORCH_INDEX),$(BIN)/python -m pip install -q --retries 1 --timeout 15 \
		--index-url $(TORCH_INDEX) $(TORCH_PINS))
endef

$(LIBRARY_STAMP): pyproject.toml constraints.txt
	$(VENV_AND_TORCH)
	$(BIN)/python -m pip install -q -c constraints.txt -e ".[samples,plot]"
	touch $(LIBRARY_STAMP)

$(STAMP): pyproject.toml constraints.txt
	$(VENV_AND_TORCH)
	$(BIN)/python -m pip install -q -c constraints.txt -e ".[book,dev]"
	touch $(STAMP) $(LIBRARY_STAMP)

install: $(LIBRARY_STAMP)

book: $(STAMP) data
	$(BIN)/rankcore book run --profile $(PROFILE)
	$(BIN)/rankcore book build --profile $(PROFILE)

test: $(STAMP) data
	$(BIN)/python -m pytest

bench: $(STAMP)
	for b in bench/*_bench.py; do echo "== $$b"; $(BIN)/python $$b || exit 1; done

clean:
	rm -rf _build results
