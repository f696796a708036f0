"""Students: the family registry, the families, counting parameters, saved students.

Importing this package registers every family (as ``timm.models`` does), so
:func:`create_student` knows them whichever module is imported first.
"""

from sweep.models import families  # noqa: F401  (registers the families)
from sweep.models.budget import BudgetReport, count_macs, count_params, model_summary
from sweep.models.registry import (
    create_student,
    register_student,
    student_families,
    student_option_defaults,
    validate_student_options,
)

__all__ = [
    "BudgetReport",
    "count_macs",
    "count_params",
    "create_student",
    "model_summary",
    "register_student",
    "student_families",
    "student_option_defaults",
    "validate_student_options",
]
