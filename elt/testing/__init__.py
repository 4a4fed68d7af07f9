"""Conformance suite for elt plugins: run it on your plugin (from pytest or a script).

Three plain functions, one per plugin kind, each raising ``AssertionError`` with a message that
names the plugin, the check and what was wrong, and returning a :class:`Report` of the checks that
passed::

    from elt.testing import check_labeler, check_potential, check_explorer

    check_labeler({"kind": "mylabeler", "basis": "sto-3g"}, [molecule("H2O")])
    report = check_potential("mypot", frames, {"model": {...}})      # trains 2 members
    check_explorer({"kind": "myexplorer"}, report.data["ensemble"], [frames[0]])

Config sections may be given as a config model, a mapping with ``kind`` or a kind name; they are
validated as the workflow validates them (through the registry). Every built-in plugin passes
these checks in elt's own test suite (``tests/testing/``, ``tests/labeling/``). Units: Å, eV,
eV/Å, eV/Å³ (ASE's stress convention), K, fs.
"""

from elt.testing._checks import Report
from elt.testing.explorer import check_explorer
from elt.testing.labeler import check_labeler
from elt.testing.potential import check_potential

__all__ = ["Report", "check_explorer", "check_labeler", "check_potential"]
