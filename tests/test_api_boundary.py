"""The Python API refuses what the CLI refuses, with the same one-line message, and its public
functions show their real parameters."""

import inspect

import pytest
from typer.testing import CliRunner

import ttplan
from ttplan.cli import app
from ttplan.costmodel.errors import SpecError
from ttplan.costmodel.options import OPTION_NAMES
from ttplan.costmodel.profile import profile as cost_profile

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
    # profile's options: the fields set, as a dict, or a CostOptions from the factory
    api = _api_error(lambda **kw: ttplan.profile("mcunet-5fps", (1, 3, 32, 32), options=kw),
                     **kwargs)
    assert api == _api_error(ttplan.cost_options, **kwargs)
    cli = _cli_error(["profile", "mcunet-5fps", "--input-shape", "1,3,32,32"] + flags)
    assert needle in api and api == cli and "\n" not in api


@pytest.mark.parametrize("old,new", [("convention", "options={'convention': ...}"),
                                     ("weights_in_flash", "ttplan.cost_options"),
                                     ("tracer", "tracing=ttplan.Tracing(tracer=...)"),
                                     ("rules", "tracing=ttplan.Tracing(rules=...)"),
                                     ("training_mode", "ttplan.Tracing(training_mode=...)"),
                                     ("model_name", "ttplan.ModelSource(model, name=...)"),
                                     ("weights", "ttplan.ModelSource(model, weights=...)")])
def test_profile_names_the_new_way_for_an_old_keyword(old, new):
    # the cost model's profile never took the options one by one
    for fn in (ttplan.profile,) + ((cost_profile,) if old not in OPTION_NAMES else ()):
        with pytest.raises(TypeError) as err:
            fn("mcunet-5fps", (1, 3, 32, 32), **{old: None})
        message = str(err.value)
        assert f"profile() no longer takes {old}=" in message and new in message
        assert "\n" not in message


def test_profile_takes_options_as_a_value_or_the_fields_set():
    shape = (1, 3, 32, 32)
    as_value = ttplan.profile("mcunet-5fps", shape, options=ttplan.cost_options("pytorch", "adam"))
    as_fields = ttplan.profile("mcunet-5fps", shape,
                               options={"convention": "pytorch", "optimizer": "adam"})
    assert as_value.to_dict() == as_fields.to_dict()
    assert as_value.config.options == ttplan.cost_options("pytorch", "adam")
    assert "unknown cost option 'bits'" in _api_error(ttplan.profile, model="mcunet-5fps",
                                                       input_shape=shape, options={"bits": 8})
    assert "ttplan.cost_options" in _api_error(ttplan.profile, model="mcunet-5fps",
                                               input_shape=shape, options="pytorch")
    assert "ttplan.Tracing" in _api_error(ttplan.profile, model="mcunet-5fps",
                                          input_shape=shape, tracing="fx")


@pytest.mark.parametrize("kwargs,flags,needle", BAD_OPTIONS)
def test_plan_refuses_what_the_cli_refuses(kwargs, flags, needle):
    # The options are one value (ttplan.cost_options builds it, at the API's boundary).
    api = _api_error(lambda **kw: ttplan.plan("mcunet-5fps", method="fulltrain",
                                              options=ttplan.cost_options(**kw)), **kwargs)
    cli = _cli_error(["plan", "mcunet-5fps", "--method", "fulltrain"] + flags)
    assert needle in api and api == cli


BAD_BUDGETS = [
    ({"memory_bytes": 0}, ["--memory", "0"], "invalid byte size '0'"),
    ({"memory_bytes": "1.5 TB"}, ["--memory", "1.5 TB"], "invalid byte size '1.5 TB'"),
    ({"compute": 0}, ["--compute", "0"], "invalid compute budget '0'"),
    ({"compute": "150%"}, ["--compute", "150%"], "invalid compute budget '150%'"),
]


@pytest.mark.parametrize("kwargs,flags,needle", BAD_BUDGETS)
def test_budgets_refuse_what_the_cli_refuses(kwargs, flags, needle):
    """A budget is parsed once (ttplan.Budgets): the number the API is given and the text the
    command line is given meet the same grammar and the same message."""
    api = _api_error(lambda **kw: ttplan.plan("mcunet-5fps", method="fulltrain", **kw), **kwargs)
    assert api == _api_error(ttplan.Budgets, **kwargs)
    cli = _cli_error(["plan", "mcunet-5fps", "--method", "fulltrain"] + flags)
    assert needle in api and api == cli and "\n" not in api


def test_budgets_are_typed_once():
    budgets = ttplan.Budgets("1MB", "15%")
    assert budgets.memory_bytes == 1_000_000 and budgets.compute.fraction == 0.15
    assert ttplan.Budgets(1_000_000, 0.15) == budgets


def test_one_duration_grammar():
    """`measure --time-limit 20m` reads a duration as `plan --time 20m` does."""
    from ttplan.costmodel.specs import parse_duration
    from ttplan.devices import grid, planning

    assert grid.parse_duration is parse_duration and planning.parse_duration is parse_duration
    assert parse_duration("20m") == parse_duration("20min") == 1200.0
    cli = _cli_error(["measure", "mcunet-5fps", "--log", "runs.csv", "--time-limit",
                      "20 fortnights"])
    assert cli == _api_error(parse_duration, text="20 fortnights", what="time limit")


def test_time_needs_a_device_in_one_place():
    from ttplan.devices.planning import device_for

    api = _api_error(device_for, device=None, time="10min")
    for command in (["plan", "mcunet-5fps"], ["compare", "mcunet-5fps"]):
        assert _cli_error(command + ["--time", "10min"]) == api


@pytest.mark.parametrize("fn", [ttplan.profile, ttplan.plan, ttplan.apply_policy, ttplan.Budgets,
                                ttplan.PlanSearch, ttplan.cost_options, ttplan.device_context,
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


def test_request_values_are_checked_for_their_type():
    """Below the boundary a value arrives typed: a loose one is refused, naming the factory."""
    assert "ttplan.cost_options" in _api_error(ttplan.plan, model="mcunet-5fps",
                                               method="none", options="pytorch")
    assert "PlanSearch" in _api_error(ttplan.plan, model="mcunet-5fps", method="none",
                                      search="exact")


def test_the_learning_rate_is_refused_alike_by_the_cli_and_the_api():
    from typer.testing import CliRunner

    from ttplan.cli import app
    from ttplan.costmodel.errors import SpecError
    from ttplan.devices.runner import RunSettings

    for text in ("-1", "0", "nan", "abc"):
        result = CliRunner().invoke(app, ["train", "mcunet-5fps", "--update", "none",
                                          "--synthetic", "--lr", text])
        assert result.exit_code == 2
        if text == "abc":  # not a number: the CLI's own words for the same rule
            assert result.output == f"error: learning rate (--lr) must be a positive number, not {text!r}\n"
            continue
        with pytest.raises(SpecError) as refused:
            RunSettings(lr=float(text))
        assert result.output == f"error: {refused.value}\n"  # the API's message, word for word
