"""``misinfo optimize``: measure detector configurations on this machine and write an optimization profile.

Each candidate (dtype, attention implementation, ``torch.compile``, dynamic int8, merged or unmerged
LoRA, batch size, CPU threads) runs in its own child process: load time, thread settings, compile
caches and peak memory are then its own, and a candidate that crashes costs only its row in the table.
The first candidate is the baseline, float32 with eager attention at the default batch size; every
other candidate's class probabilities on the eval set are compared with it.

The fastest candidate (images/s) that keeps ``min_agreement`` and fits ``memory_budget_mb`` is chosen.

- ``candidates``: what to measure (:class:`Candidate`, :func:`default_grid`) and on what (:func:`eval_images`)
- ``measure``: one candidate in a child process (:func:`run_candidate`, :func:`measure_candidate`)
- ``choose``: agreement with the baseline, eligibility and the choice (:func:`optimize`)
- ``report``: the bar chart and the MLflow runs
- ``cli``: the ``misinfo optimize`` command
"""
