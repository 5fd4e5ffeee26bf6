"""The report commands: Table 2 against the paper, what-if grids, per-layer rows, the HTML
report (images decode, tables equal the JSON, same bytes twice), and one-line errors."""

import base64
import io
import json
import re
import textwrap
from html.parser import HTMLParser

import pytest
import torch
from PIL import Image
from torch import nn
from typer.testing import CliRunner

from ttplan.cli import app
from ttplan.costmodel.errors import SpecError
from ttplan.costmodel.profile import ModelSource
from ttplan.costmodel.specs import Budgets
from ttplan.costmodel.zoo import ZOO_MODELS, build_zoo_model
from ttplan.devices.planning import device_context, predict_training
from ttplan.planner.context import PlanningContext
from ttplan.reports import report as report_module
from ttplan.reports.layers import layer_rows
from ttplan.reports.table2 import MIB, render_table2, synthetic_fisher, table2
from ttplan.reports.predict import device_predictor
from ttplan.reports.whatif import parse_range, run_whatif

runner = CliRunner()
pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture(scope="module")
def zoo_table2():
    fishers = {name: synthetic_fisher(build_zoo_model(name), (1, 3, 128, 128), samples=5)
               for name in ZOO_MODELS}
    return table2(list(ZOO_MODELS), fishers=fishers)


def test_table2_zoo_rows_beside_the_paper(zoo_table2):
    rows = zoo_table2["rows"]
    assert len(rows) == 15
    assert [r["method"] for r in rows[:5]] == ["fulltrain", "lastlayer", "tinytl",
                                               "sparseupdate", "tinytrain"]
    for r in rows:
        assert r["paper"] is not None and set(r["memory_bytes"]) == {"paper", "pytorch"}
        assert r["batch_size"] == (100 if r["method"] in ("fulltrain", "tinytl") else 1)
        if r["method"] == "fulltrain":  # batch 100, the pytorch convention (docs/cost-model.md)
            mib = r["memory_bytes"]["pytorch"] / MIB
            assert abs(mib / r["paper"]["memory_mb"] - 1) < 0.01
            assert r["backward_macs_paper_count"] == 2 * r["backward_macs_paper_count"] // 2
            assert abs(r["backward_macs_paper_count"] / 1e6 / r["paper"]["compute_m"] - 1) < 0.01
            assert r["backward_macs"] < r["backward_macs_paper_count"]  # the stem's input grad
        if r["method"] == "sparseupdate":
            assert abs(r["backward_macs"] / 1e6 / r["paper"]["compute_m"] - 1) < 0.05
        if r["method"] == "tinytrain":
            assert r["memory_ratio"] == {"paper": 1.0, "pytorch": 1.0, "compared": 1.0}
            assert r["memory_bytes"]["paper"] <= 1_000_000
    text = render_table2(zoo_table2, "table")
    assert "906" in text and "44.9" in text and "SparseUpdate" in text


def test_table2_latex_is_a_booktabs_body(zoo_table2):
    latex = render_table2(zoo_table2, "latex").splitlines()
    assert latex[0].startswith(r"\begin{tabular}{") and latex[-1] == r"\end{tabular}"
    assert latex[1] == r"\toprule" and latex[3] == r"\midrule" and latex[-2] == r"\bottomrule"
    columns = len(re.search(r"\{(l+r+)\}", latex[0]).group(1))
    body = [line for line in latex[2:-2] if not line.startswith("\\") or "&" in line]
    assert len([b for b in body if b.endswith(r"\\")]) == 16  # header + 15 rows
    for line in body:
        assert line.endswith(r"\\") and line.count("&") == columns - 1
        assert "_" not in line.replace(r"\_", "") and "%" not in line.replace(r"\%", "")
    assert latex.count(r"\midrule") == 3  # after the header and between the three models


