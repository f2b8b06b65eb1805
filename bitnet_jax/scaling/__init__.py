"""Scaling laws: compute and energy accounting, fits with bootstrap intervals, recipe comparisons, plots, reports."""

from bitnet_jax.scaling.energy import inference_energy
from bitnet_jax.scaling.fit import (Chinchilla, IsoFlop, PowerLaw, fit_chinchilla, fit_isoflop,
                                    fit_power_law)

__all__ = ["inference_energy", "Chinchilla", "IsoFlop", "PowerLaw", "fit_chinchilla", "fit_isoflop",
           "fit_power_law"]
