"""Analysis tools: parameter/FLOPs/memory/cost, mask pictures, attention rank, emergence metrics.

* ``params``: ``count_parameters(config)`` (analytic, equals the built model's numel) and its breakdown;
  ``published``: the published totals the presets are checked against;
* ``compute``: ``estimate(config, Setup(...))``: training/inference FLOPs, memory, time, cost, energy, CO2;
* ``attention_rank``: numerical/effective rank and log-determinant of causal vs bidirectional attention;
* ``emergence`` (analytic metrics) and ``emergence_sweep`` (a trained size sweep on addition);
* ``mask_plots``, ``cost_report``, ``rank_plots``, ``emergence_report``: text, CSV/JSON and PNG output.
"""
