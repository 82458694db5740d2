"""Stage tune: every method's declared search space searched on validation with one trial
budget for all (issue #27). ``params`` is the ``tune`` section, ``space`` reads a
method's space off its recipe, ``sets`` draws forget sets the report never scores,
``objective`` scores an unlearned model against its reference on validation, ``study``
runs and stores the Optuna studies, ``search`` tunes one dataset, ``recipes`` writes the
tuned recipes the unlearn stage reads. Only ``study`` and ``search`` import Optuna, so
stage validate checks the section and the spaces without it."""
