"""Names from the user's files are data: the hostile-name corpus through `fix --script`, the HTML
report in a real browser, the terminal report and the JSON report.

A name reaches the generated script only as a `repr()` literal or, in a comment, on one line made
printable; the HTML only escaped; the terminal only literally (no rich markup read, control
characters shown as escapes); the JSON exactly as it is.
"""

from __future__ import annotations

import ast
import html
import io
import json
import os
import subprocess
import sys
import zipfile
from pathlib import Path

import keras
import numpy as np
import pytest
from helpers import run_in_process
from hostile_names import CORPUS, FILE_NAMES, PAYLOAD_FILE, PAYLOAD_TITLE, comments, injected_calls, string_constants
from models import smooth_images, vectors
from rich.console import Console

from quantdoctor import catalog
from quantdoctor.edits.plan import Plan
from quantdoctor.fix.repairs import REPAIRS, Bench, Repair, valid_tf_name
from quantdoctor.fix.script import write_script
from quantdoctor.intake.data import from_arrays
from quantdoctor.intake.recipe import Recipe
from quantdoctor.report.html import write_html
from quantdoctor.report.literal import printable
from quantdoctor.report.model import Location, Report
from quantdoctor.report.terminal import render

QUANTDOCTOR = str(Path(sys.executable).with_name("quantdoctor"))
DOCSTRING = "Converts the model with the repairs `quantdoctor fix` verified. Needs TensorFlow and NumPy only."


def script_naming(name: str, keras_model: bool) -> str:
    """The script after the real repairs ran on findings and samples that all name `name` (an input, its
    `.npz` key, a layer), with `name` in the paths, the signature key and an op kept float by a budget."""
    report = Report(model={"source": "model", "inputs": [{"name": name, "shape": [None, 4, 8], "dtype": "float32"},
                                                         {"name": "other", "shape": [None, 3], "dtype": "float32"}]},
                    settings={}, findings=[], conversion={})
    samples = from_arrays({f"{name}.": vectors(2, 32).reshape(2, 4, 8), "another": vectors(2, 3)})
    bench = Bench(Plan(Recipe.for_mode("int8-strict"), target=None), report, samples, keras=keras_model)
    findings = [catalog.get("QD305").finding("keys", location=Location(input=name)),
                catalog.get("QD105").finding("float op", location=Location(layer=name, op=f"CUMSUM {name}"),
                                                severity="error"),
                catalog.get("QD108").finding("crash", location=Location(layer=name)),
                catalog.get("QD405").finding("name", location=Location(input=name))]
    applied = [REPAIRS[finding.code](finding, bench) for finding in findings]
    assert all(isinstance(repair, Repair) for repair in applied[:2])
    applied = [repair for repair in applied if isinstance(repair, Repair)]
    assert len(applied) == (4 if keras_model else 2)  # the model edits need a Keras model
    return write_script(bench.plan, applied, model_path=Path(f"/models/{name}.keras"), keras_model=keras_model,
                        data_path=Path(f"/data/{name}.npz"), output=f"{name}.tflite", max_samples=8,
                        signature_keys=[name], keep_float=[(name, f"CUMSUM in layer '{name}'")],
                        budget=f"top-1 drop at most 0.01 on {name}")


@pytest.mark.parametrize("keras_model", [True, False], ids=["keras", "saved_model"])
@pytest.mark.parametrize("what", list(CORPUS))
def test_the_script_holds_every_hostile_name_as_data(what, keras_model):
    name = CORPUS[what]
    source = script_naming(name, keras_model)
    tree = ast.parse(source)
    compile(source, "convert_fixed.py", "exec")
    source.encode("utf-8")  # the script can be written as UTF-8 whatever the name holds
    assert ast.get_docstring(tree) == DOCSTRING  # no name closes the docstring or lands in it
    assert injected_calls(source) == set()  # nothing pasted runs: the script's own code calls no payload function
    constants = string_constants(source)
    paths = {os.path.abspath(f"/data/{name}.npz"), os.path.abspath(f"/models/{name}.keras")}  # as the script holds them
    assert {f"{name}.tflite", name, *paths} <= set(constants)  # names are literals, value intact
    notes = [c for c in comments(source) if c.startswith(("#   QD", "# QD", "#   cost", "# Accuracy budget"))
             or "CUMSUM in" in c]
    assert len(notes) >= 6 and all(repr(name) in c or printable(name) in c for c in notes if "cost" not in c)
    assert all("\n" not in c and "\r" not in c for c in notes)  # each note whole, on its own line
    if not keras_model:
        assert f"signature_keys={[name]!r}" in source


