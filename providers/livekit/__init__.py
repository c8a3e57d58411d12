"""The `livekit` backend provider: sessions whose media goes through a LiveKit room."""
