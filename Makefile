# Two commands do everything on a fresh machine: `make book` and `make test`.
SHELL := /bin/bash
.SHELLFLAGS := -eo pipefail -c
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed
# One model cache for the notebook checks and the book build, so the book's second execution reuses trained models.
export MINI_MEDCLIP_CACHE ?= $(CURDIR)/.cache/models
export PYTHONHASHSEED := 0
# pip here prints a warning for every missing local index folder; hide that noise only.
PIP_QUIET := 2> >(grep -v "is ignored: it is neither a file nor a directory" >&2)

.PHONY: venv book slides browser student test unit notebooks colab colab-oldest colab-envs bench clean

# The learner's environment: the wheel alone, Python 3.12, no jupyter-book (tools/colab_check.py).
COLAB_PYTHON ?= python3.12

$(STAMP): requirements.txt pyproject.toml
	test -x $(PY) || python3 -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip $(PIP_QUIET)
	$(PY) -m pip install -q -r requirements.txt $(PIP_QUIET)
	$(PY) -m pip install -q -e . $(PIP_QUIET)
	touch $(STAMP)

venv: $(STAMP)

book: $(STAMP)
	$(VENV)/bin/jupyter-book build . -W -n --keep-going
	$(MAKE) slides

# One reveal.js deck per part, from the chapters the book build executed (tools/slides.py): _build/html/slides.
slides: $(STAMP)
	$(PY) tools/slides.py --executed _build/jupyter_execute --out _build/html/slides

# The built book as a reader's browser shows it (tools/browser_check.py): every page loads with no script
# error and no network use, figures load with alt text, links land, search finds, math renders offline;
# screenshots go to _build/browser. playwright (requirements.txt) drives Debian's Chromium, installed here.
CHROMIUM := /usr/bin/chromium
$(CHROMIUM):
	apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium

browser: $(STAMP) | $(CHROMIUM)
	$(PY) tools/browser_check.py _build/html --out _build/browser

# The student edition: the chapters without their solution cells (tagged `solution`), as hand-out notebooks
# and as a -W book made from the instructor build's executed notebooks and glue data (built first if missing).
STUDENT := .cache/student
student: $(STAMP)
	test -d _build/jupyter_execute/book || $(MAKE) book
	$(PY) tools/student_edition.py --out $(STUDENT) --executed _build/jupyter_execute
	$(VENV)/bin/jupyter-book build $(STUDENT) -W -n --keep-going

unit: $(STAMP) | $(CHROMIUM)
	$(PY) -m pytest tests -q -p no:cacheprovider --durations=12

# Notebooks run in the repository's venv (quick local iteration; not part of `make test`).
notebooks: $(STAMP)
	$(PY) -m pytest book --nbval-lax --nbval-current-env --nbval-cell-timeout=900 -p no:cacheprovider -p no:python -q

# The package's wheel, built once per change of the package (what `pip install mini-medclip` would get).
# setuptools stages files in build/, which is cleared first so that no deleted module rides along.
VERSION := $(shell sed -n 's/^VERSION = "\(.*\)"/\1/p' mini_medclip/release.py)
WHEEL := .cache/wheel/mini_medclip-$(VERSION)-py3-none-any.whl
$(WHEEL): $(STAMP) pyproject.toml $(shell find mini_medclip -type f -not -path '*/__pycache__/*')
	rm -rf build $(dir $(WHEEL))
	$(PY) -m pip wheel -q --no-deps -w $(dir $(WHEEL)) . $(PIP_QUIET)
	test -f $@
COLAB = $(PY) tools/colab_check.py --python $(COLAB_PYTHON) --wheel $(WHEEL)
OLDEST = --venv .venv-colab-oldest --constraints tools/oldest.txt --from-venv .venv-colab

# The two learner environments, built while the unit tests run: a fresh one at the newest versions, and
# the oldest end as a hard-linked copy of it in which pip replaces only the pinned packages.
colab-envs: $(WHEEL)
	$(COLAB) --venv .venv-colab --prepare-only
	$(COLAB) $(OLDEST) --prepare-only

# Every chapter cold, alone, from the wheel, at the newest versions that install: the notebook test.
# Its seconds per chapter go to .cache/chapter_times.json (the record chapter 0 shows, for this machine).
colab: $(WHEEL)
	$(COLAB) --venv .venv-colab --record .cache/chapter_times.json

# The workshop path at the oldest versions the ranges admit: export the cache `colab` filled as a bundle
# (the instructor), import it into an empty cache from the learner's environment, run chapters warm there.
# Every chapter reaches transformers and tokenizers through the same package functions, so the oldest end
# runs the chapters that exercise each of them (tokenizer and model building, cached models and
# evaluation, releases and victims, defenses and fine-tuning); the newest end runs them all, cold.
OLDEST_CHAPTERS := $(addprefix book/,00_intro.ipynb 02_model.ipynb 04_training.ipynb 06_baddist.ipynb 08_defenses.ipynb)
BUNDLE_DIR := $(CURDIR)/.cache/bundle
colab-oldest: $(WHEEL)
	$(COLAB) $(OLDEST) --prepare-only
	rm -rf $(BUNDLE_DIR) && mkdir -p $(BUNDLE_DIR)
	$(PY) -m mini_medclip cache export --out $(BUNDLE_DIR)/mini-medclip-tiny.tar | tee $(BUNDLE_DIR)/export.txt
	MINI_MEDCLIP_CACHE=$(BUNDLE_DIR)/imported .venv-colab-oldest/bin/python -m mini_medclip cache import \
		$(BUNDLE_DIR)/mini-medclip-tiny.tar --sha256 "$$(tail -n 1 $(BUNDLE_DIR)/export.txt)"
	MINI_MEDCLIP_CACHE=$(BUNDLE_DIR)/imported $(COLAB) $(OLDEST) $(OLDEST_CHAPTERS)

test: $(STAMP)
	$(MAKE) -j2 unit colab-envs
	$(MAKE) colab book browser student colab-oldest

bench: $(STAMP)
	$(PY) benchmarks/phantom_speed.py

clean:
	rm -rf _build .cache build .venv-colab .venv-colab-oldest .venv-colab-wheel .venv-colab-oldest-wheel
