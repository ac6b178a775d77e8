# rankcore: two commands set everything up on a fresh machine.
#   make book   - create .venv if missing, install, execute the chapters, build _build/html
#   make test   - create/use the same .venv, run the whole test suite
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
PROFILE ?= quick
STAMP  := $(VENV)/.installed

.PHONY: book run html test bench install clean data

# The CIFAR-10 chapters and tests need CIFAR-10. Where RANKCORE_DATA is unset and the
# development machines' shared copy sits beside the checkout, unpack it into the
# git-ignored data/ cache; elsewhere torchvision downloads CIFAR-10 when online.
SHARED_PREPARE := ../shared/data/prepare.sh
data:
	@if [ -z "$$RANKCORE_DATA" ] && [ ! -d data/cifar10-jpeg ] && [ -x $(SHARED_PREPARE) ]; then \
		$(SHARED_PREPARE) data; fi

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	$(BIN)/python -m pip install -q -e ".[book,dev]"
	touch $(STAMP)

install: $(STAMP)

book: $(STAMP) data
	$(BIN)/python -m rankcore.book run --profile $(PROFILE)
	$(BIN)/python -m rankcore.book build --profile $(PROFILE)

test: $(STAMP) data
	$(BIN)/python -m pytest

bench: $(STAMP)
	for b in bench/*_bench.py; do echo "== $$b"; $(BIN)/python $$b || exit 1; done

clean:
	rm -rf _build results