def test_table2_formats_agree(zoo_table2):
    data = json.loads(render_table2(zoo_table2, "json"))
    assert data["rows"] == json.loads(json.dumps(zoo_table2["rows"]))
    csv_lines = render_table2(zoo_table2, "csv").splitlines()
    assert len(csv_lines) == 16 and csv_lines[0].startswith("model,method,batch_size")
    md = render_table2(zoo_table2, "md")
    assert sum(line.startswith("|") and not line.startswith("|---")
               for line in md.splitlines()) == 16
    wide = render_table2(zoo_table2, "table", wide=True).splitlines()[0]
    assert "mem ratio PyTorch" in wide and "exact M" in wide  # every column with --wide


def test_table2_md_is_the_docs(zoo_table2):
    """The docs' `table2 --format md` block (docs/guides/reports.md) is what the command prints:
    the same layout and every row but TinyTrain's (its plan depends on the probe; the docs'
    used 25 samples, this fixture 5)."""
    from pathlib import Path
    readme = (Path(__file__).resolve().parents[1] / "docs" / "guides" / "reports.md").read_text()
    start = readme.index("| model | method | batch | paper MB")
    shown = readme[start:readme.index("\n\n", start)].splitlines()
    printed = render_table2(zoo_table2, "md").split("\n\n")[0].splitlines()
    assert len(shown) == len(printed) == 17
    for ours, theirs in zip(printed, shown):
        if "| TinyTrain |" not in ours:
            assert ours == theirs


def test_table2_latex_has_the_papers_layout(zoo_table2):
    latex = render_table2(zoo_table2, "latex").splitlines()
    assert latex[2] == r"Model & Method & Memory & Ratio & Compute & Ratio \\"
    assert latex[4].startswith("MCUNet & FullTrain & ") and latex[5].startswith(" & LastLayer")
    tinytrain = latex[8].split(" & ")
    assert tinytrain[1] == r"\textit{TinyTrain}" and tinytrain[2].startswith(r"\textbf{")
    assert tinytrain[3] == r"1 $\times$" and tinytrain[5] == r"1 $\times$ \\"


@pytest.fixture(scope="module")
def mcunet_context():
    model = build_zoo_model("mcunet-5fps")
    fisher = synthetic_fisher(model, (1, 3, 128, 128), samples=5)
    return PlanningContext(ModelSource(model, "mcunet-5fps"), fisher=fisher)


def test_whatif_exact_within_budgets_and_monotone(mcunet_context):
    memory = parse_range("700KB:1.2MB:3", "memory")
    compute = parse_range("5%:30%:3", "compute")
    assert memory == [700000, 916515, 1200000] and compute == [0.05, 0.175, 0.3]
    cells = run_whatif(mcunet_context, memory, compute, methods=("tinytrain",), solver="exact")
    assert len(cells) == 9 and all(c["feasible"] for c in cells)
    for c in cells:
        assert c["peak_bytes"] <= c["memory_bytes"] and c["backward_macs"] <= c["compute_macs"]
        assert 0 < c["fisher_fraction"] <= 1 and c["layers"] >= 1
        assert c["time_s"] is None and c["energy_j"] is None
    grid = {(c["memory_bytes"], c["compute_macs"]): c["fisher_fraction"] for c in cells}
    macs = sorted({c["compute_macs"] for c in cells})
    for i, m in enumerate(memory):
        for j, k in enumerate(macs):
            if i:
                assert grid[(m, k)] >= grid[(memory[i - 1], k)]
            if j:
                assert grid[(m, k)] >= grid[(m, macs[j - 1])]


def test_whatif_predictor_and_infeasible_cells(mcunet_context):
    def predictor(method, graph, updates, options):
        ev = mcunet_context.coster.evaluate(updates)
        return {"time_s": ev.totals["backward_macs"] * 1e-9, "energy_j": 1.0,
                "fits_ram": ev.memory.peak_bytes < 2**20}

    cells = run_whatif(mcunet_context, [100_000, 1_000_000], [0.15],
                       methods=("tinytrain", "sparseupdate"), predictor=predictor)
    small = [c for c in cells if c["memory_bytes"] == 100_000]
    assert all(not c["feasible"] and c["fisher_fraction"] is None for c in small)
    big = [c for c in cells if c["memory_bytes"] == 1_000_000]
    assert all(c["feasible"] and c["time_s"] == c["backward_macs"] * 1e-9 for c in big)


