"""The public API the CLI is a client of: `ttplan` and the public modules beside it
(`ttplan.specs`, `ttplan.io`, `ttplan.render`). Each exported name resolves (a lazy export
naming a moved or renamed function fails here, not when one command runs) and is listed in
its module's docstring, which is its documentation."""

import importlib
import re

import pytest

PUBLIC = ("ttplan", "ttplan.specs", "ttplan.io", "ttplan.render")


@pytest.mark.parametrize("name", PUBLIC)
def test_every_export_resolves_and_is_documented(name):
    module = importlib.import_module(name)
    for exported in module.__all__:
        assert getattr(module, exported) is not None, f"{name}.{exported}"
    undocumented = [e for e in module.__all__ if not re.search(rf"\b{e}\b", module.__doc__)]
    assert not undocumented, f"{name}'s docstring does not mention {undocumented}"


def test_an_unknown_name_is_an_attribute_error():
    import ttplan.specs

    with pytest.raises(AttributeError, match="ttplan.specs"):
        ttplan.specs.no_such_name  # noqa: B018
