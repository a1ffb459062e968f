# llmforge — every target works from a fresh clone (test/demo/bench install first when .venv is missing).
SHELL := /bin/bash
VENV ?= .venv
PY := $(VENV)/bin/python
LLMFORGE := $(VENV)/bin/llmforge
RECIPE ?= recipes/tiny.toml
export HF_HUB_OFFLINE ?= 1
export HF_DATASETS_OFFLINE ?= 1
export TOKENIZERS_PARALLELISM ?= false
# torch: the CPU build (a wheel on this disk) when there is no NVIDIA GPU, the ordinary CUDA build otherwise.
TORCH_SPEC := $(shell command -v nvidia-smi >/dev/null 2>&1 && echo 'torch>=2.11' || echo 'torch==2.13.0')

.PHONY: install test test-fast demo bench bench-quick lint clean serve review

install: $(VENV)/.installed

$(VENV)/.installed: pyproject.toml
	python3 -m venv $(VENV)
	$(PY) -m pip install -q -U pip
	$(PY) -m pip install "$(TORCH_SPEC)"
	# pin the torch just installed so no later resolver step swaps in another build
	$(PY) -c "import torch; print('torch==' + torch.__version__)" > $(VENV)/constraints.txt
	$(PY) -m pip install -c $(VENV)/constraints.txt -e ".[dev,ray]"
	touch $@

test: install
	$(PY) -m pytest -q

test-fast: install
	$(PY) -m pytest -q -m "not slow"

RUN_DIR := runs/tiny
SHARED_DATA ?= ../shared/data

