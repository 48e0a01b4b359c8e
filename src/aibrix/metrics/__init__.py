"""Engine metrics under one ``aibrix:`` vocabulary: rules per engine, text transformation, a reading API."""

from aibrix.metrics.standardize import Standardizer, read_standard
from aibrix.metrics.vocabulary import VOCABULARY, Standard

__all__ = ["VOCABULARY", "Standard", "Standardizer", "read_standard"]
