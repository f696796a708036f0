"""The search spaces that ship with sweep, as package data: ``sweep spaces`` lists them and
``--space NAME`` (or ``NAME.yaml``) finds one from any folder."""
