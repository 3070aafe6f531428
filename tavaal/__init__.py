"""tavaal: pool-based deep active learning (VAAL, TA-VAAL and baselines)."""

__version__ = "0.1.0"
