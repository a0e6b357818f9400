"""File-based eval sets of a GPE: forced-choice items (native rows, model-written evals, lm-eval
``multiple_choice`` tasks) and open questions judged by a judge (``spec``, ``files``, ``sets``, ``forced``,
``lmeval``, ``judged``, ``summary``, ``run``)."""
