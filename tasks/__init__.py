"""The zoo (``tasks.zoo``) and the benchmark's analysis tasks.

An analysis task is one function ``analysis(ctx) -> AnalysisResult`` registered with
``@analysis("name", reads_previous=False)`` (``tasks.base``) in its own module, listed in ``tasks.base.TASK_MODULES``;
``runners.analyze`` runs every registered task on a collected sweep. A task reads the sweep's ``scores`` (and, when it needs raw representations, the representation cache), returns tidy
evaluation rows (``measure``, ``statistic``, ``value`` plus any cell columns) and writes its figures.
"""
