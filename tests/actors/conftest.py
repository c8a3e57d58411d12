import pytest


@pytest.fixture(autouse=True)
def _no_ray(monkeypatch: pytest.MonkeyPatch) -> None:
    """These tests drive the media path in one process: starting Ray here is a test bug."""
    import ray

    def refuse(*args: object, **kwargs: object) -> None:
        raise AssertionError("tests/actors run without Ray")

    monkeypatch.setattr(ray, "init", refuse)
