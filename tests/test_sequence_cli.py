"""Issue 17's end-to-end must-show: audio and sequence models go profile → fisher → plan →
train from the CLI on sequence support data (an .npz written here); a BERT-like model taking
integer token ids (and a mask) goes profile → plan. No traceback, no unknown-operator warning."""

import json

import numpy as np
import pytest
import torch
from typer.testing import CliRunner

import ttplan
from ttplan.cli import app

from sequence_models import SEQ, VOCAB, lstm_classifier, tiny_bert

runner = CliRunner()


def run(*args):
    result = runner.invoke(app, [str(a) for a in args])
    assert "Traceback" not in result.output + result.stderr
    # No unknown operator, no fallback; a timing warning (a run too short to time, a busy
    # machine) is about this machine, not the model.
    model_warnings = [line for line in result.stderr.splitlines() if "warning" in line
                      and not any(t in line for t in TIMING_WARNINGS)]
    assert not model_warnings, result.stderr
    return result


TIMING_WARNINGS = ("too short to time", "the machine is busy")


def write_support(path, x, classes=4):
    y = np.arange(len(x)) % classes
    np.savez(path, x=x, y=y)
    return path


@pytest.fixture()
def kws_data(tmp_path):
    g = np.random.default_rng(0)
    y = np.arange(16) % 4
    x = g.normal(size=(16, 40, 100)).astype(np.float32) + y[:, None, None]
    return write_support(tmp_path / "kws.npz", x)


