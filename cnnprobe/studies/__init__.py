"""Studies: a grid of run configs × seeds answering one question (issue 10). So far the
plan layer: plans from TOML files or built-in studies, their trials and trial keys.
Running and reporting studies come next."""

from cnnprobe.studies.builtin import BUILTIN, SCALES, builtin_plan
from cnnprobe.studies.plan import StudyPlan, Trial, Variant, load_plan, plan_from_dict

__all__ = ["BUILTIN", "SCALES", "StudyPlan", "Trial", "Variant", "builtin_plan", "load_plan",
           "plan_from_dict"]
