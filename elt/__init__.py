"""elt: active learning of machine-learned interatomic potentials (exploration, labeling, training)."""

__version__ = "0.1.0"


def load_potential(path, **kwargs):
    """Load a trained ensemble checkpoint and return an ASE calculator (mean energy, forces, stress
    plus the model deviation in ``calc.results``)."""
    from elt.potentials import load_calculator

    return load_calculator(path, **kwargs)
