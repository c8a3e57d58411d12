"""Stage placement from the config and the providers' declarations (no Ray)."""

from __future__ import annotations

import pytest

from actors.profile import WorkerProfile, cpu_cores_per_call, placements
from backend.errors import BackendError, ErrorCode
from backend.iface import Config, PipelineType


def test_auto_puts_heavy_local_models_on_the_node_and_clients_inline() -> None:
    assert placements(Config()) == {"stt": "node", "tts": "inline", "s2s": "session"}
    hosted = Config(
        stt_provider="cartesia", tts_provider="cartesia", s2s_provider="openai_realtime"
    )
    assert placements(hosted) == {"stt": "inline", "tts": "inline", "s2s": "inline"}


def test_an_explicit_placement_wins() -> None:
    config = Config(stt_placement="session", tts_placement="session", s2s_placement="inline")
    assert placements(config) == {"stt": "session", "tts": "session", "s2s": "inline"}


def test_node_is_refused_where_a_shared_host_cannot_serve_the_stage() -> None:
    with pytest.raises(BackendError) as refused:
        placements(Config(tts_placement="node"))
    assert refused.value.code is ErrorCode.INVALID_CONFIG
    assert refused.value.field == "tts_placement"


def test_the_profile_names_its_node_hosts_and_changes_with_placement() -> None:
    node = WorkerProfile.from_config(Config(), {})
    assert node.node_stages == {"stt": "pocketsphinx"}
    inline = WorkerProfile.from_config(Config(stt_placement="inline"), {})
    assert inline.node_stages == {} and inline.key != node.key


def test_a_calls_cpu_share_is_what_its_local_stages_declare() -> None:
    assert cpu_cores_per_call(Config()) > 0  # pocketsphinx decodes on this node
    assert cpu_cores_per_call(Config(stt_provider="cartesia", tts_provider="cartesia")) == 0
    s2s = Config(pipeline_type=PipelineType.S2S, s2s_provider="openai_realtime")
    assert cpu_cores_per_call(s2s) == 0
