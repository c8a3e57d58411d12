import pytest


@pytest.fixture(autouse=True)
def _no_ray(monkeypatch: pytest.MonkeyPatch) -> None:
    """The pipeline is plain Python: any attempt to start Ray here is a layering bug."""
    import ray

    def refuse(*args: object, **kwargs: object) -> None:
        raise AssertionError("pipelines must run without Ray")

    monkeypatch.setattr(ray, "init", refuse)