# The whole pipeline on the embedded default (the running Python's standard library), ~15 min on 2 CPU cores.
# It starts from an empty run directory, so every run of the demo reproduces it from scratch.
demo: install
	rm -rf $(RUN_DIR)
	$(LLMFORGE) recipe check $(RECIPE)
	$(LLMFORGE) plan --compute 1e21 --gpu h100-sxm --gpus 8 --price 2.5
	$(LLMFORGE) plan shape --arch llama --layers 4 --d-model 128 --heads 4 --vocab 4096 --seq 256
	$(LLMFORGE) data build $(RECIPE)
	$(LLMFORGE) data sample $(RUN_DIR)/dataset -n 2
	$(LLMFORGE) data stats $(RUN_DIR)/dataset
	if [ -d $(SHARED_DATA)/wikitext2 ]; then \
	  $(LLMFORGE) data train-classifier --positive $(SHARED_DATA)/wikitext2/valid.txt \
	    --negative $(SHARED_DATA)/tinyshakespeare/input.txt --out $(RUN_DIR)/quality-classifier; fi
	$(LLMFORGE) tokenize train $(RECIPE)
	$(LLMFORGE) tokenize encode $(RECIPE)
	$(LLMFORGE) pretrain $(RECIPE)
	first=$$(ls -d $(RUN_DIR)/checkpoints/step-* | head -1); last=$$(ls -d $(RUN_DIR)/checkpoints/step-* | tail -1); \
	reports=""; \
	for c in $$first $$last; do \
	  $(LLMFORGE) eval perplexity $$c --tokens $(RUN_DIR)/tokens || exit 1; \
	  reports="$$reports $(RUN_DIR)/reports/perplexity/$$(basename $$c)"; \
	  if [ -d $(SHARED_DATA)/piqa ]; then \
	    $(LLMFORGE) eval run $$c --recipe $(RECIPE) --set eval.data_dir=$(SHARED_DATA) || exit 1; \
	    reports="$$reports $(RUN_DIR)/reports/eval/$$(basename $$c)"; \
	  else echo "($(SHARED_DATA)/piqa not found: skipping the offline PIQA benchmark)"; fi; \
	done; \
	$(LLMFORGE) eval compare $$reports --png $(RUN_DIR)/reports/compare.png
	$(LLMFORGE) plan frontier --png $(RUN_DIR)/reports/frontier.png --run $(RUN_DIR)
	$(LLMFORGE) inspect $(RUN_DIR)/reports/pretrain
	$(LLMFORGE) finetune make-docstring-pairs --dataset $(RUN_DIR)/dataset --tokens $(RUN_DIR)/tokens --out $(RUN_DIR)/instructions
	$(LLMFORGE) finetune sft $(RECIPE)
	head -n 2 $(RUN_DIR)/instructions/val.jsonl > $(RUN_DIR)/demo-prompts.jsonl
	@echo "--- before instruction tuning (the pretrained model continues the prompt) ---"
	$(LLMFORGE) generate $(RUN_DIR)/checkpoints/step-000200 --file $(RUN_DIR)/demo-prompts.jsonl --max-new-tokens 60 --temperature 0
	@echo "--- after instruction tuning (chat template; the model ends its answer itself) ---"
	$(LLMFORGE) generate $(RUN_DIR)/finetune/checkpoint --chat --file $(RUN_DIR)/demo-prompts.jsonl --max-new-tokens 60 --temperature 0
	$(LLMFORGE) rlhf make-preference-pairs --instructions $(RUN_DIR)/instructions --out $(RUN_DIR)/preferences
	$(LLMFORGE) rlhf reward $(RECIPE)
	$(LLMFORGE) rlhf dpo $(RECIPE)
	$(LLMFORGE) rlhf ppo $(RECIPE)
	if [ -d $(SHARED_DATA)/piqa ]; then \
	  $(LLMFORGE) rlhf tax $(RUN_DIR)/finetune/checkpoint $(RUN_DIR)/rlhf/dpo/checkpoint --tasks piqa --limit 200 \
	    --data-dir $(SHARED_DATA) --out $(RUN_DIR)/reports/tax; fi
	@echo "--- after DPO (real bodies preferred over corrupted copies) ---"
	$(LLMFORGE) generate $(RUN_DIR)/rlhf/dpo/checkpoint --chat --file $(RUN_DIR)/demo-prompts.jsonl --max-new-tokens 60 --temperature 0
	@echo "--- bias audit of the DPO model (toxicity scored by a classifier trained on Davidson et al.'s tweets) ---"
	if [ -f $(SHARED_DATA)/hate_offensive_davidson/labeled_data.csv ]; then \
	  $(LLMFORGE) data train-classifier --labelled $(SHARED_DATA)/hate_offensive_davidson/labeled_data.csv \
	    --text-key tweet --label-key class --positive-labels 0,1 --out $(RUN_DIR)/toxicity-classifier && \
	  $(LLMFORGE) bias run $(RUN_DIR)/rlhf/dpo/checkpoint --recipe $(RECIPE) \
	    --scorer classifier:$(RUN_DIR)/toxicity-classifier; fi
	$(LLMFORGE) card $(RUN_DIR) --checkpoint rlhf/dpo/checkpoint
	$(LLMFORGE) report $(RUN_DIR)

# After `make demo`: its two chat checkpoints behind the OpenAI API (playground at http://127.0.0.1:8000/), or
# paired on the demo prompts for people to label at http://127.0.0.1:8000/review. Ctrl-C stops either.
serve: install
	$(LLMFORGE) serve sft=$(RUN_DIR)/finetune/checkpoint dpo=$(RUN_DIR)/rlhf/dpo/checkpoint

review: install
	$(LLMFORGE) review $(RUN_DIR)/demo-prompts.jsonl --model sft=$(RUN_DIR)/finetune/checkpoint \
	  --model dpo=$(RUN_DIR)/rlhf/dpo/checkpoint --out $(RUN_DIR)/review

bench: install
	$(PY) -m benchmarks.run

# every benchmark, those with a BENCH_QUICK mode with fewer steps and rounds (< 5 min on 2 cores), into
# benchmarks/results/quick/ (never over the measurements)
bench-quick: install
	BENCH_QUICK=1 $(PY) -m benchmarks.run

lint: install
	$(VENV)/bin/ruff check llmforge tests benchmarks
	$(VENV)/bin/ruff format --check llmforge tests benchmarks

clean:
	rm -rf runs .pytest_cache .ruff_cache build dist *.egg-info
	find . -name __pycache__ -type d -prune -exec rm -rf {} +
