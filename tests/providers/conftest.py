from tests.pipelines.conftest import _no_ray  # providers run without Ray too

__all__ = ["_no_ray"]