def test_whatif_device_cells_agree_with_ttplan_predict(mcunet_context):
    """A what-if cell's device figures are `ttplan predict`'s for the same configuration."""
    ctx = device_context("pi-zero-2", iterations=40, samples=25)
    cells = run_whatif(mcunet_context, [300_000, 20_000_000], [1.0],
                       methods=("fulltrain", "tinytrain"), predictor=device_predictor(ctx))
    by = {(c["method"], c["memory_bytes"]): c for c in cells}
    assert not by[("fulltrain", 300_000)]["feasible"]
    assert by[("fulltrain", 300_000)]["time_s"] is None
    full = by[("fulltrain", 20_000_000)]
    expected = predict_training("mcunet-5fps", "all", "pi-zero-2")
    assert full["time_s"] == expected["total_s"] and full["energy_j"] == expected["energy_j"]
    assert full["fits_ram"] is expected["fits_ram"] is True
    tiny = by[("tinytrain", 20_000_000)]
    assert 0 < tiny["time_s"] and 0 < tiny["energy_j"] and tiny["fits_ram"] is True
    # Without a calibration a device still answers whether the plan fits its RAM.
    mcu = run_whatif(mcunet_context, [20_000_000], [1.0], methods=("fulltrain",),
                     predictor=device_predictor(device_context("stm32f746")))
    assert mcu[0]["time_s"] is None and mcu[0]["energy_j"] is None
    assert mcu[0]["fits_ram"] is False


@pytest.mark.parametrize("text, what", [("1MB:128KB:4", "memory"), ("1MB:2MB", "memory"),
                                        ("1MB:2MB:0", "memory"), ("2%:60M:3", "compute"),
                                        ("2%:160%:3", "compute"), ("a:b:c", "memory")])
def test_bad_ranges(text, what):
    with pytest.raises(SpecError):
        parse_range(text, what)


def test_layer_rows_scores_and_selection(mcunet_context):
    from ttplan.costmodel.config import LayerUpdate

    first = mcunet_context.candidates[0].name
    rows = layer_rows(mcunet_context, {first: LayerUpdate(channels=(0, 1), channel_axis=0)})
    assert [r["name"] for r in rows] == [c.name for c in mcunet_context.candidates]
    assert rows[0]["selected"] and rows[0]["channels_selected"] == 2
    assert not any(r["selected"] for r in rows[1:])
    assert sorted(r["rank"] for r in rows) == list(range(1, len(rows) + 1))
    assert abs(sum(r["fisher_fraction"] for r in rows) - 1) < 1e-4
    best = min(rows, key=lambda r: r["rank"])
    assert best["score"] == max(r["score"] for r in rows)


# ------------------------------------------------------------------------------ report

class _Block(nn.Module):
    # A block class of its own: TinyTL's lite residual is added beside it (a Sequential block
    # would run the added module as one more layer, see the report of branch `reports`).
    def __init__(self, cin, cout, stride):
        super().__init__()
        self.conv = nn.Conv2d(cin, cout, 3, stride, 1, bias=False)
        self.bn = nn.BatchNorm2d(cout)
        self.act = nn.ReLU6(inplace=True)

    def forward(self, x):
        return self.act(self.bn(self.conv(x)))


def tiny_net():
    with torch.random.fork_rng():  # the same weights every time, the global RNG untouched
        torch.manual_seed(0)
        return nn.Sequential(_Block(3, 8, 2), _Block(8, 16, 2), _Block(16, 16, 1),
                             _Block(16, 24, 2), nn.AdaptiveAvgPool2d(1), nn.Flatten())


