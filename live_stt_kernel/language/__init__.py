"""Language work on turns: translation (live and in batch) and the language models behind it and coaching.

``llm``          the `LLM` protocol and its HTTP backends (LLM Gateway, OpenAI-compatible, LeMUR)
``backends``     choosing a translator or a model by one rule; the local model
``apertium``     rule-based offline translation through one persistent pipeline
``translation``  pure: languages, the prompt, reading replies, the records kept
``live``         a live session's translation, off the stream
``batch``        every turn of a conversation at once
"""
