"""The search spaces that ship with sweep (``sweep spaces`` lists them; ``--space NAME``)."""