def test_fix_script_for_hostile_npz_keys_runs_nothing_injected(tmp_path):
    """A `.npz` whose member names carry payloads, for a two-input model (QD305): the keys reach the script
    as literals, the terminal literally, the JSON exactly; running the script creates no file."""
    keys = [CORPUS["triple double quote"] + CORPUS["newline"] + CORPUS["hash"],
            CORPUS["ansi escapes"] + CORPUS["rich markup"] + CORPUS["triple single quote"]]
    wide, narrow = keras.Input((6,), name="wide"), keras.Input((3,), name="narrow")
    merged = keras.layers.Concatenate()([keras.layers.Dense(4)(wide), keras.layers.Dense(4)(narrow)])
    keras.Model([wide, narrow], keras.layers.Dense(2)(merged)).save(tmp_path / "model.keras")
    np.savez(tmp_path / "calib.npz", **{keys[0]: vectors(40, 6), keys[1]: vectors(40, 3, seed=1)})

    result = run_in_process("fix", "model.keras", "--data", "calib.npz", "--output", "fixed.tflite", "--script",
                            "convert_fixed.py", "--json", "fix.json", cwd=tmp_path)
    assert result.returncode == 0, result.stdout + result.stderr
    assert result.stdout.startswith("VERIFIED")
    assert "\x1b" not in result.stdout and "\r" not in result.stdout  # no escape sequence passes through
    repair = next(line for line in result.stdout.splitlines() if line.startswith("  QD305"))
    assert f"{keys[0]!r} -> " in repair and f"{keys[1]!r} -> " in repair  # quoted with repr(): one line, escaped
    assert "[/red][bold red]loud[/bold red][link=file:///etc/passwd]" in repair  # markup printed, not read
    report = json.loads((tmp_path / "fix.json").read_text())
    qd305 = next(f for f in report["before"]["findings"] if f["code"] == "QD305")
    assert qd305["evidence"]["sample_keys"] == sorted(keys)  # the JSON round-trips the names exactly

    assert_script_runs_nothing_injected(tmp_path, tmp_path / "convert_fixed.py", keys)


def test_fix_script_for_a_hostile_input_name_in_keras_config_runs_nothing_injected(tmp_path):
    """A `.keras` file whose input name in config.json holds a payload (QD405, the name is no valid
    TensorFlow name): the renaming reaches the script as literals and comments, and nothing runs."""
    name = CORPUS["triple double quote"] + CORPUS["newline"] + "\x1b[31m[red]x"
    placeholder = "placeholder_input_name"
    inputs = keras.Input((8,), name=placeholder)
    keras.Model(inputs, keras.layers.Dense(2, name="head")(keras.layers.Dense(8)(inputs))).save(tmp_path / "m.keras")
    with_payload(tmp_path / "m.keras", tmp_path / "model.keras", placeholder, name)
    np.save(tmp_path / "calib.npy", vectors(40, 8))

    result = run_in_process("fix", "model.keras", "--data", "calib.npy", "--script", "convert_fixed.py", "--json",
                            "fix.json", cwd=tmp_path)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "\x1b" not in result.stdout and "[red]x" in result.stdout
    assert f"  QD405  input {name!r} -> {valid_tf_name(name, set())!r} by a new Input" in result.stdout
    report = json.loads((tmp_path / "fix.json").read_text())
    assert report["before"]["model"]["inputs"][0]["name"] == name
    assert report["before"]["findings"][0]["code"] == "QD405"

    assert_script_runs_nothing_injected(tmp_path, tmp_path / "convert_fixed.py", [name])


def with_payload(saved: Path, target: Path, placeholder: str, name: str) -> None:
    """A copy of the `.keras` archive `saved` with `placeholder` in its config.json replaced by `name`."""
    with zipfile.ZipFile(saved) as original, zipfile.ZipFile(target, "w") as changed:
        for item in original.infolist():
            content = original.read(item)
            if item.filename == "config.json":
                content = content.replace(placeholder.encode(), json.dumps(name)[1:-1].encode())
            changed.writestr(item, content)


