# BattGen: `make app` starts the web app, `make test` runs the test suite.
# Everything installs into ./.venv; a second run only redoes what changed.

SHELL := /bin/bash
.DEFAULT_GOAL := app

PYTHON_BOOTSTRAP ?= python3
VENV := .venv
VENV_PYTHON := $(VENV)/bin/python
VENV_PIP := $(VENV)/bin/pip
# Pinned and installed on its own, before requirements.txt: any later requirement that
# pulls in torch then finds it satisfied instead of downloading a multi-GB CUDA build.
TORCH_PIN := torch==2.13.0
INSTALL_STAMP := $(VENV)/.installed

# The 3Dmol.js version matches py3Dmol in requirements.txt, so the notebook-style viewer
# and the offline copy speak the same API. Streamlit serves ./static/ at /app/static/.
THREEDMOL_VERSION := 2.5.5
THREEDMOL_JS := static/vendor/3Dmol-min.js

CHROMIUM := /usr/bin/chromium

.PHONY: app test test-fast bench assets venv rebuild-afm-screening rebuild-afm-robust afm-instrument-campaigns robust-afm-models rebuild-screening \
  screening-from-latents rebuild-sei

venv: $(INSTALL_STAMP)

$(VENV_PYTHON):
	$(PYTHON_BOOTSTRAP) -m venv $(VENV)

$(INSTALL_STAMP): requirements.txt pyproject.toml | $(VENV_PYTHON)
	$(VENV_PIP) install $(TORCH_PIN)
	$(VENV_PIP) install -r requirements.txt
	# The `battgen` command; --no-deps: everything it needs was pinned above.
	$(VENV_PIP) install --no-deps --no-build-isolation -e .
	touch $@

# Never fails the build: without 3Dmol.js only the 3D structure viewers are missing;
# a page that needs it should check for the file and say so.
assets:
	@if [ -s "$(THREEDMOL_JS)" ]; then \
		exit 0; \
	elif ! command -v npm >/dev/null 2>&1; then \
		echo "WARNING: npm not found; $(THREEDMOL_JS) not fetched, 3D structure viewers will be unavailable." >&2; \
	else \
		tmp_dir=$$(mktemp -d) && \
		if (cd "$$tmp_dir" && npm pack --loglevel=error 3dmol@$(THREEDMOL_VERSION) >/dev/null 2>npm.log \
				&& tar -xzf 3dmol-$(THREEDMOL_VERSION).tgz package/build/3Dmol-min.js package/build/3Dmol-min.js.LICENSE.txt); then \
			mkdir -p "$$(dirname $(THREEDMOL_JS))" && \
			cp "$$tmp_dir/package/build/3Dmol-min.js" "$(THREEDMOL_JS)" && \
			cp "$$tmp_dir/package/build/3Dmol-min.js.LICENSE.txt" "$(THREEDMOL_JS).LICENSE.txt" && \
			echo "Fetched 3Dmol.js $(THREEDMOL_VERSION) into $(THREEDMOL_JS)"; \
		else \
			echo "WARNING: could not fetch 3dmol@$(THREEDMOL_VERSION) from npm; 3D structure viewers will be unavailable." >&2; \
			tail -n 5 "$$tmp_dir/npm.log" >&2 2>/dev/null || true; \
		fi; \
		rm -rf "$$tmp_dir"; \
	fi

app: venv assets
	$(VENV_PYTHON) -m battgen.ui.serve

# The browser tests need Debian's chromium. If it cannot be installed we carry on: those
# tests then fail with a message naming the missing browser, rather than the whole target
# dying here before the rest of the suite has run.
test: venv assets
	@if [ ! -x "$(CHROMIUM)" ]; then \
		echo "Installing Debian chromium for the browser tests..."; \
		if ! { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null; }; then \
			echo "WARNING: could not install chromium with apt-get; the browser tests will FAIL." >&2; \
		fi; \
	fi
	BATTGEN_CHROMIUM=$(CHROMIUM) $(VENV_PYTHON) -m pytest -q

# The unit tier without the slow tests: the loop to run while editing (about 2 min on 2 cores).
test-fast: venv
	$(VENV_PYTHON) -m pytest -q tests/unit -m "not slow and not browser"

