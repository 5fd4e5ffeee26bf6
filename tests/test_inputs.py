"""`inputs=`: models called with token ids, masks, several or keyword tensors (issue 17).

Hand counts on tests/sequence_models.py, saved bytes against autograd (saved_tensors_hooks).
"""

import json

import pytest
import torch

import ttplan
from ttplan.costmodel.inputs import as_inputs, parse_input_spec
from ttplan.planner.policy.file import Policy

from sequence_models import SEQ, VOCAB, keyword_spotter, lstm_classifier, tiny_bert
from ttplan.devices.runner import RunSettings, Support

IDS = torch.zeros(1, SEQ, dtype=torch.int64)


def bert_macs(n: int, t: int = SEQ, d: int = 16, classes: int = 3) -> int:
    """Forward MACs of TinyBert: per layer qkv 3d², proj d², fc1 2d², fc2 2d² per token,
    attention q·kᵀ and p·v t·d each per token; the head d·classes on the first token."""
    per_token = 2 * (3 * d * d + d * d + 2 * d * d + 2 * d * d) + 2 * 2 * t * d
    return n * (t * per_token + d * classes)


@pytest.mark.parametrize("inputs", [
    IDS, (IDS,), {"input_ids": IDS}, "input_ids:int64[1,16]", ["int64[1,16]"],
    {"input_ids": IDS, "attention_mask": torch.ones(1, SEQ, dtype=torch.bool)},
])
def test_token_ids_in_every_form(inputs):
    prof = ttplan.profile(tiny_bert(), inputs=inputs, update="all",
                          options={"convention": "pytorch"},
                          batch_size=3)
    assert prof.totals["forward_macs"] == bert_macs(3)
    assert prof.totals["params"] == sum(p.numel() for p in tiny_bert().parameters())
    assert not prof.totals["unknown_ops"] and not prof.warnings
    data = prof.to_dict()
    assert data["batch_size"] == 3 and data["inputs"][0]["dtype"] == "int64"
    assert all(spec["shape"][0] == 3 for spec in data["inputs"])  # every input's dim 0


@pytest.mark.parametrize("update", ["all", "bias-only", "last-blocks:1"])
@pytest.mark.parametrize("make, inputs", [
    (keyword_spotter, torch.zeros(1, 40, 100)),
    (lstm_classifier, IDS),
    (tiny_bert, IDS),
])
def test_saved_bytes_equal_autograd(make, inputs, update):
    prof = ttplan.profile(make(), inputs=inputs, update=update, options={"convention": "pytorch"},
                          batch_size=2, verify=True)
    assert prof.verification["measured_bytes"] == prof.verification["predicted_bytes"]
    assert not prof.warnings


def test_integer_input_keeps_its_ids_for_the_embedding():
    # The embedding's weight gradient needs the ids: EmbeddingBackward0 keeps the int64 index
    # tensor (N·T·8 bytes, the graph input itself); nothing asks for the ids' gradient.
    model = torch.nn.Sequential(torch.nn.Embedding(VOCAB, 8), torch.nn.Flatten(),
                                torch.nn.Linear(8 * SEQ, 2))
    prof = ttplan.profile(model, inputs=IDS, update={"0": ttplan.LayerUpdate(weight=True,
                                                                             bias=False)},
                          options={"convention": "pytorch"}, batch_size=4, verify=True)
    assert prof.verification["measured_bytes"] == 4 * SEQ * 8 == \
        prof.verification["predicted_bytes"]


def test_the_shorthand_is_unchanged():
    a = ttplan.profile(keyword_spotter(), (1, 40, 100)).to_dict()
    b = ttplan.profile(keyword_spotter(), inputs=torch.randn(1, 40, 100)).to_dict()
    assert a == b and "inputs" not in a


def test_plan_records_the_inputs_and_profile_reads_them_back(tmp_path):
    specs = ["input_ids:int64[2,16]", "attention_mask:bool[2,16]"]
    policy = ttplan.plan(tiny_bert(), method="fulltrain", inputs=specs)
    data = json.loads(json.dumps(policy.to_dict()))
    assert data["input_shape"] == [2, 16] and [s["dtype"] for s in data["inputs"]] == ["int64", "bool"]
    again = ttplan.profile(tiny_bert(), update=Policy.from_dict(data))
    assert again.totals == policy.predicted["totals"]
    with pytest.raises(ttplan.TtplanError, match="contradict the policy"):
        ttplan.profile(tiny_bert(), update=Policy.from_dict(data), inputs="input_ids:int64[2,16]")


