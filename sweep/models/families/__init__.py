"""The student families, one module each (timm's layout), built in one shared skeleton.

Each family is a builder registered with :func:`~sweep.models.registry.register_student`;
its keyword parameters are its searchable options (``student.<name>`` in a space). Importing
this package registers all six.
"""

from sweep.models.families import (  # noqa: F401  (each module registers its family)
    dsconv,
    ghostnet,
    inverted_residual,
    mobilenet_v3,
    plain,
    shufflenet_v2,
)
from sweep.models.families.skeleton import StudentNet, stack_stages, stage_strides
from sweep.models.families.small_inputs import SMALL_INPUT_OPTIONS

__all__ = ["SMALL_INPUT_OPTIONS", "StudentNet", "stack_stages", "stage_strides"]