# Scripts run as plain files from the repo root; PYTHONPATH lets them import battgen
# without installing it.
bench: venv
	@status=0; found=0; \
	for script in benchmarks/bench_*.py; do \
		[ -e "$$script" ] || continue; \
		found=1; \
		echo "== $$script"; \
		PYTHONPATH="$(CURDIR)$${PYTHONPATH:+:$$PYTHONPATH}" $(VENV_PYTHON) "$$script" || status=1; \
	done; \
	if [ $$found -eq 0 ]; then echo "No benchmarks/bench_*.py scripts found." >&2; status=1; fi; \
	exit $$status

# Rebuild the AFM and screening artifacts from the shipped electrode table: ppafm campaign
# (~30 min), translator with and without discriminator side by side (one core each, ~55 min),
# the type-map decoder fine-tune (~50 min), atom regressor, example stacks, screening model (~75 min),
# its evaluation and guidance sweep. About 4 h on 2 CPU cores;
# with a GPU present every trainer uses it. Set AFM_DATA to keep the 280 MB dataset elsewhere.
AFM_DATA ?= data/afm
TRANSLATOR_ARGS := --data $(AFM_DATA) --threads 1 --channels 16,32,64 --epochs 14 --patience 14 --max-minutes 55
ATOM_REGRESSOR_ARGS := --threads 2 --max-minutes 10
# The screening model generates a material's mean latent, so its compositions are read by an atom
# regressor trained on mean latents (the AFM page's, trained on single views, reads them at R2 0.33).
SCREENING_REGRESSOR ?= data/screening_atom_regressor
SCREENING_ARGS := --channels 32,64,64 --lr 5e-4 --epochs 1000 --patience 0 --max-minutes 75 --threads 1 \
  --prediction-type v_prediction --zero-terminal-snr --min-snr-gamma 0 --condition-norm zscore --targets mean \
  --select-by val_composition_r2 --select-every 5 --atom-regressor $(SCREENING_REGRESSOR)
# The type map's rare gas-phase class dies behind tanh (its channel is -1 on 99 % of pixels):
# the decoder is fine-tuned with a straight-through clamp on the type map, encoder frozen, so
# the latents and every model trained on them stay exactly as they were.
TYPE_MAP_FINE_TUNE := --init-from checkpoints/translator --freeze-encoder --output-activation clamp-type-map \
  --reinit-output --adv-warmup-epochs 2 --max-minutes 50
