"""The HTTP API of the ingress: a FastAPI app (`ingress.app.api`) made of one router per concern.

`serve_app.VoiceIngress` serves it and puts its `ControlPlane` in `api.state.control`; every
route reaches the control plane through `request.app.state.control`, and only through its public
methods. No Ray here: whatever needs Ray goes through `actors/`.
"""