class _Tables(HTMLParser):
    def __init__(self):
        super().__init__()
        self.tables, self.images, self.script, self._in_script = [], [], "", False
        self._in_cell = False

    def handle_starttag(self, tag, attrs):
        attrs = dict(attrs)
        if tag == "table":
            self.tables.append((attrs.get("class"), []))
        elif tag == "tr":
            self.tables[-1][1].append([])
        elif tag in ("td", "th"):
            self.tables[-1][1][-1].append("")
            self._in_cell = True
        elif tag == "img":
            self.images.append(attrs["src"])
        elif tag == "script":
            self._in_script = True

    def handle_endtag(self, tag):
        if tag == "script":
            self._in_script = False
        elif tag in ("td", "th"):
            self._in_cell = False

    def handle_data(self, data):
        if self._in_script:
            self.script += data
        elif self._in_cell:
            self.tables[-1][1][-1][-1] += data


def _tiny_report(predictor=None):
    model = tiny_net()
    return report_module.build_report(ModelSource(model, "tiny"),
                                      budgets=Budgets(200_000, "30%"),
                                      input_shape=(1, 3, 32, 32),
                                      whatif=report_module.WhatifAxes("50KB:300KB:3", "10%:60%:3"),
                                      predictor=predictor)


def test_report_with_a_device_shows_time_and_energy_in_every_section():
    predictor = device_predictor(device_context("pi-zero-2"))
    parsed = _Tables()
    parsed.feed(report_module.render_html(_tiny_report(predictor)))
    data = json.loads(parsed.script.replace("<\\/", "</"))
    tables = {}
    for cls, rows in parsed.tables:
        tables.setdefault(cls, []).append(rows)
    plan_device = data["plan"]["device"]
    assert plan_device["time_s"] > 0 and plan_device["fits_ram"] is True
    assert data["plan"]["device_model"].startswith("pi-zero-2, 40 iterations x 25 samples")
    heads, row = tables["plan"][1]
    assert heads[1:] == ["device time s", "device energy J", "fits RAM"]
    assert row[1:] == [f"{plan_device['time_s']:.4g}", f"{plan_device['energy_j']:.4g}", "yes"]
    assert "pi-zero-2" in data["summary"]["device"]
    table2 = tables["table2"][0]
    assert table2[0][-3:] == ["device time s", "device energy J", "fits RAM"]
    for row, r in zip(table2[1:], data["table2"]["rows"]):
        assert row[-3] == f"{r['device']['time_s']:.4g}" and r["device"]["energy_j"] > 0
    batch100 = [r["device"]["time_s"] for r in data["table2"]["rows"] if r["batch_size"] == 100]
    assert len(batch100) == 2 and all(t > 0 for t in batch100)
    whatif = tables["whatif"][0]
    assert whatif[0][-3:] == ["device time s", "device energy J", "fits RAM"]
    for row, cell in zip(whatif[1:], data["whatif"]["cells"]):
        assert row[-3] == ("-" if cell["time_s"] is None else f"{cell['time_s']:.4g}")
        assert (cell["time_s"] is None) == (not cell["feasible"])
    assert len(parsed.images) == 4


@pytest.fixture(scope="module")
def tiny_report(one_thread):
    """One report of the tiny net, shared by the tests that only read it (rendering does not
    change a report: the same-bytes test renders it twice beside a second, separate build)."""
    return _tiny_report()


