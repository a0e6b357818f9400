"""The Slurm executor layer: job specs rendered to injection-safe sbatch scripts, graph submission with
``afterok`` dependencies, job state queries (sacct, scontrol or the jobcomp log), and a throw-away local
one-node cluster for tests and laptops (``propensity slurm up|down|status``)."""

from slurm.cluster import LocalCluster
from slurm.errors import SlurmError, SlurmTimeoutError
from slurm.jobs import JobSpec, Resources, render_sbatch
from slurm.submit import JobState, cancel, job_states, submit_graph, topological_order, wait

__all__ = ["JobSpec", "JobState", "LocalCluster", "Resources", "SlurmError", "SlurmTimeoutError", "cancel",
           "job_states", "render_sbatch", "submit_graph", "topological_order", "wait"]