rebuild-afm-screening: venv
	$(VENV_PYTHON) -m battgen afm build-dataset --table assets/electrodes --out $(AFM_DATA) --views 4 --grid 64 --workers 2
	$(VENV_PYTHON) -m battgen train translator $(TRANSLATOR_ARGS) --no-progress & adversarial=$$!; \
	$(VENV_PYTHON) -m battgen train translator $(TRANSLATOR_ARGS) --no-progress --no-adversarial & ablation=$$!; \
	wait $$adversarial && wait $$ablation
	$(VENV_PYTHON) -m battgen train translator $(TRANSLATOR_ARGS) $(TYPE_MAP_FINE_TUNE) --no-progress
	$(VENV_PYTHON) -m battgen afm calibrate-ood
	$(VENV_PYTHON) -m battgen train atom-regressor --data $(AFM_DATA) --translator checkpoints/translator $(ATOM_REGRESSOR_ARGS)
	$(MAKE) afm-instrument-campaigns AFM_TEST_DATA=$(AFM_DATA) AFM_SUBSET_DATA=$(AFM_DATA)
	rm -rf $(ROBUST_TEACHER) && cp -r checkpoints/translator $(ROBUST_TEACHER)
	$(VENV_PYTHON) -m battgen afm robustness --data $(AFM_DATA) --translator $(ROBUST_TEACHER) \
	  --simulated $(AFM_TEST_VARIANTS)/*
	$(MAKE) robust-afm-models AFM_TEST_DATA=$(AFM_DATA) AFM_SUBSET_DATA=$(AFM_DATA)
	$(VENV_PYTHON) -m battgen afm encode-latents --data $(AFM_DATA)  # the student's latents, now for every view
	$(VENV_PYTHON) -m battgen afm calibrate-ood
	$(VENV_PYTHON) -m battgen afm export-examples --data $(AFM_DATA)
	$(MAKE) screening-from-latents
	rm -f checkpoints/translator_noadv/latents.npz  # the app searches the shipped translator's latents only

# Issue 16's sim-to-real step on the shipped translator, without the whole campaign: the held-out
# test materials, the first ROBUST_SUBSET training materials, the first ROBUST_VARIANTS test materials
# imaged with other instruments (Xe probe, tip 0.2 Å closer and farther: the robustness table's
# simulated rows) and the first ROBUST_TRAIN_VARIANTS training materials with a Xe probe and the tip
# 0.3 Å closer and farther (other offsets than the table's), all simulated (~110 min on 2 cores);
# then robust-afm-models: the encoder of ROBUST_TEACHER (the translator before
# it, shipped with its own robustness table: the 'before' columns) fine-tuned to read distorted
# stacks and other instruments' stacks as their clean references, decoder and latent space kept
# (three stages, ~100 min); the atom regressor retrained with distorted copies of the subset's views (~10 min);
# and the robustness table again.
AFM_TEST_DATA ?= data/afm_test
AFM_SUBSET_DATA ?= data/afm_train_subset
AFM_TEST_VARIANTS ?= data/afm_test_variants
AFM_SUBSET_VARIANTS ?= data/afm_train_variants
ROBUST_TEACHER ?= checkpoints/translator_teacher
ROBUST_SUBSET ?= 300
ROBUST_VARIANTS ?= 150
ROBUST_TRAIN_VARIANTS ?= 120
ROBUST_ENCODER_ARGS := --epochs 24 --patience 4 --max-minutes 35 --threads 2 --no-progress
# The shipped encoder's second and third stages: 40 more epochs each, from the stage before towards the
# same teacher (each still improved at its end).
ROBUST_ENCODER_NEXT_STAGE_ARGS := --init-from checkpoints/translator --epochs 40 --patience 6 --max-minutes 45 --threads 2 \
  --no-progress
# The fourth stage draws 1/f noise 2.5 times as often as each other kind (a third of the pairs): the kind
# the encoder read worst (README, "Robust encoder").
ROBUST_ENCODER_PINK_STAGE_ARGS := --init-from checkpoints/translator --epochs 40 --patience 6 --max-minutes 42 --threads 2 \
  --no-progress --pink-weight 2.5
# --latent-noise 0.3: of 0, 0.15, 0.3 and 0.5 the one whose worst robustness row reads composition best,
# at an unchanged mean over the rows; --pink-weight 2.5: a third of the distorted copies carry 1/f noise;
# --turned-copies 3: the subset's views turned or mirrored, as the page reads every stack in all eight
# orientations (README, "Atom regressor").
ROBUST_REGRESSOR_ARGS := --output fractions --augment shift --distorted-copies 2 --latent-noise 0.3 --threads 2 \
  --max-minutes 13 --no-progress --pink-weight 2.5 --turned-copies 3
CAMPAIGN := $(VENV_PYTHON) -m battgen afm build-dataset --table assets/electrodes --views 4 --grid 64 --workers 2
rebuild-afm-robust: venv
	$(CAMPAIGN) --out $(AFM_TEST_DATA) --split test
	$(CAMPAIGN) --out $(AFM_SUBSET_DATA) --split train --limit $(ROBUST_SUBSET)
	$(MAKE) afm-instrument-campaigns
	$(MAKE) robust-afm-models

afm-instrument-campaigns: venv
	$(CAMPAIGN) --out $(AFM_TEST_VARIANTS)/xe --split test --limit $(ROBUST_VARIANTS) --probe Xe
	$(CAMPAIGN) --out $(AFM_TEST_VARIANTS)/tip_closer --split test --limit $(ROBUST_VARIANTS) --tip-closer 0.2
	$(CAMPAIGN) --out $(AFM_TEST_VARIANTS)/tip_farther --split test --limit $(ROBUST_VARIANTS) --tip-closer -0.2
	$(CAMPAIGN) --out $(AFM_SUBSET_VARIANTS)/xe --split train --limit $(ROBUST_TRAIN_VARIANTS) --probe Xe
	$(CAMPAIGN) --out $(AFM_SUBSET_VARIANTS)/tip_closer_0.3 --split train --limit $(ROBUST_TRAIN_VARIANTS) \
	  --tip-closer 0.3
	$(CAMPAIGN) --out $(AFM_SUBSET_VARIANTS)/tip_farther_0.3 --split train --limit $(ROBUST_TRAIN_VARIANTS) \
	  --tip-closer -0.3

robust-afm-models: venv
	$(VENV_PYTHON) -m battgen train robust-encoder --teacher $(ROBUST_TEACHER) --data $(AFM_SUBSET_DATA) \
	  --instrument-data $(AFM_SUBSET_VARIANTS) --eval-data $(AFM_TEST_DATA) $(ROBUST_ENCODER_ARGS)
	$(VENV_PYTHON) -m battgen train robust-encoder --teacher $(ROBUST_TEACHER) --data $(AFM_SUBSET_DATA) \
	  --instrument-data $(AFM_SUBSET_VARIANTS) --eval-data $(AFM_TEST_DATA) $(ROBUST_ENCODER_NEXT_STAGE_ARGS)
	$(VENV_PYTHON) -m battgen train robust-encoder --teacher $(ROBUST_TEACHER) --data $(AFM_SUBSET_DATA) \
	  --instrument-data $(AFM_SUBSET_VARIANTS) --eval-data $(AFM_TEST_DATA) $(ROBUST_ENCODER_NEXT_STAGE_ARGS)
	$(VENV_PYTHON) -m battgen train robust-encoder --teacher $(ROBUST_TEACHER) --data $(AFM_SUBSET_DATA) \
	  --instrument-data $(AFM_SUBSET_VARIANTS) --eval-data $(AFM_TEST_DATA) $(ROBUST_ENCODER_PINK_STAGE_ARGS)
	$(VENV_PYTHON) -m battgen train atom-regressor --latents checkpoints/translator/latents.npz \
	  --distorted-data $(AFM_SUBSET_DATA) $(ROBUST_REGRESSOR_ARGS)
	$(VENV_PYTHON) -m battgen afm robustness --data $(AFM_TEST_DATA) --simulated $(AFM_TEST_VARIANTS)/* \
	  --before $(ROBUST_TEACHER)/robustness.json

# After the electrode table grew (data build-electrodes --keep-splits-from assets/electrodes): simulate
# only the new materials (the campaign is resumable), encode them with the shipped translator
# (weights unchanged), retrain the mean-latent atom regressor and the screening model, evaluate.
# About 1.8 h on 2 CPU cores.
rebuild-screening: venv
	$(VENV_PYTHON) -m battgen afm build-dataset --table assets/electrodes --out $(AFM_DATA) --views 4 --grid 64 --workers 2
	$(VENV_PYTHON) -m battgen afm encode-latents --data $(AFM_DATA) --translator checkpoints/translator
	$(VENV_PYTHON) -m battgen afm calibrate-ood
	$(MAKE) screening-from-latents

screening-from-latents: venv
	$(VENV_PYTHON) -m battgen train atom-regressor --latents checkpoints/translator/latents.npz --views mean \
	  --threads 1 --max-minutes 10 --out $(SCREENING_REGRESSOR)
	$(VENV_PYTHON) -m battgen train screening --latents checkpoints/translator/latents.npz $(SCREENING_ARGS)
	$(VENV_PYTHON) -m battgen eval screening --afm-data $(AFM_DATA)
	$(VENV_PYTHON) -m battgen eval guidance-sweep --afm-data $(AFM_DATA) --split val

# Rebuild the SEI dataset and its three models: 4,000 KMC runs at the 12 M-event bound (about
# 1.6 h on 2 CPU cores; resumable), then the VAE, prVAE and cprVAE on the runs that passivated,
# side by side (25 min). Set SEI_DATA to keep the dataset elsewhere.
SEI_DATA ?= data/sei
SEI_TRAIN_ARGS := --data $(SEI_DATA) --runs passivated --epochs 150 --patience 12 --kl-warmup-epochs 12 \
  --max-minutes 25 --threads 1 --no-progress
rebuild-sei: venv
	$(VENV_PYTHON) -m battgen sei build-dataset --n 4000 --size 50 --out $(SEI_DATA) --workers 2
	cp $(SEI_DATA)/dataset.npz $(SEI_DATA)/metadata.json $(SEI_DATA)/metrics.json assets/sei/
	$(VENV_PYTHON) -m battgen train sei-vae $(SEI_TRAIN_ARGS) & vae=$$!; \
	$(VENV_PYTHON) -m battgen train sei-prvae $(SEI_TRAIN_ARGS) & prvae=$$!; \
	$(VENV_PYTHON) -m battgen train sei-cprvae $(SEI_TRAIN_ARGS) & cprvae=$$!; \
	wait $$vae && wait $$prvae && wait $$cprvae
