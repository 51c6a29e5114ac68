"""The Model Explorer overlay (`--model-explorer`) and `quantdoctor view`: real compare runs, Model Explorer's own
server, and headless Chromium showing the graph with the overlay."""

from __future__ import annotations

import json
import socket
import subprocess
import sys
import time

import numpy as np
import pytest
from browser import Browser
from helpers import QUANTDOCTOR, run_in_process
from models import vectors
from test_budget import crushing_concat, digits  # noqa: F401 (fixtures)
from test_compare import detector

import quantdoctor as qd
from quantdoctor.audit.checks import float_ops
from quantdoctor.audit.tflite_model import read_tflite
from quantdoctor.report.html import SQNR_BANDS, sqnr_color
from quantdoctor.viz.overlay import FLOAT_FALLBACK, KEPT_BY_FIX, sqnr_text


def _op_outputs(model: bytes) -> dict[str, str]:
    """Output tensor name -> op name, over the main subgraph."""
    return {tensor.name: op.name for op in read_tflite(model).ops for tensor in op.outputs}


@pytest.fixture(scope="module")
def compared(tmp_path_factory):
    """The detector (scores crushed by a concatenation with boxes in pixels, calibrated on data 5x too small),
    compared with an overlay and an HTML report written."""
    folder = tmp_path_factory.mktemp("overlay")
    report = qd.compare(detector(), vectors(200) * 0.2, eval_data=vectors(100, seed=3),
                        model_explorer=folder / "overlay.json", html=folder / "report.html")
    return report, json.loads((folder / "overlay.json").read_text()), folder


def test_overlay_values_are_compares_per_layer_sqnr_and_causes_on_the_produced_models_tensors(compared):
    report, overlay, folder = compared
    as_json = json.loads(json.dumps(report.to_dict()))  # what --json writes
    assert list(overlay) == ["main"]  # Model Explorer's id of a .tflite's subgraph 0 without a name of its own
    graph = overlay["main"]
    assert graph["thresholds"] == [{"value": bound if bound != float("inf") else 1e9, "bgColor": color}
                                   for bound, color in SQNR_BANDS]
    ops = _op_outputs(report.tflite_model)
    assert set(graph["results"]) <= set(ops)  # keyed by the produced model's own tensor names only
    rows = as_json["comparison"]["layers"]
    for row in rows:
        # the model output is measured before its final DEQUANTIZE: the op that computed it carries it
        key = row["tensor"] if ops.get(row["tensor"]) != "DEQUANTIZE" else next(
            name for name, op in ops.items() if op == "CONCATENATION")
        result = graph["results"][key]
        assert result["value"].split(" · ")[0] == sqnr_text(row["worst_channel_sqnr_db"])
        assert result["bgColor"] == sqnr_color(row["worst_channel_sqnr_db"])
    assert len(graph["results"]) == len(rows)
    crushed = [k for k, r in graph["results"].items() if "crushed merge" in r["value"]]
    assert [ops[k] for k in crushed] == ["CONCATENATION"]
    assert graph["results"][crushed[0]]["value"] == "0.0 dB · crushed merge"
    clipped = {f["location"]["tensor"] for f in as_json["findings"] if f["code"] == "QD502"}
    assert clipped and all("clipped range" in graph["results"][name]["value"] for name in clipped)
    assert not any(FLOAT_FALLBACK in r["value"] or KEPT_BY_FIX in r["value"] for r in graph["results"].values())
    page = (folder / "report.html").read_text()
    assert "<a class=overlay href='./overlay.json'>" in page


