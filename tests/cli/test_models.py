"""`edgecnn models`: JSON matches every integer of the paper's tables; errors are one line, exit non-zero."""

import json
import subprocess
import sys

import pytest
from typer.testing import CliRunner

from edgecnn.cli import app
from edgecnn.compress.zoo.paper import PUBLISHED

runner = CliRunner()


@pytest.mark.parametrize("num_classes", [10, 100])
def test_models_json_matches_every_published_count(num_classes):
    result = runner.invoke(app, ["models", "--json", "--num-classes", str(num_classes)])
    assert result.exit_code == 0, result.output
    rows = {row["name"]: row for row in json.loads(result.stdout)}
    paper_rows = {name: paper for (name, nc), paper in PUBLISHED.items() if nc == num_classes}
    assert len(paper_rows) == 28
    for name, paper in paper_rows.items():
        row = rows[name]
        assert row["num_classes"] == num_classes
        assert row["params"] == paper.params, name
        assert row["mflops"] == pytest.approx(paper.expected("mflops"), abs=0.01), name
        assert row["paper"]["params"] == paper.params
        assert {"name", "num_classes", "params", "mflops", "size_mib"} <= row.keys()
    assert {"resnet18", "vgg16-bn", "micronet-densenet"} <= rows.keys()


def test_models_table_for_selected_names():
    result = runner.invoke(app, ["models", "exp13", "vgg19-exp1*"])
    assert result.exit_code == 0, result.output
    assert "resnet101-exp13" in result.stdout and "150,715" in result.stdout
    assert "vgg19-exp12" in result.stdout and "resnet101-exp12" not in result.stdout


def test_models_json_grey_input_has_no_paper_columns():
    rows = json.loads(runner.invoke(app, ["models", "exp13", "--json", "--in-chans", "1"]).stdout)
    assert rows[0]["in_chans"] == 1 and rows[0]["paper"] is None
    assert rows[0]["params"] == 150_715 - 2 * 9 - 2 * 16  # stem DW 3x3 and PW ->16 lose two input channels


def _run(*args):
    return subprocess.run([sys.executable, "-m", "edgecnn", *args], capture_output=True, text=True, timeout=120)


@pytest.mark.parametrize("args,message", [
    (["models", "exp99"], "edgecnn: error: unknown model 'exp99'; did you mean exp9"),
    (["models", "nothing*"], "edgecnn: error: no model matches 'nothing*'"),
    (["models", "--in-chans", "2"], "edgecnn: error: --in-chans must be 1 or 3, got 2"),
])
def test_user_errors_are_one_line_without_traceback(args, message):
    result = _run(*args)
    assert result.returncode == 2
    assert result.stderr.startswith(message)
    assert result.stderr.count("\n") == 1 and "Traceback" not in result.stderr
    assert result.stdout == ""


def test_version_and_help():
    assert _run("--version").stdout.startswith("edgecnn ")
    help_text = _run("--help").stdout
    assert "models" in help_text