@pytest.fixture()
def token_data(tmp_path):
    g = np.random.default_rng(1)
    y = np.arange(16) % 4
    ids = g.integers(0, VOCAB, size=(16, SEQ))
    ids[:, ::2] = y[:, None] * 12 + g.integers(0, 12, size=(16, SEQ // 2))
    return write_support(tmp_path / "ids.npz", ids)


@pytest.mark.parametrize("model, spec, data", [
    ("sequence_models:keyword_spotter", ["--input-shape", "1,40,100"], "kws_data"),
    ("sequence_models:keyword_spotter", ["--input", "float32[1,40,100]"], "kws_data"),
    ("sequence_models:lstm_classifier", ["--input", "int64[1,16]"], "token_data"),
    ("sequence_models:tiny_bert", ["--input", "input_ids:int64[1,16]"], "token_data"),
])
def test_profile_fisher_plan_train(tmp_path, request, model, spec, data):
    data = request.getfixturevalue(data)
    prof, fisher, policy = tmp_path / "p.json", tmp_path / "f.json", tmp_path / "policy.json"
    result = run("profile", model, *spec, "--update", "all", "--convention", "pytorch",
                 "--verify", "--format", "json", "--out", prof)
    assert result.exit_code == 0, result.output
    assert "+0.00%" in result.stderr  # autograd keeps what the pytorch convention predicts
    assert json.loads(prof.read_text())["batch_size"] == 1
    result = run("fisher", model, *spec, "--data", data, "--out", fisher)
    assert result.exit_code == 0, result.output
    assert "16 samples, 4 classes" in result.stderr
    result = run("plan", model, *spec, "--fisher", fisher, "--memory", "1MB",
                 "--compute", "50%", "--out", policy)
    assert result.exit_code == 0, result.output
    result = run("train", model, "--policy", policy, "--data", data, "--iterations", "2",
                 "--batch-size", "2", "--format", "json")
    assert result.exit_code == 0, result.output
    out = json.loads(result.stdout)
    assert out["measured"]["saved_bytes"] == out["predicted"]["saved_bytes"]
    assert out["run"]["batch_size"] == 2 and out["run"]["samples"] + \
        out["run"]["query_samples"] == 16
    # a policy file given as the update spec, as predict and profile take it
    result = run("train", model, "--update", policy, "--data", data, "--iterations", "1",
                 "--batch-size", "2", "--format", "json")
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout)["predicted"]["saved_bytes"] == out["predicted"]["saved_bytes"]


def test_synthetic_token_ids_come_from_the_embedding_vocabulary(tmp_path):
    fisher = tmp_path / "f.json"
    result = run("fisher", "sequence_models:lstm_classifier", "--input", "int64[1,16]",
                 "--synthetic", "--samples", "8", "--out", fisher)
    assert result.exit_code == 0, result.output
    assert f"token ids < {VOCAB}" in result.stderr
    result = run("train", "sequence_models:lstm_classifier", "--input", "int64[1,16]",
                 "--synthetic", "--samples", "8", "--vocab", "7", "--update", "all",
                 "--iterations", "1", "--format", "json")
    assert result.exit_code == 0, result.output
    assert "token ids < 7" in json.loads(result.stdout)["run"]["data"]


def test_synthetic_samples_are_of_the_input_spec():
    from ttplan.costmodel.inputs import parse_input_spec
    from ttplan.planner.support.sequences import SyntheticSequences

    ids = SyntheticSequences(10, 5, parse_input_spec("int32[1,6]"), seed=3, vocab=20).tensor()
    assert ids.shape == (10, 6) and ids.dtype == torch.int32
    assert 0 <= int(ids.min()) and int(ids.max()) < 20
    again = SyntheticSequences(10, 5, parse_input_spec("int32[1,6]"), seed=3, vocab=20).tensor()
    assert torch.equal(ids, again)
    with pytest.raises(ttplan.TtplanError, match="give --vocab"):
        SyntheticSequences(10, 5, parse_input_spec("int64[1,6]"), seed=3, vocab=None)
    feats = SyntheticSequences(4, 2, parse_input_spec("float32[1,3,5]"), 0, None).tensor()
    assert feats.shape == (4, 3, 5) and feats.dtype == torch.float32


def test_bert_like_token_ids_profile_and_plan(tmp_path):
    specs = ["--input", "input_ids:int64[1,16]", "--input", "attention_mask:bool[1,16]"]
    policy = tmp_path / "policy.json"
    result = run("profile", "sequence_models:tiny_bert", *specs, "--batch-size", "2",
                 "--format", "json")
    assert result.exit_code == 0, result.output
    data = json.loads(result.stdout)
    assert [s["shape"] for s in data["inputs"]] == [[2, 16], [2, 16]]
    assert data["totals"]["params"] == sum(p.numel() for p in tiny_bert().parameters())
    assert not data["totals"]["unknown_ops"] and not data["warnings"]
    result = run("plan", "sequence_models:tiny_bert", *specs, "--method", "fulltrain",
                 "--memory", "1MB", "--out", policy)
    assert result.exit_code == 0, result.output
    saved = json.loads(policy.read_text())
    assert [s["dtype"] for s in saved["inputs"]] == ["int64", "bool"]
    result = run("profile", "sequence_models:tiny_bert", "--update", policy, "--format", "json")
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout)["totals"] == saved["predicted"]["totals"]


def test_inputs_npz_of_real_tensors(tmp_path):
    path = tmp_path / "inputs.npz"
    np.savez(path, np.zeros((3, SEQ), dtype=np.int64))
    result = run("profile", "sequence_models:lstm_classifier", "--inputs", path,
                 "--format", "json")
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout)["inputs"] == [{"name": None, "dtype": "int64",
                                                    "shape": [3, SEQ]}]