def test_view_without_model_explorer_is_one_line_saying_what_to_install(compared, tmp_path):
    report, _, folder = compared
    (tmp_path / "model.tflite").write_bytes(report.tflite_model)
    blocker = ("import sys\n"
               "sys.modules['model_explorer'] = None  # as on a machine without the viz extra\n"
               "from quantdoctor.cli import main\n"
               "sys.argv = ['quantdoctor', 'view', sys.argv[1], '--overlay', sys.argv[2]]\n"
               "main()\n")
    done = subprocess.run([sys.executable, "-c", blocker, str(tmp_path / "model.tflite"), str(folder / "overlay.json")],
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 2, done.stderr
    assert done.stderr.strip().splitlines() == [
        "quantdoctor: error: quantdoctor view needs Model Explorer (ai-edge-model-explorer), which is not installed; "
        "install it with: pip install 'quantdoctor[viz]'"]


def test_view_refuses_an_overlay_that_is_not_node_data_before_starting(compared, tmp_path):
    report, _, _ = compared
    (tmp_path / "model.tflite").write_bytes(report.tflite_model)
    (tmp_path / "report.json").write_text(json.dumps(report.to_dict()))
    done = run_in_process("view", str(tmp_path / "model.tflite"), "--overlay", str(tmp_path / "report.json"),
                          "--no-browser")
    assert done.returncode == 2
    assert done.stderr.strip().splitlines() == [
        f"quantdoctor: error: the overlay {tmp_path / 'report.json'} is not Model Explorer node data: write one with "
        "`quantdoctor compare ... --model-explorer overlay.json`"]


def test_view_refuses_an_overlay_written_for_another_model_before_starting(compared, tmp_path):
    """The float model viewed with the quantized model's overlay showed a graph with nothing on it."""
    report, overlay, _ = compared
    (tmp_path / "model.tflite").write_bytes(report.tflite_model)
    graph = next(iter(overlay))
    other = {graph: {**overlay[graph], "results": {"tensor_of_another_model": {"value": "1.0 dB"}}}}
    (tmp_path / "other.json").write_text(json.dumps(other))
    done = run_in_process("view", str(tmp_path / "model.tflite"), "--overlay", str(tmp_path / "other.json"),
                          "--no-browser")
    assert done.returncode == 2
    assert done.stderr.strip().splitlines() == [
        f"quantdoctor: error: the overlay {tmp_path / 'other.json'} names no tensor of {tmp_path / 'model.tflite'}: "
        "it was written for another model; view the .tflite the same compare or fix produced (--output)"]


def _rgb(color: str) -> tuple[int, int, int]:
    return int(color[1:3], 16), int(color[3:5], 16), int(color[5:7], 16)


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


@pytest.mark.browser
def test_model_explorer_shows_the_graph_with_the_overlay_in_headless_chromium(compared, tmp_path):
    """compare --tflite --model-explorer from the command line, then `quantdoctor view` on a free local port, no
    browser of its own; headless Chromium loads the page: the graph's ops and every overlay value appear, in the
    bands' colours."""
    from PIL import Image

    report, _, _ = compared
    detector().save(tmp_path / "detector.keras")
    np.save(tmp_path / "eval.npy", vectors(100, seed=3))
    (tmp_path / "detector_int8.tflite").write_bytes(report.tflite_model)
    done = run_in_process("compare", str(tmp_path / "detector.keras"), "--eval-data",
                          str(tmp_path / "eval.npy"), "--tflite", str(tmp_path / "detector_int8.tflite"),
                          "--model-explorer", str(tmp_path / "overlay.json"), "--trust-model")
    assert done.returncode in (0, 1), done.stderr
    overlay = json.loads((tmp_path / "overlay.json").read_text())["main"]["results"]
    port = _free_port()
    server = subprocess.Popen([QUANTDOCTOR, "view", str(tmp_path / "detector_int8.tflite"), "--overlay",
                               str(tmp_path / "overlay.json"), "--host", "localhost", "--port", str(port),
                               "--no-browser"], stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    browser = None
    try:
        url = None
        started = time.monotonic()
        while url is None and time.monotonic() - started < 30:
            line = server.stdout.readline()
            assert line, "quantdoctor view ended before serving"
            if line.startswith(f"http://localhost:{port}/"):
                url = line.strip()
        assert url, "Model Explorer did not start"
        browser = Browser(tmp_path / "profile")
        browser.open(url)
        values = [result["value"] for result in overlay.values()]
        text = browser.text_when(lambda page: all(value in page for value in values))
        assert all(value in text for value in values), text
        assert "detector_int8.tflite" in text and "concatenation" in text and "fully_connected" in text
        assert "quantdoctor: worst-channel SQNR (dB) and cause" in text
        shot = browser.screenshot(tmp_path / "explorer.png")
    finally:
        if browser is not None:
            browser.close()
        server.terminate()
        server.wait(timeout=20)
    pixels = np.asarray(Image.open(shot).convert("RGB")).reshape(-1, 3).astype(int)
    shown = {color: int(np.sum(np.all(np.abs(pixels - np.array(_rgb(color))) < 10, axis=1)))
             for _, color in SQNR_BANDS}
    red, orange, _ = (color for _, color in SQNR_BANDS)
    # the crushed merge's node and the red cells (<= 10 dB); the orange cell of the sigmoid (13.8 dB)
    assert shown[red] > 2000 and shown[orange] > 300, shown


def test_fix_overlay_marks_the_ops_the_budget_kept_float_on_the_model_fix_returns(
        digits, crushing_concat, tmp_path):  # noqa: F811 (fixtures imported above)
    """fix --max-drop on the crushing concatenation: the returned model keeps three ops float; the overlay names
    exactly those, with each op's SQNR measured on that model (not on the all-INT8 one), and the HTML links it."""
    x, y = digits
    result = qd.fix(crushing_concat, x[:300], eval_data=x[1397:], labels=y[1397:], max_drop=0.01,
                    model_explorer=tmp_path / "fix.json", html=tmp_path / "fix.html")
    assert result.verified and result.met_budget
    graph = json.loads((tmp_path / "fix.json").read_text())["main"]["results"]
    produced = read_tflite(result.model)
    floats = {tensor.name: op.name for op in float_ops(produced) for tensor in op.outputs}
    kept = {name for name, r in graph.items() if r["value"].endswith(KEPT_BY_FIX)}
    assert kept == set(floats) and sorted(floats.values()) == ["CONCATENATION", "FULLY_CONNECTED", "FULLY_CONNECTED"]
    assert {row["node"] for row in result.kept_float} <= {part for name in kept for part in (name, *name.split(";"))}
    assert not any(FLOAT_FALLBACK in r["value"] for r in graph.values())  # nothing else stayed float
    measured = [r["value"].split(" · ")[0] for r in graph.values()]
    assert all(value.endswith(" dB") for value in measured)  # every op carries the SQNR measured on this model
    assert all(float(graph[name]["value"].split(" dB")[0]) > 20 for name in kept)  # float ops: barely any error
    assert "<a class=overlay href='./fix.json'>" in (tmp_path / "fix.html").read_text()


def test_hostile_tensor_names_are_json_keys_only(compared, tmp_path):
    """The compared model with every tensor renamed after the hostile corpus: each name is a key, exactly as the
    model holds it, and every value is quantdoctor's own text."""
    from float_tflite import renamed
    from hostile_names import CORPUS

    from quantdoctor import catalog
    from quantdoctor.report.model import Location, Report
    from quantdoctor.viz.overlay import write_overlay

    report, _, _ = compared
    names = list(CORPUS.values())
    hostile = renamed(report.tflite_model, lambda index, name: f"{names[index % len(names)]}#{index}")
    produced = read_tflite(hostile)
    computed = [op.outputs[0].name for op in produced.ops if op.name == "FULLY_CONNECTED"]
    rows = [{"tensor": name, "layer": None, "op": "FULLY_CONNECTED", "worst_channel_sqnr_db": 12.5}
            for name in computed]
    findings = [catalog.get("QD502").finding("clipped", location=Location(tensor=name)) for name in computed]
    write_overlay(tmp_path / "overlay.json", Report(model={"source": "m", "inputs": []}, settings={"mode": "int8"},
                                                    conversion={"attempted": True},
                                                    findings=findings, comparison={"layers": rows}), hostile)
    results = json.loads((tmp_path / "overlay.json").read_text(encoding="utf-8"))["main"]["results"]
    assert set(results) == set(computed) and len(computed) == 3
    assert {r["value"] for r in results.values()} == {"12.5 dB · clipped range"}


def test_an_op_the_npu_refuses_is_labelled_where_vela_put_it_on_the_cpu(tmp_path):
    """compare with an Ethos-U target: the DEPTHWISE_CONV_2D Vela leaves on the CPU (stride 4) carries 'NPU refusal'
    beside its SQNR; no other op does."""
    from test_ethos_u import images, strided_depthwise

    report = qd.compare(strided_depthwise(), images(), eval_data=images(4), io="int8", target="ethos-u55-128",
                        model_explorer=tmp_path / "overlay.json")
    refused = {f.location.tensor for f in report.findings if f.code == "QD120"}
    results = json.loads((tmp_path / "overlay.json").read_text())["main"]["results"]
    ops = _op_outputs(report.tflite_model)
    labelled = {name for name, r in results.items() if "NPU refusal" in r["value"]}
    assert labelled == refused and [ops[name] for name in labelled] == ["DEPTHWISE_CONV_2D"]
    sqnr = {row["tensor"]: row["worst_channel_sqnr_db"] for row in report.comparison["layers"]}
    (name,) = labelled
    assert results[name]["value"] == f"{sqnr_text(sqnr[name])} · NPU refusal"


def test_view_refuses_a_port_in_use_before_starting(compared, tmp_path):
    report, _, folder = compared
    (tmp_path / "model.tflite").write_bytes(report.tflite_model)
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        done = run_in_process("view", str(tmp_path / "model.tflite"), "--overlay", str(folder / "overlay.json"),
                              "--host", "127.0.0.1", "--port", str(port), "--no-browser")
    assert done.returncode == 2
    assert done.stderr.strip().splitlines() == [
        f"quantdoctor: error: port {port} on 127.0.0.1 is in use: choose another --port"]
