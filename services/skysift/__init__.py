"""skysift: active learning on astronomical alert streams."""

__version__ = "0.1.0"