def assert_script_runs_nothing_injected(tmp_path: Path, script: Path, names: list[str]) -> None:
    source = script.read_text(encoding="utf-8")
    assert ast.get_docstring(ast.parse(source)) == DOCSTRING and injected_calls(source) == set()
    constants = string_constants(source)
    assert all(any(name in constant for constant in constants) for name in names)  # as literals, intact
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    ran = subprocess.run([sys.executable, "-I", str(script)], cwd=elsewhere, capture_output=True, text=True,
                         timeout=600)
    assert ran.returncode == 0, ran.stderr[-3000:]
    assert "wrote " in ran.stdout
    assert not (elsewhere / PAYLOAD_FILE).exists() and not (tmp_path / PAYLOAD_FILE).exists()


def test_compare_html_terminal_and_json_show_hostile_names_literally(tmp_path):
    """A model file in a folder whose name holds HTML, markup and escape sequences: Chromium runs nothing
    injected and shows the name; the terminal prints it literally; the JSON holds it exactly. (Layer names
    cannot carry these: TF 2.21 fails to export a Keras model whose layer names are no TensorFlow names.)"""
    folder = tmp_path / (FILE_NAMES["html attributes"] + "\x1b[31mred\x1b[0m" + "[bold red]x "
                         + FILE_NAMES["unicode"])
    folder.mkdir()
    model_path = folder / (FILE_NAMES["quotes"] + ".keras")
    inputs = keras.Input((8, 8, 1), name="image")
    hidden = keras.layers.Conv2D(4, 3, activation="relu")(inputs)
    outputs = keras.layers.Dense(3)(keras.layers.Dense(8, activation="relu")(keras.layers.Flatten()(hidden)))
    keras.Model(inputs, outputs).save(model_path)
    images = smooth_images(60, size=8)[..., :1]
    np.save(tmp_path / "calib.npy", images[:40])
    np.save(tmp_path / "eval.npy", images[40:])
    page = tmp_path / "report.html"

    result = run_in_process("compare", str(model_path), "--data", "calib.npy", "--eval-data", "eval.npy", "--html",
                            str(page), "--json", "report.json", "--fail-on", "never", cwd=tmp_path)
    assert result.returncode == 0, result.stdout + result.stderr
    headline = result.stdout.splitlines()[0]
    assert printable(str(model_path)) in headline and "[bold red]x" in headline  # literal, markup unread
    assert "\x1b" not in result.stdout and "\u202e" not in result.stdout  # escapes and overrides shown as \x1b, \u202e
    report = json.loads((tmp_path / "report.json").read_text())
    assert report["model"]["source"] == str(model_path)
    assert report["comparison"]["layers"]

    dom = subprocess.run(["chromium", "--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
                          "--disable-component-update", "--disable-sync", "--no-first-run",
                          f"--user-data-dir={tmp_path / 'profile'}", "--virtual-time-budget=3000", "--dump-dom",
                          page.as_uri()], capture_output=True, text=True, timeout=120, check=True).stdout
    assert "<title>quantdoctor report</title>" in dom and PAYLOAD_TITLE not in dom.split("</title>")[0]
    assert "<img" not in dom and "<svg onload" not in dom  # no element made from a name
    assert "<h1>quantdoctor: " + html.escape(str(model_path), quote=False) + "</h1>" in dom  # shown as text


def test_terminal_and_json_reports_keep_every_hostile_name_literal():
    """Every corpus name in every place a report carries one: printed literally, round-tripped exactly."""
    findings = [catalog.get("QD305").finding(f"Sample #0 has keys [{name}]; the inputs are named ['image'].",
                                             location=Location(input=name, layer=name, tensor=name),
                                             evidence={"sample_keys": [name], "converter_message": name},
                                             fix=f"rename {name}", fix_code=f"x = 1  # {name}\ny = 2")
                for name in CORPUS.values()]
    report = Report(model={"source": "".join(CORPUS.values()), "inputs": [{"name": n} for n in CORPUS.values()]},
                    settings={"mode": "int8"}, findings=findings, conversion={"attempted": False})
    stream = io.StringIO()
    render(report, Console(file=stream, width=100, force_terminal=False, highlight=False))
    shown = stream.getvalue()
    assert all(printable(name) in shown for name in CORPUS.values())
    assert "[/red][bold red]loud[/bold red][link=file:///etc/passwd]link[/link]" in shown  # markup not read
    assert not any(ord(char) < 32 and char != "\n" or 0x7f <= ord(char) < 0xa0 or char in "\u202e\u202c"
                   for char in shown)  # no control character or override passes through
    document = json.loads(json.dumps(report.to_dict(), indent=2))
    assert document == report.to_dict()
    assert [f["location"]["input"] for f in document["findings"]] == list(CORPUS.values())


