"""The exploration calculator of a stage: the ensemble's calculator wrapped by the stage's
metadynamics hills (:mod:`elt.sampling.metad`) and its bias (:mod:`elt.sampling.bias`), in that
order. One table maps each bias kind of the config to its wrapper."""

from __future__ import annotations

from ase.calculators.calculator import Calculator

from elt.sampling.bias import ConfidenceSwitch, FlattenCalculator, HALCalculator, UDDCalculator
from elt.sampling.metad import MetadCalculator

# bias kind (config) -> wrapper of an inner calculator
BIASES = {
    "udd": lambda inner, b: UDDCalculator(inner, strength=b.strength, width=b.width),
    "hal": lambda inner, b: HALCalculator(inner, tau=b.tau, target_ratio=b.target_ratio, memory=b.memory),
    "flatten": lambda inner, b: FlattenCalculator(inner, strength=b.strength,
                                                  switch=ConfidenceSwitch.from_config(b.confidence), memory=b.memory),
}


def find_wrapper(calc, cls):
    """The first calculator of type ``cls`` in a chain of wrappers (following ``.inner``), or None."""
    while calc is not None:
        if isinstance(calc, cls):
            return calc
        calc = getattr(calc, "inner", None)
    return None


def wrap_calculator(calc: Calculator, stage, iteration: int, temperature: float) -> Calculator:
    """The exploration calculator of a stage: ``calc`` with the stage's metadynamics hills and its
    bias (when ``iteration >= bias.from_iteration``) on top."""
    if getattr(stage, "metad", None) is not None:
        calc = MetadCalculator.from_config(calc, stage.metad, temperature)
    b = getattr(stage, "bias", None)
    if b is not None and iteration >= b.from_iteration:
        calc = BIASES[b.kind](calc, b)
    return calc
