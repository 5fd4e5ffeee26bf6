"""Every pinned zoo output (profile, fisher, plan, export, sweep, compare) is byte-identical to
the recorded one: restructuring the code must not change a number."""

import json

from regression.outputs import HASHES, run_all


def test_zoo_outputs_unchanged(tmp_path):
    known = json.loads(HASHES.read_text())
    found = run_all(tmp_path)
    assert sorted(found) == sorted(known)
    changed = [line for line in known if found[line] != known[line]]
    assert not changed, "outputs changed:\n" + "\n".join(changed)