def test_html_report_escapes_every_hostile_name(tmp_path):
    """Every corpus name, in the model source, a finding, its fix code and a layer row: escaped text only."""
    names = list(CORPUS.values())
    findings = [catalog.get("QD501").finding(f"layer {name} lost accuracy", location=Location(layer=name),
                                             fix=f"keep {name} float", fix_code=f"nodes = [{name!r}]")
                for name in names]
    rows = [{"layer": name, "tensor": name, "op": "FULLY_CONNECTED", "worst_channel_sqnr_db": 10.0} for name in names]
    report = Report(model={"source": "".join(names), "inputs": []}, settings={"mode": "int8"}, findings=findings,
                    conversion={"attempted": True}, comparison={"end_to_end": {"sqnr_db": 1.0}, "layers": rows})
    write_html(report, tmp_path / "report.html")
    page = (tmp_path / "report.html").read_text(encoding="utf-8")
    body = page.split("<body>", 1)[1]
    assert "<script" not in body and "<img" not in body and "<svg onload" not in body
    assert html.escape(CORPUS["html"]) in body and "caf\\udce9" in body  # shown as text; the stray byte escaped


def test_a_usage_error_prints_a_hostile_path_literally_on_one_line(tmp_path):
    """A path is user input too: the one-line error shows it with its controls escaped and its markup unread."""
    name = CORPUS["ansi escapes"].replace("/", "") + CORPUS["newline"] + "[bold red]x"
    result = subprocess.run([QUANTDOCTOR, "diagnose", name + ".keras"], cwd=tmp_path, capture_output=True, text=True,
                            timeout=120)
    assert result.returncode == 2 and result.stdout == ""
    shown = printable(name)  # the error is one line: the path's newline shows as \n, not as a space
    assert "\\n" in shown and result.stderr == f"quantdoctor: error: model not found: {shown}.keras\n"
    option = subprocess.run([QUANTDOCTOR, "diagnose", "m.keras", "--da\x1b[2Jta"], cwd=tmp_path, capture_output=True,
                            text=True, timeout=120)
    assert option.returncode == 2 and option.stderr.startswith("quantdoctor: error: No such option: --da\\x1b[2Jta")


def test_the_signature_runner_fix_code_holds_hostile_input_names_as_data(monkeypatch):
    """QD517's fix code (`outputs = runner(...)`) names the model's signature inputs: a name that is not an
    identifier is passed as `**{repr: ...}`, and the code still parses and calls nothing injected."""
    from types import SimpleNamespace

    from quantdoctor.watch import inference

    reported = []
    monkeypatch.setattr(inference, "_report", lambda finding, where: reported.append(finding))
    names = ["image", *CORPUS.values()]
    inference._report_runner_keys({name: SimpleNamespace(name=f"serving_{name}") for name in names}, ["wrong"], [],
                                  None)
    code = reported[0].fix.code
    assert code.startswith("outputs = runner(image=..., **{") and injected_calls(code) == set()
    call = ast.parse(code).body[0].value
    assert [keyword.arg for keyword in call.keywords] == ["image"] + [None] * len(CORPUS)
    assert [ast.literal_eval(keyword.value.keys[0]) for keyword in call.keywords[1:]] == list(CORPUS.values())


def test_names_written_as_code_must_be_identifiers():
    """What the script writes as code, not as a literal (converter settings, the transforms it calls), is
    refused unless it is a plain identifier: a recipe or a step carrying a name from a file cannot become code."""
    from quantdoctor.edits.plan import Step
    from quantdoctor.errors import InternalError
    from quantdoctor.report.converter_code import identifier

    assert identifier("TFLITE_BUILTINS_INT8") == "TFLITE_BUILTINS_INT8"
    for name in [*CORPUS.values(), "int8; import os", "名前"]:
        with pytest.raises(InternalError, match="not an identifier"):
            identifier(name)
    recipe = Recipe.for_mode("int8")
    recipe.inference_input_type = CORPUS["newline"]
    with pytest.raises(InternalError, match="not an identifier"):
        write_script(Plan(recipe, target=None), [], model_path=None, keras_model=True, data_path=None,
                     output="m.tflite", max_samples=8)
    with pytest.raises(InternalError, match="not a transforms function"):
        Step("QD201", "map", CORPUS["newline"]).source("sample")
    assert Step("QD201", "map", "cast_to", ({0: "float32"},)).source("sample") == "cast_to(sample, {0: 'float32'})"