def test_fingerprint_tells_dtypes_apart():
    ids = ttplan.trace(lstm_classifier(), inputs=IDS)
    assert ids.fingerprint() != ttplan.trace(keyword_spotter(), (1, 40, 100)).fingerprint()
    assert ttplan.trace(keyword_spotter(), (1, 40, 100)).input_specs is None


@pytest.mark.parametrize("bad, message", [
    ("ids:int65[1,2]", "unknown dtype 'int65'"),
    ("ids:int64[1,2", "invalid input spec"),
    ("ids:int64[0,2]", "positive integers"),
    (["a:int64[1,16]", "b:bool[2,16]"], "disagree on the batch size"),
    (["a:int64[1,16]", "int64[1,16]"], "positional inputs"),
    (["a:int64[1,16]", "a:int64[1,16]"], "given twice"),
    ("mask:bool[1,16]", "does not take"),
    (torch.tensor(3), "scalar"),
    (3.0, "inputs must be"),
])
def test_bad_inputs_are_one_line_errors(bad, message):
    with pytest.raises(ttplan.TtplanError, match=message) as info:
        ttplan.profile(tiny_bert(), inputs=bad)
    assert "\n" not in str(info.value)


def test_inputs_and_input_shape_not_both():
    with pytest.raises(ttplan.TtplanError, match="not both"):
        ttplan.profile(tiny_bert(), (1, 16), inputs=IDS)


def test_spec_grammar():
    assert parse_input_spec("ids:int64[1,128]").text() == "ids:int64[1,128]"
    assert parse_input_spec(" [1, 3, 32, 32] ").text() == "float32[1,3,32,32]"
    assert parse_input_spec("long[2x5]").text() == "int64[2,5]"
    assert as_inputs((1, 3, 8, 8)).is_image_shorthand
    # Real tensors are repeated (or cut) along dim 0 when the batch changes.
    real = as_inputs(torch.arange(2 * 3).reshape(2, 3)).with_batch(3)
    assert real.tensors[0].tolist() == [[0, 1, 2], [3, 4, 5], [0, 1, 2]]


def test_npz_of_real_inputs(tmp_path):
    np = pytest.importorskip("numpy")
    path = tmp_path / "inputs.npz"
    np.savez(path, np.zeros((1, SEQ), dtype=np.int64), attention_mask=np.ones((1, SEQ), bool))
    inputs = as_inputs(str(path))
    assert inputs.text() == "int64[1,16] attention_mask:bool[1,16]"
    assert ttplan.profile(tiny_bert(), inputs=path).totals["forward_macs"] == bert_macs(1)
    assert VOCAB > 0


def test_train_and_fisher_take_token_ids_from_python():
    result = ttplan.train(lstm_classifier(), inputs="int64[1,16]", update="all",
                          support=Support(synthetic=True, samples=8),
                          run=RunSettings(iterations=1, batch_size=2))
    assert result.run["batch_size"] == 2 and "token ids < 50" in result.run["data"]
    assert result.measured["saved_bytes"] == result.predicted["saved_bytes"]
    ids = torch.randint(0, VOCAB, (6, SEQ), generator=torch.Generator().manual_seed(0))
    fisher = ttplan.fisher_information(lstm_classifier(), ["fc"], ids, torch.arange(6) % 2)
    assert len(fisher.layers["fc"]) == 4 and fisher.num_samples == 6


def test_a_hugging_face_style_forward_takes_keyword_inputs():
    class KeywordOnly(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.bert = tiny_bert()

        def forward(self, input_ids=None, attention_mask=None, **kwargs):
            return self.bert(input_ids, attention_mask)

    for tracer in ("fx", "hooks"):
        prof = ttplan.profile(KeywordOnly(), inputs={"input_ids": IDS},
                              tracing=ttplan.Tracing(tracer=tracer),
                              batch_size=2)
        assert prof.totals["forward_macs"] == bert_macs(2) and prof.graph.tracer == tracer


def test_shape_of_and_at_batch_take_inputs_and_shapes_alike():
    from ttplan.costmodel.inputs import at_batch, parse_input_specs, shape_of
    two = parse_input_specs(["x:float32[2,3,8,8]", "mask:int64[2,8]"])
    assert shape_of(two) == (2, 3, 8, 8) and shape_of([2, 3, 8, 8]) == (2, 3, 8, 8)
    one = at_batch(two, 1)
    assert [s.shape for s in one.specs] == [(1, 3, 8, 8), (1, 8)]
    assert at_batch((4, 3, 8, 8), 1) == (1, 3, 8, 8)
