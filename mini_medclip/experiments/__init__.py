"""Experiments: the layer that turns the algorithms of `attacks/` and `defenses/` into measured results.

Read in this order; a new victim protocol or a new experiment is an edit to one of these files:

* `runs.py`: what one experiment is (`Run`) and the names every layer uses for attacks and tasks;
* `protocols.py`: who trains what, the provider's releases and the victim protocols, each named once;
* `scoring.py`: the numbers a trained model gets (zero-shot, retrieval, BA, ASR per task);
* `run_folder.py`: one run trained into a folder on disk, resumable, with its `metrics.json` (the CLI's `train`);
* `defense_eval.py`: one defense scored against one run's victim, from the defender's position;
* `reproduce.py`: the plan of the paper's experiments and its resumable runner;
* `report.py`: the shipped results, the verdicts, tables and figures.
"""
