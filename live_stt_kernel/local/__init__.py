"""The embedded default: speech-to-text and a language model on this machine, no key, no internet.

``engine``      the speech engine: PCM in, v3 turns out; in-process or behind the server
``turns``       pure turn detection: which span of audio to decode when
``recognizer``  faster-whisper, loaded once
``messages``    the v3 `Turn` messages built from recognized words
``server``      the v3 server on loopback, a thin adapter over the engine
``models``      where the speech weights come from, checked against pinned hashes
``llm_model``   the local LLM's weights and an in-process chat
``llm_server``  an OpenAI-compatible server around it
``launcher``    one server of each kind per Python process, started on first use
"""