@pytest.mark.parametrize("args, message", [
    (["--input", "ids:int65[1,2]"], "unknown dtype 'int65'"),
    (["--input", "int64[1,16"], "invalid input spec"),
    (["--input", "a:int64[1,16]", "--input", "b:bool[2,16]"], "disagree on the batch size"),
    (["--input", "int64[1,16]", "--input-shape", "1,16"], "not both"),
    (["--inputs", "nothing.npz"], "inputs file not found"),
    (["--inputs", "inputs.txt"], "takes an .npz"),
])
def test_bad_specs_are_one_line_errors_with_the_api_message(args, message):
    result = runner.invoke(app, ["profile", "sequence_models:lstm_classifier", *args])
    assert result.exit_code == 2
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: ") and message in lines[0]
    if args[0] == "--input" and "--input-shape" not in args:
        specs = [a for a in args if a != "--input"]
        with pytest.raises(ttplan.TtplanError) as info:
            ttplan.profile(lstm_classifier(), inputs=specs)
        assert lines[0] == f"error: {info.value}"


def test_fisher_of_a_sample_shape_the_model_does_not_take(kws_data):
    result = runner.invoke(app, ["fisher", "sequence_models:lstm_classifier", "--input",
                                 "int64[1,16]", "--data", str(kws_data)])
    assert result.exit_code == 2
    assert "holds samples of shape [40, 100]; the model's input takes [16]" in result.stderr


def test_layers_and_whatif_take_token_ids():
    result = run("layers", "sequence_models:tiny_bert", "--input", "input_ids:int64[1,16]",
                 "--format", "json")
    assert result.exit_code == 0, result.output
    assert "\"head\"" in result.stdout
    result = run("whatif", "sequence_models:keyword_spotter", "--input", "float32[1,40,100]",
                 "--memory", "20kB:200kB:2", "--compute", "5%:50%:2", "--format", "json")
    assert result.exit_code == 0, result.output


def test_a_model_of_two_inputs_goes_fisher_plan_train(tmp_path, token_data):
    # One array per input, named after its keyword argument; packed into one tensor for the
    # probe and the run, unpacked into forward(input_ids=..., attention_mask=...).
    with np.load(token_data) as loaded:
        ids, y = loaded["x"], loaded["y"]
    mask = np.ones(ids.shape, bool)
    mask[:, 12:] = False
    data = tmp_path / "two.npz"
    np.savez(data, input_ids=ids, attention_mask=mask, y=y)
    specs = ["--input", "input_ids:int64[1,16]", "--input", "attention_mask:bool[1,16]"]
    fisher, policy = tmp_path / "f.json", tmp_path / "p.json"
    result = run("fisher", "sequence_models:tiny_bert", *specs, "--data", data, "--out", fisher)
    assert result.exit_code == 0, result.output
    assert "(+1 more input(s))" in " ".join(result.stderr.split())  # lines wrap to the width
    result = run("plan", "sequence_models:tiny_bert", *specs, "--fisher", fisher, "--memory",
                 "100kB", "--compute", "30%", "--out", policy)
    assert result.exit_code == 0, result.output
    result = run("train", "sequence_models:tiny_bert", "--policy", policy, "--data", data,
                 "--iterations", "1", "--batch-size", "2", "--format", "json")
    assert result.exit_code == 0, result.output
    out = json.loads(result.stdout)
    assert out["measured"]["saved_bytes"] == out["predicted"]["saved_bytes"]
    result = runner.invoke(app, ["fisher", "sequence_models:tiny_bert", *specs, "--data",
                                 str(token_data)])
    assert result.exit_code == 2 and "lacks array(s) input_ids" in result.stderr


def test_feeding_restores_the_model():
    from ttplan.costmodel.inputs import as_inputs
    from ttplan.planner.support.sequences import feeding

    model = tiny_bert()
    inputs = as_inputs(["input_ids:int64[1,16]", "attention_mask:bool[1,16]"])
    packed = torch.cat([torch.zeros(2, SEQ, dtype=torch.float64),
                        torch.ones(2, SEQ, dtype=torch.float64)], dim=1)
    with feeding(model, inputs) as fed:
        out = fed(packed)
    assert "forward" not in vars(model)
    expected = model(torch.zeros(2, SEQ, dtype=torch.int64), torch.ones(2, SEQ, dtype=torch.bool))
    assert torch.equal(out, expected)