def test_report_html_is_self_contained_and_matches_json(tiny_report):
    html_text = report_module.render_html(tiny_report)
    assert "http://" not in html_text and "https://" not in html_text
    parsed = _Tables()
    parsed.feed(html_text)
    assert len(parsed.images) == 4
    for src in parsed.images:
        assert src.startswith("data:image/png;base64,")
        Image.open(io.BytesIO(base64.b64decode(src.split(",", 1)[1]))).verify()
    data = json.loads(parsed.script.replace("<\\/", "</"))
    tables = {cls: rows for cls, rows in parsed.tables}
    whatif = tables["whatif"][1:]
    assert len(whatif) == len(data["whatif"]["cells"]) == 2 * 9  # tinytrain, sparseupdate
    for row, cell in zip(whatif, data["whatif"]["cells"]):
        assert row[1] == f"{cell['memory_bytes']:,}" and row[2] == f"{cell['compute_macs']:,}"
        assert row[3] == ("yes" if cell["feasible"] else "no")
        if cell["feasible"]:
            assert row[6] == f"{100 * cell['fisher_fraction']:.2f}%"
            assert row[7] == f"{cell['backward_macs']:,}" and row[8] == f"{cell['peak_bytes']:,}"
    table2_rows = tables["table2"][1:]
    assert len(table2_rows) == 5
    for row, r in zip(table2_rows, data["table2"]["rows"]):
        assert row[2] == f"{r['memory_bytes']['paper']:,}"
        assert row[3] == f"{r['memory_bytes']['pytorch']:,}"
        assert row[4] == f"{r['backward_macs']:,}" and row[6] == "-"  # no paper figure
    layer_table = tables["layers"][1:]
    assert [row[0] for row in layer_table] == [r["name"] for r in data["layers"]["layers"]]
    for row, r in zip(layer_table, data["layers"]["layers"]):
        assert row[2] == f"{r['weight_bytes']:,}" and row[4] == f"{r['backward_weight_macs']:,}"
    why = tables["plan"][1:]
    assert [row[0] for row in why] == [s["layer"] for s in data["plan"]["why"]]
    assert {s["layer"] for s in data["plan"]["why"]} == \
        {layer["name"] for layer in data["plan"]["policy"]["layers"]}
    last = data["plan"]["why"][-1]
    assert last["peak_bytes"] == data["plan"]["policy"]["predicted"]["memory"]["peak_bytes"]


def test_report_same_bytes_twice(tiny_report, tmp_path):
    # two separate builds of the same report, each rendered to HTML and to markdown + figures
    second = _tiny_report()
    assert report_module.render_html(second) == report_module.render_html(tiny_report)
    names = report_module.write_markdown(tiny_report, tmp_path / "md")
    assert "report.md" in names and "whatif.png" in names
    Image.open(tmp_path / "md" / "layers.png").verify()
    # every figure also as vector files beside its PNG, the same bytes twice
    for stem in ("table2", "whatif", "pareto", "layers"):
        assert {f"{stem}.svg", f"{stem}.pdf"} <= set(names)
        assert (tmp_path / "md" / f"{stem}.svg").read_text().lstrip().startswith("<?xml")
        assert (tmp_path / "md" / f"{stem}.pdf").read_bytes().startswith(b"%PDF")
    again = report_module.write_markdown(second, tmp_path / "md2")
    assert again == names
    for name in names:
        assert (tmp_path / "md" / name).read_bytes() == (tmp_path / "md2" / name).read_bytes()
    md = (tmp_path / "md" / "report.md").read_text()
    assert "|  |" not in md and "| |" not in md.split("## The plan")[0]  # no empty header row


# ------------------------------------------------------------------------------ CLI

def run(*args):
    return runner.invoke(app, list(args))


@pytest.mark.parametrize("args, message", [
    (("whatif", "mcunet-5fps", "--memory", "2MB:1MB:3"), "invalid --memory range"),
    (("whatif", "mcunet-5fps", "--compute", "5%:1M:3"), "percentages or both as MACs"),
    (("whatif", "mcunet-5fps", "--method", "tinytrain,magic"), "unknown method 'magic'"),
    (("whatif", "mcunet-5fps", "--format", "xml"), "unknown --format"),
    (("table2", "mcunet-5fps", "--format", "docx"), "unknown --format"),
    (("table2", "mcunet-5fps", "mbv2-w0.35", "--fisher", "f.json"), "one model"),
    (("report", "mcunet-5fps", "--out", "r.html", "--whatif-compute", "1:2"), "invalid"),
    (("layers", "nosuchmodel"), "unknown model"),
    (("whatif", "mcunet-5fps", "--device", "nosuch"), "unknown device 'nosuch'"),
    (("report", "mcunet-5fps", "--out", "r.html", "--device", "nosuch"), "unknown device"),
    (("whatif", "mcunet-5fps", "--device", "pi-zero-2", "--samples", "0"), "samples must be"),
])
def test_cli_errors_are_one_line(args, message):
    result = run(*args)
    assert result.exit_code == 2, result.output
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: ") and message in lines[0]


