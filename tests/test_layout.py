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


PACKAGE = REPO / "src" / "lowrank_amt"
#: the folders in the pipeline's order; the top level keeps the entry points and a few
#: shared helpers
PIPELINE = ("datasets", "signal", "families", "learning", "factorization", "deep", "decoding", "evaluation",
            "report", "stages", "runtime")
TOP_LEVEL_LIMIT, MODULE_LINES, FUNCTION_LINES, CLASS_LINES = 10, 400, 60, 150


def test_the_folders_show_the_pipeline_and_the_top_level_stays_small():
    folders = {p.name for p in PACKAGE.iterdir() if (p / "__init__.py").exists()}
    assert set(PIPELINE) <= folders
    top = sorted(p.stem for p in PACKAGE.glob("*.py") if p.stem != "__init__")
    assert len(top) <= TOP_LEVEL_LIMIT, top


def test_each_module_reads_in_one_sitting():
    import ast
    too_long = []
    for path in sorted(PACKAGE.rglob("*.py")):
        text = path.read_text()
        name = path.relative_to(PACKAGE)
        if len(text.splitlines()) > MODULE_LINES:
            too_long.append(f"{name}: {len(text.splitlines())} lines")
        for node in ast.walk(ast.parse(text)):
            lines = getattr(node, "end_lineno", 0) - getattr(node, "lineno", 0) + 1
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)) and lines > FUNCTION_LINES:
                too_long.append(f"{name}: function {node.name}, {lines} lines")
            if isinstance(node, ast.ClassDef) and lines > CLASS_LINES:
                too_long.append(f"{name}: class {node.name}, {lines} lines")
    assert too_long == []
