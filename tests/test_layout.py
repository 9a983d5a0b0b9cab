"""The layout shows the pipeline: each rule file of ``workflow/rules/`` has a module of
the same name in ``lowrank_amt/stages/``, and every ``lowrank-amt`` command a rule file
runs calls a function of that module."""

import inspect
import re
from pathlib import Path

from lowrank_amt import cli

REPO = Path(__file__).resolve().parents[1]
RULES = REPO / "workflow" / "rules"
STAGES = REPO / "src" / "lowrank_amt" / "stages"


def test_each_rule_file_has_its_stage_module():
    rule_files = {p.stem for p in RULES.glob("*.smk")} - {"common"}
    stage_modules = {p.stem for p in STAGES.glob("*.py")} - {"__init__"}
    assert rule_files == stage_modules


def test_a_rule_file_runs_the_functions_of_its_stage_module():
    seen = 0
    for rule_file in RULES.glob("*.smk"):
        for command in re.findall(r"lowrank-amt ([a-z-]+)", rule_file.read_text()):
            handler = inspect.getsource(cli.HANDLERS[command])
            assert f"from .stages.{rule_file.stem} import" in handler, (rule_file.name, command)
            seen += 1
    assert seen >= 12  # every rule that runs a command