@pytest.fixture
def tiny_module(tmp_path, monkeypatch):
    (tmp_path / "tinymodels.py").write_text(textwrap.dedent("""
        import torch
        from torch import nn

        def net():
            torch.manual_seed(0)  # the same weights every call, as a trained model has
            return nn.Sequential(nn.Conv2d(3, 8, 3, 2, 1), nn.BatchNorm2d(8), nn.ReLU6(),
                                 nn.Conv2d(8, 16, 3, 2, 1), nn.BatchNorm2d(16), nn.ReLU6(),
                                 nn.Conv2d(16, 16, 1), nn.BatchNorm2d(16), nn.ReLU6(),
                                 nn.AdaptiveAvgPool2d(1), nn.Flatten())
    """))
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.chdir(tmp_path)
    return "tinymodels:net"


def test_cli_whatif_layers_table2_on_a_user_model(tiny_module, tmp_path):
    shape = "1,3,32,32"
    result = run("fisher", tiny_module, "--synthetic", "--samples", "5", "--input-shape", shape,
                 "--out", "f.json")
    assert result.exit_code == 0, result.output
    result = run("whatif", tiny_module, "--fisher", "f.json", "--input-shape", shape,
                 "--memory", "20KB:200KB:3", "--compute", "10%:90%:3", "--plot", "w.png",
                 "--pareto-plot", "p.svg", "--out", "w.json")
    assert result.exit_code == 0, result.output
    cells = json.loads((tmp_path / "w.json").read_text())["cells"]
    assert len(cells) == 9 and set(cells[0]) >= {"method", "memory_bytes", "compute_macs",
                                                 "feasible", "layers", "channels",
                                                 "fisher_fraction", "backward_macs",
                                                 "peak_bytes", "time_s", "energy_j"}
    Image.open(tmp_path / "w.png").verify()
    assert all(c["time_s"] is None for c in cells)
    result = run("whatif", tiny_module, "--fisher", "f.json", "--input-shape", shape,
                 "--memory", "20KB:200KB:2", "--compute", "10%:90%:2", "--device", "pi-zero-2",
                 "--iterations", "10", "--samples", "5", "--plot", "t.png", "--format", "json")
    assert result.exit_code == 0, result.output
    timed = json.loads(result.stdout)["cells"]
    assert len(timed) == 4 and all((c["time_s"] is not None) == c["feasible"] for c in timed)
    assert any(c["feasible"] for c in timed)
    wide, narrow = Image.open(tmp_path / "t.png"), Image.open(tmp_path / "w.png")
    assert wide.size[0] > 1.5 * narrow.size[0]  # a second panel: the time heat map
    assert (tmp_path / "p.svg").read_text().startswith("<?xml")
    result = run("plan", tiny_module, "--fisher", "f.json", "--input-shape", shape,
                 "--memory", "200KB", "--out", "policy.json")
    assert result.exit_code == 0, result.output
    result = run("layers", tiny_module, "--fisher", "f.json", "--input-shape", shape,
                 "--policy", "policy.json", "--format", "json", "--plot", "l.png")
    assert result.exit_code == 0, result.output
    rows = json.loads(result.stdout)["layers"]
    policy = json.loads((tmp_path / "policy.json").read_text())
    assert {r["name"] for r in rows if r["selected"]} == {layer["name"] for layer in policy["layers"]}
    result = run("table2", tiny_module, "--fisher", "f.json", "--input-shape", shape,
                 "--format", "json")
    assert result.exit_code == 0, result.output
    rows = json.loads(result.stdout)["rows"]
    assert [r["paper"] for r in rows] == [None] * 5
