"""Pipecat's wire frames (`pipecat/frames/frames.proto`, package `pipecat`), built at import from
a descriptor that mirrors that schema field for field, so no protoc step and no generated code
to keep in sync with a protobuf runtime version. The field numbers and types are the contract:
they are what Pipecat's `ProtobufFrameSerializer` reads and writes (tested against it).

    message Frame { oneof frame { TextFrame text = 1; AudioRawFrame audio = 2;
                    TranscriptionFrame transcription = 3; MessageFrame message = 4;
                    InterruptionFrame interruption = 5; } }
"""

from __future__ import annotations

from typing import Any

from google.protobuf import descriptor_pb2, descriptor_pool, message_factory

_T = descriptor_pb2.FieldDescriptorProto
UINT64, UINT32, STRING, BYTES, MESSAGE = (
    _T.TYPE_UINT64,
    _T.TYPE_UINT32,
    _T.TYPE_STRING,
    _T.TYPE_BYTES,
    _T.TYPE_MESSAGE,
)

# message name → [(field name, number, type, message type or "optional")]
_SCHEMA: dict[str, list[tuple[str, int, int, str]]] = {
    "TextFrame": [("id", 1, UINT64, ""), ("name", 2, STRING, ""), ("text", 3, STRING, "")],
    "AudioRawFrame": [
        ("id", 1, UINT64, ""),
        ("name", 2, STRING, ""),
        ("audio", 3, BYTES, ""),
        ("sample_rate", 4, UINT32, ""),
        ("num_channels", 5, UINT32, ""),
        ("pts", 6, UINT64, "optional"),
    ],
    "TranscriptionFrame": [
        ("id", 1, UINT64, ""),
        ("name", 2, STRING, ""),
        ("text", 3, STRING, ""),
        ("user_id", 4, STRING, ""),
        ("timestamp", 5, STRING, ""),
    ],
    "MessageFrame": [("data", 1, STRING, "")],
    "InterruptionFrame": [("id", 1, UINT64, ""), ("name", 2, STRING, "")],
    "Frame": [
        ("text", 1, MESSAGE, "TextFrame"),
        ("audio", 2, MESSAGE, "AudioRawFrame"),
        ("transcription", 3, MESSAGE, "TranscriptionFrame"),
        ("message", 4, MESSAGE, "MessageFrame"),
        ("interruption", 5, MESSAGE, "InterruptionFrame"),
    ],
}


def _file() -> descriptor_pb2.FileDescriptorProto:
    f = descriptor_pb2.FileDescriptorProto(
        name="voice_backend/pipecat/frames.proto", package="pipecat", syntax="proto3"
    )
    for msg_name, fields in _SCHEMA.items():
        msg = f.message_type.add(name=msg_name)
        if msg_name == "Frame":
            msg.oneof_decl.add(name="frame")
        for name, number, ftype, extra in fields:
            fd = msg.field.add(
                name=name, number=number, type=ftype, label=_T.LABEL_OPTIONAL, json_name=name
            )
            if ftype == MESSAGE:
                fd.type_name = f".pipecat.{extra}"
                fd.oneof_index = 0
            elif extra == "optional":  # proto3 `optional`: a synthetic one-field oneof
                fd.proto3_optional = True
                fd.oneof_index = len(msg.oneof_decl)
                msg.oneof_decl.add(name=f"_{name}")
    return f


# A private pool: the real pipecat package (or anything else) may register "pipecat.Frame" too.
_POOL = descriptor_pool.DescriptorPool()
_POOL.Add(_file())


def _cls(name: str) -> Any:
    return message_factory.GetMessageClass(_POOL.FindMessageTypeByName(f"pipecat.{name}"))


Frame = _cls("Frame")
TextFrame = _cls("TextFrame")
AudioRawFrame = _cls("AudioRawFrame")
TranscriptionFrame = _cls("TranscriptionFrame")
MessageFrame = _cls("MessageFrame")
InterruptionFrame = _cls("InterruptionFrame")
