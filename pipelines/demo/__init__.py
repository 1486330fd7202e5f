"""The bundled demo: real images shipped by installed packages plus small generated datasets."""

from pipelines.demo.generate import DEMO_VERSION, prepare_demo_sources

__all__ = ["DEMO_VERSION", "prepare_demo_sources"]
