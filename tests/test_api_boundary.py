"""The Python API refuses what the CLI refuses, with the same one-line message, and its public
functions show their real parameters."""

import inspect

import pytest
from typer.testing import CliRunner

import ttplan
from ttplan.cli import app
from ttplan.costmodel.errors import SpecError

BAD_OPTIONS = [
    ({"weight_bits": -8}, ["--weight-bits", "-8"], "invalid weight bit-width -8"),
    ({"activation_bits": 7}, ["--activation-bits", "7"], "invalid activation bit-width 7"),
    ({"optimizer": "rmsprop"}, ["--optimizer", "rmsprop"], "unknown optimizer 'rmsprop'"),
    ({"convention": "tensorflow"}, ["--convention", "tensorflow"], "unknown convention"),
    ({"convention": "pytorch", "weight_bits": 8}, ["--convention", "pytorch", "--weight-bits", "8"],
     "bit-width options apply to --convention paper only"),
    ({"convention": "pytorch", "weights_in_flash": True},
     ["--convention", "pytorch", "--weights-in-flash"], "--weights-in-flash applies"),
]


def _api_error(fn, **kwargs) -> str:
    with pytest.raises(SpecError) as err:
        fn(**kwargs)
    return str(err.value)


def _cli_error(args) -> str:
    result = CliRunner().invoke(app, args)
    assert result.exit_code == 2
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: ")
    return lines[0].removeprefix("error: ")


@pytest.mark.parametrize("kwargs,flags,needle", BAD_OPTIONS)
def test_profile_refuses_what_the_cli_refuses(kwargs, flags, needle):
    api = _api_error(lambda **kw: ttplan.profile("mcunet-5fps", (1, 3, 32, 32), **kw), **kwargs)
    cli = _cli_error(["profile", "mcunet-5fps", "--input-shape", "1,3,32,32"] + flags)
    assert needle in api and api == cli and "\n" not in api


@pytest.mark.parametrize("kwargs,flags,needle", BAD_OPTIONS)
def test_plan_refuses_what_the_cli_refuses(kwargs, flags, needle):
    api = _api_error(lambda **kw: ttplan.plan("mcunet-5fps", method="fulltrain", **kw), **kwargs)
    cli = _cli_error(["plan", "mcunet-5fps", "--method", "fulltrain"] + flags)
    assert needle in api and api == cli


@pytest.mark.parametrize("fn", [ttplan.profile, ttplan.plan, ttplan.apply_policy,
                                ttplan.load_policy, ttplan.fisher_information, ttplan.trace,
                                ttplan.register_rule])
def test_public_functions_show_their_parameters(fn):
    params = inspect.signature(fn).parameters
    assert params and not any(p.kind in (p.VAR_POSITIONAL, p.VAR_KEYWORD) for p in params.values())
    assert inspect.getdoc(fn)


def test_cost_options_are_frozen_and_resolved():
    options = ttplan.CostOptions()
    assert options.weights_in_flash is True  # paper: frozen weights in flash (A.4)
    assert ttplan.CostOptions("pytorch").weights_in_flash is False
    with pytest.raises(AttributeError):
        options.optimizer = "adam"
