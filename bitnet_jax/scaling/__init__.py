"""Scaling laws: compute and energy accounting, fits with bootstrap intervals, comparisons of curve labels against a
baseline, plots, reports."""

from bitnet_jax.scaling.analysis import Analysis, analyse, fit_rows
from bitnet_jax.scaling.energy import inference_energy
from bitnet_jax.scaling.fit import (Chinchilla, IsoFlop, PowerLaw, fit_chinchilla, fit_isoflop,
                                    fit_power_law)
from bitnet_jax.scaling.report import ReportSettings, write_fits, write_report

__all__ = ["Analysis", "analyse", "fit_rows", "inference_energy", "Chinchilla", "IsoFlop", "PowerLaw",
           "fit_chinchilla", "fit_isoflop", "fit_power_law", "ReportSettings", "write_fits", "write_report"]
