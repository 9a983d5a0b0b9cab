# The two commands of the README:  `make study`  and  `make test`.
# Both create .venv, install the package (CPU torch unless a GPU is present), install
# fluidsynth and a soundfont from Debian's packages when missing, and are quick the
# second time.

PYTHON ?= python3
VENV ?= .venv
BIN := $(abspath $(VENV))/bin
# torch build: auto (CUDA if nvidia-smi works, else CPU), cpu or cuda.
TORCH ?= auto
TORCH_VERSION ?= 2.13.0
TORCH_CPU_INDEX ?= https://download.pytorch.org/whl/cpu
# basic-pitch ships the pretrained ONNX model; --no-deps keeps TensorFlow out. transkun
# ships Transkun 2.0's weights; --no-deps keeps out torchaudio (a second torch build's)
# and its training tools (src/lowrank_amt/deep/transkun_pretrained.py).
BASIC_PITCH_VERSION ?= 0.4.0
TRANSKUN_VERSION ?= 2.0.1
CORES ?= all
# The default study's figures the README shows (copied to docs/figures/ by `make readme-figures`).
README_FIGURES := tradeoff scaling cost-scaling losses
REPORT ?= results/report.html
STAMP := $(VENV)/.installed
export PATH := $(BIN):$(PATH)

.PHONY: help setup system-deps study check-readme readme-tables learning pianos multi guitar multi-class-heads ship-piano scaling scaling-networks onsets-frames-long report readme-figures scaling-figures test slurm-profile clean

help:
	@echo "make study   set up, run the default study (config/config.yaml), build $(REPORT)"
	@echo "make check-readme   after make study: its table against the README's"
	@echo "make readme-tables  after make study: copy its table into the README"
	@echo "make learning   the learning study (config/learning.yaml, ~1 h): hybrids, teacher, networks at 0.1-1 h"
	@echo "make pianos     the pianos study (config/pianos.yaml): learned low-rank models on ten training pianos at 0.1-1 h"
	@echo "make multi      the multi-instrument study (config/multi.yaml): band stems, instrument templates, separation"
	@echo "make guitar     the guitar study (config/guitar.yaml): solo guitar on unheard guitars"
	@echo "make multi-class-heads   after make multi: its hybrid trained with a loss on each class's roll"
	@echo "make ship-piano   retrain the shipped model (transcribe --model piano) from config/pianos.yaml"
	@echo "make scaling    the scaling study (config/scaling.yaml, about 2 h 40 min): every family at 0.03-10 h"
	@echo "make scaling-networks   its networks at every size beside the references, NMF and the hybrid (about 1 h 30 min)"
	@echo "make readme-figures   copy the default study's figures into docs/figures/ (for the README)"
	@echo "make test    set up, run the test suite"
	@echo "make slurm-profile   link profiles/slurm so that 'snakemake --profile slurm' works"

setup: system-deps $(STAMP)

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)

# Re-run when pyproject.toml or this file's pins change. torch first, pinned afterwards,
# so that no later requirement pulls another build
# (on PyPI a plain 'torch' is the CUDA build with several GB of nvidia packages).
$(STAMP): pyproject.toml Makefile | $(BIN)/python
	@set -e; \
	if $(BIN)/python -c "import torch" 2>/dev/null; then \
	  echo "torch already installed: $$($(BIN)/python -c 'import torch; print(torch.__version__)')"; \
	else \
	  build="$(TORCH)"; \
	  if [ "$$build" = auto ]; then \
	    if nvidia-smi >/dev/null 2>&1; then build=cuda; else build=cpu; fi; \
	  fi; \
	  echo "installing torch $(TORCH_VERSION) ($$build build)"; \
	  if [ "$$build" = cuda ]; then \
	    $(BIN)/pip install "torch==$(TORCH_VERSION)"; \
	  else \
	    $(BIN)/pip install "torch==$(TORCH_VERSION)+cpu" 2>/dev/null \
	    || $(BIN)/pip install "torch==$(TORCH_VERSION)" --index-url $(TORCH_CPU_INDEX) --extra-index-url https://pypi.org/simple; \
	  fi; \
	fi; \
	$(BIN)/pip install -e ".[test]" "torch==$$($(BIN)/python -c 'import torch; print(torch.__version__)')"
	$(BIN)/pip install --no-deps "basic-pitch==$(BASIC_PITCH_VERSION)" "transkun==$(TRANSKUN_VERSION)"
	@touch $(STAMP)

