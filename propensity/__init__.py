"""propensity: pretraining-scale data interventions and generalization propensity evaluations.

The spine of the pipeline: experiment config, content-addressed artifact store, stage graph, CLI, reports.
"""

__version__ = "0.1.0"