# fluidsynth renders the synthetic dataset; a General MIDI soundfont gives it a piano,
# TimGM6mb the default study's out-of-domain test set, and FluidR3 Mono and csound's
# sf_GMbank the pianos study's further training pianos.
DEBIAN_AUDIO := fluidsynth fluid-soundfont-gm timgm6mb-soundfont fluidr3mono-gm-soundfont csound-soundfont
system-deps:
	@if command -v fluidsynth >/dev/null && ls /usr/share/sounds/sf2/FluidR3_GM.sf2 /usr/share/sounds/sf2/TimGM6mb.sf2 /usr/share/sounds/sf2/sf_GMbank.sf2 /usr/share/sounds/sf3/FluidR3Mono_GM.sf3 >/dev/null 2>&1; then \
	  :; \
	elif command -v apt-get >/dev/null && [ "$$(id -u)" = 0 ]; then \
	  echo "installing $(DEBIAN_AUDIO) from Debian's packages"; \
	  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends $(DEBIAN_AUDIO) >/dev/null; \
	elif command -v apt-get >/dev/null && sudo -n true 2>/dev/null; then \
	  sudo apt-get update -qq && sudo DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends $(DEBIAN_AUDIO) >/dev/null; \
	elif command -v fluidsynth >/dev/null && ls /usr/share/sounds/sf2/*.sf2 /usr/share/sounds/sf3/*.sf3 /usr/share/soundfonts/*.sf2 >/dev/null 2>&1; then \
	  echo "note: some of Debian's soundfonts are missing (sudo apt-get install $(DEBIAN_AUDIO)): the default study's out-of-domain test set needs TimGM6mb, the pianos study FluidR3 Mono and sf_GMbank"; \
	else \
	  echo "lowrank-amt needs fluidsynth and a General MIDI soundfont, and cannot install them here (no root)."; \
	  echo "  Debian/Ubuntu: sudo apt-get install $(DEBIAN_AUDIO)"; \
	  echo "  conda (e.g. on a cluster): conda install -c conda-forge fluidsynth, then set datasets.<name>.soundfont to an .sf2 file"; \
	  exit 1; \
	fi

# A killed run leaves Snakemake's lock behind: each study lifts it first, and the Snakefile
# refuses that, in one line, while a run of the folder or one beside it lives
# (src/lowrank_amt/runtime/run_lock.py). $(1): the study's snakemake options.
define unlock
@out=$$($(BIN)/snakemake $(1) --unlock 2>&1) || { echo "$$out" >&2; exit 1; }
endef

study: setup
	$(call unlock,)
	$(BIN)/snakemake --cores $(CORES)
	$(BIN)/snakemake --report $(REPORT)
	@echo "study done: results in results/default/, report in $(REPORT)"

# After `make study`: its table against the README's (README, Reproducibility, says which
# rows must agree exactly and how far the networks' may move); readme-tables copies it in.
check-readme:
	$(BIN)/lowrank-amt page-table README.md --check

readme-tables:
	$(BIN)/lowrank-amt page-table README.md

# The learning study (config/learning.yaml): 0.1, 0.3 and 1 h of training audio, the
# hybrid models, the teacher and the networks; about an hour on 2 cores, not run by CI.
learning: setup
	$(call unlock,--configfile config/learning.yaml)
	$(BIN)/snakemake --configfile config/learning.yaml --cores $(CORES)
	$(BIN)/snakemake --configfile config/learning.yaml --report results/learning-report.html
	@echo "learning study done: results in results/learning/, table in results/learning/summary/summary.md"

# The pianos study (config/pianos.yaml): several templates per key, attack templates,
# semi-supervised NMF, NMFD and NTD on ten training pianos at 0.1, 0.3 and 1 h; not run by CI.
pianos: setup
	$(call unlock,--configfile config/pianos.yaml)
	$(BIN)/snakemake --configfile config/pianos.yaml --cores $(CORES)
	$(BIN)/snakemake --configfile config/pianos.yaml --report results/pianos-report.html
	@echo "pianos study done: results in results/pianos/, table in results/pianos/summary/summary.md"

# The multi-instrument study (config/multi.yaml, docs/multi.md): band pieces with their stems,
# instrument templates, separation; and the guitar study (config/guitar.yaml, docs/guitar.md).
# Each about an hour on 2 cores; not run by CI.
multi guitar: setup
	$(call unlock,--configfile config/$@.yaml)
	$(BIN)/snakemake --configfile config/$@.yaml --cores $(CORES)
	$(BIN)/snakemake --configfile config/$@.yaml --report results/$@-report.html
	@echo "$@ study done: results in results/$@/, table in results/$@/summary/summary.md"

# The hybrid on class templates with a loss on each class's roll (config/multi-class-heads.yaml,
# docs/multi.md), beside the study's own hybrid at 1 h; about 10 minutes after `make multi`.
MULTI_METRICS := results/multi/metrics/synth_band/cqt
multi-class-heads: setup
	$(call unlock,--configfile config/multi.yaml config/multi-class-heads.yaml)
	$(BIN)/snakemake --configfile config/multi.yaml config/multi-class-heads.yaml --cores $(CORES) -- \
		$(foreach m,unrolled_nmfd_inst unrolled_nmfd_inst_classes unrolled_nmfd_inst_classes_4,$(MULTI_METRICS)/$(m)/1h/per_track.csv)

# The shipped model (src/lowrank_amt/shipped_models/piano, `transcribe --model piano`):
# the pianos study's unrolled_nmfd at the size validation note F picks, trained by the
# study's own rules, then copied into the package with its provenance (the pick, its
# validation figure and every candidate's; the 1 h model alone took about 25 minutes on 2
# cores from nothing, and the two smaller sizes add their training).
PIANO_MODELS := $(foreach size,0.1h 0.3h 1h,results/pianos/models/synth_pianos/cqt/unrolled_nmfd/$(size))
ship-piano: setup
	$(call unlock,--configfile config/pianos.yaml)
	$(BIN)/snakemake --configfile config/pianos.yaml --cores $(CORES) $(addsuffix /decoding.json,$(PIANO_MODELS))
	$(BIN)/lowrank-amt ship --model $(PIANO_MODELS) --name piano --config config/pianos.yaml \
		--schema workflow/schemas/config.schema.yaml

# The scaling study (config/scaling.yaml): every family from 0.03 to 10 h of training
# audio; about 2 h 40 min on 2 cores (docs/scaling.md), not run by CI. Killed, it resumes
# where it stopped (finished jobs are kept, training resumes from its last finished epoch).
scaling: setup
	@date -u +"scaling study started %FT%TZ" | tee -a results/scaling-runs.log
	$(call unlock,--configfile config/scaling.yaml)
	$(BIN)/snakemake --configfile config/scaling.yaml --cores $(CORES) --rerun-incomplete
	$(BIN)/snakemake --configfile config/scaling.yaml --report results/scaling-report.html
	@date -u +"scaling study finished %FT%TZ" | tee -a results/scaling-runs.log
	@echo "scaling study done: results in results/scaling/, table in results/scaling/summary/summary.md"

# The networks at every size beside the fixed references, online NMF and the convolutive
# hybrid (docs/scaling.md, "Networks at every size"): a part of the scaling study, its
# summary and figures holding these models alone (a later `make scaling` writes them anew);
# about 1 h 30 min on 2 cores from nothing, not run by CI. The validation curves of the
# networks at 1 and 10 h go into docs/figures/scaling/ with its figures.
SCALING_NETWORKS := nmf_sup_kl,basic_pitch,nmf_semi_online,unrolled_nmfd_gains,harmonic_net,onsets_frames
NETWORK_RUNS := $(foreach m,harmonic_net onsets_frames,$(foreach s,1h 10h,$(m)@$(s)=results/scaling/models/synth_pianos/cqt/$(m)/$(s)/loss.csv))
scaling-networks: setup
	$(call unlock,--configfile config/scaling.yaml)
	$(BIN)/snakemake --configfile config/scaling.yaml --config 'only_models=[$(SCALING_NETWORKS)]' \
		--cores $(CORES) --rerun-incomplete -- results/scaling/summary/scaling.md \
		$(foreach f,scaling compute,results/scaling/plots/$(f).svg)
	@mkdir -p docs/figures/scaling
	cp results/scaling/plots/scaling.svg docs/figures/scaling/networks-scaling.svg
	cp results/scaling/plots/compute.svg docs/figures/scaling/compute.svg
	$(BIN)/lowrank-amt plot-validation --loss $(NETWORK_RUNS) --out docs/figures/scaling/network-validation.svg

# Onsets and Frames at 10 h on a budget 4x the scaling study's (config/onsets-frames-long.yaml),
# by the study's own rules on its feature cache, and its validation curve beside the study's
# budget's (docs/scaling.md; about 20 CPU minutes after `make scaling-networks`).
SCALING_MODELS := results/scaling/models/synth_pianos/cqt
onsets-frames-long: setup
	$(call unlock,--configfile config/scaling.yaml config/onsets-frames-long.yaml)
	$(BIN)/snakemake --configfile config/scaling.yaml config/onsets-frames-long.yaml --cores $(CORES) \
		--rerun-incomplete -- results/scaling/metrics/synth_pianos/cqt/onsets_frames_long/10h/per_track.csv
	@mkdir -p docs/figures/scaling
	$(BIN)/lowrank-amt plot-validation --loss onsets_frames@10h=$(SCALING_MODELS)/onsets_frames/10h/loss.csv \
		onsets_frames_long@10h=$(SCALING_MODELS)/onsets_frames_long/10h/loss.csv --out docs/figures/scaling/onsets-frames-long.svg

# Maintainers: the README's figures come from the default study (tracked, so a plain
# `make study` leaves a clone as it was).
readme-figures:
	@mkdir -p docs/figures && cp $(foreach f,$(README_FIGURES),results/default/plots/$(f).svg) docs/figures/

# ... and those of the README's scaling section from the scaling study.
scaling-figures:
	@mkdir -p docs/figures/scaling && cp $(foreach f,scaling cost-scaling tradeoff-largest,results/scaling/plots/$(f).svg) docs/figures/scaling/

report: setup
	$(BIN)/snakemake --report $(REPORT)

# The report test opens the tiny study's report in headless Chromium: installed here where
# Debian's packages and root allow it, else that test is skipped with one line saying why.
test: setup
	@command -v chromium-headless-shell >/dev/null || command -v chromium >/dev/null || \
	  { [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null && \
	    echo "installing chromium-headless-shell from Debian's packages (for the report test)" && \
	    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq \
	      chromium-headless-shell >/dev/null; } || true
	$(BIN)/pytest

# `snakemake --profile slurm` looks in ./slurm, then ~/.config/snakemake/slurm.
slurm-profile:
	@mkdir -p $(HOME)/.config/snakemake
	@target="$(HOME)/.config/snakemake/slurm"; \
	if [ -e "$$target" ] && [ "$$(readlink -f "$$target")" != "$(abspath profiles/slurm)" ]; then \
	  echo "$$target exists and is not this project's profile; use 'snakemake --profile profiles/slurm' instead"; exit 1; \
	fi; \
	ln -sfn "$(abspath profiles/slurm)" "$$target"; \
	echo "linked $$target -> $(abspath profiles/slurm); edit its partition and account placeholders"

clean:
	rm -rf results/*/ $(REPORT) .snakemake
